package tsdb

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// benchSeries is a node-exporter-like label set: 10 metrics per host, 100
// hosts per job.
func benchSeries(n int) []labels.Labels {
	out := make([]labels.Labels, n)
	for i := range out {
		out[i] = labels.FromStrings("__name__", fmt.Sprintf("node_metric_%d", i%10),
			"instance", fmt.Sprintf("host-%d:9100", i/10), "job", fmt.Sprintf("node-%d", i/1000), "mode", "user")
	}
	return out
}

// openBenchDB opens a store holding steps samples, 15 s apart, of each of
// n series.
func openBenchDB(b *testing.B, n, steps int) (*DB, []labels.Labels) {
	b.Helper()
	db, err := Open(b.TempDir(), Options{Now: func() time.Time { return base.Add(24 * time.Hour) }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	series := benchSeries(n)
	for step := range steps {
		app := db.Appender(context.Background())
		for i, ls := range series {
			if _, err := app.Append(0, ls, baseMs(time.Duration(step)*15*time.Second), float64(i+step)); err != nil {
				b.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	return db, series
}

// BenchmarkAppenderCommit: one commit of a sample for each of 1000
// existing series, synced, as a remote-write request makes.
func BenchmarkAppenderCommit(b *testing.B) {
	db, series := openBenchDB(b, 1000, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		app := db.Appender(context.Background())
		for j, ls := range series {
			if _, err := app.Append(0, ls, baseMs(time.Duration(i+1)*15*time.Second), float64(j)); err != nil {
				b.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(series)), "ns/sample")
}

// BenchmarkSeriesLookup: finding an existing series by its labels, the
// first step of every append without a ref.
func BenchmarkSeriesLookup(b *testing.B) {
	db, series := openBenchDB(b, 10_000, 1)
	app := db.Appender(context.Background())
	defer app.Rollback()
	getRef := app.(storage.GetRef)
	hashes := make([]uint64, len(series))
	for i, ls := range series {
		hashes[i] = ls.Hash()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i % len(series)
		if ref, _ := getRef.GetRef(series[k], hashes[k]); ref == 0 {
			b.Fatalf("series %s not found", series[k])
		}
	}
}

// BenchmarkPostingsIntersection: selecting series by two matchers over
// 10,000 series (1,000 of the metric, 300 of the 30 instances the regexp
// matches): the index intersects their postings down to 30.
func BenchmarkPostingsIntersection(b *testing.B) {
	db, _ := openBenchDB(b, 10_000, 1)
	ms := []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, "__name__", "node_metric_3"),
		labels.MustNewMatcher(labels.MatchRegexp, "instance", "host-(1|2|3)[0-9]:9100"),
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		q, err := db.Querier(baseMs(0), baseMs(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		set := q.Select(context.Background(), false, nil, ms...)
		n := 0
		for set.Next() {
			n++
		}
		if err := set.Err(); err != nil || n != 30 {
			b.Fatalf("%d series (%v), want 30", n, err)
		}
		q.Close()
	}
}

// BenchmarkQuerierIteration: reading every sample of 1,000 series of 120
// samples each, as a range query over many series does.
func BenchmarkQuerierIteration(b *testing.B) {
	const steps = 120
	db, _ := openBenchDB(b, 1000, steps)
	b.ReportAllocs()
	b.ResetTimer()
	var it chunkenc.Iterator
	for range b.N {
		q, err := db.Querier(baseMs(0), baseMs(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", "node_metric_.*"))
		n := 0
		for set.Next() {
			it = set.At().Iterator(it)
			for it.Next() == chunkenc.ValFloat {
				n++
			}
		}
		if err := set.Err(); err != nil || n != 1000*steps {
			b.Fatalf("%d samples (%v), want %d", n, err, 1000*steps)
		}
		q.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000*steps), "ns/sample")
}
