package query

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzQueryParams throws arbitrary query, time and step strings at the
// instant and range query endpoints. Whatever comes in, the answer must be a
// well-formed Prometheus envelope whose status agrees with the HTTP code.
func FuzzQueryParams(f *testing.F) {
	f.Add("up", "600", "600", "15s")
	f.Add("1+1", "4", "4", "1")
	f.Add(`rate(up{job="api"}[1m])`, "0", "600", "15")
	f.Add("sum(up", "", "", "")
	f.Add(`{"sys.cpu.user"}`, "1970-01-01T00:05:00Z", "1970-01-01T00:10:00Z", "1m")
	f.Add("up[5m:]", "-1e300", "1e300", "NaN")

	// Tight limits keep pathological queries (huge subqueries) cheap.
	h := newHandler(f, Options{Timeout: time.Second, MaxSamples: 100_000})
	f.Fuzz(func(t *testing.T, query, start, end, step string) {
		instant := url.Values{"query": {query}, "time": {start}}
		ranged := url.Values{"query": {query}, "start": {start}, "end": {end}, "step": {step}}
		for _, req := range []struct {
			path string
			form url.Values
		}{
			{"/api/v1/query", instant},
			{"/api/v1/query_range", ranged},
		} {
			r := httptest.NewRequest(http.MethodPost, req.path, strings.NewReader(req.form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)

			var env envelope
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
				t.Fatalf("%s %v: invalid JSON %q: %v", req.path, req.form, rec.Body, err)
			}
			switch {
			case rec.Code == http.StatusOK:
				if env.Status != "success" || env.Data == nil {
					t.Fatalf("%s %v: 200 with %s", req.path, req.form, rec.Body)
				}
			case rec.Code >= 400 && rec.Code < 600:
				if env.Status != "error" || env.ErrorType == "" || env.Error == "" {
					t.Fatalf("%s %v: %d with %s", req.path, req.form, rec.Code, rec.Body)
				}
			default:
				t.Fatalf("%s %v: unexpected status %d", req.path, req.form, rec.Code)
			}
		}
	})
}
