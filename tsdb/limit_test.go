package tsdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

func seriesN(i int) labels.Labels {
	return labels.FromStrings("__name__", "m", "i", fmt.Sprint(i))
}

// TestActiveSeriesLimit fills the head to its limit: a new series is then
// refused with a *SeriesLimitError while the samples of series already in
// the head, in the same appender, are committed; once the head's series
// leave it at a checkpoint, new series are taken again.
func TestActiveSeriesLimit(t *testing.T) {
	now := base.Add(time.Hour)
	db := openTestDB(t, t.TempDir(), Options{MaxActiveSeries: 3, Now: func() time.Time { return now }})
	defer db.Close()
	for i := range 3 {
		appendSamples(t, db, seriesN(i), sample{baseMs(0), 1})
	}

	app := db.Appender(context.Background())
	if _, err := app.Append(0, seriesN(0), baseMs(time.Minute), 2); err != nil {
		t.Fatalf("series in the head: %v", err)
	}
	_, err := app.Append(0, seriesN(3), baseMs(time.Minute), 2)
	var limitErr *SeriesLimitError
	if !errors.As(err, &limitErr) || limitErr.SeriesLimit() != 3 {
		t.Fatalf("fourth series: got %v, want a SeriesLimitError of 3", err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	got := query(t, db, 0, baseMs(time.Hour))
	if len(got[seriesN(0).String()]) != 2 || got[seriesN(3).String()] != nil {
		t.Fatalf("got %v, want series 0 with two samples and no series 3", got)
	}
	if n := db.Stats().HeadSeries; n != 3 {
		t.Fatalf("head holds %d series after a refusal, want 3", n)
	}

	// The bucket completes, its series leave the head, and there is room.
	now = base.Add(4 * time.Hour)
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	appendSamples(t, db, seriesN(3), sample{baseMs(3 * time.Hour), 3})
}

// TestActiveSeriesLimitIsExact creates series from many appenders at once:
// the head ends with exactly the limit, and every refusal is a limit error.
func TestActiveSeriesLimitIsExact(t *testing.T) {
	const limit, writers, each = 50, 8, 20
	db := openTestDB(t, t.TempDir(), Options{MaxActiveSeries: limit})
	defer db.Close()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		refused int
	)
	for w := range writers {
		wg.Go(func() {
			app := db.Appender(context.Background())
			for i := range each {
				_, err := app.Append(0, seriesN(w*each+i), baseMs(0), 1)
				var limitErr *SeriesLimitError
				switch {
				case errors.As(err, &limitErr):
					mu.Lock()
					refused++
					mu.Unlock()
				case err != nil:
					t.Error(err)
				}
			}
			if err := app.Commit(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := db.Stats().HeadSeries; n != limit || refused != writers*each-limit {
		t.Fatalf("head holds %d series with %d refused, want %d and %d", n, refused, limit, writers*each-limit)
	}
}

// TestReplayIgnoresActiveSeriesLimit restarts a store with a lower limit
// than it accepted series under: what the WAL holds was acknowledged, so
// replay restores all of it.
func TestReplayIgnoresActiveSeriesLimit(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, Options{})
	for i := range 5 {
		appendSamples(t, db, seriesN(i), sample{baseMs(0), float64(i)})
	}
	crash(t, db)
	db = openTestDB(t, dir, Options{MaxActiveSeries: 2})
	defer db.Close()
	if got := query(t, db, 0, baseMs(time.Hour)); len(got) != 5 {
		t.Fatalf("after replay under a lower limit: %d series, want 5", len(got))
	}
}

// TestRolledBackSeriesLeaveTheHead: a new series whose appender rolls back
// holds a place in the head until the next checkpoint, which frees it for
// another series.
func TestRolledBackSeriesLeaveTheHead(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{MaxActiveSeries: 2})
	defer db.Close()
	app := db.Appender(context.Background())
	for i := range 2 {
		if _, err := app.Append(0, seriesN(i), baseMs(0), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if n := db.Stats().HeadSeries; n != 0 {
		t.Fatalf("head holds %d series after a rollback and a checkpoint, want 0", n)
	}
	appendSamples(t, db, seriesN(2), sample{baseMs(0), 1})
	appendSamples(t, db, seriesN(3), sample{baseMs(0), 1})
}
