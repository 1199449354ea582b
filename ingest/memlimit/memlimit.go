// Package memlimit bounds the memory the write path holds at once. The
// front ends share one Limiter: before a request reads its body, and again
// once it knows how large the body decodes, it reserves the bytes it will
// hold, waiting its turn (first come, first served) while others hold the
// budget, and releases them when it is answered. A request that cannot get
// its bytes in time is refused with a retryable status rather than
// allocating past the limit, so a burst of large requests slows the
// senders instead of ending the process.
package memlimit

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Limiter is a byte budget shared by concurrent requests. A nil *Limiter
// reserves nothing and never waits, for front ends used without one.
type Limiter struct {
	sem   *semaphore.Weighted
	limit int64
	held  atomic.Int64
}

// New returns a Limiter of limit bytes; limit must be positive.
func New(limit int64) *Limiter {
	return &Limiter{sem: semaphore.NewWeighted(limit), limit: limit}
}

// TooLargeError refuses a reservation larger than the whole budget: it
// could never be granted, so waiting for it would only hold others up.
type TooLargeError struct {
	Need, Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the request needs %s of write memory, more than the limit of %s (--write-memory-limit); send smaller requests", size(e.Need), size(e.Limit))
}

// BusyError refuses a reservation that did not fit before its context
// ended: other requests held the budget all along. Front ends answer it
// 503 with Retry-After.
type BusyError struct {
	Need, Held, Limit int64
	Err               error // the context's error
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("overloaded: requests in progress hold %s of the %s of write memory (--write-memory-limit) and %s did not free up in time; retry later",
		size(e.Held), size(e.Limit), size(e.Need))
}

func (e *BusyError) Unwrap() error { return e.Err }

// size renders n bytes in MiB, rounded up, or in bytes below 1 MiB.
func size(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d MiB", (n+1<<20-1)>>20)
}

// Reserve takes n bytes of the budget, waiting until they are free or ctx
// ends. The error is a *TooLargeError or a *BusyError; on error nothing is
// held. Every successful Reserve must be matched by Release(n).
func (l *Limiter) Reserve(ctx context.Context, n int64) error {
	if l == nil || n <= 0 {
		return nil
	}
	if n > l.limit {
		return &TooLargeError{Need: n, Limit: l.limit}
	}
	if err := l.sem.Acquire(ctx, n); err != nil {
		return &BusyError{Need: n, Held: l.held.Load(), Limit: l.limit, Err: err}
	}
	l.held.Add(n)
	return nil
}

// Release returns n bytes taken by Reserve.
func (l *Limiter) Release(n int64) {
	if l == nil || n <= 0 {
		return
	}
	l.held.Add(-n)
	l.sem.Release(n)
}

// Reservation is what one request holds of a Limiter, resized as the
// request learns its size and released at once when it is answered. Not
// safe for concurrent use.
type Reservation struct {
	l    *Limiter
	ctx  context.Context
	wait time.Duration
	held int64
}

// Reservation starts an empty reservation. Each resize that has to wait
// for room waits up to wait, and no longer than ctx.
func (l *Limiter) Reservation(ctx context.Context, wait time.Duration) *Reservation {
	return &Reservation{l: l, ctx: ctx, wait: wait}
}

// Resize makes the reservation total bytes. What it lacks is taken at
// once if it is free and nobody waits before it; otherwise the reservation
// gives back what it holds and waits for all of total, so that a request
// waiting for more never holds bytes that the requests ahead of it wait
// for. A total beyond the whole budget is a *TooLargeError at once, and a
// wait that ends first a *BusyError; either way the reservation then holds
// nothing.
func (r *Reservation) Resize(total int64) error {
	switch {
	case r.l == nil || total == r.held:
		return nil
	case total < r.held:
		r.l.Release(r.held - total)
		r.held = total
		return nil
	case total > r.l.limit:
		r.Release()
		return &TooLargeError{Need: total, Limit: r.l.limit}
	case r.l.sem.TryAcquire(total - r.held):
		r.l.held.Add(total - r.held)
		r.held = total
		return nil
	}
	r.Release()
	ctx, cancel := context.WithTimeout(r.ctx, r.wait)
	defer cancel()
	if err := r.l.Reserve(ctx, total); err != nil {
		return err
	}
	r.held = total
	return nil
}

// Held is the number of bytes the reservation holds.
func (r *Reservation) Held() int64 { return r.held }

// Release gives back everything the reservation holds.
func (r *Reservation) Release() {
	r.l.Release(r.held)
	r.held = 0
}

// Held is the number of bytes reserved now.
func (l *Limiter) Held() int64 {
	if l == nil {
		return 0
	}
	return l.held.Load()
}

// Limit is the size of the budget in bytes, 0 for a nil Limiter.
func (l *Limiter) Limit() int64 {
	if l == nil {
		return 0
	}
	return l.limit
}
