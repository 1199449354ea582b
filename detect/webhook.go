package detect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// Notification is the body POSTed to webhooks when a deployment reaches a
// terminal verdict.
type Notification struct {
	ID      string    `json:"id"`
	Service string    `json:"service"`
	Version string    `json:"version"`
	Verdict Status    `json:"verdict"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
	// Details is the full verdict, metrics and evidence included.
	Details Verdict `json:"details"`
}

// notifier delivers notifications to webhooks from a bounded queue, with
// retries and exponential backoff.
type notifier struct {
	urls     []string
	client   *http.Client
	log      *slog.Logger
	queue    chan Notification
	attempts int
	backoff  time.Duration
}

const notifyQueue = 256

func newNotifier(urls []string, log *slog.Logger) *notifier {
	return &notifier{urls: urls, client: &http.Client{Timeout: 10 * time.Second}, log: log,
		queue: make(chan Notification, notifyQueue), attempts: 6, backoff: time.Second}
}

// enqueue queues a notification without blocking; a full queue drops it
// with a log line rather than stall evaluation.
func (n *notifier) enqueue(note Notification) {
	if len(n.urls) == 0 {
		return
	}
	select {
	case n.queue <- note:
	default:
		n.log.Error("webhook queue full; notification dropped", "id", note.ID, "verdict", note.Verdict)
	}
}

// run delivers queued notifications until ctx ends.
func (n *notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case note := <-n.queue:
			for _, url := range n.urls {
				n.deliver(ctx, url, note)
			}
		}
	}
}

func (n *notifier) deliver(ctx context.Context, url string, note Notification) {
	body, err := json.Marshal(note)
	if err != nil {
		n.log.Error("encode webhook", "err", err)
		return
	}
	wait := n.backoff
	for attempt := 1; ; attempt++ {
		err := n.post(ctx, url, body)
		if err == nil {
			return
		}
		if attempt == n.attempts || ctx.Err() != nil {
			n.log.Error("webhook failed; giving up", "url", url, "id", note.ID, "attempts", attempt, "err", err)
			return
		}
		n.log.Warn("webhook failed; retrying", "url", url, "id", note.ID, "attempt", attempt, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func (n *notifier) post(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}
