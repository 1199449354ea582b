package opentsdb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// BenchmarkGrafanaQuery is a typical Grafana panel: the summed per-second
// rate of a counter over 100 hosts for the last hour, downsampled to 1m
// averages, as the OpenTSDB data source POSTs it. Each host is scraped
// every 10s with a few seconds of jitter, so timestamps do not line up.
func BenchmarkGrafanaQuery(b *testing.B) {
	const (
		hosts    = 100
		interval = 10 * time.Second
	)
	db := openStore(b, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	app := db.Appender(context.Background())
	end := clock()
	samples := 0
	for h := range hosts {
		ls := labels.FromStrings("__name__", "http.requests", "host", fmt.Sprintf("web%03d", h), "dc", "lga")
		v := 0.0
		offset := time.Duration(rng.IntN(10_000)) * time.Millisecond
		for ts := end.Add(-time.Hour - 5*time.Minute + offset); !ts.After(end); ts = ts.Add(interval) {
			v += float64(rng.IntN(100))
			if _, err := app.Append(0, ls, ts.UnixMilli(), v); err != nil {
				b.Fatal(err)
			}
			samples++
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	New(db, Options{Now: clock}).Register(mux)
	body := fmt.Sprintf(`{"start":%d,"end":%d,"msResolution":false,"globalAnnotations":true,"showQuery":true,
		"queries":[{"metric":"http.requests","aggregator":"sum","rate":true,"rateOptions":{"counter":true,"dropResets":true},
		"downsample":"1m-avg","filters":[{"type":"wildcard","tagk":"dc","filter":"*","groupBy":true}]}]}`,
		end.Add(-time.Hour).UnixMilli(), end.UnixMilli())

	b.ReportAllocs()
	b.ReportMetric(float64(samples), "samples")
	for b.Loop() {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/query", strings.NewReader(body)))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"dps":{"`) {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}
