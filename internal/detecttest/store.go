package detecttest

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/immune-dev/immune/bench"
	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/tsdb"
)

// FleetStore opens a real store in a temporary directory, its clock at
// now, and writes the fleet's scrapes into it every 15s from start to end,
// as a Prometheus scraping the fleet would have remote-written them. It
// returns the store's PromQL source; the store closes with the test.
func FleetStore(tb testing.TB, f *bench.Fleet, start, end time.Time, now func() time.Time) detect.EngineSource {
	tb.Helper()
	db, err := tsdb.Open(tb.TempDir(), tsdb.Options{Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	for t := start; !t.After(end); t = t.Add(15 * time.Second) {
		app := db.Appender(context.Background())
		var appendErr error
		f.Scrape(t, 15*time.Second, func(ls labels.Labels, ms int64, v float64) {
			if _, err := app.Append(0, ls, ms, v); err != nil && appendErr == nil {
				appendErr = err
			}
		})
		if appendErr != nil {
			tb.Fatal(appendErr)
		}
		if err := app.Commit(); err != nil {
			tb.Fatal(err)
		}
	}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50e6, Timeout: time.Minute,
		NoStepSubqueryIntervalFn: func(int64) int64 { return 60_000 }})
	return detect.EngineSource{Engine: engine, Queryable: db}
}
