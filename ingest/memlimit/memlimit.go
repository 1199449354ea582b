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
	return fmt.Sprintf("the request needs %d MiB of write memory, more than the limit of %d MiB (--write-memory-limit); send smaller requests", mib(e.Need), mib(e.Limit))
}

// BusyError refuses a reservation that did not fit before its context
// ended: other requests held the budget all along. Front ends answer it
// 503 with Retry-After.
type BusyError struct {
	Need, Held, Limit int64
	Err               error // the context's error
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("overloaded: requests in progress hold %d of the %d MiB of write memory (--write-memory-limit) and %d MiB more did not free up in time; retry later",
		mib(e.Held), mib(e.Limit), mib(e.Need))
}

func (e *BusyError) Unwrap() error { return e.Err }

func mib(n int64) int64 { return (n + 1<<20 - 1) >> 20 }

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

// Reservation is what one request holds of a Limiter, taken in steps as
// the request learns its size and released at once when it is answered.
// Not safe for concurrent use.
type Reservation struct {
	l    *Limiter
	ctx  context.Context
	held int64
}

// Reservation starts an empty reservation whose steps wait until ctx ends.
func (l *Limiter) Reservation(ctx context.Context) *Reservation {
	return &Reservation{l: l, ctx: ctx}
}

// GrowTo makes the reservation total bytes, reserving what it lacks as
// Reserve does; it never shrinks. On error the reservation is unchanged.
func (r *Reservation) GrowTo(total int64) error {
	if total <= r.held {
		return nil
	}
	if err := r.l.Reserve(r.ctx, total-r.held); err != nil {
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
