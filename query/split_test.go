package query

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"
	"github.com/prometheus/prometheus/util/teststorage"
)

// newSplitStorage returns an hour of data, every 15s, shaped to catch a
// wrong join: series that exist in some parts of the range only, counter
// resets, classic and native histograms.
func newSplitStorage(t *testing.T) storage.Storage {
	t.Helper()
	s := teststorage.New(t)
	app := s.Appender(context.Background())
	for i := int64(0); i <= 240; i++ {
		ts := i * 15_000
		add := func(v float64, kv ...string) {
			if _, err := app.Append(0, labels.FromStrings(kv...), ts, v); err != nil {
				t.Fatal(err)
			}
		}
		add(float64(i%100*7), "__name__", "req_total", "job", "api", "instance", "a") // resets every 25 min
		add(float64(i*3), "__name__", "req_total", "job", "api", "instance", "b")
		if i < 50 {
			add(1, "__name__", "early", "job", "batch")
		}
		if i > 200 {
			add(2, "__name__", "late", "job", "batch")
		}
		for j, le := range []string{"0.1", "1", "+Inf"} {
			add(float64(i*int64(j+1)), "__name__", "lat_bucket", "le", le)
		}
		h := tsdbutil.GenerateTestHistogram(i)
		if _, err := app.AppendHistogram(0, labels.FromStrings("__name__", "native_lat"), ts, h, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSplitRangeQueriesMatchWhole runs each query whole and split in four
// parts and wants byte-identical responses.
func TestSplitRangeQueriesMatchWhole(t *testing.T) {
	s := newSplitStorage(t)
	whole, split := http.NewServeMux(), http.NewServeMux()
	New(s, Options{Parallelism: 1}).Register(whole)
	api := New(s, Options{Parallelism: 4})
	api.Register(split)
	for _, tc := range []struct {
		query string
		parts int // what the split API evaluates it in
	}{
		{`req_total`, 4},
		{`{job="batch"}`, 4},
		{`rate(req_total[2m])`, 4},
		{`sum by (job) (rate(req_total[5m]))`, 4},
		{`histogram_quantile(0.9, sum by (le) (rate(lat_bucket[5m])))`, 4},
		{`histogram_quantile(0.9, rate(native_lat[5m]))`, 4},
		{`rate(native_lat[1m])`, 4},
		{`topk(1, rate(req_total[1m]))`, 4},
		{`max_over_time(rate(req_total[1m])[7m:45s])`, 4},
		{`req_total offset 3m`, 4},
		{`req_total @ 1800`, 4},
		{`timestamp(early) or vector(time())`, 4},
		{`absent(late)`, 4},
		{`count_values("v", late)`, 4},
		{`rate(early[1m])`, 4}, // an info annotation, from one part only
		{`1 + 1`, 4},
		{`req_total @ end()`, 1},
		{`rate(req_total[1m] @ start())`, 1},
	} {
		t.Run(tc.query, func(t *testing.T) {
			form := url.Values{"query": {tc.query}, "start": {"0"}, "end": {"3600"}, "step": {"10"}}
			qry, err := api.engine.NewRangeQuery(context.Background(), s, nil, tc.query, time.Unix(0, 0), time.Unix(3600, 0), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer qry.Close()
			if got := api.rangeParts(qry); got != tc.parts {
				t.Fatalf("evaluated in %d parts, want %d", got, tc.parts)
			}
			want, got := do(t, whole, http.MethodGet, "/api/v1/query_range", form), do(t, split, http.MethodGet, "/api/v1/query_range", form)
			wantSuccess(t, want, nil)
			if !bytes.Equal(got.body, want.body) {
				t.Fatalf("split:\n%.2000s\nwhole:\n%.2000s", got.body, want.body)
			}
		})
	}
}

func TestSplitRangeQueryLimitAndErrors(t *testing.T) {
	h := newHandler(t, Options{Parallelism: 2})
	// 601 steps: two parts.
	form := url.Values{"query": {"up"}, "start": {"0"}, "end": {"600"}, "step": {"1"}, "limit": {"2"}}
	r := do(t, h, http.MethodGet, "/api/v1/query_range", form)
	var got queryResult[[]series]
	wantSuccess(t, r, &got)
	if len(got.Result) != 2 || len(got.Result[0].Values) != 601 {
		t.Fatalf("got %d series (want 2) of %d points (want 601)", len(got.Result), len(got.Result[0].Values))
	}
	if len(r.env.Warnings) != 1 || r.env.Warnings[0] != errTruncated.Error() {
		t.Errorf("warnings %q, want the truncation warning", r.env.Warnings)
	}
	// A part's failure is the query's, in the engine's error form.
	form = url.Values{"query": {`label_replace(up, "instance", "x", "", "")`}, "start": {"0"}, "end": {"600"}, "step": {"1"}}
	wantError(t, do(t, h, http.MethodGet, "/api/v1/query_range", form), http.StatusUnprocessableEntity, "execution", "same labelset")
}

func TestSplitRangeQueryTimeout(t *testing.T) {
	h := newHandler(t, Options{Parallelism: 2})
	form := url.Values{"query": {"up"}, "start": {"0"}, "end": {"600"}, "step": {"1"}, "timeout": {"0.000001"}}
	wantError(t, do(t, h, http.MethodGet, "/api/v1/query_range", form), http.StatusServiceUnavailable, "timeout", "query timed out")
}

// TestSplitRangeQuerySampleLimit checks that splitting does not multiply
// the sample limit: what fails whole fails split, what fits whole but not
// in a part's share runs whole.
func TestSplitRangeQuerySampleLimit(t *testing.T) {
	// up: 3 series; 601 steps hold 1803 points.
	form := url.Values{"query": {"up"}, "start": {"0"}, "end": {"600"}, "step": {"1"}}
	for _, tc := range []struct {
		maxSamples int
		ok         bool
	}{{1500, false}, {1900, true}} {
		for _, parallelism := range []int{1, 2} {
			h := newHandler(t, Options{Parallelism: parallelism, MaxSamples: tc.maxSamples})
			r := do(t, h, http.MethodGet, "/api/v1/query_range", form)
			if tc.ok {
				var got queryResult[[]series]
				wantSuccess(t, r, &got)
				if len(got.Result) != 3 || len(got.Result[0].Values) != 601 {
					t.Errorf("limit %d, parallelism %d: %d series", tc.maxSamples, parallelism, len(got.Result))
				}
				continue
			}
			wantError(t, r, http.StatusUnprocessableEntity, "execution", "query processing would load too many samples")
		}
	}
}

func TestSplitRangeQueryCanceled(t *testing.T) {
	h := newHandler(t, Options{Parallelism: 2})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	form := url.Values{"query": {"up"}, "start": {"0"}, "end": {"600"}, "step": {"1"}}
	req := newRequest(http.MethodGet, "/api/v1/query_range", form).WithContext(ctx)
	wantError(t, doRequest(t, h, req), 499, "canceled", "")
}

// BenchmarkRangeQuerySplit compares a 24 h range query over 100 series
// whole and split in two.
func BenchmarkRangeQuerySplit(b *testing.B) {
	s := teststorage.New(b)
	app := s.Appender(context.Background())
	for i := range 100 {
		ls := labels.FromStrings("__name__", "c_total", "i", strconv.Itoa(i), "g", strconv.Itoa(i%4))
		for ts := int64(0); ts <= 86_400_000; ts += 60_000 {
			if _, err := app.Append(0, ls, ts, float64(ts/1000*int64(i+1))); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	form := url.Values{"query": {`sum by (g) (rate(c_total[5m]))`}, "start": {"0"}, "end": {"86400"}, "step": {"360"}}
	for _, parts := range []int{1, 2} {
		b.Run("parts="+strconv.Itoa(parts), func(b *testing.B) {
			mux := http.NewServeMux()
			New(s, Options{Parallelism: parts}).Register(mux)
			req := newRequest(http.MethodGet, "/api/v1/query_range", form)
			for b.Loop() {
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
