package gate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/immune-dev/immune/bench"
	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/internal/detecttest"
)

// newStoreEnv serves the API over a real store holding two hours of a
// checkout fleet whose canary host (version v2) is twice as slow for the
// last 30 minutes.
func newStoreEnv(t *testing.T) *env {
	t.Helper()
	e := &env{clock: detecttest.NewClock()}
	fleet := &bench.Fleet{Service: "checkout", Version: "v1", CanaryVersion: "v2", Hosts: 8, Canary: 1, RPS: 200,
		ErrorRate: 0.01, LatencyMedian: 0.08, Regression: bench.Regression{LatencyFactor: 2}, RegressionAt: t0.Add(-30 * time.Minute), Seed: 5}
	src := detecttest.FleetStore(t, fleet, t0.Add(-2*time.Hour), t0, e.clock.Now)
	e.serve(t, src)
	return e
}

// backtestBody is a valid backtest of the slow canary; tweak edits it.
func backtestBody(tweak func(map[string]any)) string {
	m := map[string]any{
		"service": "checkout", "version": "v2", "start": t0.Add(-30 * time.Minute),
		"canary": `{service="checkout",version="v2"}`, "baseline": `{service="checkout",version="v1"}`,
		"every": "30s", "until": t0.Add(-10 * time.Minute),
	}
	if tweak != nil {
		tweak(m)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestGateBacktest(t *testing.T) {
	e := newStoreEnv(t)
	code, body := e.do(t, "POST", "/api/v1/backtests", backtestBody(nil))
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %s", code, body)
	}
	bt := decodeInto[detect.Backtest](t, body)
	last := bt.Timeline[len(bt.Timeline)-1]
	if bt.ID == "" || bt.Verdict != detect.Fail || !bt.Decided || !strings.HasPrefix(bt.Reason, "latency-mean: ") ||
		bt.Polls != len(bt.Timeline) || !last.At.Equal(bt.At) || last.Verdict != detect.Fail {
		t.Fatalf("backtest: %s", body)
	}
	for _, m := range last.Metrics {
		if m.Name == "latency-mean" && (m.Verdict != detect.Fail || float64(m.Effect.Estimate) < 1.5) {
			t.Fatalf("latency-mean at the fail: %+v", m)
		}
	}
	if d := bt.Deployment; d.Service != "checkout" || d.Step == 0 || d.Profile != detect.DefaultProfileName || time.Duration(bt.Every) != 30*time.Second {
		t.Fatalf("the definition as registered: %+v", d)
	}

	code, got := e.do(t, "GET", "/api/v1/backtests/"+bt.ID, "")
	if code != http.StatusOK || !bytes.Equal(got, body) {
		t.Fatalf("GET: %d\n%s\nwant\n%s", code, got, body)
	}
	code, body = e.do(t, "GET", "/api/v1/backtests?service=checkout", "")
	list := decodeInto[struct{ Backtests []map[string]any }](t, body)
	if code != http.StatusOK || len(list.Backtests) != 1 || list.Backtests[0]["id"] != bt.ID || list.Backtests[0]["timeline"] != nil {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body = e.do(t, "GET", "/api/v1/backtests/bt-nope", ""); code != http.StatusNotFound || !strings.Contains(string(body), "backtest not found") {
		t.Errorf("unknown backtest: %d %s", code, body)
	}
	code, body = e.do(t, "GET", "/api/v1/deployments", "")
	if ds := decodeInto[struct{ Deployments []detect.Deployment }](t, body); code != http.StatusOK || len(ds.Deployments) != 0 {
		t.Errorf("a backtest registered a deployment: %s", body)
	}

	// A failed critical check fails the replay when it was reported.
	at := t0.Add(-28*time.Minute - 10*time.Second)
	code, body = e.do(t, "POST", "/api/v1/backtests", backtestBody(func(m map[string]any) {
		m["checks"] = []map[string]any{{"name": "smoke", "passed": false, "critical": true, "details": "GET /healthz: 503", "at": at}}
	}))
	if bt := decodeInto[detect.Backtest](t, body); code != http.StatusCreated || bt.Verdict != detect.Fail || !bt.At.Equal(at) ||
		bt.Reason != `check "smoke" failed: GET /healthz: 503` {
		t.Fatalf("failed check: %d %s", code, body)
	}
}

// TestGateBacktestBadInput: what POST /api/v1/deployments refuses,
// POST /api/v1/backtests refuses with the same message; bounds are named.
func TestGateBacktestBadInput(t *testing.T) {
	e := newStoreEnv(t)
	for _, tc := range []struct {
		name  string
		tweak func(map[string]any)
	}{
		{"overlapping cohorts", func(m map[string]any) { m["baseline"] = `{service="checkout"}` }},
		{"canary matches nothing", func(m map[string]any) { m["canary"] = `{service="checkout",version="v9"}` }},
		{"unknown profile", func(m map[string]any) { m["profile"] = "nope" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			regCode, reg := e.do(t, "POST", "/api/v1/deployments", backtestBody(func(m map[string]any) {
				tc.tweak(m)
				delete(m, "every")
				delete(m, "until")
			}))
			code, body := e.do(t, "POST", "/api/v1/backtests", backtestBody(tc.tweak))
			if regCode != http.StatusBadRequest || code != http.StatusBadRequest || !bytes.Equal(body, reg) {
				t.Fatalf("backtest: %d %s\nlive:     %d %s", code, body, regCode, reg)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		tweak func(map[string]any)
		want  string
	}{
		{"until before start", func(m map[string]any) { m["until"] = t0.Add(-time.Hour) }, "until 2026-03-01T11:00:00Z is not after the start 2026-03-01T11:30:00Z"},
		{"too many polls", func(m map[string]any) { m["every"] = "1s"; m["start"] = t0.Add(-3 * time.Hour); m["until"] = t0 },
			"the schedule has 10800 polls (every 1s from 2026-03-01T09:00:00Z to 2026-03-01T12:00:00Z): at most 10000"},
		{"every under a second", func(m map[string]any) { m["every"] = "100ms" }, "every 100ms: want at least 1s"},
		{"check without passed", func(m map[string]any) {
			m["checks"] = []map[string]any{{"name": "smoke", "critical": true, "at": t0.Add(-25 * time.Minute)}}
		}, `check \"smoke\": field \"passed\" is required: true or false`},
		{"unknown field", func(m map[string]any) { m["poll"] = "30s" }, `poll\": the accepted fields are service, version, start, canary, baseline, profile, min_bake, max_bake, step, metadata, stages, every, until, checks`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.do(t, "POST", "/api/v1/backtests", backtestBody(tc.tweak))
			if code != http.StatusBadRequest || !strings.Contains(string(body), tc.want) {
				t.Fatalf("got %d %s, want 400 saying %q", code, body, tc.want)
			}
		})
	}
}

func TestGateCalibrate(t *testing.T) {
	e := newStoreEnv(t)
	// Clean history only: the regression starts 30 minutes before t0.
	req := func(runs int) string {
		return fmt.Sprintf(`{"service":"checkout","from":%q,"to":%q,"runs":%d,"duration":"10m","seed":2,
			"effects":[{"metric":"latency-mean","factor":2}]}`,
			t0.Add(-100*time.Minute).Format(time.RFC3339), t0.Add(-35*time.Minute).Format(time.RFC3339), runs)
	}
	code, body := e.do(t, "POST", "/api/v1/backtests/aa", req(4))
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %s", code, body)
	}
	c := decodeInto[detect.Calibration](t, body)
	if c.ID == "" || c.AA.Runs+c.Skipped != 4 || c.AA.Runs == 0 || len(c.Power) != 1 || c.Power[0].Effect.Metric != "latency-mean" ||
		c.Request.HostLabel != "instance" || time.Duration(c.Request.Duration) != 10*time.Minute || len(c.Runs) != 4 {
		t.Fatalf("calibration: %s", body)
	}
	if code, got := e.do(t, "GET", "/api/v1/backtests/aa/"+c.ID, ""); code != http.StatusOK || !bytes.Equal(got, body) {
		t.Fatalf("GET: %d %s", code, got)
	}
	code, body = e.do(t, "GET", "/api/v1/backtests/aa?service=checkout", "")
	list := decodeInto[struct{ Calibrations []map[string]any }](t, body)
	if code != http.StatusOK || len(list.Calibrations) != 1 || list.Calibrations[0]["runs"] != nil {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body = e.do(t, "POST", "/api/v1/backtests/aa", req(1001)); code != http.StatusBadRequest || !strings.Contains(string(body), "runs 1001: want between 1 and 1000") {
		t.Fatalf("1001 runs: %d %s", code, body)
	}
}
