package tsdb

import (
	"context"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-dev/immune/tsdb/internal/keys"
)

// Appender returns an appender collecting samples until Commit, which makes
// them durable (synced) in one Pebble batch before returning.
func (db *DB) Appender(ctx context.Context) storage.Appender {
	b := appendBufferPool.Get().(*appendBuffers)
	return &appender{db: db, ctx: ctx, held: b.held, samples: b.samples, targets: b.targets, postings: b.postings, encBuf: b.encBuf}
}

// appendBuffers are an appender's working slices, kept across appenders:
// each request has an appender of its own, and growing its slices from
// nothing took a tenth of the CPU of remote-write ingest.
type appendBuffers struct {
	held     []*memSeries
	samples  []walSample
	targets  []*memSeries
	postings []seriesDay
	encBuf   []byte
}

var appendBufferPool = sync.Pool{New: func() any { return new(appendBuffers) }}

// maxPooledSamples bounds the buffers kept in the pool, so that one huge
// request does not pin its memory.
const maxPooledSamples = 1 << 16

type appender struct {
	db  *DB
	ctx context.Context
	// held are the series this appender references (a series may appear
	// more than once: each entry is one reference, dropped by release).
	held     []*memSeries
	last     *memSeries // the series of the last GetRef or Append
	minT     int64      // oldest timestamp the retention admits; 0 until first Append
	samples  []walSample
	targets  []*memSeries // the series of samples[i]
	postings []seriesDay
	metadata []metadataUpdate
	encBuf   []byte
}

type seriesDay struct {
	s   *memSeries
	day uint32
}

// Append adds a float sample. Samples older than the series' newest by
// more than the out-of-order window are rejected with
// storage.ErrTooOldSample; negative timestamps and those older than the
// retention with storage.ErrOutOfBounds.
func (a *appender) Append(ref storage.SeriesRef, ls labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	db := a.db
	if a.minT == 0 {
		// Once per appender: reading the clock per sample is measurable.
		a.minT = max(db.opts.Now().Add(-db.opts.Retention).UnixMilli(), 0)
	}
	if t < a.minT || t > db.maxTime() {
		return 0, storage.ErrOutOfBounds
	}
	s, err := a.seriesFor(ref, ls)
	if err != nil {
		return 0, err
	}
	day := dayOf(t)
	s.mu.Lock()
	tooOld := s.mu.maxT != minTime && t < s.mu.maxT-db.opts.OutOfOrderWindow.Milliseconds()
	needPostings := !tooOld && !s.dayIndexedLocked(day)
	s.mu.Unlock()
	if tooOld {
		return storage.SeriesRef(s.id), storage.ErrTooOldSample
	}
	// Samples of one series usually come together: skip repeats of the
	// postings just staged (any other repeat is an idempotent rewrite).
	if needPostings && (len(a.postings) == 0 || a.postings[len(a.postings)-1] != seriesDay{s, day}) {
		a.postings = append(a.postings, seriesDay{s, day})
	}
	a.samples = append(a.samples, walSample{id: s.id, t: t, v: v})
	a.targets = append(a.targets, s)
	return storage.SeriesRef(s.id), nil
}

// seriesFor returns the head series for ref or, when ref is unknown to this
// appender, for ls, creating it if needed.
func (a *appender) seriesFor(ref storage.SeriesRef, ls labels.Labels) (*memSeries, error) {
	if ref != 0 {
		if a.last != nil && ref == storage.SeriesRef(a.last.id) {
			return a.last, nil
		}
		// Any other ref is only a hint: the labels decide.
	}
	if _, dup := ls.HasDuplicateLabelNames(); dup || ls.IsEmpty() || ls.Has("") {
		return nil, fmt.Errorf("%w: %s", ErrInvalidLabels, ls)
	}
	s, err := a.db.head.lookupOrAdd(ls, a.db.opts.MaxActiveSeries, func() (*memSeries, error) {
		if err := a.db.enter(); err != nil {
			return nil, err
		}
		defer a.db.lifeMu.RUnlock()
		enc := encodeLabels(nil, ls)
		id, found, err := a.db.lookupSeriesID(stableHash(enc), enc)
		if err != nil {
			return nil, fmt.Errorf("look up series: %w", err)
		}
		if !found {
			id = a.db.nextID.Add(1)
		}
		return newMemSeries(id, ls, found), nil
	})
	if err != nil {
		return nil, err
	}
	a.last = a.hold(s)
	return a.last, nil
}

// hold records a reference the appender took on s, for release.
func (a *appender) hold(s *memSeries) *memSeries {
	a.held = append(a.held, s)
	return s
}

// GetRef implements storage.GetRef: it returns the ID and stored labels of
// a series already in the head, so a caller can append by reference without
// building labels the store would keep. hash must be ls.Hash().
func (a *appender) GetRef(ls labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	s := a.db.head.lookup(ls, hash)
	if s == nil {
		return 0, labels.EmptyLabels()
	}
	a.last = a.hold(s)
	return storage.SeriesRef(a.last.id), a.last.lset
}

// Commit writes the samples, any new series and postings, and metadata in
// one synced Pebble batch, then applies the samples to the head.
func (a *appender) Commit() error {
	defer a.release()
	db := a.db
	if len(a.samples) == 0 && len(a.metadata) == 0 {
		return nil
	}
	if err := db.enter(); err != nil {
		return err
	}
	defer db.lifeMu.RUnlock()
	if err := db.fatalErr(); err != nil {
		return fmt.Errorf("tsdb: refusing writes: %w", err)
	}
	if err := db.disk.check(); err != nil {
		return err
	}
	if err := a.ctx.Err(); err != nil {
		return err
	}
	batch := db.pdb.NewBatch()
	defer batch.Close()
	for _, s := range a.held {
		if !s.persisted.Load() {
			a.encBuf = encodeLabels(a.encBuf[:0], s.lset)
			if err := batch.Set(keys.SeriesKey(stableHash(a.encBuf), s.id), a.encBuf, nil); err != nil {
				return err
			}
			if err := batch.Set(keys.SeriesID(s.id), a.encBuf, nil); err != nil {
				return err
			}
		}
	}
	var kb []byte
	for _, p := range a.postings {
		kb = keys.Postings(kb[:0], p.day, "", "", p.s.id) // all-series postings
		if err := batch.Set(kb, nil, nil); err != nil {
			return err
		}
		var err error
		p.s.lset.Range(func(l labels.Label) {
			if err == nil {
				kb = keys.Postings(kb[:0], p.day, l.Name, l.Value, p.s.id)
				err = batch.Set(kb, nil, nil)
			}
		})
		if err != nil {
			return err
		}
	}
	if err := db.meta.stage(batch, a.metadata); err != nil {
		return err
	}

	db.applyMu.RLock()
	defer db.applyMu.RUnlock()
	if len(a.samples) > 0 {
		a.encBuf = appendWALRecord(a.encBuf[:0], a.samples)
		if err := batch.Set(keys.WAL(db.seq.Add(1)), a.encBuf, nil); err != nil {
			return err
		}
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	db.meta.apply(a.metadata)
	for _, s := range a.held {
		s.persisted.Store(true)
	}
	for _, p := range a.postings {
		p.s.mu.Lock()
		p.s.markDayLocked(p.day)
		p.s.mu.Unlock()
	}
	for i, smp := range a.samples {
		if err := db.applySample(a.targets[i], smp.t, smp.v); err != nil {
			// The samples are durable in the WAL; the head is not. Stop
			// accepting writes so the WAL is kept for the next start.
			db.setFatal(err)
			return fmt.Errorf("apply committed samples: %w", err)
		}
	}
	return nil
}

// Rollback discards the appender's samples.
func (a *appender) Rollback() error {
	a.release()
	return nil
}

func (a *appender) release() {
	for _, s := range a.held {
		s.refs.Add(-1)
	}
	if cap(a.samples) <= maxPooledSamples && cap(a.held) <= maxPooledSamples {
		// Cleared so that pooled buffers keep no series alive.
		clear(a.held)
		clear(a.targets)
		clear(a.postings)
		appendBufferPool.Put(&appendBuffers{held: a.held[:0], samples: a.samples[:0], targets: a.targets[:0],
			postings: a.postings[:0], encBuf: a.encBuf[:0]})
	}
	a.held, a.last, a.samples, a.targets, a.postings, a.metadata, a.encBuf = nil, nil, nil, nil, nil, nil, nil
}

// SetOptions is a no-op: the DB has no per-appender options.
func (a *appender) SetOptions(*storage.AppendOptions) {}

// AppendExemplar drops exemplars: they are not stored.
func (a *appender) AppendExemplar(ref storage.SeriesRef, _ labels.Labels, _ exemplar.Exemplar) (storage.SeriesRef, error) {
	return ref, storage.ErrExemplarsDisabled
}

// AppendHistogram rejects native histograms, which are not stored.
func (a *appender) AppendHistogram(ref storage.SeriesRef, _ labels.Labels, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, ErrHistogramsUnsupported
}

// AppendHistogramSTZeroSample rejects native histograms, which are not stored.
func (a *appender) AppendHistogramSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, ErrHistogramsUnsupported
}

// AppendSTZeroSample ignores start-timestamp zero samples: start timestamps
// are not stored, and a synthetic zero would change rate() results.
func (a *appender) AppendSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64) (storage.SeriesRef, error) {
	return ref, nil
}

// UpdateMetadata records the metadata of the series' metric family.
func (a *appender) UpdateMetadata(ref storage.SeriesRef, ls labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	if family := metricFamily(ls.Get(labels.MetricName), m); family != "" && a.db.meta.changed(family, m) {
		a.metadata = append(a.metadata, metadataUpdate{family, m})
	}
	return ref, nil
}
