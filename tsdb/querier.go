package tsdb

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/immune-dev/immune/tsdb/chunk"
	"github.com/immune-dev/immune/tsdb/internal/keys"
)

// Querier returns a querier over samples with timestamps in [mint, maxt].
func (db *DB) Querier(mint, maxt int64) (storage.Querier, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return &querier{db: db, mint: max(mint, 0), maxt: min(maxt, db.maxTime())}, nil
}

type querier struct {
	db         *DB
	mint, maxt int64
}

// Close releases nothing: each call holds its Pebble iterators only while it runs.
func (q *querier) Close() error { return nil }

// days returns the index days overlapping [mint, maxt].
func (q *querier) days(mint, maxt int64) (first, last uint32, ok bool) {
	if mint > maxt {
		return 0, 0, false
	}
	return dayOf(mint), dayOf(maxt), true
}

// Select returns the series matching ms with their samples in the range.
func (q *querier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	if err := q.db.enter(); err != nil {
		return storage.ErrSeriesSet(err)
	}
	defer q.db.lifeMu.RUnlock()
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	ids, err := q.selectIDs(ctx, mint, maxt, ms)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	set, err := q.db.loadSeries(ctx, ids, mint, maxt, hints != nil && hints.Func == "series")
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	// Series are always sorted by labels: merging callers rely on it and
	// the cost is small next to reading the samples.
	_ = sortSeries
	slices.SortFunc(set, func(a, b *series) int { return labels.Compare(a.lset, b.lset) })
	if hints != nil && hints.Limit > 0 && len(set) > hints.Limit {
		set = set[:hints.Limit]
	}
	return &seriesSet{list: set, idx: -1}
}

// selectIDs returns the sorted IDs of series matching ms on any day in range.
func (q *querier) selectIDs(ctx context.Context, mint, maxt int64, ms []*labels.Matcher) ([]uint64, error) {
	first, last, ok := q.days(mint, maxt)
	if !ok {
		return nil, nil
	}
	r, err := q.db.newIndexReader()
	if err != nil {
		return nil, err
	}
	defer r.close()
	var ids []uint64
	for day, ok := r.nextDay(first, last); ok; day, ok = r.nextDay(day+1, last) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dayIDs, err := r.selectIDs(day, ms)
		if err != nil {
			return nil, err
		}
		ids = unionSorted(ids, dayIDs)
	}
	return ids, nil
}

// LabelNames returns the label names of series matching ms in range.
func (q *querier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	if err := q.db.enter(); err != nil {
		return nil, nil, err
	}
	defer q.db.lifeMu.RUnlock()
	var names []string
	if len(ms) > 0 {
		set, err := q.matchingLabels(ctx, ms)
		if err != nil {
			return nil, nil, err
		}
		seen := map[string]struct{}{}
		for _, ls := range set {
			ls.Range(func(l labels.Label) { seen[l.Name] = struct{}{} })
		}
		for n := range seen {
			names = append(names, n)
		}
	} else {
		first, last, ok := q.days(q.mint, q.maxt)
		if !ok {
			return nil, nil, nil
		}
		r, err := q.db.newIndexReader()
		if err != nil {
			return nil, nil, err
		}
		defer r.close()
		for day, ok := r.nextDay(first, last); ok; day, ok = r.nextDay(day+1, last) {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			dayNames, err := r.names(day)
			if err != nil {
				return nil, nil, err
			}
			names = append(names, dayNames...) // sorted and compacted once below
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	return limitStrings(names, hints), nil, nil
}

// LabelValues returns the values of label name on series matching ms in range.
func (q *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	if err := q.db.enter(); err != nil {
		return nil, nil, err
	}
	defer q.db.lifeMu.RUnlock()
	var values []string
	if len(ms) > 0 {
		set, err := q.matchingLabels(ctx, ms)
		if err != nil {
			return nil, nil, err
		}
		for _, ls := range set {
			if v := ls.Get(name); v != "" {
				values = append(values, v)
			}
		}
	} else {
		first, last, ok := q.days(q.mint, q.maxt)
		if !ok || name == "" {
			return nil, nil, nil
		}
		r, err := q.db.newIndexReader()
		if err != nil {
			return nil, nil, err
		}
		defer r.close()
		for day, ok := r.nextDay(first, last); ok; day, ok = r.nextDay(day+1, last) {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			dayValues, err := r.values(day, name)
			if err != nil {
				return nil, nil, err
			}
			values = append(values, dayValues...)
		}
	}
	slices.Sort(values)
	values = slices.Compact(values)
	return limitStrings(values, hints), nil, nil
}

func limitStrings(s []string, hints *storage.LabelHints) []string {
	if hints != nil && hints.Limit > 0 && len(s) > hints.Limit {
		return s[:hints.Limit]
	}
	return s
}

// matchingLabels returns the label sets of series matching ms in range.
func (q *querier) matchingLabels(ctx context.Context, ms []*labels.Matcher) ([]labels.Labels, error) {
	ids, err := q.selectIDs(ctx, q.mint, q.maxt, ms)
	if err != nil {
		return nil, err
	}
	lr, err := q.db.newLabelReader(ctx)
	if err != nil {
		return nil, err
	}
	defer lr.close()
	out := make([]labels.Labels, 0, len(ids))
	for _, id := range ids {
		ls, err := q.db.labelsOf(id, lr)
		if err != nil {
			return nil, err
		}
		out = append(out, ls)
	}
	return out, nil
}

// labelsOf returns the labels of series id, from the head when it is there.
func (db *DB) labelsOf(id uint64, lr *labelReader) (labels.Labels, error) {
	if s := db.head.get(id); s != nil {
		return s.lset, nil
	}
	return lr.labels(id)
}

// series is one selected series with its stored buckets in time order.
type series struct {
	lset    labels.Labels
	id      uint64
	mint    int64
	maxt    int64
	buckets []bucketData
}

// bucketData is one bucket's frames.
type bucketData struct {
	idx    uint32
	frames []byte
}

// loadSeries reads the labels and, unless labelsOnly, the samples in
// [mint, maxt] of the series ids. The head is read before Pebble: a bucket
// the head drops after this read was written to Pebble before it was
// dropped, so the Pebble iterator opened afterwards sees it.
func (db *DB) loadSeries(ctx context.Context, ids []uint64, mint, maxt int64, labelsOnly bool) ([]*series, error) {
	out := make([]*series, 0, len(ids))
	lr, err := db.newLabelReader(ctx)
	if err != nil {
		return nil, err
	}
	defer lr.close()
	firstB, lastB := uint32(mint/db.bucketMs), uint32(maxt/db.bucketMs)
	for _, id := range ids {
		s := &series{id: id, mint: mint, maxt: maxt}
		if hs := db.head.get(id); hs != nil {
			s.lset = hs.lset
			if !labelsOnly {
				var err error
				if s.buckets, err = hs.snapshot(firstB, lastB); err != nil {
					return nil, err
				}
			}
		} else {
			ls, err := lr.labels(id)
			if err != nil {
				return nil, err
			}
			s.lset = ls
		}
		out = append(out, s)
	}
	if labelsOnly || len(out) == 0 {
		return out, nil
	}
	it, err := db.pdb.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: keys.ChunkBucketPrefix(firstB),
		UpperBound: keys.PrefixEnd(keys.ChunkBucketPrefix(lastB)),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	fromDisk := make([][]bucketData, len(out))
	// Bucket-major, IDs ascending, so every seek moves forward in key
	// order; buckets with no data at all are skipped with one seek.
	for b := firstB; it.SeekGE(keys.ChunkBucketPrefix(b)); b++ {
		var err error
		if b, _, err = keys.ParseChunk(it.Key()); err != nil {
			return nil, err
		}
		for i, s := range out {
			if hasBucket(s.buckets, b) {
				continue // the head's copy is a superset
			}
			key := keys.Chunk(b, s.id)
			if !it.SeekGE(key) || !bytes.Equal(it.Key(), key) {
				continue
			}
			val, err := it.ValueAndErr()
			if err != nil {
				return nil, err
			}
			fromDisk[i] = append(fromDisk[i], bucketData{b, bytes.Clone(val)})
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if b == lastB {
			break
		}
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	for i, s := range out {
		s.buckets = mergeBuckets(s.buckets, fromDisk[i])
	}
	return out, nil
}

func hasBucket(bs []bucketData, idx uint32) bool {
	_, found := slices.BinarySearchFunc(bs, idx, func(b bucketData, idx uint32) int { return cmp.Compare(b.idx, idx) })
	return found
}

// mergeBuckets merges two lists ordered by bucket with no bucket in both.
func mergeBuckets(a, b []bucketData) []bucketData {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := append(a, b...)
	slices.SortFunc(out, func(x, y bucketData) int { return cmp.Compare(x.idx, y.idx) })
	return out
}

// snapshot copies the frames of the head buckets in [first, last].
func (s *memSeries) snapshot(first, last uint32) ([]bucketData, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []bucketData
	for _, b := range s.mu.buckets {
		if b.idx < first || b.idx > last {
			continue
		}
		val, err := b.bytes()
		if err != nil {
			return nil, fmt.Errorf("series %d bucket %d: %w", s.id, b.idx, err)
		}
		out = append(out, bucketData{b.idx, val})
	}
	return out, nil
}

type seriesSet struct {
	list []*series
	idx  int
}

func (ss *seriesSet) Next() bool {
	ss.idx++
	return ss.idx < len(ss.list)
}
func (ss *seriesSet) At() storage.Series                { return ss.list[ss.idx] }
func (ss *seriesSet) Err() error                        { return nil }
func (ss *seriesSet) Warnings() annotations.Annotations { return nil }
func (s *series) Labels() labels.Labels                 { return s.lset }
func (s *series) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	si, ok := it.(*seriesIterator)
	if !ok {
		si = &seriesIterator{}
	}
	si.reset(s)
	return si
}

// seriesIterator iterates over a series' buckets, limited to [mint, maxt].
type seriesIterator struct {
	s       *series
	next    int // next bucket to open
	cur     chunk.Iterator
	started bool
	done    bool
}

func (it *seriesIterator) reset(s *series) {
	it.s, it.next, it.started, it.done = s, 0, false, false
	it.cur.Reset(nil)
}

// openNext opens the next non-empty bucket.
func (it *seriesIterator) openNext() bool {
	if it.next < len(it.s.buckets) {
		it.cur.Reset(it.s.buckets[it.next].frames)
		it.next++
		return true
	}
	it.done = true
	return false
}

func (it *seriesIterator) Next() chunkenc.ValueType {
	if !it.started {
		return it.Seek(it.s.mint)
	}
	for !it.done {
		if it.cur.Next() == chunkenc.ValFloat {
			return it.check()
		}
		if it.cur.Err() != nil {
			it.done = true
			return chunkenc.ValNone
		}
		it.openNext()
	}
	return chunkenc.ValNone
}

func (it *seriesIterator) Seek(t int64) chunkenc.ValueType {
	if it.done {
		return chunkenc.ValNone
	}
	t = max(t, it.s.mint)
	if !it.started {
		it.started = true
		if !it.openNext() {
			return chunkenc.ValNone
		}
	}
	for {
		if it.cur.Seek(t) == chunkenc.ValFloat {
			return it.check()
		}
		if it.cur.Err() != nil || !it.openNext() {
			it.done = true
			return chunkenc.ValNone
		}
	}
}

// check ends the iteration past maxt.
func (it *seriesIterator) check() chunkenc.ValueType {
	if it.cur.AtT() > it.s.maxt {
		it.done = true
		return chunkenc.ValNone
	}
	return chunkenc.ValFloat
}

func (it *seriesIterator) At() (int64, float64) { return it.cur.At() }
func (it *seriesIterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	panic("tsdb: AtHistogram on a float series")
}
func (it *seriesIterator) AtFloatHistogram(*histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	panic("tsdb: AtFloatHistogram on a float series")
}
func (it *seriesIterator) AtT() int64  { return it.cur.AtT() }
func (it *seriesIterator) AtST() int64 { return 0 }
func (it *seriesIterator) Err() error  { return it.cur.Err() }

// indexReader reads the per-day postings.
type indexReader struct {
	it *pebble.Iterator
	kb []byte
}

func (db *DB) newIndexReader() (*indexReader, error) {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{keys.PrefixPostings}, UpperBound: []byte{keys.PrefixPostings + 1}})
	if err != nil {
		return nil, err
	}
	return &indexReader{it: it}, nil
}

func (r *indexReader) close() { r.it.Close() }

// nextDay returns the first day in [from, to] that has postings, so ranges
// reaching back to 1970 cost one seek, not one per day.
func (r *indexReader) nextDay(from, to uint32) (uint32, bool) {
	if from > to || !r.it.SeekGE(keys.PostingsDayPrefix(from)) {
		return 0, false
	}
	day, _, _, _, err := keys.ParsePostings(r.it.Key())
	return day, err == nil && day <= to
}

// postings returns the sorted IDs of series with name=value on day; name ""
// and value "" select every series of the day.
func (r *indexReader) postings(day uint32, name, value string) ([]uint64, error) {
	r.kb = keys.PostingsValuePrefix(r.kb[:0], day, name, value)
	var ids []uint64
	for ok := r.it.SeekGE(r.kb); ok && bytes.HasPrefix(r.it.Key(), r.kb); ok = r.it.Next() {
		if len(r.it.Key()) != len(r.kb)+8 {
			return nil, keys.ErrMalformed
		}
		ids = append(ids, keys.PostingsID(r.it.Key()))
	}
	return ids, r.it.Error()
}

// values returns the values of label name on day, skipping from one value
// to the next without reading their postings.
func (r *indexReader) values(day uint32, name string) ([]string, error) {
	prefix := keys.PostingsNamePrefix(nil, day, name)
	var out []string
	for ok := r.it.SeekGE(prefix); ok && bytes.HasPrefix(r.it.Key(), prefix); {
		_, _, value, _, err := keys.ParsePostings(r.it.Key())
		if err != nil {
			return nil, err
		}
		out = append(out, value)
		r.kb = keys.PostingsValuePrefix(r.kb[:0], day, name, value)
		ok = r.it.SeekGE(keys.PrefixEnd(r.kb))
	}
	return out, r.it.Error()
}

// names returns the label names used on day.
func (r *indexReader) names(day uint32) ([]string, error) {
	prefix := keys.PostingsDayPrefix(day)
	var out []string
	for ok := r.it.SeekGE(prefix); ok && bytes.HasPrefix(r.it.Key(), prefix); {
		_, name, _, _, err := keys.ParsePostings(r.it.Key())
		if err != nil {
			return nil, err
		}
		if name != "" {
			out = append(out, name)
		}
		r.kb = keys.PostingsNamePrefix(r.kb[:0], day, name)
		ok = r.it.SeekGE(keys.PrefixEnd(r.kb))
	}
	return out, r.it.Error()
}

// selectIDs evaluates matchers on one day's postings the way Prometheus
// does: a matcher that matches the empty string also matches series
// without the label, so it subtracts the series whose value it rejects;
// any other matcher intersects the series whose value it accepts.
func (r *indexReader) selectIDs(day uint32, ms []*labels.Matcher) ([]uint64, error) {
	var include [][]uint64
	var exclude []uint64
	for _, m := range ms {
		if m.Matches("") {
			values, err := r.values(day, m.Name)
			if err != nil {
				return nil, err
			}
			for _, v := range values {
				if m.Matches(v) {
					continue
				}
				p, err := r.postings(day, m.Name, v)
				if err != nil {
					return nil, err
				}
				exclude = unionSorted(exclude, p)
			}
			continue
		}
		var values []string
		switch {
		case m.Type == labels.MatchEqual:
			values = []string{m.Value}
		case len(m.SetMatches()) > 0:
			values = m.SetMatches()
		default:
			all, err := r.values(day, m.Name)
			if err != nil {
				return nil, err
			}
			for _, v := range all {
				if m.Matches(v) {
					values = append(values, v)
				}
			}
		}
		var ids []uint64
		for _, v := range values {
			p, err := r.postings(day, m.Name, v)
			if err != nil {
				return nil, err
			}
			ids = unionSorted(ids, p)
		}
		if len(ids) == 0 {
			return nil, nil
		}
		include = append(include, ids)
	}
	var ids []uint64
	if len(include) == 0 {
		all, err := r.postings(day, "", "")
		if err != nil {
			return nil, err
		}
		ids = all
	} else {
		slices.SortFunc(include, func(a, b []uint64) int { return len(a) - len(b) })
		ids = include[0]
		for _, p := range include[1:] {
			ids = intersectSorted(ids, p)
		}
	}
	return subtractSorted(ids, exclude), nil
}

func unionSorted(a, b []uint64) []uint64 {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make([]uint64, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

func intersectSorted(a, b []uint64) []uint64 {
	out := a[:0:0]
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}

func subtractSorted(a, b []uint64) []uint64 {
	if len(b) == 0 {
		return a
	}
	out := make([]uint64, 0, len(a))
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j < len(b) && b[j] == x {
			continue
		}
		out = append(out, x)
	}
	return out
}

var (
	_ storage.GetRef     = (*appender)(nil)
	_ storage.Queryable  = (*DB)(nil)
	_ storage.Appendable = (*DB)(nil)
)
