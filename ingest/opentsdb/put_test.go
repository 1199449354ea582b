package opentsdb

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-dev/immune/ingest/memlimit"
)

// putReq sends body to h and returns the status and the response body.
func putReq(t testing.TB, h http.Handler, method, target, encoding string, body []byte) (int, string, http.Header) {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String(), rec.Header()
}

func put(t testing.TB, h http.Handler, target, body string) (int, string) {
	t.Helper()
	code, resp, _ := putReq(t, h, http.MethodPost, target, "", []byte(body))
	return code, resp
}

// jp renders a data point at base+off seconds.
func jp(metric string, off int, value string, tags string) string {
	return fmt.Sprintf(`{"metric":%q,"timestamp":%d,"value":%s,"tags":%s}`, metric, ts(off), value, tags)
}

const errSomeFailed = `{"error":{"code":400,"message":"One or more data points had errors","details":"Please see the TSD logs or append \"details\" to the put request"}}` + "\n"

func TestPutSingleAndArray(t *testing.T) {
	db := openDB(t)
	h := NewPutHandler(db, testOptions())

	if code, body := put(t, h, "/api/put", jp("sys.cpu.nice", 0, "18", `{"host":"web01","dc":"lga"}`)); code != http.StatusNoContent || body != "" {
		t.Fatalf("single: %d %q", code, body)
	}
	arr := "[" + jp("sys.cpu.nice", 10, "9", `{"host":"web02","dc":"lga"}`) + ",\n " +
		fmt.Sprintf(`{"metric":"sys.cpu.nice","timestamp":"%d000","value":"1.5e1","tags":{"host":"web01","dc":"lga"}}`, ts(20)) + "," +
		fmt.Sprintf(`{"timestamp":%d.5,"value":-3,"tags":{"cpu":0,"up":true},"metric":"m","tsuid":null,"extra":[1,{"a":[]}]}`, ts(30)) + "]"
	if code, body := put(t, h, "/api/put?sync", arr); code != http.StatusNoContent || body != "" {
		t.Fatalf("array: %d %q", code, body)
	}
	ms := func(off int) int64 { return ts(off) * 1000 }
	wantSeries(t, db, map[string][]sample{
		`{__name__="sys.cpu.nice", dc="lga", host="web01"}`: {{ms(0), 18}, {ms(20), 15}},
		`{__name__="sys.cpu.nice", dc="lga", host="web02"}`: {{ms(10), 9}},
		`{__name__="m", cpu="0", up="true"}`:                {{ms(30) + 500, -3}},
	})
}

func TestPutCompressed(t *testing.T) {
	db := openDB(t)
	h := NewPutHandler(db, testOptions())

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(jp("m", 0, "1", `{"a":"gzip"}`)))
	zw.Close()
	if code, body, _ := putReq(t, h, http.MethodPost, "/api/put", "gzip", gz.Bytes()); code != http.StatusNoContent {
		t.Fatalf("gzip: %d %q", code, body)
	}
	var zl bytes.Buffer
	zlw := zlib.NewWriter(&zl)
	zlw.Write([]byte(jp("m", 0, "1", `{"a":"deflate"}`)))
	zlw.Close()
	if code, body, _ := putReq(t, h, http.MethodPost, "/api/put", "deflate", zl.Bytes()); code != http.StatusNoContent {
		t.Fatalf("deflate: %d %q", code, body)
	}
	wantSeries(t, db, map[string][]sample{
		`{__name__="m", a="gzip"}`:    {{ts(0) * 1000, 1}},
		`{__name__="m", a="deflate"}`: {{ts(0) * 1000, 1}},
	})

	if code, body, _ := putReq(t, h, http.MethodPost, "/api/put", "gzip", []byte("not gzip")); code != http.StatusBadRequest ||
		!strings.Contains(body, "Unable to decompress the request body") {
		t.Fatalf("corrupt gzip: %d %q", code, body)
	}
	if code, body, _ := putReq(t, h, http.MethodPost, "/api/put", "br", []byte("{}")); code != http.StatusUnsupportedMediaType {
		t.Fatalf("br: %d %q", code, body)
	}
}

func TestPutSummaryAndDetails(t *testing.T) {
	db := openDB(t)
	h := NewPutHandler(db, testOptions())
	good := jp("m", 0, "1", `{"a":"b"}`)
	bad := jp("m", 1, `"abc"`, `{"a":"b"}`)

	for _, tc := range []struct {
		target, body string
		code         int
		resp         string
	}{
		{"/api/put?summary", "[" + good + "]", 200, `{"success":1,"failed":0}` + "\n"},
		{"/api/put?details", "[" + good + "]", 200, `{"success":1,"failed":0,"errors":[]}` + "\n"},
		{"/api/put?summary&sync&sync_timeout=60000", "[" + good + "]", 200, `{"success":1,"failed":0,"timeouts":0}` + "\n"},
		{"/api/put", "[" + good + "," + bad + "]", 400, errSomeFailed},
		{"/api/put?summary", "[" + good + "," + bad + "]", 400, `{"success":1,"failed":1}` + "\n"},
		// details wins over summary.
		{"/api/put?summary&details", "[" + bad + "," + good + "]", 400,
			fmt.Sprintf(`{"success":1,"failed":1,"errors":[{"datapoint":{"metric":"m","timestamp":%d,"value":"abc","tags":{"a":"b"}},"error":"Unable to parse value to a number"}]}`, ts(1)) + "\n"},
	} {
		t.Run(tc.target+" "+tc.body, func(t *testing.T) {
			code, resp := put(t, h, tc.target, tc.body)
			if code != tc.code || resp != tc.resp {
				t.Fatalf("got %d %s\nwant %d %s", code, resp, tc.code, tc.resp)
			}
		})
	}
	// Every good point was kept, the bad ones never.
	wantSeries(t, db, map[string][]sample{`{__name__="m", a="b"}`: {{ts(0) * 1000, 1}}})
}

// TestPutPointErrors pins the error of each kind of bad data point, as
// ?details reports it.
func TestPutPointErrors(t *testing.T) {
	db := openDB(t)
	h := NewPutHandler(db, testOptions())
	nine := `{"t1":"v","t2":"v","t3":"v","t4":"v","t5":"v","t6":"v","t7":"v","t8":"v","t9":"v"}`
	old := base.Add(-30 * 24 * time.Hour).Unix()
	future := testNow.Add(time.Hour).Unix()
	// err is the message as the reply's JSON string holds it, escapes
	// written out, so that an encoder bug fails the test.
	for _, tc := range []struct{ point, err string }{
		{`{"timestamp":1,"value":1,"tags":{"a":"b"}}`, "Metric name was empty"},
		{`{"metric":"","timestamp":1,"value":1,"tags":{"a":"b"}}`, "Metric name was empty"},
		{`{"metric":{"x":1},"timestamp":1,"value":1,"tags":{"a":"b"}}`, "Metric name must be a string"},
		{`{"metric":"m","value":1,"tags":{"a":"b"}}`, "Invalid timestamp"},
		{`{"metric":"m","timestamp":0,"value":1,"tags":{"a":"b"}}`, "Invalid timestamp"},
		{`{"metric":"m","timestamp":-1,"value":1,"tags":{"a":"b"}}`, "Invalid timestamp"},
		{`{"metric":"m","timestamp":"abc","value":1,"tags":{"a":"b"}}`, "Invalid timestamp"},
		{`{"metric":"m","timestamp":1e9,"value":1,"tags":{"a":"b"}}`, "Invalid timestamp"},
		{`{"metric":"m","timestamp":1,"tags":{"a":"b"}}`, "Empty value"},
		{`{"metric":"m","timestamp":1,"value":null,"tags":{"a":"b"}}`, "Empty value"},
		{`{"metric":"m","timestamp":1,"value":"","tags":{"a":"b"}}`, "Empty value"},
		{`{"metric":"m","timestamp":1,"value":1}`, "Missing tags"},
		{`{"metric":"m","timestamp":1,"value":1,"tags":{}}`, "Missing tags"},
		{`{"metric":"m","timestamp":1,"value":1,"tags":null}`, "Missing tags"},
		{`{"metric":"m","timestamp":1,"value":1,"tags":"a=b"}`, "Missing tags"},
		{`{"metric":"m","timestamp":1,"value":1,"tags":{"a":null}}`, "Invalid tag value for a: null"},
		{`{"metric":"m","timestamp":1,"value":1,"tags":{"a":[1]}}`, "Invalid tag value for a: not a string"},
		{`{"metric":"m","timestamp":1,"value":"abc","tags":{"a":"b"}}`, "Unable to parse value to a number"},
		{`{"metric":"m","timestamp":1,"value":"NaN","tags":{"a":"b"}}`, "Unable to parse value to a number"},
		{`{"metric":"m","timestamp":1,"value":true,"tags":{"a":"b"}}`, "Unable to parse value to a number"},
		{`{"metric":"m","timestamp":1,"value":[1],"tags":{"a":"b"}}`, "Unable to parse value to a number"},
		{`{"metric":"m","timestamp":1,"value":1e999,"tags":{"a":"b"}}`, "value is NaN or Infinite: Infinity for metric=m timestamp=1"},
		{`{"metric":"m","timestamp":12345678901,"value":1,"tags":{"a":"b"}}`, "bad timestamp=12345678901: not seconds (at most 4294967295) nor milliseconds (13 digits)"},
		{`{"metric":"m","timestamp":1,"value":1,"tags":` + nine + `}`, "Too many tags: 9 maximum allowed: 8, tags: {t1=v, t2=v, t3=v, t4=v, t5=v, t6=v, t7=v, t8=v, t9=v}"},
		{`{"metric":"sys cpu","timestamp":1,"value":1,"tags":{"a":"b"}}`, `Invalid metric name (\"sys cpu\"): illegal character:  `},
		{`{"metric":"m","timestamp":1,"value":1,"tags":{"a b":"c"}}`, `Invalid tag name (\"a b\"): illegal character:  `},
		{`{"metric":"m","timestamp":1,"value":1,"tags":{"a":"c\nd"}}`, `Invalid tag value (\"c\\nd\"): illegal character: \\n`},
		{`{"metric":"m","timestamp":1,"value":1,"tags":{"__name__":"x"}}`, "invalid tag: __name__=x: the tag key __name__ is reserved for the metric name"},
		{fmt.Sprintf(`{"metric":"m","timestamp":%d,"value":1,"tags":{"a":"b"}}`, old), "sample rejected by storage: out of bounds (before the retention period, or too far in the future)"},
		{fmt.Sprintf(`{"metric":"m","timestamp":%d,"value":1,"tags":{"a":"b"}}`, future), fmt.Sprintf("timestamp %d is more than 10m0s in the future", future*1000)},
	} {
		t.Run(tc.point, func(t *testing.T) {
			code, resp := put(t, h, "/api/put?details", tc.point)
			want := `"error":"` + tc.err + `"}]}`
			if code != http.StatusBadRequest || !strings.HasPrefix(resp, `{"success":0,"failed":1,"errors":[{"datapoint":{`) ||
				!strings.HasSuffix(resp, want+"\n") {
				t.Fatalf("got %d %s\nwant the error %s", code, resp, tc.err)
			}
		})
	}
	if got := queryAll(t, db); len(got) != 0 {
		t.Fatalf("stored %v", got)
	}
}

func TestPutRequestErrors(t *testing.T) {
	db := openDB(t)
	h := NewPutHandler(db, Options{Now: nowFunc, MaxBodyBytes: 1000})
	good := jp("m", 0, "1", `{"a":"b"}`)

	for _, tc := range []struct {
		name, method, body string
		code               int
		resp               string
	}{
		{"bad JSON keeps nothing", "POST", "[" + good + ",{\"metric\":}]", 400,
			`{"error":{"code":400,"message":"Unable to parse the given JSON","details":"expected a value at offset ` + fmt.Sprint(len(good)+12) + `"}}` + "\n"},
		{"trailing garbage", "POST", good + "x", 400, ""},
		{"not an object", "POST", `[1]`, 400, ""},
		{"empty list", "POST", `[]`, 400, `{"error":{"code":400,"message":"No datapoints found in content"}}` + "\n"},
		{"empty body", "POST", ` `, 400, `{"error":{"code":400,"message":"Missing request content","details":"Supply valid JSON formatted data in the body of your request"}}` + "\n"},
		{"too large", "POST", "[" + strings.Repeat(good+",", 20) + good + "]", 413, `{"error":{"code":413,"message":"Request body too large","details":"The body is larger than 1000 bytes"}}` + "\n"},
		{"GET", "GET", "", 405, `{"error":{"code":405,"message":"Method not allowed","details":"The HTTP method [GET] is not permitted for this endpoint"}}` + "\n"},
		{"PUT", "PUT", good, 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, resp, hdr := putReq(t, h, tc.method, "/api/put", "", []byte(tc.body))
			if code != tc.code || tc.resp != "" && resp != tc.resp {
				t.Fatalf("got %d %s\nwant %d %s", code, resp, tc.code, tc.resp)
			}
			if code == 405 && hdr.Get("Allow") != "POST" {
				t.Fatalf("Allow: %q", hdr.Get("Allow"))
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}

	// The limit applies after decompression.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("[" + strings.Repeat(good+",", 20) + good + "]"))
	zw.Close()
	if gz.Len() >= 1000 {
		t.Fatalf("test body compresses to %d bytes", gz.Len())
	}
	if code, resp, _ := putReq(t, h, http.MethodPost, "/api/put", "gzip", gz.Bytes()); code != 413 ||
		!strings.Contains(resp, "after decompression") {
		t.Fatalf("gzip bomb: %d %s", code, resp)
	}
	if got := queryAll(t, db); len(got) != 0 {
		t.Fatalf("stored %v", got)
	}
}

type overloadError struct{}

func (overloadError) Error() string             { return "overloaded" }
func (overloadError) RetryAfter() time.Duration { return 1500 * time.Millisecond }

func TestPutStorageErrors(t *testing.T) {
	db := openDB(t)
	app := &faultyAppendable{db: db}
	h := NewPutHandler(app, testOptions())
	body := "[" + jp("m", 0, "1", `{"a":"b"}`) + "," + jp("m", 1, "2", `{"a":"b"}`) + "]"

	var err error = errInjected
	app.commitErr.Store(&err)
	if code, resp := put(t, h, "/api/put", body); code != 500 ||
		resp != `{"error":{"code":500,"message":"Storage error, nothing was stored","details":"injected failure"}}`+"\n" {
		t.Fatalf("commit failure: %d %s", code, resp)
	}
	err = fmt.Errorf("commit: %w", overloadError{})
	app.commitErr.Store(&err)
	code, _, hdr := putReq(t, h, http.MethodPost, "/api/put", "", []byte(body))
	if code != 503 || hdr.Get("Retry-After") != "2" {
		t.Fatalf("overload: %d Retry-After %q", code, hdr.Get("Retry-After"))
	}
	app.commitErr.Store(nil)
	// A failing append fails the request; nothing of it is stored.
	if code, resp := put(t, h, "/api/put", "["+jp("m", 2, "1", `{"a":"b"}`)+","+jp("fail", 0, "1", `{"a":"b"}`)+"]"); code != 500 {
		t.Fatalf("append failure: %d %s", code, resp)
	}
	if got := queryAll(t, db); len(got) != 0 {
		t.Fatalf("stored %v", got)
	}
}

func TestPutConcurrencyLimit(t *testing.T) {
	db := openDB(t)
	g := &gateAppendable{db: db, reached: make(chan struct{}), release: make(chan struct{})}
	h := NewPutHandler(g, Options{Now: nowFunc, MaxConcurrentRequests: 1, QueueTimeout: 10 * time.Millisecond})

	first := make(chan int, 1)
	go func() {
		code, _ := put(t, h, "/api/put", jp("gate", 0, "1", `{"a":"b"}`))
		first <- code
	}()
	<-g.reached
	code, resp, hdr := putReq(t, h, http.MethodPost, "/api/put", "", []byte(jp("m", 0, "1", `{"a":"b"}`)))
	if code != 503 || hdr.Get("Retry-After") != "1" {
		t.Fatalf("second request: %d %s", code, resp)
	}
	close(g.release)
	if code := <-first; code != 204 {
		t.Fatalf("first request: %d", code)
	}
}

// TestPutHandlerSharesServerStats: the handler of Server.PutHandler counts
// in the Server's stats.
func TestPutHandlerSharesServerStats(t *testing.T) {
	s := NewServer(openDB(t), testOptions())
	h := s.PutHandler()
	put(t, h, "/api/put", "["+jp("m", 0, "1", `{"a":"b"}`)+","+jp("m", 1, `"x"`, `{"a":"b"}`)+"]")
	st := s.Stats()
	if st.HTTPPutRequests != 1 || st.HTTPDataPoints != 2 || st.DataPointsStored != 1 || st.InvalidValues != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestPutClientGone: a request whose client went away stores nothing (the
// store refuses to commit under a cancelled context).
func TestPutClientGone(t *testing.T) {
	db := openDB(t)
	h := NewPutHandler(db, testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/put", strings.NewReader(jp("m", 0, "1", `{"a":"b"}`)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 500 && rec.Code != 503 {
		t.Fatalf("status %d", rec.Code)
	}
	var _ storage.Appendable = db
	if got := queryAll(t, db); len(got) != 0 {
		t.Fatalf("stored %v", got)
	}
}

// TestPutMemoryBudget: a put reserves putCost of its body from the shared
// budget. While others hold it, a put waits QueueTimeout and gets 503 with
// Retry-After; a body needing more than the whole budget gets 413; once
// answered, a put holds nothing.
func TestPutMemoryBudget(t *testing.T) {
	db := openDB(t)
	mem := memlimit.New(putCost(400))
	h := NewPutHandler(db, Options{Now: nowFunc, Memory: mem, QueueTimeout: 20 * time.Millisecond})
	point := jp("m", 0, "1", `{"a":"b"}`)

	if err := mem.Reserve(context.Background(), mem.Limit()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/put", strings.NewReader(point)))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), "write memory") {
		t.Fatalf("with the budget held: got %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	mem.Release(mem.Limit())

	if code, resp := put(t, h, "/api/put", point); code != http.StatusNoContent {
		t.Fatalf("with the budget free: got %d %s", code, resp)
	}
	big := "[" + strings.Repeat(point+",", 8) + point + "]"
	if code, resp := put(t, h, "/api/put", big); code != http.StatusRequestEntityTooLarge || !strings.Contains(resp, "more than the limit") {
		t.Fatalf("a body beyond the budget: got %d %s", code, resp)
	}
	if mem.Held() != 0 {
		t.Fatalf("%d bytes held after every put was answered", mem.Held())
	}
	wantSeries(t, db, map[string][]sample{`{__name__="m", a="b"}`: {{ts(0) * 1000, 1}}})
}

// TestPutMemoryBudgetCompressed: a compressed body, whose size is known
// only as it is read, is reserved step by step: a small one is stored, one
// that decompresses past the whole budget gets 413 and holds nothing after.
func TestPutMemoryBudgetCompressed(t *testing.T) {
	db := openDB(t)
	mem := memlimit.New(putCost(64 << 10))
	h := NewPutHandler(db, Options{Now: nowFunc, Memory: mem, QueueTimeout: 20 * time.Millisecond})
	gzipped := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	point := jp("m", 0, "1", `{"a":"b"}`)
	if code, body, _ := putReq(t, h, http.MethodPost, "/api/put", "gzip", gzipped(point)); code != http.StatusNoContent {
		t.Fatalf("a small gzip body: %d %s", code, body)
	}
	big := "[" + strings.Repeat(point+",", 2000) + point + "]" // about 120 KiB
	code, body, _ := putReq(t, h, http.MethodPost, "/api/put", "gzip", gzipped(big))
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "more than the limit") {
		t.Fatalf("a gzip body decompressing past the budget: %d %s", code, body)
	}
	if mem.Held() != 0 {
		t.Fatalf("%d bytes held after every put was answered", mem.Held())
	}
}
