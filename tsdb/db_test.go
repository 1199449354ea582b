package tsdb

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/immune-dev/immune/tsdb/chunk"
	"github.com/immune-dev/immune/tsdb/internal/keys"
)

// base is a fixed wall clock for tests: 2026-01-01T00:00:00Z.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func baseMs(d time.Duration) int64 { return base.Add(d).UnixMilli() }

func openTestDB(t *testing.T, dir string, opts Options) *DB {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return base.Add(24 * time.Hour) }
	}
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return db
}

type sample struct {
	t int64
	v float64
}

func appendSamples(t *testing.T, db *DB, ls labels.Labels, samples ...sample) {
	t.Helper()
	app := db.Appender(context.Background())
	var ref storage.SeriesRef
	for _, s := range samples {
		var err error
		if ref, err = app.Append(ref, ls, s.t, s.v); err != nil {
			t.Fatalf("append %v at %d: %v", ls, s.t, err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// query returns every series matching ms in [mint, maxt] with its samples.
func query(t *testing.T, db *DB, mint, maxt int64, ms ...*labels.Matcher) map[string][]sample {
	t.Helper()
	q, err := db.Querier(mint, maxt)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(context.Background(), true, nil, ms...)
	out := map[string][]sample{}
	var it chunkenc.Iterator
	for set.Next() {
		s := set.At()
		it = s.Iterator(it)
		var got []sample
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			got = append(got, sample{ts, v})
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		out[s.Labels().String()] = got
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func equalSamples(a, b []sample) bool {
	return slices.EqualFunc(a, b, func(x, y sample) bool {
		return x.t == y.t && math.Float64bits(x.v) == math.Float64bits(y.v)
	})
}

func TestAppendQueryRoundTrip(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	defer db.Close()
	a := labels.FromStrings("__name__", "up", "job", "node", "instance", "a")
	b := labels.FromStrings("__name__", "up", "job", "node", "instance", "b")
	var want []sample
	for i := range 1000 { // crosses frame and bucket boundaries
		want = append(want, sample{baseMs(time.Duration(i) * 15 * time.Second), float64(i % 7)})
	}
	appendSamples(t, db, a, want...)
	appendSamples(t, db, b, sample{baseMs(0), 1})

	got := query(t, db, baseMs(0), baseMs(10*time.Hour), labels.MustNewMatcher(labels.MatchEqual, "instance", "a"))
	if !equalSamples(got[a.String()], want) || len(got) != 1 {
		t.Fatalf("got %d series, %d samples; want 1 series, %d samples", len(got), len(got[a.String()]), len(want))
	}
	// The widest range, as the series API asks by default, reads the same
	// data (and skips the empty buckets and days back to 1970).
	got = query(t, db, math.MinInt64, math.MaxInt64, labels.MustNewMatcher(labels.MatchEqual, "instance", "a"))
	if !equalSamples(got[a.String()], want) {
		t.Fatalf("widest range: got %d samples, want %d", len(got[a.String()]), len(want))
	}
	// A sub-range returns exactly the samples inside it.
	got = query(t, db, baseMs(time.Hour), baseMs(3*time.Hour), labels.MustNewMatcher(labels.MatchEqual, "instance", "a"))
	var sub []sample
	for _, s := range want {
		if s.t >= baseMs(time.Hour) && s.t <= baseMs(3*time.Hour) {
			sub = append(sub, s)
		}
	}
	if !equalSamples(got[a.String()], sub) {
		t.Fatalf("sub-range: got %v\nwant %v", got[a.String()], sub)
	}
}

func TestMatchers(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	defer db.Close()
	series := []labels.Labels{
		labels.FromStrings("__name__", "http_requests_total", "code", "200", "path", "/a"),
		labels.FromStrings("__name__", "http_requests_total", "code", "500", "path", "/a"),
		labels.FromStrings("__name__", "http_requests_total", "code", "404"),
		labels.FromStrings("__name__", "cpu", "mode", "idle"),
	}
	for _, ls := range series {
		appendSamples(t, db, ls, sample{baseMs(0), 1})
	}
	for _, tc := range []struct {
		name string
		ms   []*labels.Matcher
		want []int
	}{
		{"equal", []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "http_requests_total")}, []int{0, 1, 2}},
		{"not equal", []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "http_requests_total"), labels.MustNewMatcher(labels.MatchNotEqual, "code", "200")}, []int{1, 2}},
		{"regexp", []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "code", "2..|5..")}, []int{0, 1}},
		{"not regexp", []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "http_requests_total"), labels.MustNewMatcher(labels.MatchNotRegexp, "code", "2..")}, []int{1, 2}},
		{"label absent", []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "http_requests_total"), labels.MustNewMatcher(labels.MatchEqual, "path", "")}, []int{2}},
		{"label present", []*labels.Matcher{labels.MustNewMatcher(labels.MatchNotEqual, "path", "")}, []int{0, 1}},
		{"regexp matching empty", []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "path", "/a|")}, []int{0, 1, 2, 3}},
		{"no match", []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "nope")}, nil},
		{"only negative", []*labels.Matcher{labels.MustNewMatcher(labels.MatchNotEqual, "__name__", "cpu")}, []int{0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := query(t, db, baseMs(0), baseMs(time.Minute), tc.ms...)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d series %v, want %v", len(got), got, tc.want)
			}
			for _, i := range tc.want {
				if _, ok := got[series[i].String()]; !ok {
					t.Errorf("missing %s", series[i])
				}
			}
		})
	}
}

func TestOutOfOrderDuplicatesAndStaleness(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{OutOfOrderWindow: time.Hour})
	defer db.Close()
	ls := labels.FromStrings("__name__", "m")
	stale := math.Float64frombits(value.StaleNaN)
	appendSamples(t, db, ls, sample{baseMs(2 * time.Hour), 2}, sample{baseMs(3 * time.Hour), 3})
	// Within the window, older than the newest: accepted, read back in order.
	appendSamples(t, db, ls, sample{baseMs(2*time.Hour + 30*time.Minute), 2.5})
	// An exact duplicate (a remote-write retry) changes nothing.
	appendSamples(t, db, ls, sample{baseMs(3 * time.Hour), 3}, sample{baseMs(2 * time.Hour), 2})
	// A different value at an existing timestamp replaces it.
	appendSamples(t, db, ls, sample{baseMs(2*time.Hour + 30*time.Minute), 25})
	appendSamples(t, db, ls, sample{baseMs(3*time.Hour + time.Minute), stale})

	// Older than the window: rejected.
	app := db.Appender(context.Background())
	if _, err := app.Append(0, ls, baseMs(time.Hour), 1); !errors.Is(err, storage.ErrTooOldSample) {
		t.Fatalf("sample 2h behind: got %v, want ErrTooOldSample", err)
	}
	if _, err := app.Append(0, ls, -1, 1); !errors.Is(err, storage.ErrOutOfBounds) {
		t.Fatalf("negative timestamp: got %v, want ErrOutOfBounds", err)
	}
	app.Rollback()

	want := []sample{{baseMs(2 * time.Hour), 2}, {baseMs(2*time.Hour + 30*time.Minute), 25}, {baseMs(3 * time.Hour), 3}, {baseMs(3*time.Hour + time.Minute), stale}}
	check := func(when string) {
		t.Helper()
		got := query(t, db, 0, baseMs(24*time.Hour), labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
		if !equalSamples(got[ls.String()], want) {
			t.Fatalf("%s: got %v, want %v", when, got[ls.String()], want)
		}
	}
	check("head")
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	check("after checkpoint")
}

// crash closes Pebble without a checkpoint, leaving the WAL as a kill -9 would.
func crash(t *testing.T, db *DB) {
	t.Helper()
	db.closed.Store(true)
	db.cancel()
	db.wg.Wait()
	if err := db.pdb.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRecoveryReplaysWAL(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, Options{})
	a := labels.FromStrings("__name__", "a")
	b := labels.FromStrings("__name__", "b")
	appendSamples(t, db, a, sample{baseMs(0), 1}, sample{baseMs(time.Minute), 2})
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	// After the checkpoint: one sample into the checkpointed bucket, one new series.
	appendSamples(t, db, a, sample{baseMs(2 * time.Minute), 3})
	appendSamples(t, db, b, sample{baseMs(0), 10})
	crash(t, db)

	db = openTestDB(t, dir, Options{})
	defer db.Close()
	got := query(t, db, 0, baseMs(time.Hour), labels.MustNewMatcher(labels.MatchRegexp, "__name__", "a|b"))
	if want := []sample{{baseMs(0), 1}, {baseMs(time.Minute), 2}, {baseMs(2 * time.Minute), 3}}; !equalSamples(got[a.String()], want) {
		t.Fatalf("a: got %v, want %v", got[a.String()], want)
	}
	if want := []sample{{baseMs(0), 10}}; !equalSamples(got[b.String()], want) {
		t.Fatalf("b: got %v, want %v", got[b.String()], want)
	}
	// The series keeps its identity: appending again does not create a new one.
	appendSamples(t, db, b, sample{baseMs(time.Minute), 11})
	if n := len(query(t, db, 0, baseMs(time.Hour), labels.MustNewMatcher(labels.MatchEqual, "__name__", "b"))); n != 1 {
		t.Fatalf("got %d series named b, want 1", n)
	}
}

// TestReplayAppliesNothingTwice overwrites one sample across checkpoints
// and unclean stops, restarting right after a replay too. A WAL record
// replayed after a checkpoint had covered it would bring back an older
// value of the sample (last write wins), so each restart must find the
// latest value, and a checkpoint must leave no WAL record behind.
func TestReplayAppliesNothingTwice(t *testing.T) {
	dir := t.TempDir()
	ls := labels.FromStrings("__name__", "overwritten")
	want := func(db *DB, v float64, when string) {
		t.Helper()
		if got := query(t, db, 0, baseMs(time.Hour))[ls.String()]; !equalSamples(got, []sample{{baseMs(0), v}}) {
			t.Fatalf("%s: got %v, want the value %v", when, got, v)
		}
	}
	db := openTestDB(t, dir, Options{})
	appendSamples(t, db, ls, sample{baseMs(0), 1})
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	appendSamples(t, db, ls, sample{baseMs(0), 2})
	crash(t, db)

	db = openTestDB(t, dir, Options{})
	want(db, 2, "replayed over a checkpoint")
	crash(t, db) // straight after the replay, before any checkpoint

	db = openTestDB(t, dir, Options{})
	want(db, 2, "replayed again")
	appendSamples(t, db, ls, sample{baseMs(0), 3})
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if key, err := db.lastKey(keys.PrefixWAL); err != nil || key != nil {
		t.Fatalf("WAL after a checkpoint: last key %x (%v), want none", key, err)
	}
	crash(t, db)

	db = openTestDB(t, dir, Options{})
	defer db.Close()
	want(db, 3, "after a checkpoint and a crash")
}

func TestSeriesIdentityAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ls := labels.FromStrings("__name__", "x", "k", "v")
	db := openTestDB(t, dir, Options{})
	app := db.Appender(context.Background())
	ref1, err := app.Append(0, ls, baseMs(0), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTestDB(t, dir, Options{})
	defer db.Close()
	app = db.Appender(context.Background())
	ref2, err := app.Append(0, ls, baseMs(time.Minute), 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if ref1 != ref2 {
		t.Fatalf("series ID changed across restart: %d then %d", ref1, ref2)
	}
	if got := query(t, db, 0, baseMs(time.Hour))[ls.String()]; len(got) != 2 {
		t.Fatalf("got %v, want two samples", got)
	}
}

func TestRetention(t *testing.T) {
	now := base.Add(48 * time.Hour)
	db := openTestDB(t, t.TempDir(), Options{Retention: 24 * time.Hour, Now: func() time.Time { return now }})
	defer db.Close()
	ls := labels.FromStrings("__name__", "m")
	appendSamples(t, db, ls, sample{baseMs(25 * time.Hour), 1}, sample{baseMs(47 * time.Hour), 2})
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	app := db.Appender(context.Background())
	if _, err := app.Append(0, ls, baseMs(time.Hour), 1); !errors.Is(err, storage.ErrOutOfBounds) {
		t.Fatalf("sample older than retention: got %v, want ErrOutOfBounds", err)
	}
	app.Rollback()

	now = now.Add(12 * time.Hour) // the first sample is now 35h old
	db.applyRetention()
	got := query(t, db, 0, baseMs(100*time.Hour))[ls.String()]
	if want := []sample{{baseMs(47 * time.Hour), 2}}; !equalSamples(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestLabelNamesAndValues(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	defer db.Close()
	appendSamples(t, db, labels.FromStrings("__name__", "a", "job", "x"), sample{baseMs(0), 1})
	appendSamples(t, db, labels.FromStrings("__name__", "b", "job", "y", "zone", "eu"), sample{baseMs(0), 1})
	appendSamples(t, db, labels.FromStrings("__name__", "late", "only", "tomorrow"), sample{baseMs(26 * time.Hour), 1})

	q, err := db.Querier(baseMs(0), baseMs(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	names, _, err := q.LabelNames(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"__name__", "job", "zone"}; !slices.Equal(names, want) {
		t.Errorf("names: got %v, want %v", names, want)
	}
	values, _, err := q.LabelValues(ctx, "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"x", "y"}; !slices.Equal(values, want) {
		t.Errorf("job values: got %v, want %v", values, want)
	}
	values, _, err = q.LabelValues(ctx, "job", nil, labels.MustNewMatcher(labels.MatchEqual, "zone", "eu"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"y"}; !slices.Equal(values, want) {
		t.Errorf("job values for zone=eu: got %v, want %v", values, want)
	}
}

func TestConcurrentAppenders(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	defer db.Close()
	const writers, perWriter = 8, 200
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range perWriter {
				app := db.Appender(context.Background())
				// Every writer writes the same shared series and one of its own.
				shared := labels.FromStrings("__name__", "shared", "i", string(rune('a'+i%3)))
				own := labels.FromStrings("__name__", "own", "w", string(rune('a'+w)))
				ts := baseMs(time.Duration(i) * time.Second)
				if _, err := app.Append(0, shared, ts, float64(i)); err != nil {
					errs <- err
					return
				}
				if _, err := app.Append(0, own, ts, float64(i)); err != nil {
					errs <- err
					return
				}
				if err := app.Commit(); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := query(t, db, 0, baseMs(time.Hour), labels.MustNewMatcher(labels.MatchRegexp, "__name__", "shared|own"))
	if len(got) != 3+writers {
		t.Fatalf("got %d series, want %d", len(got), 3+writers)
	}
	for name, s := range got {
		if !slices.IsSortedFunc(s, func(a, b sample) int { return cmp.Compare(a.t, b.t) }) {
			t.Errorf("%s: samples out of order", name)
		}
	}
}

func TestGetRefFindsHeadSeries(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	defer db.Close()
	ls := labels.FromStrings("__name__", "m", "k", "v")
	app := db.Appender(context.Background())
	getRef := app.(storage.GetRef)
	if ref, _ := getRef.GetRef(ls, ls.Hash()); ref != 0 {
		t.Fatalf("unknown series: got ref %d, want 0", ref)
	}
	ref, err := app.Append(0, ls, baseMs(0), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}

	app = db.Appender(context.Background())
	got, stored := app.(storage.GetRef).GetRef(ls, ls.Hash())
	if got != ref || !labels.Equal(stored, ls) {
		t.Fatalf("GetRef: got %d %s, want %d %s", got, stored, ref, ls)
	}
	// Appending by reference alone (empty labels) reaches the same series.
	if _, err := app.Append(got, labels.EmptyLabels(), baseMs(time.Minute), 2); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if s := query(t, db, 0, baseMs(time.Hour))[ls.String()]; len(s) != 2 {
		t.Fatalf("got %v, want two samples", s)
	}
}

func TestClosedDBRefusesCalls(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	ls := labels.FromStrings("__name__", "m")
	app := db.Appender(context.Background())
	if _, err := app.Append(0, ls, baseMs(0), 1); err != nil {
		t.Fatal(err)
	}
	q, err := db.Querier(0, baseMs(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); !errors.Is(err, ErrClosed) {
		t.Errorf("commit after close: got %v, want ErrClosed", err)
	}
	if set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m")); !errors.Is(set.Err(), ErrClosed) {
		t.Errorf("select after close: got %v, want ErrClosed", set.Err())
	}
	if _, _, err := q.LabelNames(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("label names after close: got %v, want ErrClosed", err)
	}
	if err := db.Checkpoint(); !errors.Is(err, ErrClosed) {
		t.Errorf("checkpoint after close: got %v, want ErrClosed", err)
	}
}

// storedFrames returns the sample count of each frame Pebble holds for a
// series' bucket.
func storedFrames(t *testing.T, db *DB, bucket uint32, id uint64) []int {
	t.Helper()
	val, closer, err := db.pdb.Get(keys.Chunk(bucket, id))
	if err != nil {
		t.Fatalf("bucket %d of series %d: %v", bucket, id, err)
	}
	defer closer.Close()
	var counts []int
	for rest := val; len(rest) > 0; {
		var f chunk.Frame
		if f, rest, err = chunk.ReadFrame(rest); err != nil {
			t.Fatal(err)
		}
		samples, err := chunk.Decode(nil, chunk.AppendFrame(nil, f))
		if err != nil {
			t.Fatal(err)
		}
		counts = append(counts, len(samples))
	}
	return counts
}

func TestCompletedBucketsAreCompactedAndLeaveTheHead(t *testing.T) {
	now := base.Add(time.Hour)
	db := openTestDB(t, t.TempDir(), Options{OutOfOrderWindow: 90 * time.Minute, Now: func() time.Time { return now }})
	defer db.Close()
	ls := labels.FromStrings("__name__", "m")
	// 500 samples, then a checkpoint that stores the open bucket as it is.
	var want []sample
	for i := range 500 {
		want = append(want, sample{baseMs(time.Duration(i) * 10 * time.Second), float64(i)})
	}
	appendSamples(t, db, ls, want[:300]...)
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	appendSamples(t, db, ls, want[300:]...)
	// Out of order, inside the window: lands among the stored samples.
	appendSamples(t, db, ls, sample{baseMs(5 * time.Second), -1})
	want = append(want[:1], append([]sample{{baseMs(5 * time.Second), -1}}, want[1:]...)...)

	// The bucket [0h, 2h) completes once the clock passes 2h + the window.
	now = base.Add(2*time.Hour + 91*time.Minute)
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	s := db.head.get(1)
	if s != nil {
		t.Fatalf("series still in the head with %d buckets after its only bucket completed", len(s.mu.buckets))
	}
	if got := storedFrames(t, db, uint32(baseMs(0)/db.bucketMs), 1); !slices.Equal(got, []int{480, 21}) {
		t.Fatalf("stored frames hold %v samples, want full frames [480 21]", got)
	}
	if got := query(t, db, 0, baseMs(3*time.Hour))[ls.String()]; !equalSamples(got, want) {
		t.Fatalf("got %d samples, want %d", len(got), len(want))
	}

	// A late sample for the bucket, still inside the window behind the
	// series' newest sample, brings it back into the head from Pebble.
	appendSamples(t, db, ls, sample{baseMs(15 * time.Second), -2})
	want = append(want[:3], append([]sample{{baseMs(15 * time.Second), -2}}, want[3:]...)...)
	for _, when := range []string{"from the head", "after the next checkpoint"} {
		if got := query(t, db, 0, baseMs(3*time.Hour))[ls.String()]; !equalSamples(got, want) {
			t.Fatalf("%s: got %d samples, want %d", when, len(got), len(want))
		}
		if err := db.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCompactLeavesOnlyLiveData writes samples through several
// checkpoints (each supersedes chunk versions and WAL records), compacts
// and closes. Every sample must then live in the tables: the store reopens
// whole without Pebble's log files, and the tables take less than 2 bytes
// a sample (the superseded WAL records alone took more than 10).
func TestCompactLeavesOnlyLiveData(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, Options{})
	var want []sample
	for round := range 4 {
		for i := range 100 {
			want = append(want, sample{baseMs(time.Duration(round*100+i) * 15 * time.Second), float64(round*1000 + i)})
		}
		for s := range 200 {
			appendSamples(t, db, labels.FromStrings("__name__", "m", "s", strconv.Itoa(s)), want[round*100:]...)
		}
		if err := db.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no Pebble logs to remove (%v): the test no longer tests anything", err)
	}
	for _, l := range logs {
		if err := os.Remove(l); err != nil {
			t.Fatal(err)
		}
	}
	if size, samples := dirSize(t, dir), 200*len(want); size >= 2*int64(samples) {
		t.Fatalf("compacted tables take %d bytes for %d samples", size, samples)
	}
	db = openTestDB(t, dir, Options{})
	defer db.Close()
	got := query(t, db, 0, baseMs(24*time.Hour), labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
	if len(got) != 200 {
		t.Fatalf("%d series after compaction, want 200", len(got))
	}
	for name, samples := range got {
		if !equalSamples(samples, want) {
			t.Fatalf("%s: %d samples after compaction, want %d", name, len(samples), len(want))
		}
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		n += info.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHashCollisionsChain puts three series under one hash, as colliding
// label sets would be, and checks that each is found by its labels and that
// removing any of them keeps the others.
func TestHashCollisionsChain(t *testing.T) {
	for removed := range 3 {
		st := hashStripe{series: map[uint64]*memSeries{}}
		var all []*memSeries
		for i := range 3 {
			s := newMemSeries(uint64(i+1), labels.FromStrings("i", strconv.Itoa(i)), true)
			s.hash = 42
			st.addLocked(s)
			all = append(all, s)
		}
		st.removeLocked(all[removed])
		for i, s := range all {
			got := st.findLocked(s.lset, 42)
			if i == removed && got != nil {
				t.Fatalf("removed series %d still found", i)
			}
			if i != removed && got != s {
				t.Fatalf("after removing %d, series %d not found", removed, i)
			}
		}
	}
}

// TestBackfillCheckpointsEarly writes more buckets than twice the head's
// series, in one go, with the timed checkpoint an hour away: the store must
// checkpoint on its own and drop the completed buckets from the head.
func TestBackfillCheckpointsEarly(t *testing.T) {
	now := base.Add(200 * time.Hour)
	db := openTestDB(t, t.TempDir(), Options{CheckpointInterval: time.Hour, Now: func() time.Time { return now }})
	defer db.Close()
	const series, buckets = 100, 50 // 5000 buckets > minBucketsForCheckpoint
	for i := range series {
		var samples []sample
		for b := range buckets {
			samples = append(samples, sample{baseMs(time.Duration(b) * 2 * time.Hour), float64(b)})
		}
		appendSamples(t, db, labels.FromStrings("__name__", "m", "i", strconv.Itoa(i)), samples...)
	}
	headBuckets := func() int {
		n := 0
		for _, s := range db.head.all() {
			s.mu.Lock()
			n += len(s.mu.buckets)
			s.mu.Unlock()
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for headBuckets() >= series*buckets {
		if time.Now().After(deadline) {
			t.Fatalf("no early checkpoint: the head still holds %d buckets", headBuckets())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Every series closed many buckets at once and then had none: each
	// leaves the head once (the count once went negative and the next
	// checkpoint panicked).
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if n := db.head.count.Load(); n != 0 {
		t.Fatalf("head counts %d series, want 0", n)
	}
}

// TestQueriesHitTheBlockCache guards the cache's budget: Pebble reserves
// each memtable's size from its block cache, and a cache sized without them
// kept nothing, so every query read all its blocks from the files again.
func TestQueriesHitTheBlockCache(t *testing.T) {
	// Enough writes for Pebble to grow its memtables to their full size.
	db := openTestDB(t, t.TempDir(), Options{CacheSize: 4 << 20, MemTableSize: 4 << 20})
	defer db.Close()
	var samples []sample
	for i := range 240 {
		samples = append(samples, sample{baseMs(time.Duration(i) * time.Minute), float64(i)})
	}
	for s := range 2000 {
		appendSamples(t, db, labels.FromStrings("__name__", "m", "s", strconv.Itoa(s)), samples...)
	}
	if err := db.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := labels.MustNewMatcher(labels.MatchEqual, "__name__", "m")
	query(t, db, 0, baseMs(24*time.Hour), m)
	before := db.pdb.Metrics().BlockCache
	if got := query(t, db, 0, baseMs(24*time.Hour), m); len(got) != 2000 {
		t.Fatalf("%d series, want 2000", len(got))
	}
	after := db.pdb.Metrics().BlockCache
	if after.Hits == before.Hits {
		t.Fatal("the query read no blocks: the test no longer tests anything")
	}
	if misses := after.Misses - before.Misses; misses > 0 {
		t.Fatalf("a repeated query missed the block cache %d times (cache holds %d bytes)", misses, after.Size)
	}
}

func TestDiskFullRefusesWritesNotReads(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	defer db.Close()
	ls := labels.FromStrings("__name__", "m")
	appendSamples(t, db, ls, sample{baseMs(0), 1})

	// No file system has an exabyte free.
	db.disk.mu.Lock()
	db.disk.min, db.disk.checked = 1<<60, time.Time{}
	db.disk.mu.Unlock()
	app := db.Appender(context.Background())
	if _, err := app.Append(0, ls, baseMs(time.Minute), 2); err != nil {
		t.Fatal(err)
	}
	err := app.Commit()
	var full *DiskFullError
	if !errors.As(err, &full) || full.RetryAfter() <= 0 {
		t.Fatalf("commit with the disk full: %v", err)
	}
	if got := query(t, db, 0, baseMs(time.Hour)); !equalSamples(got[ls.String()], []sample{{baseMs(0), 1}}) {
		t.Fatalf("reads with the disk full: %v", got)
	}

	// Space returns: the next check lets writes through.
	db.disk.mu.Lock()
	db.disk.min, db.disk.checked = 1, time.Time{}
	db.disk.mu.Unlock()
	appendSamples(t, db, ls, sample{baseMs(time.Minute), 2})
	if got := query(t, db, 0, baseMs(time.Hour)); len(got[ls.String()]) != 2 {
		t.Fatalf("after space returned: %v", got)
	}
}
