package gate

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/internal/detecttest"
)

// The fuzz targets below send what a client may send to every route that
// reads a JSON body or query parameters, through the real handlers over a
// real deployment store, and hold the API to its contract: no panic; one
// of the route's documented codes, never a 5xx for the client's input; an
// error as {"error": "..."} with a message; and what was accepted reads
// back as it was answered. Each target shares one store among its inputs:
// opening one per input would leave the fuzzer a few inputs a second.

// fuzzEnv is the API over a real store and the fixed fleet double, with
// the clock at detecttest.T0.
type fuzzEnv struct {
	mux *http.ServeMux
	svc *detect.Service
}

func newFuzzEnv(f *testing.F) *fuzzEnv {
	f.Helper()
	svc := newService(f, detecttest.NewFleet(), detecttest.NewClock(), testProfile())
	mux := http.NewServeMux()
	New(svc, Options{}).Register(mux)
	return &fuzzEnv{mux: mux, svc: svc}
}

// do serves one request to path, escaped as on the wire. rawQuery is used
// as given, not parsed, so that any query string reaches the handler.
func (e *fuzzEnv) do(method, path, rawQuery string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/", bytes.NewReader(body))
	unescaped, _ := url.PathUnescape(path) // the tests escape with url.PathEscape
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = unescaped, path, rawQuery
	rec := httptest.NewRecorder()
	e.mux.ServeHTTP(rec, req)
	return rec
}

// checkAnswer fails the input unless the answer has one of codes and is
// JSON; an error answer must be the API's error form with a message. It
// returns the body.
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder, codes ...int) []byte {
	t.Helper()
	body := rec.Body.Bytes()
	if !slices.Contains(codes, rec.Code) {
		t.Fatalf("%s: status %d, want one of %v: %s", what, rec.Code, codes, body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: %d with Content-Type %q: %s", what, rec.Code, ct, body)
	}
	if rec.Code >= 400 {
		var eb errorBody
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&eb); err != nil || eb.Error == "" {
			t.Fatalf("%s: %d is not the API's error form {\"error\": \"...\"} (%v): %s", what, rec.Code, err, body)
		}
	}
	return body
}

// answer decodes a 2xx answer's body.
func answer[T any](t *testing.T, what string, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: answer does not decode: %v: %s", what, err, body)
	}
	return v
}

// checkDeployment fails unless the deployment d, as an API write answered
// it, reads back the same: its status, its place in the list of its
// service, and its history.
func (e *fuzzEnv) checkDeployment(t *testing.T, d detect.Deployment) {
	t.Helper()
	path := "/api/v1/deployments/" + url.PathEscape(d.ID)
	st := answer[Status](t, "status", checkAnswer(t, "status", e.do("GET", path, "", nil), http.StatusOK))
	if st.ID != d.ID || st.Service != d.Service || st.Version != d.Version || st.Verdict != d.State || !st.Start.Equal(d.Start) {
		t.Fatalf("status %+v of the deployment answered as %+v", st, d)
	}
	list := answer[struct{ Deployments []detect.Deployment }](t, "list",
		checkAnswer(t, "list", e.do("GET", "/api/v1/deployments", "service="+url.QueryEscape(d.Service), nil), http.StatusOK))
	if !slices.ContainsFunc(list.Deployments, func(x detect.Deployment) bool { return x.ID == d.ID }) {
		t.Fatalf("deployment %s is not listed under its service %q", d.ID, d.Service)
	}
	h := answer[struct{ Verdicts []detect.Verdict }](t, "history", checkAnswer(t, "history", e.do("GET", path+"/history", "", nil), http.StatusOK))
	if v := d.Verdict; v != nil &&
		(len(h.Verdicts) == 0 || h.Verdicts[len(h.Verdicts)-1].Verdict != v.Verdict || !h.Verdicts[len(h.Verdicts)-1].At.Equal(v.At)) {
		t.Fatalf("history of %s (verdict %s at %s) ends with %+v", d.ID, v.Verdict, v.At, h.Verdicts)
	}
}

// registrationSeeds are valid and invalid registrations from the tests
// and the README; testdata/fuzz/FuzzRegister holds more.
func registrationSeeds() []string {
	past := t0.Add(-20 * time.Minute).Format(time.RFC3339)
	return []string{
		registration(nil),
		registration(func(m map[string]any) { m["min_bake"] = "20m"; m["max_bake"] = "2h"; m["step"] = 15 }),
		registration(func(m map[string]any) { m["start"] = past; m["metadata"] = map[string]string{"commit": "85d557f"} }),
		registration(func(m map[string]any) {
			m["stages"] = []map[string]any{{"at": past, "canary": `{app="checkout",version="v2",zone="b"}`, "note": "2 hosts"}}
			m["start"] = t0.Add(-30 * time.Minute)
		}),
		registration(func(m map[string]any) { delete(m, "baseline"); m["profile"] = "" }),
		registration(func(m map[string]any) { m["profile"] = "weighted"; m["baseline"] = `{app="checkout",version=~"v1|v0"}` }),
		`{"service":"checkout","version":"v42","canary":"{service=\"checkout\",version=\"v42\"}","baseline":"{service=\"checkout\",version!=\"v42\"}"}`,
		registration(func(m map[string]any) { m["colour"] = "red" }),
		registration(func(m map[string]any) { m["canary"] = `{app="checkout"` }),
		registration(func(m map[string]any) { m["baseline"] = `{app="checkout"}` }),
		registration(func(m map[string]any) { m["start"] = t0.Add(time.Hour) }),
		registration(func(m map[string]any) { m["canary"] = `{app="ghost",version="v2"}` }),
		registration(func(m map[string]any) { m["min_bake"] = "five minutes"; m["canary"] = 42 }),
		registration(func(m map[string]any) { m["max_bake"] = 1e10 }),
		registration(nil) + "{}",
		`{"service": `, ``, `null`, `[]`,
	}
}

// FuzzRegister posts registrations (POST /api/v1/deployments): 201 with
// the deployment as sent, which then reads back, or 400 or 413.
func FuzzRegister(f *testing.F) {
	for _, s := range registrationSeeds() {
		f.Add([]byte(s))
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := e.do("POST", "/api/v1/deployments", "", body)
		got := checkAnswer(t, "register", rec, http.StatusCreated, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
		if rec.Code != http.StatusCreated {
			return
		}
		var reg Registration
		if err := json.Unmarshal(body, &reg); err != nil {
			t.Fatalf("accepted a registration that does not decode: %v", err)
		}
		d := answer[detect.Deployment](t, "register", got)
		if d.ID == "" || d.Service != reg.Service || d.Version != reg.Version || d.Canary != reg.Canary || d.Baseline != reg.Baseline ||
			(!reg.Start.IsZero() && !d.Start.Equal(reg.Start)) || len(d.Stages) != len(reg.Stages) || d.State == detect.Aborted {
			t.Fatalf("registered %+v from %s", d, body)
		}
		if loc := rec.Header().Get("Location"); loc != "/api/v1/deployments/"+url.PathEscape(d.ID) {
			t.Fatalf("Location %q for %s", loc, d.ID)
		}
		e.checkDeployment(t, d)
	})
}

// Routes that write to a registered deployment, chosen by
// FuzzDeploymentWrite's first argument.
var writeRoutes = []string{"/stages", "/checks", "/abort"}

// FuzzDeploymentWrite posts stages, checks and aborts to a registered
// deployment: 200 with the write applied, which then reads back, or 400,
// 409 (the deployment is finished) or 413; never 404, as it exists. A
// deployment is replaced once finished or written to eight times, so
// that inputs do not pile up on one.
func FuzzDeploymentWrite(f *testing.F) {
	for _, s := range []struct {
		route uint8
		body  string
	}{
		{0, ``}, {0, `{"note":"2 hosts"}`}, {0, `{"canary":"{app=\"checkout\",version=\"v2\",zone=\"b\"}","note":"2 hosts"}`},
		{0, `{"canary":"{app=\"checkout\"}"}`}, {0, `{"baseline":"{app=\"checkout\",version=\"v1\"}","at":"2026-03-01T12:00:00Z"}`},
		{0, `{"at":"2026-03-01T11:00:00Z"}`}, {0, `{"canary":"{app=\"ghost\",version=\"v2\"}"}`},
		{1, `{"name":"smoke","passed":true}`}, {1, `{"name":"self-test","passed":true,"critical":true}`},
		{1, `{"name":"smoke","passed":false,"critical":true,"details":"cannot reach the payments API"}`},
		{1, `{"name":"smoke","critical":true}`}, {1, `{"name":"","passed":false}`}, {1, `{"passed":"yes"}`},
		{2, ``}, {2, `{"reason":"operator stopped it"}`}, {2, `{"reason":""}`}, {2, `{"why":"x"}`}, {2, `"stop"`},
	} {
		f.Add(s.route, []byte(s.body))
	}
	e := newFuzzEnv(f)
	var id string
	writes := 0
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		if id == "" || writes >= 8 {
			rec := e.do("POST", "/api/v1/deployments", "", []byte(registration(nil)))
			id, writes = answer[detect.Deployment](t, "register", checkAnswer(t, "register", rec, http.StatusCreated)).ID, 0
		}
		before, err := e.svc.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		what := writeRoutes[int(route)%len(writeRoutes)]
		rec := e.do("POST", "/api/v1/deployments/"+id+what, "", body)
		writes++
		got := checkAnswer(t, what, rec, http.StatusOK, http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge)
		if rec.Code == http.StatusConflict && !before.State.Terminal() || rec.Code == http.StatusOK && before.State.Terminal() {
			t.Fatalf("%s: %d for a deployment in state %s: %s", what, rec.Code, before.State, got)
		}
		if rec.Code != http.StatusOK {
			if after, err := e.svc.Get(id); err != nil || !sameWrites(before, after) {
				t.Fatalf("%s: refused with %d but the deployment changed (%v): %+v", what, rec.Code, err, after)
			}
			return
		}
		d := answer[detect.Deployment](t, what, got)
		switch what {
		case "/stages":
			if len(d.Stages) != len(before.Stages)+1 {
				t.Fatalf("stage accepted, stages %d then %d", len(before.Stages), len(d.Stages))
			}
		case "/checks":
			var c CheckReport
			if err := json.Unmarshal(body, &c); err != nil {
				t.Fatalf("accepted a check that does not decode: %v", err)
			}
			last := d.Checks[len(d.Checks)-1]
			if len(d.Checks) != len(before.Checks)+1 || last.Name != c.Name || last.Passed != *c.Passed ||
				(!last.Passed && last.Critical) != (d.State == detect.Fail) {
				t.Fatalf("check %s accepted as %+v, state %s", body, d.Checks, d.State)
			}
		case "/abort":
			if d.State != detect.Aborted || d.Verdict == nil || d.Verdict.Reason == "" {
				t.Fatalf("abort accepted, deployment %+v", d)
			}
		}
		e.checkDeployment(t, d)
		if d.State.Terminal() {
			id = ""
		}
	})
}

// sameWrites reports whether a refused write left the client's parts of
// the deployment as they were.
func sameWrites(a, b *detect.Deployment) bool {
	return len(a.Stages) == len(b.Stages) && len(a.Checks) == len(b.Checks) && a.State == b.State
}

// FuzzProfile posts profiles (POST /api/v1/profiles): 200 with the
// profile, which is then listed and usable, or 400 or 413. A deployment
// registered with an accepted profile is evaluated and plotted without a
// 5xx, whatever its templates select.
func FuzzProfile(f *testing.F) {
	for _, s := range []string{
		`{"name":"api","metrics":[{"name":"p50","kind":"latency","query":"avg(latency_seconds)","tolerance":0.1,"critical":true}]}`,
		`{"name":"errors","metrics":[{"name":"error-ratio","kind":"count","events":"sum(irate(http_requests_total{code=~\"5..\"}[$window])) * $step_seconds","exposure":"sum(irate(http_requests_total[$window])) * $step_seconds","tolerance":0.2,"limit":0.001,"critical":true}]}`,
		`{"name":"mem","metrics":[{"name":"memory","kind":"gauge","query":"avg(process_resident_memory_bytes)","tolerance":0.2,"critical":true,"trend_horizon":"1h"},{"name":"traffic","kind":"count","events":"sum(increase(requests_total[$step]))","exposure":"count(up)","bad":"decrease","tolerance":0.5,"guard":true}]}`,
		`{"name":"broken","metrics":[{"name":"p99","kind":"latency","query":"histogram_quantile(0.99, sum(rate(x[$step]))","tolerance":0.1}]}`,
		`{"name":"default","metrics":[{"name":"m","kind":"gauge","query":"up","tolerance":0.1,"critical":true}]}`,
		`{"name":"none","metrics":[{"name":"m","kind":"gauge","query":"up","tolerance":0.1}]}`,
		`{"name":"twice","metrics":[{"name":"m","kind":"gauge","query":"up","critical":true},{"name":"m","kind":"gauge","query":"up"}]}`,
		`{"name":"x","metrics":[]}`, `{"name":"x","metrics":[{"name":"m","kind":"ratio","query":"up","critical":true}]}`,
	} {
		f.Add([]byte(s))
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := e.do("POST", "/api/v1/profiles", "", body)
		got := checkAnswer(t, "profile", rec, http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
		if rec.Code != http.StatusOK {
			return
		}
		p := answer[detect.Profile](t, "profile", got)
		ps := answer[struct{ Profiles []detect.Profile }](t, "profiles", checkAnswer(t, "profiles", e.do("GET", "/api/v1/profiles", "", nil), http.StatusOK))
		i := slices.IndexFunc(ps.Profiles, func(x detect.Profile) bool { return x.Name == p.Name })
		if i < 0 || !sameJSON(ps.Profiles[i], p) {
			t.Fatalf("profile %s accepted as %+v, listed as %+v", body, p, ps.Profiles)
		}
		rec = e.do("POST", "/api/v1/deployments", "", []byte(registration(func(m map[string]any) { m["profile"] = p.Name })))
		d := answer[detect.Deployment](t, "register", checkAnswer(t, "register with the profile", rec, http.StatusCreated))
		e.checkDeployment(t, d)
		for _, m := range p.Metrics {
			rec := e.do("GET", "/api/v1/deployments/"+d.ID+"/plot.svg", "metric="+url.QueryEscape(m.Name), nil)
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "image/svg+xml" {
				t.Fatalf("plot of %q with profile %s: %d %s", m.Name, body, rec.Code, rec.Body)
			}
		}
	})
}

// sameJSON reports whether a and b encode the same.
func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// Flagger's hooks, chosen by FuzzFlagger's first argument.
var flaggerHooks = []string{"pre-rollout", "confirm-promotion", "rollback"}

// FuzzFlagger posts Flagger webhook payloads. Pre-rollout answers 200
// with a deployment that reads back and that the same payload finds
// again, or 400, 404 (an unknown metadata.deployment) or 413.
// Confirm-promotion answers 200 only for a pass and rollback only for a
// fail, with the status; otherwise 409 with the status, or an error.
func FuzzFlagger(f *testing.F) {
	for _, s := range []struct {
		hook uint8
		body string
	}{
		{0, flaggerPayload("85d557f47b", podinfoMetadata)},
		{0, flaggerPayload("85d557f47b", map[string]string{"profile": "test"})},
		{0, flaggerPayload("85d557f47b", map[string]string{"canary": `{app="checkout",version="v2"}`, "min_bake": "soon"})},
		{0, flaggerPayload("bad0001", map[string]string{"canary": `{app="checkout",version="v2"}`, "step": "15s", "max_bake": "30m"})},
		{0, `{"name":"checkout","namespace":"shop","phase":"Progressing","checksum":"6d9f7c","metadata":{"canary":"{namespace=\"shop\",app=\"checkout-canary\",version=\"v2\"}","baseline":"{namespace=\"shop\",app=\"checkout-primary\"}","profile":"weighted"}}`},
		{0, flaggerPayload("x", map[string]string{"deployment": "nope-1"})},
		{1, flaggerPayload("85d557f47b", nil)}, {1, flaggerPayload("85d557f47b", map[string]string{"eventType": "Normal"})},
		{1, `{"name":"podinfo","namespace":"test","checksum":"85d557f47b","phase":"Progressing","buildId":"7"}`},
		{2, flaggerPayload("0000000000", nil)}, {2, flaggerPayload("x", map[string]string{"deployment": "nope-1"})},
		{2, `{"namespace":"test"}`}, {1, ``}, {2, `{"name":`}, {1, `{"name":"podinfo","metadata":{"deployment":7}}`},
	} {
		f.Add(s.hook, []byte(s.body))
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, hook uint8, body []byte) {
		what := flaggerHooks[int(hook)%len(flaggerHooks)]
		path := "/api/v1/flagger/" + what
		rec := e.do("POST", path, "", body)
		if what == "pre-rollout" {
			got := checkAnswer(t, what, rec, http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge)
			if rec.Code != http.StatusOK {
				return
			}
			st := answer[Status](t, what, got)
			d, err := e.svc.Get(st.ID)
			if err != nil {
				t.Fatalf("pre-rollout answered %s, which is not stored: %v", st.ID, err)
			}
			e.checkDeployment(t, *d)
			// A retried hook finds the same deployment.
			again := answer[Status](t, what, checkAnswer(t, what+" again", e.do("POST", path, "", body), http.StatusOK))
			if again.ID != st.ID {
				t.Fatalf("pre-rollout %s found %s, then %s", body, st.ID, again.ID)
			}
			return
		}
		want := map[string]detect.Status{"confirm-promotion": detect.Pass, "rollback": detect.Fail}[what]
		if rec.Code == http.StatusOK || rec.Code == http.StatusConflict {
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("%s: %d with Content-Type %q", what, rec.Code, ct)
			}
			st := answer[Status](t, what, rec.Body.Bytes())
			if (st.Verdict == want) != (rec.Code == http.StatusOK) || st.ID == "" {
				t.Fatalf("%s answered %d for verdict %s: %s", what, rec.Code, st.Verdict, rec.Body)
			}
			return
		}
		checkAnswer(t, what, rec, http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge)
	})
}

// backtestSeeds are backtests of the fleet double: its history has no
// end in the past, so any start before T0 replays.
func backtestSeeds() []string {
	body := func(tweak func(map[string]any)) string {
		return registration(func(m map[string]any) {
			m["start"], m["every"], m["until"] = t0.Add(-30*time.Minute), "30s", t0.Add(-10*time.Minute)
			if tweak != nil {
				tweak(m)
			}
		})
	}
	return []string{
		body(nil),
		body(func(m map[string]any) { delete(m, "until"); delete(m, "every"); m["min_bake"] = "10m" }),
		body(func(m map[string]any) {
			m["checks"] = []map[string]any{{"name": "smoke", "passed": false, "critical": true, "details": "GET /healthz: 503", "at": t0.Add(-28 * time.Minute)}}
		}),
		body(func(m map[string]any) {
			m["checks"] = []map[string]any{{"name": "smoke", "passed": true, "at": t0.Add(-25 * time.Minute)}}
			m["stages"] = []map[string]any{{"at": t0.Add(-20 * time.Minute), "canary": `{app="checkout",version="v2",zone="b"}`, "note": "2 hosts"}}
		}),
		body(func(m map[string]any) { m["until"] = t0.Add(-time.Hour) }),
		body(func(m map[string]any) { m["every"] = "100ms" }),
		body(func(m map[string]any) { m["every"] = "1s"; m["start"] = t0.Add(-3 * time.Hour); m["until"] = t0 }),
		body(func(m map[string]any) {
			m["checks"] = []map[string]any{{"name": "smoke", "critical": true, "at": t0.Add(-25 * time.Minute)}}
		}),
		body(func(m map[string]any) {
			m["stages"] = []map[string]any{{"canary": `{app="checkout",version="v2",zone="b"}`}}
		}),
		body(func(m map[string]any) { m["poll"] = "30s" }),
		body(func(m map[string]any) { delete(m, "start") }),
		body(func(m map[string]any) { m["until"] = t0.Add(time.Hour) }),
		registration(nil),
	}
}

// FuzzBacktest posts backtests (POST /api/v1/backtests): 201 with a
// finished replay, stored as answered and registering nothing, or 400 or
// 413.
func FuzzBacktest(f *testing.F) {
	for _, s := range backtestSeeds() {
		f.Add([]byte(s))
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := e.do("POST", "/api/v1/backtests", "", body)
		got := checkAnswer(t, "backtest", rec, http.StatusCreated, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
		if rec.Code != http.StatusCreated {
			return
		}
		var req BacktestRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("accepted a backtest that does not decode: %v", err)
		}
		bt := answer[detect.Backtest](t, "backtest", got)
		if bt.ID == "" || bt.Deployment.Service != req.Service || !bt.Verdict.Terminal() || bt.Verdict == detect.Aborted ||
			bt.Polls != len(bt.Timeline) || bt.Polls == 0 || bt.Polls > detect.MaxBacktestPolls || bt.Verdict == detect.Pass && !bt.Decided {
			t.Fatalf("backtest of %s answered %s", body, got)
		}
		loc := rec.Header().Get("Location")
		if loc != "/api/v1/backtests/"+url.PathEscape(bt.ID) {
			t.Fatalf("Location %q for %s", loc, bt.ID)
		}
		if stored := checkAnswer(t, "get backtest", e.do("GET", loc, "", nil), http.StatusOK); !bytes.Equal(stored, got) {
			t.Fatalf("backtest answered\n%s\nstored as\n%s", got, stored)
		}
		list := answer[struct{ Backtests []detect.Backtest }](t, "list backtests",
			checkAnswer(t, "list backtests", e.do("GET", "/api/v1/backtests", "service="+url.QueryEscape(req.Service), nil), http.StatusOK))
		if !slices.ContainsFunc(list.Backtests, func(x detect.Backtest) bool { return x.ID == bt.ID }) {
			t.Fatalf("backtest %s is not listed under its service %q", bt.ID, req.Service)
		}
		if ds, err := e.svc.List("", ""); err != nil || len(ds) != 0 {
			t.Fatalf("a backtest registered %d deployments (%v)", len(ds), err)
		}
	})
}

// FuzzCalibrate posts A/A calibrations (POST /api/v1/backtests/aa): 201
// with a calibration of the runs asked for, stored as answered, or 400
// or 413. The fleet double reports no hosts, so every window is skipped:
// this target covers the request's checks, the drawing of windows and
// the store; FuzzBacktest covers the replays, which are the same code.
func FuzzCalibrate(f *testing.F) {
	req := func(tweak func(map[string]any)) string {
		m := map[string]any{"service": "checkout", "from": t0.Add(-100 * time.Minute), "to": t0.Add(-35 * time.Minute), "runs": 4,
			"duration": "10m", "seed": 2, "effects": []map[string]any{{"metric": "latency-mean", "factor": 2}}}
		if tweak != nil {
			tweak(m)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	for _, s := range []string{
		req(nil), req(func(m map[string]any) { m["runs"] = 1001 }), req(func(m map[string]any) { m["runs"] = 0 }),
		req(func(m map[string]any) {
			m["profile"] = "weighted"
			m["hosts"] = 2
			m["host_label"] = "pod"
			m["service_label"] = "app"
		}),
		req(func(m map[string]any) { m["host_label"] = "service" }), req(func(m map[string]any) { m["host_label"] = "a-b" }),
		req(func(m map[string]any) { m["effects"] = []map[string]any{{"metric": "cpu", "factor": -1}} }),
		req(func(m map[string]any) { m["from"], m["to"] = m["to"], m["from"] }),
		req(func(m map[string]any) { m["to"] = t0.Add(time.Hour) }),
		req(func(m map[string]any) { m["duration"] = "2h" }), req(func(m map[string]any) { m["every"] = "1s"; m["duration"] = "5h" }),
		req(func(m map[string]any) { delete(m, "effects"); delete(m, "duration"); m["profile"] = "test" }),
		`{"service":"checkout","profile":"default","from":"2026-03-01T06:05:50Z","to":"2026-03-01T11:23:00Z","runs":50,"seed":1,"effects":[{"metric":"latency-mean","factor":1.5}]}`,
	} {
		f.Add([]byte(s))
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := e.do("POST", "/api/v1/backtests/aa", "", body)
		got := checkAnswer(t, "calibrate", rec, http.StatusCreated, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
		if rec.Code != http.StatusCreated {
			return
		}
		var req detect.CalibrationRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("accepted a calibration that does not decode: %v", err)
		}
		c := answer[detect.Calibration](t, "calibrate", got)
		if c.ID == "" || c.Request.Service != req.Service || c.Request.Runs != req.Runs || len(c.Runs) != req.Runs || c.AA.Runs+c.Skipped != req.Runs {
			t.Fatalf("calibration of %s answered %s", body, got)
		}
		for _, r := range c.Runs {
			if r.Start.Before(c.Request.From) || r.Start.After(c.Request.To) {
				t.Fatalf("window at %s outside [%s, %s]", r.Start, c.Request.From, c.Request.To)
			}
		}
		loc := rec.Header().Get("Location")
		if loc != "/api/v1/backtests/aa/"+url.PathEscape(c.ID) {
			t.Fatalf("Location %q for %s", loc, c.ID)
		}
		if stored := checkAnswer(t, "get calibration", e.do("GET", loc, "", nil), http.StatusOK); !bytes.Equal(stored, got) {
			t.Fatalf("calibration answered\n%s\nstored as\n%s", got, stored)
		}
	})
}

// Read routes with query parameters, chosen by FuzzQuery's first
// argument; {id} is the deployment FuzzQuery registered, or the fuzzed
// one when it is not empty.
var queryRoutes = []string{
	"/api/v1/deployments", "/api/v1/deployments/{id}", "/api/v1/deployments/{id}/history", "/api/v1/deployments/{id}/plot.svg",
	"/api/v1/backtests", "/api/v1/backtests/aa", "/api/v1/backtests/{id}", "/api/v1/backtests/aa/{id}", "/api/v1/profiles",
}

// FuzzQuery sends any query string (and any ID) to the read routes: 200,
// 400 for a bad parameter, or 404 for an unknown ID or metric, and a
// filtered list holds only what the filter asks for.
func FuzzQuery(f *testing.F) {
	for _, s := range []struct {
		route    uint8
		id, args string
	}{
		{0, "", "service=checkout&state=pending"}, {0, "", "state=done"}, {0, "", "state=pass&state=fail"}, {0, "", "service=%zz"},
		{1, "", ""}, {1, "nope-1", ""}, {1, "../profiles", ""}, {2, "", "limit=1"}, {2, "", "limit=-1"}, {2, "", "limit=9999999999999999999999"},
		{3, "", "metric=error-ratio"}, {3, "", "metric=latency"}, {3, "", "metric=cpu"}, {3, "", ""}, {3, "nope-1", "metric=latency"},
		{4, "", "service=checkout"}, {5, "", "service="}, {6, "bt-nope", ""}, {7, "aa-nope", ""}, {8, "", "x=1"},
	} {
		f.Add(s.route, s.id, s.args)
	}
	e := newFuzzEnv(f)
	rec := e.do("POST", "/api/v1/deployments", "", []byte(registration(func(m map[string]any) { m["start"] = t0.Add(-20 * time.Minute) })))
	var registered detect.Deployment
	if err := json.Unmarshal(rec.Body.Bytes(), &registered); rec.Code != http.StatusCreated || err != nil {
		f.Fatalf("register: %d %s", rec.Code, rec.Body)
	}
	f.Fuzz(func(t *testing.T, route uint8, id, rawQuery string) {
		switch {
		case id == "":
			id = registered.ID
		case id == "." || id == ".." || strings.Contains(id, "/"):
			// Not one path segment: the mux's routing, not the gate's.
			t.Skip()
		}
		pattern := queryRoutes[int(route)%len(queryRoutes)]
		path := strings.Replace(pattern, "{id}", url.PathEscape(id), 1)
		rec := e.do("GET", path, rawQuery, nil)
		q, _ := url.ParseQuery(rawQuery) // the handlers read what parses, as Query does
		switch pattern {
		case "/api/v1/deployments":
			got := checkAnswer(t, pattern, rec, http.StatusOK, http.StatusBadRequest)
			if rec.Code != http.StatusOK {
				return
			}
			for _, d := range answer[struct{ Deployments []detect.Deployment }](t, pattern, got).Deployments {
				if s := q.Get("service"); s != "" && d.Service != s || q.Get("state") != "" && string(d.State) != q.Get("state") {
					t.Fatalf("%s?%s listed %s of %q in state %s", pattern, rawQuery, d.ID, d.Service, d.State)
				}
			}
		case "/api/v1/deployments/{id}/history":
			got := checkAnswer(t, pattern, rec, http.StatusOK, http.StatusBadRequest, http.StatusNotFound)
			if rec.Code != http.StatusOK {
				return
			}
			h := answer[struct{ Verdicts []detect.Verdict }](t, pattern, got)
			if limit, _ := strconv.Atoi(q.Get("limit")); limit > 0 && len(h.Verdicts) > limit {
				t.Fatalf("history?%s answered %d verdicts", rawQuery, len(h.Verdicts))
			}
		case "/api/v1/deployments/{id}/plot.svg":
			if rec.Code == http.StatusOK {
				if ct := rec.Header().Get("Content-Type"); ct != "image/svg+xml" || !bytes.Contains(rec.Body.Bytes(), []byte("<svg")) {
					t.Fatalf("plot?%s: 200 with %q: %.100s", rawQuery, ct, rec.Body)
				}
				return
			}
			checkAnswer(t, pattern, rec, http.StatusBadRequest, http.StatusNotFound)
		default:
			checkAnswer(t, pattern, rec, http.StatusOK, http.StatusNotFound)
		}
	})
}
