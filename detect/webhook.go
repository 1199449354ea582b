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

// delivery is one notification owed to one URL, kept in the store's outbox
// until the URL accepts it or it is too old to matter.
type delivery struct {
	URL      string       `json:"url"`
	Note     Notification `json:"note"`
	Attempts int          `json:"attempts"`
	Queued   time.Time    `json:"queued"`
	Next     time.Time    `json:"next"`
}

// notifier delivers notifications to webhooks. Each is written to the
// store's outbox first, so a restart neither loses nor forgets a pending
// delivery; failures are retried with exponential backoff.
type notifier struct {
	urls   []string
	store  *Store
	client *http.Client
	log    *slog.Logger
	now    func() time.Time
	wake   chan struct{}
	// backoff is the first retry delay, doubled up to maxBackoff; a
	// delivery older than maxAge is dropped.
	backoff, maxBackoff, maxAge time.Duration
}

func newNotifier(urls []string, store *Store, log *slog.Logger) *notifier {
	return &notifier{urls: urls, store: store, client: &http.Client{Timeout: 10 * time.Second}, log: log, now: time.Now,
		wake: make(chan struct{}, 1), backoff: time.Second, maxBackoff: 10 * time.Minute, maxAge: 24 * time.Hour}
}

// enqueue writes the notification to the outbox, one delivery per URL, and
// wakes the sender. The deliveries are synced before enqueue returns.
func (n *notifier) enqueue(note Notification) {
	if len(n.urls) == 0 {
		return
	}
	ds := make([]delivery, 0, len(n.urls))
	for _, u := range n.urls {
		ds = append(ds, delivery{URL: u, Note: note, Queued: n.now(), Next: n.now()})
	}
	if err := n.store.addDeliveries(ds); err != nil {
		n.log.Error("store webhook deliveries; notification dropped", "id", note.ID, "verdict", note.Verdict, "err", err)
		return
	}
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run sends due deliveries until ctx ends, including those left by a
// previous run.
func (n *notifier) run(ctx context.Context) {
	if len(n.urls) == 0 {
		return
	}
	for {
		wait := n.sendDue(ctx)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-n.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// sendDue attempts every delivery that is due and returns how long until
// the next one is.
func (n *notifier) sendDue(ctx context.Context) time.Duration {
	next := n.maxBackoff
	err := n.store.eachDelivery(func(key []byte, d delivery) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := n.now()
		if wait := d.Next.Sub(now); wait > 0 {
			next = min(next, wait)
			return nil
		}
		d.Attempts++
		err := n.post(ctx, d)
		switch {
		case err == nil:
			return n.store.deleteDelivery(key)
		case now.Sub(d.Queued) > n.maxAge:
			n.log.Error("webhook failed; giving up", "url", d.URL, "id", d.Note.ID, "attempts", d.Attempts, "err", err)
			return n.store.deleteDelivery(key)
		}
		wait := min(n.backoff<<min(d.Attempts-1, 30), n.maxBackoff)
		d.Next = now.Add(wait)
		next = min(next, wait)
		n.log.Warn("webhook failed; retrying", "url", d.URL, "id", d.Note.ID, "attempt", d.Attempts, "in", wait, "err", err)
		return n.store.putDelivery(key, d)
	})
	if err != nil && ctx.Err() == nil {
		n.log.Error("webhook outbox", "err", err)
	}
	return next
}

func (n *notifier) post(ctx context.Context, d delivery) error {
	body, err := json.Marshal(d.Note)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
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
