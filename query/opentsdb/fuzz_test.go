package opentsdb

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzQueryParams throws arbitrary m= strings, start times and POST bodies
// at /api/query, and the m= string at /api/search/lookup, over a real
// store. Whatever comes in, the answer must be well-formed: a JSON array
// with 200, or OpenTSDB's error object whose code is the HTTP status, and
// never a 500 (bad input is the client's fault).
func FuzzQueryParams(f *testing.F) {
	f.Add("sum:sys.cpu.user", "1709294400", `{"start":1709294400000,"queries":[{"aggregator":"sum","metric":"sys.cpu.user"}]}`)
	f.Add("sum:rate{counter,1000,50}:1m-avg-nan:if.octets{host=*}", "2h-ago",
		`{"start":"2h-ago","queries":[{"aggregator":"sum","metric":"if.octets","rate":true,"rateOptions":{"counter":true,"counterMax":1000,"dropResets":true},"downsample":"1m-avg"}]}`)
	f.Add("none:sys.cpu.user{dc=*}{host=regexp(web0[12])}", "2024/03/01-12:00:00",
		`{"start":"2024/03/01 12:00","end":"2024/03/01-12:03","showQuery":true,"msResolution":true,"queries":[{"aggregator":"p99","metric":"temp","filters":[{"type":"iwildcard","tagk":"host","filter":"A*","groupBy":true}]}]}`)
	f.Add("zimsum:0all-sum:explicit_tags:temp{host=a|b}{dc=not_key()}", "0", `{"start":0,"queries":[{"aggregator":"count","metric":"temp","downsample":"1ms-sum-zero"}]}`)
	f.Add("bogus:x{", "-1", `{"start":"1h-ago","queries":[{"aggregator":"sum","tsuids":["00"]}]`)
	f.Add("{*=lax}", "1364410924.250", `[1,2,3]`)

	h := newTestHandler(f, Options{MaxSeries: 100, MaxPoints: 20_000})
	f.Fuzz(func(t *testing.T, m, start, body string) {
		check := func(req *http.Request, wantArray bool) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			b := rec.Body.Bytes()
			if rec.Code == http.StatusOK {
				if wantArray && (len(b) == 0 || b[0] != '[' || !json.Valid(b)) {
					t.Fatalf("%s %s: 200 with %q", req.Method, req.URL, b)
				}
				if !json.Valid(b) {
					t.Fatalf("%s %s: invalid JSON %q", req.Method, req.URL, b)
				}
				return
			}
			var e struct {
				Error struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(b, &e); err != nil || e.Error.Code != rec.Code || e.Error.Message == "" {
				t.Fatalf("%s %s: %d with %q", req.Method, req.URL, rec.Code, b)
			}
			if rec.Code >= 500 {
				t.Fatalf("%s %s: %d %s", req.Method, req.URL, rec.Code, b)
			}
		}
		q := url.Values{"start": {start}, "m": {m}}
		check(httptest.NewRequest(http.MethodGet, "/api/query?"+q.Encode(), nil), true)
		check(httptest.NewRequest(http.MethodPost, "/api/query", strings.NewReader(body)), true)
		check(httptest.NewRequest(http.MethodGet, "/api/search/lookup?"+url.Values{"m": {m}}.Encode(), nil), false)
	})
}
