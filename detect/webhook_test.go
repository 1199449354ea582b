package detect

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// receiver is a webhook endpoint that fails while down and records what
// it accepts.
type receiver struct {
	down  atomic.Bool
	calls atomic.Int32
	got   chan Notification
	*httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{got: make(chan Notification, 8)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.calls.Add(1)
		if r.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var n Notification
		if err := json.NewDecoder(req.Body).Decode(&n); err != nil {
			t.Error(err)
		}
		r.got <- n
	}))
	t.Cleanup(r.Close)
	return r
}

// testNotifier has a clock the test moves.
func testNotifier(t *testing.T, url string, store *Store) (*notifier, *time.Time) {
	n := newNotifier([]string{url}, store, slog.New(slog.DiscardHandler))
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	n.now = func() time.Time { return now }
	return n, &now
}

func TestWebhookRetriesWithBackoffUntilDelivered(t *testing.T) {
	r := newReceiver(t)
	store := openTestStore(t, t.TempDir())
	n, now := testNotifier(t, r.URL, store)
	r.down.Store(true)
	n.enqueue(Notification{ID: "checkout-v2-1", Verdict: Fail, Reason: "error-ratio: +400%"})
	ctx := context.Background()
	if wait := n.sendDue(ctx); wait != time.Second {
		t.Fatalf("after the first failure the retry is in %s, want 1s", wait)
	}
	if n.sendDue(ctx); r.calls.Load() != 1 {
		t.Fatalf("a retry before it is due: %d calls", r.calls.Load())
	}
	*now = now.Add(time.Second)
	if wait := n.sendDue(ctx); wait != 2*time.Second {
		t.Fatalf("after the second failure the retry is in %s, want 2s", wait)
	}
	r.down.Store(false)
	*now = now.Add(2 * time.Second)
	n.sendDue(ctx)
	if note := <-r.got; note.ID != "checkout-v2-1" || note.Verdict != Fail || r.calls.Load() != 3 {
		t.Fatalf("delivered %+v after %d calls", note, r.calls.Load())
	}
	if left := outbox(t, store); len(left) != 0 {
		t.Fatalf("delivered, yet the outbox holds %+v", left)
	}
}

func TestWebhookGivesUpAfterMaxAge(t *testing.T) {
	r := newReceiver(t)
	r.down.Store(true)
	store := openTestStore(t, t.TempDir())
	n, now := testNotifier(t, r.URL, store)
	n.enqueue(Notification{ID: "old"})
	*now = now.Add(n.maxAge + time.Second)
	n.sendDue(context.Background())
	if left := outbox(t, store); len(left) != 0 || r.calls.Load() != 1 {
		t.Fatalf("after max age: %d calls, outbox %+v", r.calls.Load(), left)
	}
}

// TestWebhookOutboxSurvivesRestart: a delivery that failed before a
// restart is sent by the next process's run loop.
func TestWebhookOutboxSurvivesRestart(t *testing.T) {
	r := newReceiver(t)
	r.down.Store(true)
	dir := t.TempDir()
	store, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := testNotifier(t, r.URL, store)
	first.enqueue(Notification{ID: "checkout-v3-1", Verdict: Pass})
	first.sendDue(context.Background())
	if left := outbox(t, store); len(left) != 1 || left[0].Attempts != 1 {
		t.Fatalf("after a failed attempt the outbox holds %+v", left)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	store = openTestStore(t, dir)
	r.down.Store(false)
	second, now := testNotifier(t, r.URL, store)
	*now = now.Add(time.Hour) // the retry is due
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { second.run(ctx); close(done) }()
	note := <-r.got
	cancel()
	<-done
	if note.ID != "checkout-v3-1" {
		t.Fatalf("delivered %+v", note)
	}
}

func openTestStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func outbox(t *testing.T, s *Store) []delivery {
	t.Helper()
	var out []delivery
	if err := s.eachDelivery(func(_ []byte, d delivery) error { out = append(out, d); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}
