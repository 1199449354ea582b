package query

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"
)

// envelope is the decoded reply, with data left raw for per-test decoding.
type envelope struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
	Infos     []string        `json:"infos"`
}

// reply is one HTTP exchange with the API.
type reply struct {
	code int
	body []byte
	env  envelope
}

// newStorage returns a real Prometheus TSDB holding, every 15s from 0 to
// 600s:
//
//	up{job="api",instance="a"}  = t/15 (0, 1, 2, ... 40)
//	up{job="api",instance="b"}  = 1
//	up{job="db",instance="c"}   = 0
//	{__name__="sys.cpu.user",host="h1","host.name"="web-1"} = 42
func newStorage(t testing.TB) storage.Storage {
	t.Helper()
	s := teststorage.New(t)
	series := []labels.Labels{
		labels.FromStrings("__name__", "up", "job", "api", "instance", "a"),
		labels.FromStrings("__name__", "up", "job", "api", "instance", "b"),
		labels.FromStrings("__name__", "up", "job", "db", "instance", "c"),
		labels.FromStrings("__name__", "sys.cpu.user", "host", "h1", "host.name", "web-1"),
	}
	app := s.Appender(context.Background())
	for ts := int64(0); ts <= 600_000; ts += 15_000 {
		values := []float64{float64(ts / 15_000), 1, 0, 42}
		for i, ls := range series {
			if _, err := app.Append(0, ls, ts, values[i]); err != nil {
				t.Fatalf("append %s@%d: %v", ls, ts, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	return s
}

// newHandler registers an API over a fresh test storage on a new mux.
func newHandler(t testing.TB, opts Options) http.Handler {
	t.Helper()
	mux := http.NewServeMux()
	New(newStorage(t), opts).Register(mux)
	return mux
}

// do sends form as the query string (GET) or as a form-encoded body (POST).
func do(t testing.TB, h http.Handler, method, path string, form url.Values) reply {
	t.Helper()
	return doRequest(t, h, newRequest(method, path, form))
}

func newRequest(method, path string, form url.Values) *http.Request {
	if method == http.MethodGet {
		if len(form) > 0 {
			path += "?" + form.Encode()
		}
		return httptest.NewRequest(method, path, nil)
	}
	req := httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

func doRequest(t testing.TB, h http.Handler, req *http.Request) reply {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, body %s", req.Method, req.URL, ct, body)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("%s %s: invalid JSON %q: %v", req.Method, req.URL, body, err)
	}
	return reply{code: rec.Code, body: body, env: env}
}

// wantSuccess fails unless r is a 200 success and decodes its data into v.
func wantSuccess(t testing.TB, r reply, v any) {
	t.Helper()
	if r.code != http.StatusOK || r.env.Status != "success" {
		t.Fatalf("got %d %s, want 200 success", r.code, r.body)
	}
	if v != nil {
		if err := json.Unmarshal(r.env.Data, v); err != nil {
			t.Fatalf("decode data %s: %v", r.env.Data, err)
		}
	}
}

// wantError fails unless r is an error envelope of the given type and code
// whose message contains msg.
func wantError(t testing.TB, r reply, code int, typ, msg string) {
	t.Helper()
	if r.code != code || r.env.Status != "error" || r.env.ErrorType != typ || !strings.Contains(r.env.Error, msg) {
		t.Fatalf("got %d %.500s, want %d %s containing %q", r.code, r.body, code, typ, msg)
	}
}

// sample is a decoded vector element.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// series is a decoded matrix element.
type series struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

type queryResult[T any] struct {
	ResultType string `json:"resultType"`
	Result     T      `json:"result"`
}

func TestInstantQuery(t *testing.T) {
	h := newHandler(t, Options{})
	for _, ts := range []string{"600", "1970-01-01T00:10:00Z", "600.000"} {
		var got queryResult[[]sample]
		wantSuccess(t, do(t, h, http.MethodGet, "/api/v1/query", url.Values{
			"query": {`sort_desc(up{job="api"})`},
			"time":  {ts},
		}), &got)
		want := queryResult[[]sample]{
			ResultType: "vector",
			Result: []sample{
				{Metric: map[string]string{"__name__": "up", "job": "api", "instance": "a"}, Value: [2]any{600.0, "40"}},
				{Metric: map[string]string{"__name__": "up", "job": "api", "instance": "b"}, Value: [2]any{600.0, "1"}},
			},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("time=%s: got %+v, want %+v", ts, got, want)
		}
	}
}

func TestInstantQueryUTF8Name(t *testing.T) {
	h := newHandler(t, Options{})
	var got queryResult[[]sample]
	wantSuccess(t, do(t, h, http.MethodGet, "/api/v1/query", url.Values{
		"query": {`{"sys.cpu.user", "host.name"="web-1"}`},
		"time":  {"300.5"},
	}), &got)
	want := []sample{{
		Metric: map[string]string{"__name__": "sys.cpu.user", "host": "h1", "host.name": "web-1"},
		Value:  [2]any{300.5, "42"},
	}}
	if !reflect.DeepEqual(got.Result, want) {
		t.Errorf("got %+v, want %+v", got.Result, want)
	}
}

func TestRangeQuery(t *testing.T) {
	h := newHandler(t, Options{})
	form := url.Values{
		"query": {`up{instance="a"}`},
		"start": {"0"},
		"end":   {"60"},
		"step":  {"15s"},
	}
	want := queryResult[[]series]{
		ResultType: "matrix",
		Result: []series{{
			Metric: map[string]string{"__name__": "up", "job": "api", "instance": "a"},
			Values: [][2]any{{0.0, "0"}, {15.0, "1"}, {30.0, "2"}, {45.0, "3"}, {60.0, "4"}},
		}},
	}
	// Grafana POSTs form-encoded by default and falls back to GET.
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		var got queryResult[[]series]
		wantSuccess(t, do(t, h, method, "/api/v1/query_range", form), &got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", method, got, want)
		}
	}
}

func TestRangeQueryRate(t *testing.T) {
	h := newHandler(t, Options{})
	var got queryResult[[]series]
	wantSuccess(t, do(t, h, http.MethodPost, "/api/v1/query_range", url.Values{
		"query": {`rate(up{instance="a"}[1m])`},
		"start": {"1970-01-01T00:05:00Z"},
		"end":   {"1970-01-01T00:06:00Z"},
		"step":  {"30"},
	}), &got)
	if len(got.Result) != 1 {
		t.Fatalf("got %d series, want 1", len(got.Result))
	}
	s := got.Result[0]
	if _, ok := s.Metric["__name__"]; ok {
		t.Errorf("rate kept __name__: %v", s.Metric)
	}
	// up{instance="a"} grows by 1 every 15s.
	want := [][2]any{{300.0, "0.06666666666666665"}, {330.0, "0.06666666666666665"}, {360.0, "0.06666666666666665"}}
	if !reflect.DeepEqual(s.Values, want) {
		t.Errorf("got %v, want %v", s.Values, want)
	}
}

func TestRangeQueryValidation(t *testing.T) {
	h := newHandler(t, Options{})
	tests := []struct {
		name             string
		start, end, step string
		msg              string
	}{
		{"zero step", "0", "60", "0", "zero or negative query resolution step widths are not accepted. Try a positive integer"},
		{"negative step", "0", "60", "-15", "zero or negative query resolution step widths are not accepted. Try a positive integer"},
		{"unparsable step", "0", "60", "fast", `invalid parameter "step": cannot parse "fast" to a valid duration`},
		{"too many points", "0", "11001", "1", "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"},
		{"end before start", "60", "0", "15", `invalid parameter "end": end timestamp must not be before start time`},
		{"missing start", "", "60", "15", `invalid parameter "start": cannot parse "" to a valid timestamp`},
		{"bad end", "0", "tomorrow", "15", `invalid parameter "end": cannot parse "tomorrow" to a valid timestamp`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, h, http.MethodGet, "/api/v1/query_range", url.Values{
				"query": {"up"}, "start": {tt.start}, "end": {tt.end}, "step": {tt.step},
			})
			wantError(t, r, http.StatusBadRequest, "bad_data", tt.msg)
		})
	}
	// Exactly 11,000 points is still allowed.
	wantSuccess(t, do(t, h, http.MethodGet, "/api/v1/query_range", url.Values{
		"query": {"1"}, "start": {"0"}, "end": {"11000"}, "step": {"1"},
	}), nil)
}

func TestMaxPointsOption(t *testing.T) {
	h := newHandler(t, Options{MaxPoints: 1234})
	r := do(t, h, http.MethodGet, "/api/v1/query_range", url.Values{
		"query": {"1"}, "start": {"0"}, "end": {"1235"}, "step": {"1"},
	})
	wantError(t, r, http.StatusBadRequest, "bad_data", "exceeded maximum resolution of 1,234 points per timeseries")
}

func TestQueryErrors(t *testing.T) {
	h := newHandler(t, Options{MaxSamples: 20})
	tests := []struct {
		name string
		form url.Values
		code int
		typ  string
		msg  string
	}{
		{"bad promql", url.Values{"query": {"sum(up"}}, http.StatusBadRequest, "bad_data", `invalid parameter "query": 1:7: parse error`},
		{"empty query", nil, http.StatusBadRequest, "bad_data", `invalid parameter "query"`},
		{"bad time", url.Values{"query": {"up"}, "time": {"noon"}}, http.StatusBadRequest, "bad_data", `invalid parameter "time": invalid time value for 'time': cannot parse "noon" to a valid timestamp`},
		{"bad limit", url.Values{"query": {"up"}, "limit": {"-1"}}, http.StatusBadRequest, "bad_data", `invalid parameter "limit": limit must be non-negative`},
		{"bad timeout", url.Values{"query": {"up"}, "timeout": {"0"}}, http.StatusBadRequest, "bad_data", `invalid parameter "timeout": timeout must be positive`},
		{"many-to-many", url.Values{"query": {"up + on() up"}, "time": {"600"}}, http.StatusUnprocessableEntity, "execution", "many-to-many matching not allowed"},
		{"too many samples", url.Values{"query": {"up[10m]"}, "time": {"600"}}, http.StatusUnprocessableEntity, "execution", "query processing would load too many samples into memory"},
		// Would allocate terabytes of per-step statistics inside the engine.
		{"too many subquery steps", url.Values{"query": {"max_over_time(up[100y:1ms])"}, "time": {"600"}}, http.StatusBadRequest, "bad_data", "subqueries would evaluate up to 3153600000001 steps, more than the limit of 20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, do(t, h, http.MethodPost, "/api/v1/query", tt.form), tt.code, tt.typ, tt.msg)
		})
	}
}

func TestSubquery(t *testing.T) {
	h := newHandler(t, Options{})
	var got queryResult[[]sample]
	// [5m:] uses the default one-minute step.
	wantSuccess(t, do(t, h, http.MethodGet, "/api/v1/query", url.Values{
		"query": {`max_over_time(up{instance="a"}[5m:]) - min_over_time(up{instance="a"}[5m:1m] offset 1m)`},
		"time":  {"600"},
	}), &got)
	// max at 600s is 40; min over (240s, 540s] on the minute grid is 20.
	if len(got.Result) != 1 || got.Result[0].Value[1] != "20" {
		t.Errorf("got %+v, want one sample of 20", got.Result)
	}
}

func TestEngineMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(newStorage(t), Options{Registerer: reg})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "prometheus_engine_queries" {
			return
		}
	}
	t.Error("prometheus_engine_queries not registered")
}

func TestQueryCanceled(t *testing.T) {
	h := newHandler(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // The client is gone before the query runs.
	req := newRequest(http.MethodGet, "/api/v1/query", url.Values{"query": {"up"}, "time": {"600"}}).WithContext(ctx)
	wantError(t, doRequest(t, h, req), 499, "canceled", "")
}

func TestQueryTimeout(t *testing.T) {
	h := newHandler(t, Options{Timeout: time.Nanosecond})
	wantError(t, do(t, h, http.MethodGet, "/api/v1/query", url.Values{"query": {"up"}, "time": {"600"}}),
		http.StatusServiceUnavailable, "timeout", "query timed out")
}

func TestQueryLimit(t *testing.T) {
	h := newHandler(t, Options{})
	r := do(t, h, http.MethodGet, "/api/v1/query", url.Values{"query": {"up"}, "time": {"600"}, "limit": {"2"}})
	var got queryResult[[]sample]
	wantSuccess(t, r, &got)
	if len(got.Result) != 2 {
		t.Errorf("got %d samples, want 2", len(got.Result))
	}
	if want := []string{"results truncated due to limit"}; !slices.Equal(r.env.Warnings, want) {
		t.Errorf("warnings %q, want %q", r.env.Warnings, want)
	}
}

func TestQueryAnnotations(t *testing.T) {
	h := newHandler(t, Options{})
	// rate over a metric not named like a counter yields an info annotation.
	r := do(t, h, http.MethodGet, "/api/v1/query", url.Values{"query": {`rate(up{instance="a"}[1m])`}, "time": {"600"}})
	wantSuccess(t, r, nil)
	if len(r.env.Infos) != 1 || !strings.Contains(r.env.Infos[0], `metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "up"`) {
		t.Errorf("infos %q, want the not-a-counter info", r.env.Infos)
	}
}

// TestGrafanaHealthCheck replays what Grafana's "Save & test" sends.
func TestGrafanaHealthCheck(t *testing.T) {
	h := newHandler(t, Options{})
	req := httptest.NewRequest(http.MethodPost, "/api/v1/query", strings.NewReader("query=1%2B1&time=4"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r := doRequest(t, h, req)
	if want := `{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}`; r.code != http.StatusOK || string(r.body) != want {
		t.Errorf("got %d %s, want 200 %s", r.code, r.body, want)
	}
}

func TestStringResult(t *testing.T) {
	h := newHandler(t, Options{})
	r := do(t, h, http.MethodGet, "/api/v1/query", url.Values{"query": {`"hello"`}, "time": {"1.5"}})
	if want := `{"status":"success","data":{"resultType":"string","result":[1.5,"hello"]}}`; string(r.body) != want {
		t.Errorf("got %s, want %s", r.body, want)
	}
}

func TestLabels(t *testing.T) {
	h := newHandler(t, Options{})
	tests := []struct {
		name     string
		method   string
		form     url.Values
		want     []string
		warnings []string
	}{
		{"all", http.MethodGet, nil, []string{"__name__", "host", "host.name", "instance", "job"}, nil},
		{"match", http.MethodPost, url.Values{"match[]": {"up"}}, []string{"__name__", "instance", "job"}, nil},
		{"two matches", http.MethodGet, url.Values{"match[]": {`up{job="db"}`, `{"sys.cpu.user"}`}}, []string{"__name__", "host", "host.name", "instance", "job"}, nil},
		{"limit", http.MethodGet, url.Values{"limit": {"2"}}, []string{"__name__", "host"}, []string{"results truncated due to limit"}},
		{"limit not reached", http.MethodGet, url.Values{"limit": {"5"}}, []string{"__name__", "host", "host.name", "instance", "job"}, nil},
		{"time range without data", http.MethodGet, url.Values{"start": {"1000"}, "end": {"2000"}}, []string{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, h, tt.method, "/api/v1/labels", tt.form)
			var got []string
			wantSuccess(t, r, &got)
			if !slices.Equal(got, tt.want) || got == nil {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !slices.Equal(r.env.Warnings, tt.warnings) {
				t.Errorf("warnings %q, want %q", r.env.Warnings, tt.warnings)
			}
		})
	}
	wantError(t, do(t, h, http.MethodGet, "/api/v1/labels", url.Values{"match[]": {`{job=~".*"}`}}),
		http.StatusBadRequest, "bad_data", "match[] must contain at least one non-empty matcher")
	wantError(t, do(t, h, http.MethodGet, "/api/v1/labels", url.Values{"start": {"x"}}),
		http.StatusBadRequest, "bad_data", `invalid parameter "start"`)
}

func TestLabelValues(t *testing.T) {
	h := newHandler(t, Options{})
	tests := []struct {
		name     string
		method   string
		label    string
		form     url.Values
		want     []string
		warnings []string
	}{
		{"metric names", http.MethodGet, "__name__", nil, []string{"sys.cpu.user", "up"}, nil},
		{"post", http.MethodPost, "job", nil, []string{"api", "db"}, nil},
		{"match", http.MethodGet, "instance", url.Values{"match[]": {`up{job="api"}`}}, []string{"a", "b"}, nil},
		{"two matches", http.MethodGet, "instance", url.Values{"match[]": {`up{job="db"}`, `up{instance="a"}`}}, []string{"a", "c"}, nil},
		{"utf8 metric match", http.MethodGet, "host", url.Values{"match[]": {`{"sys.cpu.user"}`}}, []string{"h1"}, nil},
		// Prometheus 3 clients escape UTF-8 label names in the path.
		{"escaped utf8 label", http.MethodGet, "U__host_2e_name", nil, []string{"web-1"}, nil},
		{"unknown label", http.MethodGet, "U__sys_2e_cpu_2e_user", nil, []string{}, nil},
		{"limit", http.MethodGet, "instance", url.Values{"limit": {"1"}}, []string{"a"}, []string{"results truncated due to limit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, h, tt.method, "/api/v1/label/"+tt.label+"/values", tt.form)
			var got []string
			wantSuccess(t, r, &got)
			if !slices.Equal(got, tt.want) || got == nil {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !slices.Equal(r.env.Warnings, tt.warnings) {
				t.Errorf("warnings %q, want %q", r.env.Warnings, tt.warnings)
			}
		})
	}
	// The escaped form decodes to the dotted name.
	if got := model.UnescapeName("U__sys_2e_cpu_2e_user", model.ValueEncodingEscaping); got != "sys.cpu.user" {
		t.Errorf("UnescapeName = %q", got)
	}
	wantError(t, do(t, h, http.MethodGet, "/api/v1/label/%ff/values", nil),
		http.StatusBadRequest, "bad_data", `invalid label name: "\xff"`)
}

func TestSeries(t *testing.T) {
	h := newHandler(t, Options{})
	tests := []struct {
		name     string
		method   string
		form     url.Values
		want     []map[string]string
		warnings []string
	}{
		{"match", http.MethodGet, url.Values{"match[]": {`up{job="api"}`}}, []map[string]string{
			{"__name__": "up", "instance": "a", "job": "api"},
			{"__name__": "up", "instance": "b", "job": "api"},
		}, nil},
		{"overlapping matches are merged", http.MethodPost, url.Values{"match[]": {`up{instance="a"}`, `up{job="api"}`, `{"sys.cpu.user"}`}}, []map[string]string{
			{"__name__": "sys.cpu.user", "host": "h1", "host.name": "web-1"},
			{"__name__": "up", "instance": "a", "job": "api"},
			{"__name__": "up", "instance": "b", "job": "api"},
		}, nil},
		{"limit", http.MethodGet, url.Values{"match[]": {"up"}, "limit": {"1"}}, []map[string]string{
			{"__name__": "up", "instance": "a", "job": "api"},
		}, []string{"results truncated due to limit"}},
		{"time range without data", http.MethodGet, url.Values{"match[]": {"up"}, "start": {"1000"}, "end": {"2000"}}, []map[string]string{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, h, tt.method, "/api/v1/series", tt.form)
			var got []map[string]string
			wantSuccess(t, r, &got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if !slices.Equal(r.env.Warnings, tt.warnings) {
				t.Errorf("warnings %q, want %q", r.env.Warnings, tt.warnings)
			}
		})
	}
	wantError(t, do(t, h, http.MethodGet, "/api/v1/series", nil), http.StatusBadRequest, "bad_data", "no match[] parameter provided")
	wantError(t, do(t, h, http.MethodGet, "/api/v1/series", url.Values{"match[]": {"up{"}}), http.StatusBadRequest, "bad_data", `invalid parameter "match[]"`)
}

// metadataReader is the test's own MetadataReader: a fixed table that
// honours metric and limit as the interface documents.
type metadataReader struct {
	md  map[string][]metadata.Metadata
	err error
}

func (m metadataReader) MetricMetadata(ctx context.Context, metric string, limit int) (map[string][]metadata.Metadata, error) {
	if m.err != nil {
		return nil, m.err
	}
	res := map[string][]metadata.Metadata{}
	for _, name := range slices.Sorted(maps.Keys(m.md)) {
		if (metric == "" || metric == name) && (limit <= 0 || len(res) < limit) {
			res[name] = m.md[name]
		}
	}
	return res, ctx.Err()
}

func TestMetadata(t *testing.T) {
	reader := metadataReader{md: map[string][]metadata.Metadata{
		"up": {{Type: model.MetricTypeGauge, Help: "Whether the target is up."}},
		"http_requests_total": {
			{Type: model.MetricTypeCounter, Help: "Requests.", Unit: ""},
			{Type: model.MetricTypeCounter, Help: "Requests served."},
		},
	}}
	h := newHandler(t, Options{Metadata: reader})
	tests := []struct {
		name string
		form url.Values
		want map[string][]metadata.Metadata
	}{
		{"all", nil, reader.md},
		{"metric", url.Values{"metric": {"up"}}, map[string][]metadata.Metadata{"up": reader.md["up"]}},
		{"unknown metric", url.Values{"metric": {"nope"}}, map[string][]metadata.Metadata{}},
		{"limit", url.Values{"limit": {"1"}}, map[string][]metadata.Metadata{"http_requests_total": reader.md["http_requests_total"]}},
		{"limit zero", url.Values{"limit": {"0"}}, map[string][]metadata.Metadata{}},
		{"negative limit", url.Values{"limit": {"-1"}}, reader.md},
		{"limit per metric", url.Values{"limit_per_metric": {"1"}}, map[string][]metadata.Metadata{
			"up":                  reader.md["up"],
			"http_requests_total": reader.md["http_requests_total"][:1],
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got map[string][]metadata.Metadata
			wantSuccess(t, do(t, h, http.MethodGet, "/api/v1/metadata", tt.form), &got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	wantError(t, do(t, h, http.MethodGet, "/api/v1/metadata", url.Values{"limit": {"x"}}), http.StatusBadRequest, "bad_data", "limit must be a number")
	wantError(t, do(t, h, http.MethodGet, "/api/v1/metadata", url.Values{"limit_per_metric": {"x"}}), http.StatusBadRequest, "bad_data", "limit_per_metric must be a number")

	failing := newHandler(t, Options{Metadata: metadataReader{err: errors.New("disk on fire")}})
	wantError(t, do(t, failing, http.MethodGet, "/api/v1/metadata", nil), http.StatusUnprocessableEntity, "execution", "disk on fire")

	// Without a reader the endpoint still answers, with an empty object.
	r := do(t, newHandler(t, Options{}), http.MethodGet, "/api/v1/metadata", nil)
	if want := `{"status":"success","data":{}}`; string(r.body) != want {
		t.Errorf("no reader: got %s, want %s", r.body, want)
	}
}

func TestBuildInfo(t *testing.T) {
	info := BuildInfo{Version: "0.1.0", Revision: "abc", Branch: "main", BuildUser: "ci@immune", BuildDate: "20260101-00:00:00", GoVersion: "go1.26"}
	r := do(t, newHandler(t, Options{BuildInfo: info}), http.MethodGet, "/api/v1/status/buildinfo", nil)
	var got map[string]any
	wantSuccess(t, r, &got)
	want := map[string]any{"version": "0.1.0", "revision": "abc", "branch": "main", "buildUser": "ci@immune", "buildDate": "20260101-00:00:00", "goVersion": "go1.26"}
	// In particular there is no "features": Grafana would take us for Mimir.
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}

	wantSuccess(t, do(t, newHandler(t, Options{}), http.MethodGet, "/api/v1/status/buildinfo", nil), &got)
	if v, _ := got["goVersion"].(string); !strings.HasPrefix(v, "go") {
		t.Errorf("default goVersion %q, want runtime.Version()", v)
	}
}

func TestQueryExemplars(t *testing.T) {
	h := newHandler(t, Options{})
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		r := do(t, h, method, "/api/v1/query_exemplars", url.Values{"query": {"up"}, "start": {"0"}, "end": {"600"}})
		if want := `{"status":"success","data":[]}`; string(r.body) != want {
			t.Errorf("%s: got %s, want %s", method, r.body, want)
		}
	}
}

func TestFormatQuery(t *testing.T) {
	h := newHandler(t, Options{})
	var got string
	wantSuccess(t, do(t, h, http.MethodPost, "/api/v1/format_query", url.Values{"query": {`sum(rate(http_requests_total{job="api"}[5m]))by(job)`}}), &got)
	if want := `sum by (job) (rate(http_requests_total{job="api"}[5m]))`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	wantError(t, do(t, h, http.MethodGet, "/api/v1/format_query", url.Values{"query": {"sum("}}), http.StatusBadRequest, "bad_data", `invalid parameter "query"`)
}

func TestBadForm(t *testing.T) {
	h := newHandler(t, Options{})
	req := httptest.NewRequest(http.MethodGet, "/api/v1/query?query=%zz", nil)
	wantError(t, doRequest(t, h, req), http.StatusBadRequest, "bad_data", "error parsing form values")
}
