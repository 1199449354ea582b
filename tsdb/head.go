package tsdb

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/immune-dev/immune/tsdb/chunk"
)

// The head is the in-memory part of the store: every series that has
// received samples recently, with the chunks of the buckets still being
// written. Each head bucket is a superset of what Pebble holds for it, so a
// reader uses the head's copy when there is one and Pebble's otherwise.

const stripeCount = 256

type head struct {
	byHash [stripeCount]hashStripe
	byID   [stripeCount]idStripe
	count  atomic.Int64 // series in the head
}

type hashStripe struct {
	mu sync.Mutex
	// series maps an in-memory labels hash to a series with it; series
	// whose hashes collide are chained through memSeries.nextSameHash.
	// Pointing straight at the series saves a cache miss per lookup over
	// a slice per hash: lookups are a fifth of ingest's CPU.
	series map[uint64]*memSeries
}

type idStripe struct {
	mu     sync.Mutex
	series map[uint64]*memSeries
}

func (h *head) init() {
	for i := range h.byHash {
		h.byHash[i].series = map[uint64]*memSeries{}
		h.byID[i].series = map[uint64]*memSeries{}
	}
}

// get returns the head series with this ID, or nil.
func (h *head) get(id uint64) *memSeries {
	st := &h.byID[id%stripeCount]
	st.mu.Lock()
	s := st.series[id]
	st.mu.Unlock()
	return s
}

// lookup returns the head series for ls, whose in-memory hash (ls.Hash())
// is hash, marked referenced; nil if it is not in the head.
func (h *head) lookup(ls labels.Labels, hash uint64) *memSeries {
	st := &h.byHash[hash%stripeCount]
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.findLocked(ls, hash)
}

func (st *hashStripe) findLocked(ls labels.Labels, hash uint64) *memSeries {
	for s := st.series[hash]; s != nil; s = s.nextSameHash {
		if labels.Equal(s.lset, ls) {
			s.refs.Add(1)
			return s
		}
	}
	return nil
}

// addLocked adds s under s.hash.
func (st *hashStripe) addLocked(s *memSeries) {
	s.nextSameHash = st.series[s.hash]
	st.series[s.hash] = s
}

// removeLocked removes s from its hash's chain.
func (st *hashStripe) removeLocked(s *memSeries) {
	if first := st.series[s.hash]; first == s {
		if s.nextSameHash == nil {
			delete(st.series, s.hash)
		} else {
			st.series[s.hash] = s.nextSameHash
		}
	} else {
		for prev := first; prev != nil; prev = prev.nextSameHash {
			if prev.nextSameHash == s {
				prev.nextSameHash = s.nextSameHash
				break
			}
		}
	}
	s.nextSameHash = nil
}

// lookupOrAdd returns the head series for ls, calling create under the
// stripe lock when it is not in the head, and marks it referenced so that
// garbage collection keeps it until release. A series that would make the
// head hold more than limit series (when limit > 0) is not created: the
// result is a *SeriesLimitError.
func (h *head) lookupOrAdd(ls labels.Labels, limit int64, create func() (*memSeries, error)) (*memSeries, error) {
	hash := ls.Hash()
	st := &h.byHash[hash%stripeCount]
	st.mu.Lock()
	defer st.mu.Unlock()
	if s := st.findLocked(ls, hash); s != nil {
		return s, nil
	}
	if !h.reserve(limit) {
		return nil, &SeriesLimitError{Limit: limit}
	}
	// Creating under the stripe lock makes two appenders of a new series
	// agree on one ID.
	s, err := create()
	if err != nil {
		h.count.Add(-1)
		return nil, err
	}
	s.hash = hash
	s.refs.Add(1)
	st.addLocked(s)
	h.addID(s)
	return s, nil
}

// reserve counts one more series in the head unless that would pass
// limit (none when limit <= 0). Reserving before creating keeps the limit
// exact however many appenders create series at once.
func (h *head) reserve(limit int64) bool {
	for {
		n := h.count.Load()
		if limit > 0 && n >= limit {
			return false
		}
		if h.count.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// getOrLoad returns the head series with this ID, adding it with labels
// from load when absent. Used by WAL replay.
func (h *head) getOrLoad(id uint64, load func() (labels.Labels, error)) (*memSeries, error) {
	if s := h.get(id); s != nil {
		return s, nil
	}
	ls, err := load()
	if err != nil {
		return nil, err
	}
	// No limit: what the WAL holds was accepted, and must be replayed.
	s, err := h.lookupOrAdd(ls, 0, func() (*memSeries, error) { return newMemSeries(id, ls, true), nil })
	if err != nil {
		return nil, err
	}
	s.refs.Add(-1)
	return s, nil
}

func (h *head) addID(s *memSeries) {
	st := &h.byID[s.id%stripeCount]
	st.mu.Lock()
	st.series[s.id] = s
	st.mu.Unlock()
}

// all returns a snapshot of the head's series.
func (h *head) all() []*memSeries {
	out := make([]*memSeries, 0, h.count.Load())
	for i := range h.byID {
		st := &h.byID[i]
		st.mu.Lock()
		for _, s := range st.series {
			out = append(out, s)
		}
		st.mu.Unlock()
	}
	return out
}

// gc removes s from the head if it has no buckets and no appender holds it.
// s must be in the head: a second call for a removed series would count it
// out twice.
func (h *head) gc(s *memSeries) bool {
	st := &h.byHash[s.hash%stripeCount]
	st.mu.Lock()
	defer st.mu.Unlock()
	s.mu.Lock()
	idle := len(s.mu.buckets) == 0 && s.refs.Load() == 0
	s.mu.Unlock()
	if !idle {
		return false
	}
	st.removeLocked(s)
	ist := &h.byID[s.id%stripeCount]
	ist.mu.Lock()
	delete(ist.series, s.id)
	ist.mu.Unlock()
	h.count.Add(-1)
	return true
}

// memSeries is one series in the head.
type memSeries struct {
	id   uint64
	lset labels.Labels
	hash uint64 // in-memory labels hash, for the byHash stripes
	// nextSameHash chains series whose hashes collide; guarded by the
	// byHash stripe's lock.
	nextSameHash *memSeries

	// refs counts appenders holding the series; gc skips referenced series.
	refs atomic.Int32
	// persisted is set once the series' keys are known to be in Pebble.
	persisted atomic.Bool

	mu struct {
		sync.Mutex
		maxT    int64         // newest sample timestamp
		buckets []*headBucket // open buckets, by index
		days    [4]uint32     // days whose postings are known written
		nDays   int
	}
}

func newMemSeries(id uint64, ls labels.Labels, persisted bool) *memSeries {
	s := &memSeries{id: id, lset: ls}
	s.mu.maxT = math.MinInt64
	s.persisted.Store(persisted)
	return s
}

// dayIndexedLocked reports whether the postings of day are known written.
func (s *memSeries) dayIndexedLocked(day uint32) bool {
	return slices.Contains(s.mu.days[:s.mu.nDays], day)
}

// markDayLocked records that the postings of day are written, forgetting the
// oldest remembered day when full (it is only an optimisation: forgetting a
// day rewrites its postings, which is idempotent).
func (s *memSeries) markDayLocked(day uint32) {
	if s.dayIndexedLocked(day) {
		return
	}
	if s.mu.nDays < len(s.mu.days) {
		s.mu.days[s.mu.nDays] = day
		s.mu.nDays++
		return
	}
	copy(s.mu.days[:], s.mu.days[1:])
	s.mu.days[len(s.mu.days)-1] = day
}

// bucketLocked returns the open bucket idx, or nil.
func (s *memSeries) bucketLocked(idx uint32) *headBucket {
	for _, b := range s.mu.buckets {
		if b.idx == idx {
			return b
		}
	}
	return nil
}

// addBucketLocked inserts b keeping the buckets ordered.
func (s *memSeries) addBucketLocked(b *headBucket) {
	i, _ := slices.BinarySearchFunc(s.mu.buckets, b.idx, func(x *headBucket, idx uint32) int {
		return int(int64(x.idx) - int64(idx))
	})
	s.mu.buckets = slices.Insert(s.mu.buckets, i, b)
}

func (s *memSeries) removeBucketLocked(b *headBucket) {
	if i := slices.Index(s.mu.buckets, b); i >= 0 {
		s.mu.buckets = slices.Delete(s.mu.buckets, i, i+1)
	}
}

// headBucket holds a series' samples for one time bucket: in-order samples
// in a frame builder and out-of-order ones aside until the next compaction.
type headBucket struct {
	idx     uint32
	builder *chunk.Builder
	samples int            // samples in builder
	ooo     []chunk.Sample // out-of-order samples, newest write last
	dirty   bool           // changed since last written to Pebble
}

func newHeadBucket(idx uint32) (*headBucket, error) {
	builder, err := chunk.NewBuilder(chunk.DefaultEncoding)
	if err != nil {
		return nil, err
	}
	return &headBucket{idx: idx, builder: builder}, nil
}

// load fills an empty bucket with stored frames.
func (b *headBucket) load(frames []byte) error {
	samples, err := chunk.Decode(nil, frames)
	if err != nil {
		return err
	}
	for _, s := range samples {
		b.insert(s.T, s.V)
	}
	b.dirty = false
	return nil
}

// insert adds a sample. An exact duplicate of the newest sample is a no-op;
// anything else not newer goes aside as out-of-order and, at compaction,
// replaces any sample at the same timestamp (last write wins).
func (b *headBucket) insert(t int64, v float64) {
	if b.samples == 0 || t > b.builder.MaxT() {
		b.builder.Append(t, v)
		b.samples++
		b.dirty = true
		return
	}
	if t == b.builder.MaxT() && len(b.ooo) == 0 && b.lastValueBits() == math.Float64bits(v) {
		return
	}
	b.ooo = append(b.ooo, chunk.Sample{T: t, V: v})
	b.dirty = true
}

func (b *headBucket) lastValueBits() uint64 {
	return math.Float64bits(b.builder.LastValue())
}

// compact rewrites the bucket with the out-of-order samples merged in.
func (b *headBucket) compact() error {
	samples, err := chunk.Decode(nil, b.builder.AppendTo(nil))
	if err != nil {
		return err
	}
	samples = mergeSamples(samples, b.ooo)
	nb, err := chunk.NewBuilder(b.builder.Encoding())
	if err != nil {
		return err
	}
	*b = headBucket{idx: b.idx, builder: nb, dirty: true}
	for _, s := range samples {
		b.insert(s.T, s.V)
	}
	return nil
}

// bytes returns the bucket's frames as stored in Pebble, compacting first
// when there are out-of-order samples.
func (b *headBucket) bytes() ([]byte, error) {
	if len(b.ooo) > 0 {
		if err := b.compact(); err != nil {
			return nil, err
		}
	}
	return b.builder.AppendTo(nil), nil
}

// mergeSamples merges sorted samples with later writes in arrival order;
// for equal timestamps the later write wins.
func mergeSamples(sorted, later []chunk.Sample) []chunk.Sample {
	if len(later) == 0 {
		return sorted
	}
	later = slices.Clone(later)
	// Stable, so among equal timestamps the last written stays last.
	slices.SortStableFunc(later, func(a, b chunk.Sample) int { return cmp.Compare(a.T, b.T) })
	out := make([]chunk.Sample, 0, len(sorted)+len(later))
	i, j := 0, 0
	for i < len(sorted) || j < len(later) {
		switch {
		case j == len(later) || (i < len(sorted) && sorted[i].T < later[j].T):
			out = append(out, sorted[i])
			i++
		default:
			t := later[j].T
			for j+1 < len(later) && later[j+1].T == t {
				j++
			}
			out = append(out, later[j])
			j++
			for i < len(sorted) && sorted[i].T == t {
				i++
			}
		}
	}
	return out
}
