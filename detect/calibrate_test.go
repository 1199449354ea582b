package detect

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/immune-dev/immune/bench"
)

// calibrationService serves a clean 16-host fleet (no canary) from 4 hours
// before t0 to t0, and a deployment of the service registered over the
// last hour.
func calibrationService(t *testing.T) (*Service, time.Time) {
	t.Helper()
	clock := &simClock{}
	svc, fleet := newSimService(t, clock, checkoutFleet(16, 0, bench.Regression{}))
	fleet.next = t0.Add(-4 * time.Hour)
	clock.Set(t0)
	fleet.until(t, t0)
	if _, err := svc.Register(context.Background(), &Deployment{Service: "checkout", Version: "v1.1", Start: t0.Add(-time.Hour),
		Canary: oneHost, Baseline: oneHostRest}); err != nil {
		t.Fatal(err)
	}
	return svc, t0
}

// TestCalibrateAA replays a clean fleet's history with random hosts as
// canaries: the false fails stay within the judge's 1% budget (the
// interval's lower bound is at most 1%), no window overlaps the registered
// deployment, and a latency doubled on the pseudo-canary is caught in most
// runs, naming latency-mean.
func TestCalibrateAA(t *testing.T) {
	svc, now := calibrationService(t)
	const runs = 24
	c, err := svc.Calibrate(context.Background(), CalibrationRequest{Service: "checkout", From: now.Add(-3*time.Hour - 30*time.Minute), To: now,
		Runs: runs, Seed: 7, Effects: []Effect{{Metric: "latency-mean", Factor: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("A/A: %d runs, %d pass, %d fail, %d inconclusive, false-fail CI [%.3f, %.3f], time to verdict p50 %s p90 %s",
		c.AA.Runs, c.AA.Pass, c.AA.Fail, c.AA.Inconclusive, c.AA.FailCI[0], c.AA.FailCI[1], time.Duration(c.AA.TimeToVerdict.P50), time.Duration(c.AA.TimeToVerdict.P90))
	if c.Skipped != 0 || c.AA.Runs != runs || len(c.Runs) != runs {
		t.Fatalf("%d runs judged, %d skipped: %+v", c.AA.Runs, c.Skipped, c.Runs)
	}
	if c.FailBudget != 0.01 || !c.WithinBudget || float64(c.AA.FailCI[0]) > c.FailBudget {
		t.Fatalf("%d false fails of %d: interval [%.3f, %.3f] against a budget of %g", c.AA.Fail, c.AA.Runs, c.AA.FailCI[0], c.AA.FailCI[1], c.FailBudget)
	}
	if c.AA.Pass+c.AA.Fail+c.AA.Inconclusive != runs || c.AA.Pass < runs/2 || c.AA.TimeToVerdict.P50 <= 0 {
		t.Fatalf("A/A outcomes: %+v", c.AA)
	}
	deployed := now.Add(-time.Hour)
	hosts := map[string]bool{}
	for _, r := range c.Runs {
		if end := r.Start.Add(30 * time.Minute); end.After(deployed) || r.Start.Before(now.Add(-3*time.Hour-30*time.Minute)) {
			t.Fatalf("window %s-%s overlaps the deployment at %s or starts before from", r.Start, end, deployed)
		}
		if len(r.Canary) != 1 || len(r.Effects) != 1 || r.Verdict == "" {
			t.Fatalf("run %+v", r)
		}
		hosts[r.Canary[0]] = true
	}
	if len(hosts) < 8 {
		t.Errorf("only %d distinct canary hosts in %d runs: %v", len(hosts), runs, hosts)
	}
	if len(c.Power) != 1 {
		t.Fatalf("power: %+v", c.Power)
	}
	pw := c.Power[0]
	t.Logf("latency-mean x2: detected %d of %d, named %d, p50 %s", pw.Fail, pw.Runs, pw.Named, time.Duration(pw.TimeToVerdict.P50))
	if pw.Runs != runs || float64(pw.FailRate) < 0.8 || pw.Named < pw.Fail*9/10 {
		t.Fatalf("latency x2 detected in %d of %d runs (%d naming latency-mean)", pw.Fail, pw.Runs, pw.Named)
	}

	stored, err := svc.GetCalibration(c.ID)
	if err != nil || stored.AA != c.AA || len(stored.Runs) != runs {
		t.Fatalf("stored calibration: %+v %v", stored, err)
	}
	if list, err := svc.ListCalibrations("checkout"); err != nil || len(list) != 1 || list[0].Runs != nil {
		t.Fatalf("list: %+v %v", list, err)
	}
}

// TestCalibrateMultipleHosts uses two canary hosts per window, selected
// with a regex both cohorts' validation must accept as disjoint.
func TestCalibrateMultipleHosts(t *testing.T) {
	svc, now := calibrationService(t)
	c, err := svc.Calibrate(context.Background(), CalibrationRequest{Service: "checkout", From: now.Add(-3 * time.Hour), To: now.Add(-time.Hour),
		Runs: 2, Hosts: 2, Duration: Duration(10 * time.Minute), Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if c.Skipped != 0 || c.AA.Runs != 2 || len(c.Runs[0].Canary) != 2 {
		t.Fatalf("%+v", c.Runs)
	}
}

func TestCalibrateBadInput(t *testing.T) {
	svc, now := calibrationService(t)
	ok := func() CalibrationRequest {
		return CalibrationRequest{Service: "checkout", From: now.Add(-3 * time.Hour), To: now, Runs: 5}
	}
	for _, tc := range []struct {
		name  string
		tweak func(*CalibrationRequest)
		want  string
	}{
		{"too many runs", func(r *CalibrationRequest) { r.Runs = 1001 }, "runs 1001: want between 1 and 1000"},
		{"from after to", func(r *CalibrationRequest) { r.From = now.Add(time.Minute); r.To = now }, "from 2026-03-02T10:01:00Z is not before to"},
		{"duration over the span", func(r *CalibrationRequest) { r.From = now.Add(-20 * time.Minute) }, "duration 30m0s: want more than 0 and at most to - from (20m0s)"},
		{"unknown metric", func(r *CalibrationRequest) { r.Effects = []Effect{{Metric: "latency", Factor: 2}} }, `effect on "latency": profile default has no such metric`},
		{"bad factor", func(r *CalibrationRequest) { r.Effects = []Effect{{Metric: "cpu"}} }, "factor 0: want a positive number"},
		{"unknown profile", func(r *CalibrationRequest) { r.Profile = "nope" }, `unknown profile "nope"`},
		{"bad label", func(r *CalibrationRequest) { r.HostLabel = "host-name" }, `"host-name" is not a label name`},
		{"future", func(r *CalibrationRequest) { r.To = now.Add(time.Hour) }, "is in the future"},
		{"every window overlaps the deployment", func(r *CalibrationRequest) { r.From = now.Add(-80 * time.Minute) },
			"every 30m0s window in [2026-03-02T08:40:00Z, 2026-03-02T10:00:00Z] overlaps a registered deployment of checkout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := ok()
			tc.tweak(&req)
			_, err := svc.Calibrate(context.Background(), req)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an invalid request saying %q", err, tc.want)
			}
		})
	}
}
