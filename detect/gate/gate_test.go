package gate

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/internal/detecttest"
)

var t0 = detecttest.T0

// testProfile is a critical error ratio and a reported-only latency.
func testProfile() detect.Profile {
	return detect.Profile{Name: "test", Metrics: []detect.Metric{
		{Name: "error-ratio", Kind: detect.KindCount, Critical: true, Tolerance: 0.2, Limit: 0.01,
			Events: `sum(increase(errors_total[$step]))`, Exposure: `sum(increase(requests_total[$step]))`},
		{Name: "latency", Kind: detect.KindLatency, Tolerance: 0.1, Query: `avg(latency_seconds)`},
	}}
}

type env struct {
	srv   *httptest.Server
	svc   *detect.Service
	src   *detecttest.Fleet
	clock *detecttest.Clock
}

// newEnv serves the API over a real service and store.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{src: detecttest.NewFleet(), clock: detecttest.NewClock()}
	e.serve(t, e.src, testProfile())
	return e
}

// newService returns a service on src, on clock, with a fresh deployment
// store.
func newService(tb testing.TB, src detect.Source, clock *detecttest.Clock, profiles ...detect.Profile) *detect.Service {
	tb.Helper()
	store, err := detect.OpenStore(tb.TempDir(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	svc, err := detect.NewService(store, src, detect.Options{Now: clock.Now, Profiles: profiles})
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}

// serve starts the API over a service on src with a fresh deployment store.
func (e *env) serve(t *testing.T, src detect.Source, profiles ...detect.Profile) {
	t.Helper()
	e.svc = newService(t, src, e.clock, profiles...)
	mux := http.NewServeMux()
	New(e.svc, Options{}).Register(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
}

func (e *env) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func decodeInto[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// registration is a valid body; tweak edits it before it is sent.
func registration(tweak func(map[string]any)) string {
	m := map[string]any{
		"service": "checkout", "version": "v2", "profile": "test",
		"canary": `{app="checkout",version="v2"}`, "baseline": `{app="checkout",version!="v2"}`,
	}
	if tweak != nil {
		tweak(m)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// register registers a deployment and returns its ID.
func (e *env) register(t *testing.T, tweak func(map[string]any)) string {
	t.Helper()
	code, body := e.do(t, "POST", "/api/v1/deployments", registration(tweak))
	if code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, body)
	}
	return decodeInto[detect.Deployment](t, body).ID
}

func (e *env) status(t *testing.T, id string) Status {
	t.Helper()
	code, body := e.do(t, "GET", "/api/v1/deployments/"+id, "")
	if code != http.StatusOK {
		t.Fatalf("status: %d %s", code, body)
	}
	return decodeInto[Status](t, body)
}

func TestGateRegister(t *testing.T) {
	e := newEnv(t)
	code, body := e.do(t, "POST", "/api/v1/deployments", registration(nil))
	if code != http.StatusCreated {
		t.Fatalf("got %d %s, want 201", code, body)
	}
	d := decodeInto[detect.Deployment](t, body)
	if d.ID == "" || d.Service != "checkout" || d.Version != "v2" || d.State != detect.Pending || d.Verdict == nil {
		t.Fatalf("registered deployment = %+v", d)
	}
	if got := decodeInto[map[string]any](t, body)["id"]; got != d.ID {
		t.Errorf("body id = %v, want %s", got, d.ID)
	}
	code, body = e.do(t, "GET", "/api/v1/deployments?service=checkout&state=pending", "")
	list := decodeInto[struct{ Deployments []detect.Deployment }](t, body)
	if code != http.StatusOK || len(list.Deployments) != 1 || list.Deployments[0].ID != d.ID {
		t.Fatalf("list: %d %s", code, body)
	}
	code, body = e.do(t, "GET", "/api/v1/deployments?state=done", "")
	if code != http.StatusBadRequest || !strings.Contains(string(body), "want one of") {
		t.Errorf("list with a bad state: %d %s", code, body)
	}
	code, body = e.do(t, "GET", "/api/v1/deployments/"+d.ID+"/history?limit=1", "")
	if h := decodeInto[struct{ Verdicts []detect.Verdict }](t, body); code != http.StatusOK || len(h.Verdicts) != 1 {
		t.Errorf("history: %d %s", code, body)
	}
	if code, body = e.do(t, "GET", "/api/v1/deployments/"+d.ID+"/history?limit=-1", ""); code != http.StatusBadRequest {
		t.Errorf("history with a bad limit: %d %s", code, body)
	}
}

func TestGateBadInput(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		want                     string // in the error message
	}{
		{"unknown field", "POST", "/api/v1/deployments", registration(func(m map[string]any) { m["colour"] = "red" }),
			400, `unknown field "colour": the accepted fields are service, version, start`},
		{"state is not the client's", "POST", "/api/v1/deployments", registration(func(m map[string]any) { m["state"] = "pass" }),
			400, `unknown field "state"`},
		{"bad selector", "POST", "/api/v1/deployments", registration(func(m map[string]any) { m["canary"] = `{app="checkout"` }),
			400, `canary: selector "{app=\"checkout\""`},
		{"overlapping cohorts", "POST", "/api/v1/deployments", registration(func(m map[string]any) { m["baseline"] = `{app="checkout"}` }),
			400, "may select the same series: pin a label to different values"},
		{"future start", "POST", "/api/v1/deployments", registration(func(m map[string]any) { m["start"] = t0.Add(time.Hour) }),
			400, "is in the future"},
		{"unknown profile", "POST", "/api/v1/deployments", registration(func(m map[string]any) { m["profile"] = "nope" }),
			400, `unknown profile "nope"`},
		{"canary matches nothing", "POST", "/api/v1/deployments", registration(func(m map[string]any) { m["canary"] = `{app="ghost",version="v2"}` }),
			400, "matches no series in the last 10m0s: is the canary reporting, and are its labels right?"},
		{"missing service", "POST", "/api/v1/deployments", registration(func(m map[string]any) { delete(m, "service") }),
			400, "service is required"},
		{"bad duration", "POST", "/api/v1/deployments", registration(func(m map[string]any) { m["min_bake"] = "five minutes" }),
			400, "request body:"},
		{"duration beyond int64", "POST", "/api/v1/deployments", registration(func(m map[string]any) { m["max_bake"] = 1e10 }),
			400, "request body: duration: 10000000000 seconds is out of range"},
		{"wrong type", "POST", "/api/v1/deployments", registration(func(m map[string]any) { m["canary"] = 42 }),
			400, `field "canary": cannot use a JSON number here`},
		{"not JSON", "POST", "/api/v1/deployments", `{"service": `, 400, "not valid JSON"},
		{"empty body", "POST", "/api/v1/deployments", "", 400, "request body is empty"},
		{"two objects", "POST", "/api/v1/deployments", registration(nil) + "{}", 400, "data after the JSON object"},
		{"too large", "POST", "/api/v1/deployments", `{"service":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, 413, "over 1048576 bytes"},
		{"stage for an unknown deployment", "POST", "/api/v1/deployments/nope-1/stages", `{"note":"2 hosts"}`, 404, `deployment not found: "nope-1"`},
		{"check for an unknown deployment", "POST", "/api/v1/deployments/nope-1/checks", `{"name":"smoke","passed":true}`, 404, "deployment not found"},
		{"status of an unknown deployment", "GET", "/api/v1/deployments/nope-1", "", 404, "deployment not found"},
		{"template that does not parse", "POST", "/api/v1/profiles",
			`{"name":"broken","metrics":[{"name":"p99","kind":"latency","query":"histogram_quantile(0.99, sum(rate(x[$step]))","tolerance":0.1}]}`,
			400, `template "histogram_quantile(0.99, sum(rate(x[$step]))"`},
		{"replacing the default profile", "POST", "/api/v1/profiles", `{"name":"default","metrics":[{"name":"m","kind":"gauge","query":"up","tolerance":0.1,"critical":true}]}`,
			400, "built in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.do(t, tc.method, tc.path, tc.body)
			msg := decodeInto[errorBody](t, body).Error
			if code != tc.code || !strings.Contains(msg, tc.want) {
				t.Errorf("got %d %q, want %d with %q", code, msg, tc.code, tc.want)
			}
		})
	}
	// Nothing was half-registered.
	_, body := e.do(t, "GET", "/api/v1/deployments", "")
	if list := decodeInto[struct{ Deployments []detect.Deployment }](t, body); len(list.Deployments) != 0 {
		t.Errorf("bad registrations left %d deployments", len(list.Deployments))
	}
	_, body = e.do(t, "GET", "/api/v1/profiles", "")
	if ps := decodeInto[struct{ Profiles []detect.Profile }](t, body).Profiles; len(ps) != 3 || ps[0].Name != "default" || ps[1].Name != "test" || ps[2].Name != "weighted" {
		t.Errorf("profiles = %s", body)
	}

	// A check must say whether it passed.
	id := e.register(t, nil)
	code, body := e.do(t, "POST", "/api/v1/deployments/"+id+"/checks", `{"name":"smoke","critical":true}`)
	if msg := decodeInto[errorBody](t, body).Error; code != 400 || !strings.Contains(msg, `"passed" is required`) {
		t.Errorf("check without passed: %d %s", code, body)
	}
	// A stage whose canary overlaps the baseline.
	code, body = e.do(t, "POST", "/api/v1/deployments/"+id+"/stages", `{"canary":"{app=\"checkout\"}"}`)
	if code != 400 || !strings.Contains(string(body), "may select the same series") {
		t.Errorf("overlapping stage: %d %s", code, body)
	}
}

func TestGateProfiles(t *testing.T) {
	e := newEnv(t)
	code, body := e.do(t, "POST", "/api/v1/profiles",
		`{"name":"api","metrics":[{"name":"p50","kind":"latency","query":"avg(latency_seconds)","tolerance":0.1,"critical":true}]}`)
	if code != http.StatusOK {
		t.Fatalf("put profile: %d %s", code, body)
	}
	id := e.register(t, func(m map[string]any) { m["profile"] = "api" })
	if st := e.status(t, id); st.Verdict != detect.Pending {
		t.Errorf("verdict with the API profile = %+v", st)
	}
}

// TestGateStatusShape checks the shape Argo Rollouts' web provider reads
// with jsonPath {$.verdict}: 200, a flat object, verdict a string.
func TestGateStatusShape(t *testing.T) {
	e := newEnv(t)
	id := e.register(t, nil)
	for _, phase := range []string{"pending", "pass"} {
		if phase == "pass" {
			e.clock.Add(30 * time.Minute)
			if _, err := e.svc.Evaluate(t.Context(), id); err != nil {
				t.Fatal(err)
			}
		}
		code, body := e.do(t, "GET", "/api/v1/deployments/"+id, "")
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", phase, code, body)
		}
		m := decodeInto[map[string]json.RawMessage](t, body)
		for _, k := range []string{"id", "service", "version", "verdict", "reason", "stage", "metrics", "eta_seconds", "start", "updated", "data_through"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: no %q in %s", phase, k, body)
			}
		}
		// {$.verdict}: the top-level string Argo's successCondition tests.
		if got := decodeInto[string](t, m["verdict"]); got != phase {
			t.Errorf("$.verdict = %q, want %q (%s)", got, phase, body)
		}
		st := decodeInto[Status](t, body)
		if len(st.Metrics) != 2 || st.Metrics[0].Name != "error-ratio" {
			t.Errorf("%s: metrics = %+v", phase, st.Metrics)
		}
		if (phase == "pending") != (st.ETASeconds != nil) {
			t.Errorf("%s: eta_seconds = %v", phase, st.ETASeconds)
		}
		// The last time of the step grid at or before the evaluation, in
		// RFC 3339 as "updated" is.
		d, err := e.svc.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		step := time.Duration(d.Step)
		want := st.Start.Add(st.Updated.Sub(st.Start) / step * step)
		if st.DataThrough == nil || !st.DataThrough.Equal(want) || st.Updated.Sub(want) >= step {
			t.Errorf("%s: data_through = %v, want %s (updated %s, step %s)", phase, st.DataThrough, want, st.Updated, step)
		}
		if raw := string(m["data_through"]); raw != `"`+want.Format(time.RFC3339Nano)+`"` {
			t.Errorf("%s: data_through is %s, want RFC 3339 %s", phase, raw, want.Format(time.RFC3339Nano))
		}
	}
}

func TestGateStatusBeforeEvaluation(t *testing.T) {
	st := StatusOf(&detect.Deployment{ID: "x", Start: t0, State: detect.Pending})
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if st.Verdict != detect.Pending || st.Reason != "not evaluated yet" || !bytes.Contains(b, []byte(`"metrics":[]`)) || !bytes.Contains(b, []byte(`"eta_seconds":null`)) || !bytes.Contains(b, []byte(`"data_through":null`)) {
		t.Errorf("status before evaluation = %s", b)
	}
}

// TestGateStatusFollowsWrites reads the status between writes of every
// kind: each read answers what the store holds after the last write, not
// the status cached before it.
func TestGateStatusFollowsWrites(t *testing.T) {
	e := newEnv(t)
	id := e.register(t, nil)
	check := func(after string) {
		t.Helper()
		d, err := e.svc.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		want, err := encodeJSON(StatusOf(d))
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the first read may fill the cache, the second hits it
			if code, body := e.do(t, "GET", "/api/v1/deployments/"+id, ""); code != http.StatusOK || !bytes.Equal(body, want) {
				t.Fatalf("after %s: %d\n%s\nwant\n%s", after, code, body, want)
			}
		}
		// Flagger's hooks answer the same status.
		if _, body := e.do(t, "POST", "/api/v1/flagger/rollback", `{"name":"checkout","metadata":{"deployment":"`+id+`"}}`); !bytes.Equal(body, want) {
			t.Fatalf("after %s: flagger answered\n%s\nwant\n%s", after, body, want)
		}
	}
	check("registration")
	for _, w := range []struct{ what, path, body string }{
		{"a stage", "/stages", `{"note":"2 hosts"}`},
		{"a check", "/checks", `{"name":"smoke","passed":true}`},
		{"an evaluation", "", ""},
		{"an abort", "/abort", `{"reason":"operator stopped it"}`},
	} {
		e.clock.Add(time.Minute)
		if w.path == "" {
			if _, err := e.svc.Evaluate(t.Context(), id); err != nil {
				t.Fatal(err)
			}
		} else if code, body := e.do(t, "POST", "/api/v1/deployments/"+id+w.path, w.body); code != http.StatusOK {
			t.Fatalf("%s: %d %s", w.what, code, body)
		}
		check(w.what)
	}
	if st := e.status(t, id); st.Verdict != detect.Aborted || st.DataThrough != nil {
		t.Errorf("after the abort: %+v", st)
	}
}

func TestGateAbortThenStage(t *testing.T) {
	e := newEnv(t)
	id := e.register(t, nil)
	code, body := e.do(t, "POST", "/api/v1/deployments/"+id+"/stages", `{"canary":"{app=\"checkout\",version=\"v2\",zone=\"b\"}","note":"2 hosts"}`)
	if code != http.StatusOK || len(decodeInto[detect.Deployment](t, body).Stages) != 1 {
		t.Fatalf("stage: %d %s", code, body)
	}
	code, body = e.do(t, "POST", "/api/v1/deployments/"+id+"/abort", `{"reason":"operator stopped it"}`)
	if d := decodeInto[detect.Deployment](t, body); code != http.StatusOK || d.State != detect.Aborted {
		t.Fatalf("abort: %d %s", code, body)
	}
	code, body = e.do(t, "POST", "/api/v1/deployments/"+id+"/stages", "")
	if msg := decodeInto[errorBody](t, body).Error; code != http.StatusConflict || !strings.Contains(msg, "is aborted") {
		t.Errorf("stage after abort: %d %s", code, body)
	}
	code, _ = e.do(t, "POST", "/api/v1/deployments/"+id+"/abort", "")
	if code != http.StatusConflict {
		t.Errorf("second abort: %d", code)
	}
	if st := e.status(t, id); st.Verdict != detect.Aborted || st.Reason != "operator stopped it" || st.Stage != 1 {
		t.Errorf("status after abort = %+v", st)
	}
}

func TestGateCheckFailure(t *testing.T) {
	e := newEnv(t)
	id := e.register(t, nil)
	code, body := e.do(t, "POST", "/api/v1/deployments/"+id+"/checks", `{"name":"self-test","passed":true,"critical":true}`)
	if d := decodeInto[detect.Deployment](t, body); code != http.StatusOK || d.State != detect.Pending {
		t.Fatalf("passing check: %d %s", code, body)
	}
	code, body = e.do(t, "POST", "/api/v1/deployments/"+id+"/checks",
		`{"name":"smoke","passed":false,"critical":true,"details":"cannot reach the payments API"}`)
	d := decodeInto[detect.Deployment](t, body)
	if code != http.StatusOK || d.State != detect.Fail {
		t.Fatalf("failing check: %d %s", code, body)
	}
	if st := e.status(t, id); st.Verdict != detect.Fail || !strings.Contains(st.Reason, `check "smoke" failed: cannot reach the payments API`) {
		t.Errorf("status = %+v", st)
	}
	code, _ = e.do(t, "POST", "/api/v1/deployments/"+id+"/checks", `{"name":"late","passed":true}`)
	if code != http.StatusConflict {
		t.Errorf("check after the verdict: %d, want 409", code)
	}
}

func TestGatePlot(t *testing.T) {
	e := newEnv(t)
	e.src.Set(1000, 0.01, 0.01)
	e.src.SetLatency(0.12, 0.1)
	id := e.register(t, func(m map[string]any) { m["min_bake"] = "20m"; m["max_bake"] = "2h" })
	for i := range 12 {
		e.clock.Add(time.Minute)
		if i == 5 {
			code, body := e.do(t, "POST", "/api/v1/deployments/"+id+"/stages", `{"note":"4 hosts"}`)
			if code != http.StatusOK {
				t.Fatalf("stage: %d %s", code, body)
			}
		}
		if _, err := e.svc.Evaluate(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	for _, metric := range []string{"error-ratio", "latency"} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", e.srv.URL+"/api/v1/deployments/"+id+"/plot.svg?metric="+metric, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" {
			t.Fatalf("%s: %d %s %.200s", metric, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		if !bytes.HasPrefix(b, []byte("<?xml")) && !bytes.HasPrefix(b, []byte("<svg")) {
			t.Fatalf("%s: not SVG: %.100s", metric, b)
		}
		// Well-formed XML with an svg root, and the marks drawn.
		dec := xml.NewDecoder(bytes.NewReader(b))
		root := ""
		for {
			tok, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: invalid XML: %v", metric, err)
			}
			if se, ok := tok.(xml.StartElement); ok && root == "" {
				root = se.Name.Local
			}
		}
		// Each as the plot writes it, text alone in its element: "deploy"
		// and "estimate" also occur in the axis label and the title.
		for _, want := range []string{">stage 1<", ">deploy<", ">tolerance (", ">estimate<", ">confidence bounds<", ">canary<", ">baseline<"} {
			if !bytes.Contains(b, []byte(want)) {
				t.Errorf("%s: plot has no %q", metric, want)
			}
		}
		if root != "svg" {
			t.Errorf("%s: root element %q", metric, root)
		}
	}
	code, body := e.do(t, "GET", "/api/v1/deployments/"+id+"/plot.svg?metric=cpu", "")
	if code != http.StatusNotFound || !strings.Contains(string(body), `metric \"cpu\" is not in profile`) {
		t.Errorf("unknown metric: %d %s", code, body)
	}
	code, body = e.do(t, "GET", "/api/v1/deployments/"+id+"/plot.svg", "")
	if code != http.StatusBadRequest || !strings.Contains(string(body), "error-ratio, latency") {
		t.Errorf("no metric: %d %s", code, body)
	}
	if code, _ = e.do(t, "GET", "/api/v1/deployments/nope-1/plot.svg?metric=latency", ""); code != http.StatusNotFound {
		t.Errorf("unknown deployment: %d", code)
	}
}
