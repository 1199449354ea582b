package tsdb

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
)

// TestPromQLConformance runs Prometheus' own PromQL acceptance tests (see
// testdata/promql/README.md) with the DB as the storage, so the engine is
// checked to see exactly what it would see on Prometheus' TSDB.
func TestPromQLConformance(t *testing.T) {
	files, err := filepath.Glob("testdata/promql/*.test")
	if err != nil || len(files) == 0 {
		t.Fatalf("no PromQL test files: %v", err)
	}
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	newStorage := func(tb testing.TB) storage.Storage {
		// Test data starts at 1970: keep everything, accept any order.
		db, err := Open(tb.TempDir(), Options{Retention: 100 * 365 * 24 * time.Hour, OutOfOrderWindow: 100 * 365 * 24 * time.Hour})
		if err != nil {
			tb.Fatal(err)
		}
		return promqlStorage{db}
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			content, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			promqltest.RunTestWithStorage(t, withoutNativeHistograms(string(content)), engine, newStorage)
		})
	}
}

// withoutNativeHistograms drops the segments of a test file, delimited by
// "clear" commands, that use native histogram notation.
func withoutNativeHistograms(content string) string {
	var kept []string
	for _, segment := range strings.Split(content, "\nclear\n") {
		if !strings.Contains(segment, "{{") {
			kept = append(kept, segment)
		}
	}
	return strings.Join(kept, "\nclear\n")
}

// promqlStorage adapts the DB to the storage.Storage the test harness wants.
type promqlStorage struct{ *DB }

func (s promqlStorage) StartTime() (int64, error) { return 0, nil }

func (s promqlStorage) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	q, err := s.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return chunkQuerier{q}, nil
}

func (s promqlStorage) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return appenderV2{s.Appender(ctx)}
}

type chunkQuerier struct{ storage.Querier }

func (q chunkQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	return storage.NewSeriesSetToChunkSet(q.Querier.Select(ctx, sortSeries, hints, ms...))
}

type appenderV2 struct{ storage.Appender }

func (a appenderV2) Append(ref storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	if h != nil || fh != nil {
		return a.Appender.AppendHistogram(ref, ls, t, h, fh)
	}
	return a.Appender.Append(ref, ls, t, v)
}
