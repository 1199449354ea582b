package opentsdb

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

	"github.com/immune-dev/immune/tsdb"
)

// t0 is the start of the test data; the clock reads t0 + 1h.
var (
	t0    = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	t0s   = t0.Unix()
	t0ms  = t0.UnixMilli()
	clock = func() time.Time { return t0.Add(time.Hour) }
)

// sample is one point of the test data, at t0 + offset.
type sample struct {
	offset time.Duration
	v      float64
}

type testSeries struct {
	lbls    []string
	samples []sample
}

// testData is written into a real store for the end-to-end tests:
//
//	sys.cpu.user  host=web01 dc=lga: 1 3 5 7 at 0s 20s 40s 60s (linear: 2 4 6 in between)
//	              host=web02 dc=lga: 10 30 50 at 10s 30s 50s
//	              host=web03 dc=lax: 100 at 0s and 60s
//	if.octets     host=a: a counter 0 100 300 50 150 every 10s, reset at 30s
//	temp          host=a: 1 3 @0s,30s; 5 7 @120s,150s (the minute at 60s is empty)
//	              host=b: 10 20 30 at 0s 60s 120s
//	ms.metric     host=a: 1 2 3 at 500ms 1500ms 1700ms
//	stale         host=a: 1, a stale marker, 3 at 0s 10s 20s
var testData = []testSeries{
	{[]string{"__name__", "sys.cpu.user", "host", "web01", "dc", "lga"}, []sample{{0, 1}, {20 * time.Second, 3}, {40 * time.Second, 5}, {60 * time.Second, 7}}},
	{[]string{"__name__", "sys.cpu.user", "host", "web02", "dc", "lga"}, []sample{{10 * time.Second, 10}, {30 * time.Second, 30}, {50 * time.Second, 50}}},
	{[]string{"__name__", "sys.cpu.user", "host", "web03", "dc", "lax"}, []sample{{0, 100}, {60 * time.Second, 100}}},
	{[]string{"__name__", "if.octets", "host", "a"}, []sample{{0, 0}, {10 * time.Second, 100}, {20 * time.Second, 300}, {30 * time.Second, 50}, {40 * time.Second, 150}}},
	{[]string{"__name__", "temp", "host", "a"}, []sample{{0, 1}, {30 * time.Second, 3}, {120 * time.Second, 5}, {150 * time.Second, 7}}},
	{[]string{"__name__", "temp", "host", "b"}, []sample{{0, 10}, {60 * time.Second, 20}, {120 * time.Second, 30}}},
	{[]string{"__name__", "ms.metric", "host", "a"}, []sample{{500 * time.Millisecond, 1}, {1500 * time.Millisecond, 2}, {1700 * time.Millisecond, 3}}},
	{[]string{"__name__", "stale", "host", "a"}, []sample{{0, 1}, {10 * time.Second, math.Float64frombits(value.StaleNaN)}, {20 * time.Second, 3}}},
}

// openStore opens a real store in a temporary directory holding series.
func openStore(t testing.TB, series []testSeries) *tsdb.DB {
	t.Helper()
	db, err := tsdb.Open(t.TempDir(), tsdb.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	app := db.Appender(context.Background())
	for _, s := range series {
		ls := labels.FromStrings(s.lbls...)
		for _, smp := range s.samples {
			if _, err := app.Append(0, ls, t0.Add(smp.offset).UnixMilli(), smp.v); err != nil {
				t.Fatalf("append %s: %v", ls, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return db
}

func newTestHandler(t testing.TB, opts Options) http.Handler {
	t.Helper()
	if opts.Now == nil {
		opts.Now = clock
	}
	mux := http.NewServeMux()
	New(openStore(t, testData), opts).Register(mux)
	return mux
}

type reply struct {
	code int
	body []byte
}

func get(t testing.TB, h http.Handler, path string, params url.Values) reply {
	t.Helper()
	if len(params) > 0 {
		path += "?" + params.Encode()
	}
	return do(t, h, httptest.NewRequest(http.MethodGet, path, nil))
}

func post(t testing.TB, h http.Handler, path, body string) reply {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return do(t, h, req)
}

func do(t testing.TB, h http.Handler, req *http.Request) reply {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: Content-Type %q", req.Method, req.URL, ct)
	}
	if !json.Valid(body) {
		t.Fatalf("%s %s: invalid JSON %s", req.Method, req.URL, body)
	}
	return reply{rec.Code, body}
}

// tsResult is a decoded /api/query result.
type tsResult struct {
	Metric        string            `json:"metric"`
	Tags          map[string]string `json:"tags"`
	AggregateTags []string          `json:"aggregateTags"`
	Query         map[string]any    `json:"query"`
	DPS           json.RawMessage   `json:"dps"`
}

// dps decodes a dps object: seconds (or ms) → value, where a value is a
// float64, a string ("NaN") or nil (null).
func (r tsResult) dps(t testing.TB) map[int64]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(r.DPS))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("dps %s: %v", r.DPS, err)
	}
	out := map[int64]any{}
	for k, v := range m {
		ts, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			t.Fatalf("dps key %q", k)
		}
		if n, ok := v.(json.Number); ok {
			f, err := n.Float64()
			if err != nil {
				t.Fatal(err)
			}
			v = f
		}
		out[ts] = v
	}
	return out
}

func wantResults(t testing.TB, r reply) []tsResult {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("got %d %s, want 200", r.code, r.body)
	}
	var rs []tsResult
	if err := json.Unmarshal(r.body, &rs); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return rs
}

func wantError(t testing.TB, r reply, code int, msg string) {
	t.Helper()
	var e struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Details string `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	if r.code != code || e.Error.Code != code || !strings.Contains(e.Error.Message, msg) {
		t.Fatalf("got %d %s, want %d with a message containing %q", r.code, r.body, code, msg)
	}
}

// series returns expected dps from offsets in seconds after t0.
func series(kv ...any) map[int64]any {
	m := map[int64]any{}
	for i := 0; i < len(kv); i += 2 {
		v := kv[i+1]
		if n, ok := v.(int); ok {
			v = float64(n)
		}
		m[t0s+int64(kv[i].(int))] = v
	}
	return m
}

// query runs m over [t0, t0+end] with GET, checks that the equivalent
// POST gives the same body, and returns the results.
func query(t *testing.T, h http.Handler, m string, end time.Duration, extra ...string) []tsResult {
	t.Helper()
	params := url.Values{"start": {strconv.FormatInt(t0s, 10)}, "end": {strconv.FormatInt(t0.Add(end).Unix(), 10)}, "m": {m}}
	for i := 0; i+1 < len(extra); i += 2 {
		params.Set(extra[i], extra[i+1])
	}
	return wantResults(t, get(t, h, "/api/query", params))
}

func TestQueryAggregators(t *testing.T) {
	h := newTestHandler(t, Options{})
	for _, tc := range []struct {
		m    string
		want map[int64]any
	}{
		// web01 is interpolated at 10s, 30s, 50s; web02 at 20s and 40s and
		// left out at 0s (before its first point) and 60s (after its last).
		{"sum:sys.cpu.user", series(0, 101, 10, 112, 20, 123, 30, 134, 40, 145, 50, 156, 60, 107)},
		{"zimsum:sys.cpu.user", series(0, 101, 10, 10, 20, 3, 30, 30, 40, 5, 50, 50, 60, 107)},
		{"max:sys.cpu.user{dc=lga}", series(0, 1, 10, 10, 20, 20, 30, 30, 40, 40, 50, 50, 60, 7)},
		{"mimmax:sys.cpu.user{dc=lga}", series(0, 1, 10, 10, 20, 3, 30, 30, 40, 5, 50, 50, 60, 7)},
		{"min:sys.cpu.user{dc=lga}", series(0, 1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60, 7)},
		{"avg:sys.cpu.user", series(0, 50.5, 10, 112.0/3, 20, 41, 30, 134.0/3, 40, 145.0/3, 50, 52, 60, 53.5)},
		{"count:sys.cpu.user", series(0, 2, 10, 3, 20, 3, 30, 3, 40, 3, 50, 3, 60, 2)},
		{"dev:sys.cpu.user{host=web03}", series(0, 0, 60, 0)},
		{"p50:sys.cpu.user", series(0, 50.5, 10, 10, 20, 20, 30, 30, 40, 40, 50, 50, 60, 53.5)},
	} {
		rs := query(t, h, tc.m, time.Minute)
		if len(rs) != 1 {
			t.Errorf("%s: %d results, want 1", tc.m, len(rs))
			continue
		}
		if got := rs[0].dps(t); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %v\nwant %v", tc.m, got, tc.want)
		}
	}
}

func TestQueryGroupBy(t *testing.T) {
	h := newTestHandler(t, Options{})
	type want struct {
		tags    map[string]string
		aggTags []string
		dps     map[int64]any
	}
	web01 := series(0, 1, 20, 3, 40, 5, 60, 7)
	web03 := series(0, 100, 60, 100)
	lga := series(0, 1, 10, 12, 20, 23, 30, 34, 40, 45, 50, 56, 60, 7)
	for _, tc := range []struct {
		m    string
		want []want
	}{
		{"sum:sys.cpu.user{host=*}", []want{
			{map[string]string{"host": "web01", "dc": "lga"}, []string{}, web01},
			{map[string]string{"host": "web02", "dc": "lga"}, []string{}, series(10, 10, 30, 30, 50, 50)},
			{map[string]string{"host": "web03", "dc": "lax"}, []string{}, web03},
		}},
		// Groups come in the order of their tags: lax before lga.
		{"sum:sys.cpu.user{dc=*}", []want{
			{map[string]string{"dc": "lax", "host": "web03"}, []string{}, web03},
			{map[string]string{"dc": "lga"}, []string{"host"}, lga},
		}},
		// literal_or groups by host in the v1 braces ...
		{"sum:sys.cpu.user{host=web01|web03}", []want{
			{map[string]string{"host": "web01", "dc": "lga"}, []string{}, web01},
			{map[string]string{"host": "web03", "dc": "lax"}, []string{}, web03},
		}},
		// ... and not in the filter braces.
		{"sum:sys.cpu.user{}{host=literal_or(web01|web03)}", []want{
			{map[string]string{}, []string{"dc", "host"}, series(0, 101, 20, 103, 40, 105, 60, 107)},
		}},
		{"sum:sys.cpu.user{}{host=regexp(web0[12])}", []want{
			{map[string]string{"dc": "lga"}, []string{"host"}, lga},
		}},
		{"sum:sys.cpu.user{dc=*}{host=wildcard(*3)}", []want{
			{map[string]string{"dc": "lax", "host": "web03"}, []string{}, web03},
		}},
		{"sum:sys.cpu.user{}{host=not_literal_or(web02|web03)}", []want{
			{map[string]string{"dc": "lga", "host": "web01"}, []string{}, web01},
		}},
		{"sum:sys.cpu.user{host=iliteral_or(WEB01)}", []want{
			{map[string]string{"dc": "lga", "host": "web01"}, []string{}, web01},
		}},
		{"sum:explicit_tags:sys.cpu.user{host=web01}", nil}, // web01 also has dc
		{"sum:explicit_tags:sys.cpu.user{host=web01}{dc=*}", []want{
			{map[string]string{"dc": "lga", "host": "web01"}, []string{}, web01},
		}},
		{"sum:sys.cpu.user{}{dc=not_key()}", nil},
		{"sum:sys.cpu.user{host=web09}", nil},
		// none: one result per series, no interpolation.
		{"none:sys.cpu.user{dc=lga}", []want{
			{map[string]string{"host": "web01", "dc": "lga"}, []string{}, web01},
			{map[string]string{"host": "web02", "dc": "lga"}, []string{}, series(10, 10, 30, 30, 50, 50)},
		}},
	} {
		rs := query(t, h, tc.m, time.Minute)
		if len(rs) != len(tc.want) {
			t.Errorf("%s: %d results, want %d: %+v", tc.m, len(rs), len(tc.want), rs)
			continue
		}
		for i, w := range tc.want {
			r := rs[i]
			if r.Metric != "sys.cpu.user" || !maps.Equal(r.Tags, w.tags) || !slices.Equal(r.AggregateTags, w.aggTags) || !reflect.DeepEqual(r.dps(t), w.dps) {
				t.Errorf("%s: result %d = %s %v %v %v\nwant %v %v %v", tc.m, i, r.Metric, r.Tags, r.AggregateTags, r.dps(t), w.tags, w.aggTags, w.dps)
			}
		}
	}
}

func TestQueryRate(t *testing.T) {
	h := newTestHandler(t, Options{})
	for _, tc := range []struct {
		m    string
		want map[int64]any
	}{
		{"sum:rate:if.octets", series(10, 10, 20, 20, 30, -25, 40, 10)},
		{"sum:rate{counter,1000}:if.octets", series(10, 10, 20, 20, 30, 75, 40, 10)},
		{"sum:rate{counter,1000,50}:if.octets", series(10, 10, 20, 20, 30, 0, 40, 10)},
		{"sum:rate{dropcounter}:if.octets", series(10, 10, 20, 20, 40, 10)},
		// Rate after downsampling: 20s buckets average 50, 175, 150.
		{"sum:20s-avg:rate:if.octets", series(20, 6.25, 40, -1.25)},
	} {
		rs := query(t, h, tc.m, time.Minute)
		if len(rs) != 1 || !reflect.DeepEqual(rs[0].dps(t), tc.want) {
			t.Errorf("%s: got %+v, want %v", tc.m, rs, tc.want)
		}
	}
	// The JSON form of the same, as Grafana sends it.
	body := fmt.Sprintf(`{"start":%d,"end":%d,"queries":[{"aggregator":"sum","metric":"if.octets","rate":true,
		"rateOptions":{"counter":true,"counterMax":1000,"resetValue":50,"dropResets":false}}]}`, t0ms, t0ms+60_000)
	rs := wantResults(t, post(t, h, "/api/query", body))
	if want := series(10, 10, 20, 20, 30, 0, 40, 10); len(rs) != 1 || !reflect.DeepEqual(rs[0].dps(t), want) {
		t.Errorf("POST rate: got %+v, want %v", rs, want)
	}
}

func TestQueryDownsample(t *testing.T) {
	h := newTestHandler(t, Options{})
	for _, tc := range []struct {
		m    string
		want map[int64]any
	}{
		{"sum:1m-avg:temp{host=a}", series(0, 2, 120, 6)},
		{"sum:1m-avg-zero:temp{host=a}", series(0, 2, 60, 0, 120, 6, 180, 0)},
		{"sum:1m-avg-nan:temp{host=a}", series(0, 2, 60, "NaN", 120, 6, 180, "NaN")},
		{"sum:1m-avg-null:temp{host=a}", series(0, 2, 60, nil, 120, 6, 180, nil)},
		{"sum:1m-max-none:temp{host=a}", series(0, 3, 120, 7)},
		{"sum:0all-sum:temp{host=a}", series(0, 16)},
		// Aligned buckets, then a's missing minute is interpolated (4).
		{"sum:1m-avg:temp", series(0, 12, 60, 24, 120, 36)},
		{"sum:1m-avg-zero:temp", series(0, 12, 60, 20, 120, 36, 180, 0)},
		{"sum:1m-avg-nan:temp", series(0, 12, 60, 20, 120, 36, 180, "NaN")},
		{"sum:1m-avg-null:temp", series(0, 12, 60, 20, 120, 36, 180, nil)},
		{"count:1m-count-zero:temp", series(0, 2, 60, 2, 120, 2, 180, 2)},
		{"sum:1m-avg:rate:temp{host=b}", series(60, 10.0/60, 120, 10.0/60)},
	} {
		rs := query(t, h, tc.m, 3*time.Minute)
		if len(rs) != 1 || !reflect.DeepEqual(rs[0].dps(t), tc.want) {
			t.Errorf("%s: got %s, want %v", tc.m, rs[0].DPS, tc.want)
		}
	}
}

func TestQueryFormats(t *testing.T) {
	h := newTestHandler(t, Options{})
	// Without ms, points in the same second keep the last one.
	rs := query(t, h, "sum:ms.metric", 10*time.Second)
	if want := series(0, 1, 1, 3); len(rs) != 1 || !reflect.DeepEqual(rs[0].dps(t), want) {
		t.Errorf("seconds: got %+v, want %v", rs, want)
	}
	for _, flag := range []string{"ms", "msResolution"} {
		rs = query(t, h, "sum:ms.metric", 10*time.Second, flag, "")
		want := map[int64]any{t0ms + 500: 1.0, t0ms + 1500: 2.0, t0ms + 1700: 3.0}
		if len(rs) != 1 || !reflect.DeepEqual(rs[0].dps(t), want) {
			t.Errorf("%s: got %+v, want %v", flag, rs, want)
		}
	}
	// Stale markers are skipped.
	rs = query(t, h, "sum:stale", time.Minute)
	if want := series(0, 1, 20, 3); len(rs) != 1 || !reflect.DeepEqual(rs[0].dps(t), want) {
		t.Errorf("stale: got %+v, want %v", rs, want)
	}
	// arrays.
	r := get(t, h, "/api/query", url.Values{"start": {strconv.FormatInt(t0s, 10)}, "end": {strconv.FormatInt(t0s+60, 10)},
		"m": {"sum:sys.cpu.user{host=web03}"}, "arrays": {"true"}})
	want := fmt.Sprintf(`[{"metric":"sys.cpu.user","tags":{"dc":"lax","host":"web03"},"aggregateTags":[],"dps":[[%d,100],[%d,100]]}]`, t0s, t0s+60)
	if r.code != http.StatusOK || string(r.body) != want {
		t.Errorf("arrays: got %d %s\nwant %s", r.code, r.body, want)
	}
	// showQuery echoes the sub query with its index, which Grafana uses to
	// map results to queries.
	body := fmt.Sprintf(`{"start":"%d","end":"%d","showQuery":true,"msResolution":true,"queries":[
		{"aggregator":"sum","metric":"temp","downsample":"1m-avg"},
		{"aggregator":"max","metric":"sys.cpu.user","filters":[{"type":"wildcard","tagk":"host","filter":"*","groupBy":true}]}]}`,
		t0ms, t0ms+180_000)
	rs = wantResults(t, post(t, h, "/api/query", body))
	if len(rs) != 4 {
		t.Fatalf("showQuery: %d results, want 4", len(rs))
	}
	for i, r := range rs {
		wantIndex := 0.0
		if i > 0 {
			wantIndex = 1
		}
		if r.Query["index"] != wantIndex {
			t.Errorf("result %d: query %v, want index %v", i, r.Query, wantIndex)
		}
	}
	if rs[0].Query["downsample"] != "1m-avg" || rs[0].Query["aggregator"] != "sum" || rs[1].Query["filters"] == nil {
		t.Errorf("showQuery: %v, %v", rs[0].Query, rs[1].Query)
	}
	if got := rs[0].dps(t); !reflect.DeepEqual(got, map[int64]any{t0ms: 12.0, t0ms + 60_000: 24.0, t0ms + 120_000: 36.0}) {
		t.Errorf("ms downsampled: %v", got)
	}
	// The JSON and GET forms agree.
	get1 := get(t, h, "/api/query", url.Values{"start": {"2024/03/01-12:00:00"}, "end": {"2024/03/01-12:01:00"}, "m": {"sum:sys.cpu.user{dc=*}"}})
	post1 := post(t, h, "/api/query", `{"start":"2024/03/01-12:00:00","end":"2024/03/01 12:01:00",
		"queries":[{"aggregator":"sum","metric":"sys.cpu.user","tags":{"dc":"*"}}]}`)
	if get1.code != http.StatusOK || !bytes.Equal(get1.body, post1.body) {
		t.Errorf("GET %d %s\nPOST %d %s", get1.code, get1.body, post1.code, post1.body)
	}
	// The end defaults to now; relative times are from now.
	rs = wantResults(t, get(t, h, "/api/query", url.Values{"start": {"2h-ago"}, "m": {"sum:sys.cpu.user{host=web03}"}}))
	if len(rs) != 1 || !reflect.DeepEqual(rs[0].dps(t), web03()) {
		t.Errorf("relative: %+v", rs)
	}
	// Out of range: empty.
	rs = wantResults(t, get(t, h, "/api/query", url.Values{"start": {"30m-ago"}, "m": {"sum:sys.cpu.user"}}))
	if len(rs) != 0 {
		t.Errorf("out of range: %+v", rs)
	}
}

func web03() map[int64]any { return series(0, 100, 60, 100) }

func TestQueryErrors(t *testing.T) {
	h := newTestHandler(t, Options{MaxSeries: 2, MaxPoints: 1000})
	start := strconv.FormatInt(t0s, 10)
	for _, tc := range []struct {
		params url.Values
		code   int
		msg    string
	}{
		{url.Values{"m": {"sum:temp"}}, 400, "missing parameter"},
		{url.Values{"start": {start}}, 400, "missing sub queries"},
		{url.Values{"start": {start}, "m": {"bogus:temp"}}, 400, "no such aggregation function: bogus"},
		{url.Values{"start": {start}, "m": {"sum"}}, 400, "not enough"},
		{url.Values{"start": {start}, "m": {"sum:temp{host"}}, 400, "missing '}'"},
		{url.Values{"start": {"yesterday"}, "m": {"sum:temp"}}, 400, "invalid time"},
		{url.Values{"start": {start}, "end": {"2020/01/01"}, "m": {"sum:temp"}}, 400, "must be greater than the start time"},
		{url.Values{"start": {start}, "m": {"sum:nope"}}, 400, "No such name for 'metrics': 'nope'"},
		{url.Values{"start": {start}, "m": {"sum:temp{rack=*}"}}, 400, "No such name for 'tagk': 'rack'"},
		{url.Values{"start": {start}, "m": {"sum:temp{}{host=regexp([)}"}}, 400, "invalid regexp"},
		{url.Values{"start": {start}, "tsuid": {"sum:000001000001000001"}}, 400, "TSUID"},
		{url.Values{"start": {start}, "m": {"sum:sys.cpu.user"}}, 400, "more than 2 time series"},
		{url.Values{"start": {start}, "m": {"sum:1ms-sum-zero:temp{host=a}"}}, 400, "more than 1000 data points"},
	} {
		wantError(t, get(t, h, "/api/query", tc.params), tc.code, tc.msg)
	}
	wantError(t, post(t, h, "/api/query", `{"start":`), 400, "unable to parse the given JSON")
	wantError(t, post(t, h, "/api/query", ``), 400, "missing message content")
	for _, method := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
		for _, path := range []string{"/api/query", "/api/suggest", "/api/search/lookup", "/api/aggregators", "/api/config/filters", "/api/version"} {
			wantError(t, do(t, h, httptest.NewRequest(method, path, nil)), http.StatusMethodNotAllowed, "Method not allowed")
		}
	}
	// A metric that exists but has no data in range is not an error.
	if rs := wantResults(t, get(t, h, "/api/query", url.Values{"start": {"1d-ago"}, "end": {"23h-ago"}, "m": {"sum:temp"}})); len(rs) != 0 {
		t.Errorf("empty range: %+v", rs)
	}
}

func TestSuggest(t *testing.T) {
	h := newTestHandler(t, Options{})
	for _, tc := range []struct {
		params url.Values
		want   []string
	}{
		{url.Values{"type": {"metrics"}}, []string{"if.octets", "ms.metric", "stale", "sys.cpu.user", "temp"}},
		{url.Values{"type": {"metrics"}, "q": {"sys"}}, []string{"sys.cpu.user"}},
		{url.Values{"type": {"metrics"}, "q": {"SYS"}}, []string{}},
		{url.Values{"type": {"metrics"}, "q": {"cpu"}, "max": {"1000"}}, []string{}}, // Grafana's test button
		{url.Values{"type": {"metrics"}, "max": {"2"}}, []string{"if.octets", "ms.metric"}},
		{url.Values{"type": {"tagk"}}, []string{"dc", "host"}},
		{url.Values{"type": {"tagv"}, "q": {"web"}}, []string{"web01", "web02", "web03"}},
		{url.Values{"type": {"tagv"}, "q": {"l"}}, []string{"lax", "lga"}},
	} {
		r := get(t, h, "/api/suggest", tc.params)
		var got []string
		if err := json.Unmarshal(r.body, &got); r.code != http.StatusOK || err != nil || !slices.Equal(got, tc.want) || got == nil {
			t.Errorf("suggest %v: got %d %s, want %v", tc.params, r.code, r.body, tc.want)
		}
	}
	r := post(t, h, "/api/suggest", `{"type":"tagk","q":"h","max":10}`)
	if r.code != http.StatusOK || string(r.body) != `["host"]` {
		t.Errorf("POST suggest: %d %s", r.code, r.body)
	}
	wantError(t, get(t, h, "/api/suggest", nil), 400, "missing parameter")
	wantError(t, get(t, h, "/api/suggest", url.Values{"type": {"hosts"}}), 400, "invalid 'type' parameter")
	wantError(t, get(t, h, "/api/suggest", url.Values{"type": {"tagk"}, "max": {"many"}}), 400, "unable to parse 'max'")
}

func TestLookup(t *testing.T) {
	h := newTestHandler(t, Options{})
	type result struct {
		Metric string            `json:"metric"`
		TSUID  string            `json:"tsuid"`
		Tags   map[string]string `json:"tags"`
	}
	type response struct {
		Type         string   `json:"type"`
		Metric       string   `json:"metric"`
		Limit        int      `json:"limit"`
		Results      []result `json:"results"`
		StartIndex   int      `json:"startIndex"`
		TotalResults int      `json:"totalResults"`
	}
	decode := func(r reply) response {
		t.Helper()
		var resp response
		if err := json.Unmarshal(r.body, &resp); r.code != http.StatusOK || err != nil {
			t.Fatalf("lookup: %d %s", r.code, r.body)
		}
		return resp
	}
	hosts := func(resp response) []string {
		var hs []string
		for _, r := range resp.Results {
			hs = append(hs, r.Metric+"/"+r.Tags["host"])
		}
		return hs
	}
	for _, tc := range []struct {
		m     string
		limit string
		want  []string
		total int
	}{
		// Grafana's tag_names(sys.cpu.user) and tag_values(sys.cpu.user, host).
		// Series come in label order: dc=lax before dc=lga.
		{m: "sys.cpu.user", want: []string{"sys.cpu.user/web03", "sys.cpu.user/web01", "sys.cpu.user/web02"}, total: 3},
		{m: "sys.cpu.user{host=*}", limit: "1000", want: []string{"sys.cpu.user/web03", "sys.cpu.user/web01", "sys.cpu.user/web02"}, total: 3},
		{m: "sys.cpu.user{host=*,dc=lga}", want: []string{"sys.cpu.user/web01", "sys.cpu.user/web02"}, total: 2},
		{m: "sys.cpu.user{dc=lga,dc=lax}", limit: "1", want: []string{"sys.cpu.user/web03"}, total: 3},
		{m: "{host=a}", want: []string{"if.octets/a", "ms.metric/a", "stale/a", "temp/a"}, total: 4},
		{m: "{*=lax}", want: []string{"sys.cpu.user/web03"}, total: 1},
		{m: "temp{host=c}", want: nil, total: 0},
	} {
		params := url.Values{"m": {tc.m}}
		if tc.limit != "" {
			params.Set("limit", tc.limit)
		}
		resp := decode(get(t, h, "/api/search/lookup", params))
		if resp.Type != "LOOKUP" || resp.TotalResults != tc.total || !slices.Equal(hosts(resp), tc.want) || resp.StartIndex != 0 {
			t.Errorf("lookup %s: %+v, want %v of %d", tc.m, resp, tc.want, tc.total)
		}
		for _, r := range resp.Results {
			if r.TSUID != "" || r.Tags == nil || r.Tags["__name__"] != "" {
				t.Errorf("lookup %s: result %+v", tc.m, r)
			}
		}
	}
	resp := decode(post(t, h, "/api/search/lookup", `{"metric":"sys.cpu.user","tags":[{"key":"dc","value":"lga"}],"limit":1}`))
	if resp.Limit != 1 || resp.TotalResults != 2 || !slices.Equal(hosts(resp), []string{"sys.cpu.user/web01"}) {
		t.Errorf("POST lookup: %+v", resp)
	}
	wantError(t, get(t, h, "/api/search/lookup", url.Values{"m": {"nope"}}), 400, "No such name for 'metrics': 'nope'")
	wantError(t, get(t, h, "/api/search/lookup", url.Values{"m": {"temp{rack=*}"}}), 400, "No such name for 'tagk': 'rack'")
	wantError(t, get(t, h, "/api/search/lookup", nil), 400, "missing parameter")
	wantError(t, get(t, h, "/api/search/lookup", url.Values{"m": {"temp{host}"}}), 400, "invalid tag")
}

func TestMetaEndpoints(t *testing.T) {
	h := newTestHandler(t, Options{})
	var aggs []string
	r := get(t, h, "/api/aggregators", nil)
	if err := json.Unmarshal(r.body, &aggs); err != nil || r.code != http.StatusOK || !slices.Contains(aggs, "sum") || !slices.Contains(aggs, "none") {
		t.Errorf("aggregators: %d %s", r.code, r.body)
	}
	var filters map[string]map[string]string
	r = get(t, h, "/api/config/filters", nil)
	if err := json.Unmarshal(r.body, &filters); err != nil || r.code != http.StatusOK {
		t.Fatalf("filters: %d %s", r.code, r.body)
	}
	if got := slices.Sorted(maps.Keys(filters)); !slices.Equal(got, []string{"iliteral_or", "iwildcard", "literal_or", "not_iliteral_or", "not_key", "not_literal_or", "regexp", "wildcard"}) {
		t.Errorf("filters: %v", got)
	}
	for name, f := range filters {
		if f["examples"] == "" || f["description"] == "" {
			t.Errorf("filter %s: %v", name, f)
		}
	}
	var version map[string]string
	r = post(t, h, "/api/version", "")
	if err := json.Unmarshal(r.body, &version); err != nil || r.code != http.StatusOK || version["version"] != "2.4.1" || !strings.Contains(version["implementation"], "Immune") {
		t.Errorf("version: %d %s", r.code, r.body)
	}
}
