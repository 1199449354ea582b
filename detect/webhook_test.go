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

func TestWebhookRetriesUntilDelivered(t *testing.T) {
	var calls atomic.Int32
	got := make(chan Notification, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		var n Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Error(err)
		}
		got <- n
	}))
	defer srv.Close()
	n := newNotifier([]string{srv.URL}, slog.New(slog.DiscardHandler))
	n.backoff = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.run(ctx); close(done) }()
	n.enqueue(Notification{ID: "checkout-v2-1", Verdict: Fail, Reason: "error-ratio: +400%"})
	note := <-got
	cancel()
	<-done
	if note.ID != "checkout-v2-1" || note.Verdict != Fail || calls.Load() != 3 {
		t.Fatalf("delivered %+v after %d calls", note, calls.Load())
	}
}
