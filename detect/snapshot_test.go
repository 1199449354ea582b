package detect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// snapshotService is a service over a fresh store and askedSource, with
// the clock at t0 + 95s, and testDeployment registered.
func snapshotService(t *testing.T, opts Options) (*Service, *Store, *simClock, string) {
	t.Helper()
	store := openTestStore(t, t.TempDir())
	clock := &simClock{now: t0.Add(95 * time.Second)}
	opts.Now, opts.Profiles = clock.Now, []Profile{countProfile()}
	svc, err := NewService(store, askedSource{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	d, err := svc.Register(t.Context(), testDeployment())
	if err != nil {
		t.Fatal(err)
	}
	return svc, store, clock, d.ID
}

// deploymentJSON is what a test encoding makes of a deployment.
var deploymentJSON = NewEncoding(func(d *Deployment) ([]byte, error) { return json.Marshal(d) })

// checkSnapshot fails unless id's snapshot is cached, is what the store
// holds on disk, and encodes to the same bytes. It returns the snapshot.
func checkSnapshot(t *testing.T, store *Store, id, after string) *Snapshot {
	t.Helper()
	snap, err := store.Snapshot(id)
	if err != nil {
		t.Fatalf("after %s: %v", after, err)
	}
	if again, _ := store.Snapshot(id); again != snap {
		t.Errorf("after %s: the snapshot was not cached", after)
	}
	d, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := snap.Encode(deploymentJSON)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("after %s: snapshot\n%s\nstore\n%s", after, got, want)
	}
	return snap
}

// TestSnapshotFollowsEveryWrite writes a deployment through every path
// that writes one, reading its snapshot (and encoding) between writes:
// each read sees the last write, from the cache.
func TestSnapshotFollowsEveryWrite(t *testing.T) {
	// A webhook makes the fail below write deliveries too.
	svc, store, clock, id := snapshotService(t, Options{Webhooks: []string{"http://127.0.0.1:1/"}})
	ctx := t.Context()
	prev := checkSnapshot(t, store, id, "register")
	if d := prev.Deployment(); d.State != Pending || d.Verdict == nil {
		t.Fatalf("registered: %s %+v", d.State, d.Verdict)
	}
	step := func(what string, write func() error, check func(*Deployment) bool) {
		t.Helper()
		clock.Set(clock.Now().Add(10 * time.Second))
		if err := write(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if store.cache.get(id) == nil {
			t.Errorf("%s: the write dropped the cached snapshot", what)
		}
		snap := checkSnapshot(t, store, id, what)
		if snap == prev {
			t.Errorf("%s: the snapshot did not change", what)
		}
		if !check(snap.Deployment()) {
			t.Errorf("%s: snapshot %+v", what, snap.Deployment())
		}
		prev = snap
	}
	step("an evaluation", func() error { _, err := svc.Evaluate(ctx, id); return err },
		func(d *Deployment) bool { return d.Verdict.At.Equal(clock.Now()) })
	step("a stage", func() error { _, err := svc.AddStage(ctx, id, Stage{Note: "2 hosts"}); return err },
		func(d *Deployment) bool { return len(d.Stages) == 1 })
	step("a passed check", func() error {
		_, err := svc.AddCheck(ctx, id, Check{Name: "smoke", Passed: true})
		return err
	}, func(d *Deployment) bool {
		return len(d.Checks) == 1 && d.State == Pending && d.Verdict.At.Equal(clock.Now())
	})
	step("a failed critical check", func() error {
		_, err := svc.AddCheck(ctx, id, Check{Name: "smoke", Critical: true})
		return err
	}, func(d *Deployment) bool { return len(d.Checks) == 2 && d.State == Fail })

	// A finished deployment is not written again: the snapshot stays.
	if _, err := svc.Abort(id, ""); !errors.Is(err, ErrTerminal) {
		t.Fatalf("abort after the fail: %v", err)
	}
	if _, err := svc.Evaluate(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Record(id, Verdict{At: clock.Now(), Verdict: Pass}); err != nil {
		t.Fatal(err)
	}
	if snap := checkSnapshot(t, store, id, "writes refused"); snap != prev || snap.Deployment().State != Fail {
		t.Errorf("a finished deployment's snapshot changed: %+v", snap.Deployment())
	}

	// Abort, and a direct update, on a deployment cached before them.
	svc2, store2, clock2, id2 := snapshotService(t, Options{})
	prev, store, clock, svc, id = checkSnapshot(t, store2, id2, "register"), store2, clock2, svc2, id2
	step("an update", func() error {
		_, err := store.Update(id, func(d *Deployment) error { d.Metadata = map[string]string{"k": "v"}; return nil })
		return err
	}, func(d *Deployment) bool { return d.Metadata["k"] == "v" })
	step("an abort", func() error { _, err := svc.Abort(id, "stopped"); return err },
		func(d *Deployment) bool { return d.State == Aborted && d.Verdict.Reason == "stopped" })
	// The abort is the history's last verdict too.
	if h, err := svc.History(id, 0); err != nil || len(h) == 0 || h[len(h)-1].Verdict != Aborted || h[len(h)-1].Reason != "stopped" {
		t.Fatalf("history after the abort: %+v (%v)", h, err)
	}
}

// TestSnapshotConcurrent races writes of a deployment through Update and
// Record with readers of its snapshot and with evictions, under -race: no
// reader sees a write undone, the writer reads its own writes, and the
// cache ends with the last.
func TestSnapshotConcurrent(t *testing.T) {
	_, store, _, id := snapshotService(t, Options{})
	const writes = 300
	// seq is a snapshot's writes: Update counts in Metadata, Record in the
	// verdict's reason.
	seq := func(d *Deployment) (updates, records int) {
		updates, _ = strconv.Atoi(d.Metadata["seq"])
		if d.Verdict != nil {
			records, _ = strconv.Atoi(d.Verdict.Reason)
		}
		return updates, records
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 4 {
		wg.Go(func() {
			lastU, lastR := 0, 0
			for {
				select {
				case <-done:
					return
				default:
				}
				snap, err := store.Snapshot(id)
				if err != nil {
					errs <- err
					return
				}
				u, r := seq(snap.Deployment())
				if u < lastU || r < lastR {
					errs <- fmt.Errorf("a reader saw writes (%d, %d) after (%d, %d)", u, r, lastU, lastR)
					return
				}
				lastU, lastR = u, r
				b, err := snap.Encode(deploymentJSON)
				if err != nil {
					errs <- err
					return
				}
				var d Deployment
				if err := json.Unmarshal(b, &d); err != nil {
					errs <- err
					return
				}
				if du, dr := seq(&d); du != u || dr != r {
					errs <- fmt.Errorf("the encoding of writes (%d, %d) holds (%d, %d)", u, r, du, dr)
					return
				}
			}
		})
	}
	// Evictions make readers miss and fill while the writes go on. The
	// pause paces them and waits for nothing: an entry must live between
	// two evictions for a stale fill to be read.
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			store.cache.drop(id)
			time.Sleep(50 * time.Microsecond)
		}
	})
	updates, records := 0, 0
	for i := range writes {
		if i%2 == 0 {
			updates++
			_, err := store.Update(id, func(d *Deployment) error {
				d.Metadata = map[string]string{"seq": strconv.Itoa(updates)}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		} else {
			records++
			if _, err := store.Record(id, Verdict{At: t0.Add(time.Duration(i) * time.Second), Verdict: Pending, Reason: strconv.Itoa(records)}); err != nil {
				t.Fatal(err)
			}
		}
		snap, err := store.Snapshot(id)
		if err != nil {
			t.Fatal(err)
		}
		if u, r := seq(snap.Deployment()); u != updates || r != records {
			t.Fatalf("after writes (%d, %d) the snapshot holds (%d, %d)", updates, records, u, r)
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkSnapshot(t, store, id, "the race")
}

// TestSnapshotEncodesOnce reads a snapshot's encoding again and again:
// it is encoded once, and another encoding gets its own bytes.
func TestSnapshotEncodesOnce(t *testing.T) {
	_, store, _, id := snapshotService(t, Options{})
	snap, err := store.Snapshot(id)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	idOnly := NewEncoding(func(d *Deployment) ([]byte, error) { calls++; return []byte(d.ID), nil })
	for range 3 {
		if b, err := snap.Encode(idOnly); err != nil || string(b) != id {
			t.Fatalf("encoded %q, %v; want %q", b, err, id)
		}
	}
	if calls != 1 {
		t.Errorf("encoded %d times, want once", calls)
	}
	if b, err := snap.Encode(deploymentJSON); err != nil || !bytes.HasPrefix(b, []byte(`{"id":`)) {
		t.Errorf("another encoding answered %q, %v", b, err)
	}
}

func TestSnapshotCacheBound(t *testing.T) {
	c := newSnapshotCache()
	for i := range snapshotCacheSize {
		c.put(&Snapshot{id: strconv.Itoa(i)})
	}
	// Reading the oldest makes the second oldest the first out.
	if c.get("0") == nil {
		t.Fatal("0 is not cached")
	}
	c.put(&Snapshot{id: "new"})
	if c.lru.Len() != snapshotCacheSize || len(c.byID) != snapshotCacheSize {
		t.Fatalf("%d entries (%d by ID), want %d", c.lru.Len(), len(c.byID), snapshotCacheSize)
	}
	if c.get("1") != nil || c.get("0") == nil || c.get("new") == nil {
		t.Error("evicted the wrong snapshot: want the least recently read")
	}
}

// TestVerdictDataThrough checks the step-grid time a verdict covers, on a
// pending and on a decided verdict, and that it is RFC 3339 in JSON.
func TestVerdictDataThrough(t *testing.T) {
	svc, _, clock, id := snapshotService(t, Options{})
	d, err := svc.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	// Registered at t0+95s with a 30s step: the grid's last time is t0+90s.
	if d.State != Pending || d.Verdict.DataThrough == nil || !d.Verdict.DataThrough.Equal(t0.Add(90*time.Second)) {
		t.Fatalf("pending: data through %v, want %s", d.Verdict.DataThrough, t0.Add(90*time.Second))
	}
	b, err := json.Marshal(d.Verdict)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"data_through":"2026-03-02T10:01:30Z"`)) {
		t.Errorf("pending verdict JSON: %s", b)
	}
	// At t0+2h2m, a grid time, past the maximum bake: the grid time itself
	// is covered.
	clock.Set(clock.Now().Add(2*time.Hour + 25*time.Second))
	want := t0.Add(2*time.Hour + 2*time.Minute)
	if d, err = svc.Evaluate(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if !d.State.Terminal() || d.Verdict.DataThrough == nil || !d.Verdict.DataThrough.Equal(want) {
		t.Fatalf("decided (%s): data through %v, want %s", d.State, d.Verdict.DataThrough, want)
	}

	svc, _, _, id = snapshotService(t, Options{})
	if d, err = svc.Abort(id, ""); err != nil || d.Verdict.DataThrough != nil {
		t.Fatalf("an abort judged no data: %v, data through %v", err, d.Verdict.DataThrough)
	}

	dep := testDeployment()
	for _, c := range []struct{ now, want time.Duration }{
		{95 * time.Second, 90 * time.Second},
		{10 * time.Second, 0},
		{-40 * time.Second, -60 * time.Second}, // a start up to a minute ahead is allowed
	} {
		if got := Judge(dep, countProfile(), nil, t0.Add(c.now), JudgeOptions{}).DataThrough; got == nil || !got.Equal(t0.Add(c.want)) {
			t.Errorf("judged at start%+v: data through %v, want start%+v", c.now, got, c.want)
		}
	}
}
