package opentsdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// batch appends data points through one storage appender, taken on the
// first point and released by commit or rollback. Not safe for concurrent
// use: a connection or a request owns one.
type batch struct {
	app  storage.Appendable
	ctx  context.Context
	now  func() time.Time
	skew time.Duration

	a       storage.Appender // nil between transactions
	getRef  storage.GetRef   // a, if it implements it
	maxT    int64            // latest accepted timestamp, ms; set with a
	pending int              // points appended to a

	sb      labels.ScratchBuilder
	scratch labels.Labels // reused for GetRef lookups
}

func newBatch(ctx context.Context, app storage.Appendable, opts *Options) batch {
	return batch{
		app:  app,
		ctx:  ctx,
		now:  opts.Now,
		skew: opts.MaxFutureSkew,
		sb:   labels.NewScratchBuilder(opts.MaxTags + 1),
	}
}

// appendError is why append did not take a valid point.
type appendError struct {
	// rejected is true when the point is refused (from the future, a
	// storage sentinel or the series limit) and the appender is still
	// usable; false for any other storage error.
	rejected bool
	msg      string
	err      error
}

func (e *appendError) Error() string { return e.msg }
func (e *appendError) Unwrap() error { return e.err }

// append adds one point that ParsePut or the JSON decoder validated.
// metric and the tags may alias a buffer that is reused afterwards:
// nothing handed to storage keeps them (see wireString). The result is
// *appendError, not error, so callers read rejected without errors.As;
// compare it with nil before storing it in an error variable.
func (b *batch) append(metric []byte, tags []Tag, t int64, v float64) *appendError {
	if b.a == nil {
		b.a = b.app.Appender(b.ctx)
		b.getRef, _ = b.a.(storage.GetRef)
		b.maxT = b.now().Add(b.skew).UnixMilli()
	}
	if t > b.maxT {
		return &appendError{rejected: true, msg: fmt.Sprintf("timestamp %d is more than %s in the future", t, b.skew)}
	}
	sb := &b.sb
	sb.Reset()
	sb.Add(metricLabel, wireString(metric))
	for _, tag := range tags {
		sb.Add(wireString(tag.Key), wireString(tag.Value))
	}
	sb.Sort()
	var (
		ref storage.SeriesRef
		ls  labels.Labels
	)
	if b.getRef != nil {
		// A known series is appended with the labels storage already
		// holds, so the steady state allocates no labels.
		sb.Overwrite(&b.scratch)
		ref, ls = b.getRef.GetRef(b.scratch, b.scratch.Hash())
	}
	if ref == 0 {
		ls = sb.Labels()
	}
	if _, err := b.a.Append(ref, ls, t, v); err != nil {
		if why := rejection(err); why != "" {
			return &appendError{rejected: true, msg: why, err: err}
		}
		return &appendError{msg: err.Error(), err: err}
	}
	b.pending++
	return nil
}

// rejection describes an Append error that refuses the sample only, or
// returns "" for any other error. These are the sentinels Prometheus'
// receivers treat as the sample's fault.
func rejection(err error) string {
	switch {
	case errors.Is(err, storage.ErrOutOfBounds):
		return "sample rejected by storage: out of bounds (before the retention period, or too far in the future)"
	case errors.Is(err, storage.ErrTooOldSample):
		return "sample rejected by storage: too old (behind the series' newest sample by more than the out-of-order window)"
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return "sample rejected by storage: out of order"
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return "sample rejected by storage: a different value at the same timestamp"
	}
	if limit, ok := errors.AsType[seriesLimitError](err); ok {
		return "new series rejected by storage: " + limit.Error()
	}
	return ""
}

// seriesLimitError is the cardinality contract with storage, the same as
// the remote-write receiver's: an error with a SeriesLimit method anywhere
// in its chain refuses a point of a series new to storage because too many
// are active. Only that point is refused: a retry would be refused alike.
type seriesLimitError interface {
	error
	SeriesLimit() int64
}

// commit commits the open transaction, if any, and returns how many points
// it held. A failed Commit is not followed by Rollback: the Appender
// contract forbids using it again.
func (b *batch) commit() (int, error) {
	if b.a == nil {
		return 0, nil
	}
	a, n := b.a, b.pending
	b.a, b.getRef, b.pending = nil, nil, 0
	if n == 0 {
		return 0, a.Rollback()
	}
	if err := a.Commit(); err != nil {
		return n, err
	}
	return n, nil
}

// rollback discards the open transaction, if any.
func (b *batch) rollback() error {
	if b.a == nil {
		return nil
	}
	a := b.a
	b.a, b.getRef, b.pending = nil, nil, 0
	return a.Rollback()
}
