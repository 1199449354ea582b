package opentsdb

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// aggregateWorkFactor bounds the values one query may interpolate and
// aggregate: unique timestamps × series, summed over groups, may be at most
// this many times MaxPoints. Unaligned raw series make it quadratic.
const aggregateWorkFactor = 10

// checkContextEvery is how many series are read between cancellation checks.
const checkContextEvery = 64

// result is one time series of a /api/query response.
type result struct {
	metric  string
	tags    map[string]string
	aggTags []string
	echo    []byte // the sub query as JSON, with showQuery
	points  []point
	nullNaN bool // fill policy null: NaN is written as null
}

// budget tracks what a request has used of the API's limits.
type budget struct {
	series, maxSeries int
	points, maxPoints int64
	work              int64
}

func (b *budget) addSeries() error {
	b.series++
	if b.series > b.maxSeries {
		return badRequest(fmt.Sprintf("the query selects more than %d time series, the limit per query; narrow it down with tags or filters", b.maxSeries))
	}
	return nil
}

func (b *budget) addPoints(n int64) error {
	b.points += n
	if b.points > b.maxPoints {
		return b.pointsError()
	}
	return nil
}

func (b *budget) pointsError() error {
	return badRequest(fmt.Sprintf("the query reads or fills more than %d data points, the limit per query; shorten the time range, narrow it down with tags or filters, or downsample over longer intervals", b.maxPoints))
}

func (b *budget) addWork(n int64) error {
	b.work += n
	if b.work > aggregateWorkFactor*b.maxPoints {
		return badRequest(fmt.Sprintf("aggregating the query would interpolate more than %d values; downsample so that the series' timestamps line up", aggregateWorkFactor*b.maxPoints))
	}
	return nil
}

// tsSeries is one selected series with its points.
type tsSeries struct {
	lset   labels.Labels
	points []point
}

// execute runs every sub query of q and returns their results in order.
func (a *API) execute(ctx context.Context, q *tsQuery) ([]result, error) {
	b := &budget{maxSeries: a.maxSeries, maxPoints: a.maxPoints}
	var out []result
	for _, sq := range q.queries {
		rs, err := a.executeSub(ctx, q, sq, b)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// fetchRange is the time range read for a sub query: [start, end] widened
// by the lookback, or by the downsampling interval if longer, so that rates
// and interpolation at the edges see neighbouring points (OpenTSDB reads
// whole hour rows around the range for the same reason), and aligned to
// whole buckets. Results are computed over it and cut to [start, end].
func (a *API) fetchRange(q *tsQuery, sq *subQuery) (from, to int64) {
	if sq.ds != nil && sq.ds.all {
		return q.start, q.end
	}
	pad := a.lookback
	from, to = q.start-pad, q.end+pad
	if sq.ds != nil {
		iv := sq.ds.interval
		pad = max(pad, iv)
		from = alignDown(q.start-pad, iv)
		to = alignDown(q.end+pad, iv) + iv - 1
	}
	return from, to
}

func (a *API) executeSub(ctx context.Context, q *tsQuery, sq *subQuery, b *budget) ([]result, error) {
	from, to := a.fetchRange(q, sq)
	series, err := a.selectSeries(ctx, sq, from, to, b)
	if err != nil {
		return nil, err
	}
	if len(series) == 0 {
		// OpenTSDB rejects names it has never seen; data out of range is
		// just an empty result.
		return nil, a.checkNames(ctx, sq)
	}
	// Filled buckets are points too; count them before making them.
	if n := fillBuckets(sq.ds, from, to); n > 0 {
		if n > (b.maxPoints-b.points)/int64(len(series)) {
			return nil, b.pointsError()
		}
		b.points += n * int64(len(series))
	}
	var vals []float64
	for i := range series {
		s := &series[i]
		if sq.ds != nil {
			s.points, vals = downsample(s.points, sq.ds, q.start, q.end, from, to, vals)
		}
		if sq.rate {
			s.points = rate(s.points, sq.rateOpts)
		}
	}
	var echo []byte
	if q.showQuery {
		// Once for all the sub query's results. Plain strings, bools and
		// ints cannot fail to marshal.
		echo, _ = json.Marshal(sq.echo)
	}
	nullNaN := sq.ds != nil && sq.ds.fill == fillNull

	if sq.agg == none {
		var out []result
		for _, s := range series {
			pts := cut(s.points, q.start, q.end)
			if len(pts) == 0 {
				continue
			}
			out = append(out, result{metric: sq.metric, tags: tagsOf(s.lset), aggTags: []string{}, echo: echo, points: pts, nullNaN: nullNaN})
		}
		return out, nil
	}

	var out []result
	for _, g := range groupSeries(series, sq.filters) {
		pts := make([][]point, len(g))
		for i, s := range g {
			pts[i] = s.points
		}
		ts, work := aggregateWork(pts, q.start, q.end)
		if err := b.addWork(work); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var agg []point
		agg, vals = aggregate(pts, ts, sq.agg, sq.rate, vals)
		if len(agg) == 0 {
			continue
		}
		tags, aggTags := commonTags(g)
		out = append(out, result{metric: sq.metric, tags: tags, aggTags: aggTags, echo: echo, points: agg, nullNaN: nullNaN})
	}
	return out, nil
}

// selectSeries reads the series of sq with their points in [from, to]. The
// filters are pushed down as matchers and applied again in Go (matchers are
// exact but for newlines and a regexp, and the Queryable is pluggable),
// with the explicit-tags rule. Series without float samples in range are
// left out; so are NaN samples, which OpenTSDB cannot store, and thus
// Prometheus' stale markers.
func (a *API) selectSeries(ctx context.Context, sq *subQuery, from, to int64, b *budget) ([]tsSeries, error) {
	ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, sq.metric)}
	for _, f := range sq.filters {
		fm, err := f.matchers()
		if err != nil {
			return nil, badRequest(err.Error())
		}
		ms = append(ms, fm...)
	}
	querier, err := a.queryable.Querier(from, to)
	if err != nil {
		return nil, fmt.Errorf("open querier: %w", err)
	}
	defer a.closeQuerier(querier)
	set := querier.Select(ctx, true, &storage.SelectHints{Start: from, End: to}, ms...)

	var (
		out []tsSeries
		it  chunkenc.Iterator
		// Series of one metric tend to have as many points as each other.
		sizeHint int
	)
	for n := 1; set.Next(); n++ {
		if n%checkContextEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		s := set.At()
		lset := s.Labels()
		if !passes(lset, sq) {
			continue
		}
		pts := make([]point, 0, sizeHint)
		it = s.Iterator(it)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt != chunkenc.ValFloat {
				continue // native histograms have no OpenTSDB equivalent
			}
			t, v := it.At()
			if t < from || t > to || value.IsStaleNaN(v) || math.IsNaN(v) {
				continue
			}
			if len(pts) > 0 && t <= pts[len(pts)-1].t {
				continue // a Queryable merging overlapping sources may repeat
			}
			pts = append(pts, point{t, v})
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", lset, err)
		}
		if len(pts) == 0 {
			continue
		}
		if err := b.addSeries(); err != nil {
			return nil, err
		}
		if err := b.addPoints(int64(len(pts))); err != nil {
			return nil, err
		}
		sizeHint = len(pts) + len(pts)/8
		out = append(out, tsSeries{lset: lset, points: pts})
	}
	if err := set.Err(); err != nil {
		return nil, fmt.Errorf("select %s: %w", sq.metric, err)
	}
	return out, nil
}

// passes applies sq's filters and explicit tags to a series' labels.
func passes(lset labels.Labels, sq *subQuery) bool {
	for _, f := range sq.filters {
		if !f.matches(lset) {
			return false
		}
	}
	if !sq.explicitTags {
		return true
	}
	// Exactly the tag keys of the filters, not_key ones aside.
	ok := true
	lset.Range(func(l labels.Label) {
		if l.Name == labels.MetricName || !ok {
			return
		}
		ok = slices.ContainsFunc(sq.filters, func(f *filter) bool { return f.tagk == l.Name && f.typ != filterNotKey })
	})
	if !ok {
		return false
	}
	for _, f := range sq.filters {
		if f.typ != filterNotKey && !lset.Has(f.tagk) {
			return false
		}
	}
	return true
}

// checkNames answers a query that selected nothing: a 400 like OpenTSDB's
// when the metric or a filtered tag key does not exist at all, nil when
// they do (the result is just empty).
func (a *API) checkNames(ctx context.Context, sq *subQuery) error {
	querier, err := a.queryable.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		return fmt.Errorf("open querier: %w", err)
	}
	defer a.closeQuerier(querier)
	if err := a.checkMetric(ctx, querier, sq.metric); err != nil {
		return err
	}
	var tagks []string
	for _, f := range sq.filters {
		if f.typ != filterNotKey && !slices.Contains(tagks, f.tagk) {
			tagks = append(tagks, f.tagk)
		}
	}
	return checkTagks(ctx, querier, tagks)
}

// checkMetric returns OpenTSDB's error for a metric that no series has.
func (a *API) checkMetric(ctx context.Context, querier storage.Querier, metric string) error {
	names, _, err := querier.LabelValues(ctx, labels.MetricName, nil,
		labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metric))
	if err != nil {
		return fmt.Errorf("look up metric %q: %w", metric, err)
	}
	if !slices.Contains(names, metric) {
		return noSuchName("metrics", metric)
	}
	return nil
}

// checkTagks returns OpenTSDB's error for the first tag key no series has.
func checkTagks(ctx context.Context, querier storage.Querier, tagks []string) error {
	if len(tagks) == 0 {
		return nil
	}
	names, _, err := querier.LabelNames(ctx, nil)
	if err != nil {
		return fmt.Errorf("look up tag keys: %w", err)
	}
	for _, k := range tagks {
		if !slices.Contains(names, k) {
			return noSuchName("tagk", k)
		}
	}
	return nil
}

func noSuchName(kind, name string) error {
	return badRequest(fmt.Sprintf("No such name for '%s': '%s'", kind, name))
}

func (a *API) closeQuerier(q storage.Querier) {
	if err := q.Close(); err != nil {
		a.logger.Warn("closing querier", "err", err)
	}
}

// groupSeries groups series by their values of the group-by tag keys, in
// the order of those values. Without group-by, all series form one group.
func groupSeries(series []tsSeries, filters []*filter) [][]tsSeries {
	var keys []string
	for _, f := range filters {
		if f.groupBy && !slices.Contains(keys, f.tagk) {
			keys = append(keys, f.tagk)
		}
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		return [][]tsSeries{series}
	}
	idx := map[string]int{}
	var groups [][]tsSeries
	var groupKeys []labels.Labels
	var sb strings.Builder
	for _, s := range series {
		sb.Reset()
		for _, k := range keys {
			sb.WriteString(s.lset.Get(k))
			sb.WriteByte(0xff)
		}
		i, ok := idx[sb.String()]
		if !ok {
			i = len(groups)
			idx[sb.String()] = i
			groups = append(groups, nil)
			groupKeys = append(groupKeys, s.lset.MatchLabels(true, keys...))
		}
		groups[i] = append(groups[i], s)
	}
	order := make([]int, len(groups))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int { return labels.Compare(groupKeys[x], groupKeys[y]) })
	sorted := make([][]tsSeries, len(groups))
	for i, o := range order {
		sorted[i] = groups[o]
	}
	return sorted
}

// commonTags returns the tags every series of a group has with the same
// value, and the sorted keys every series has with differing values.
// Keys only some series have are in neither, as in OpenTSDB.
func commonTags(group []tsSeries) (map[string]string, []string) {
	tags := tagsOf(group[0].lset)
	aggTags := []string{}
	for k, v := range tags {
		same, all := true, true
		for _, s := range group[1:] {
			sv := s.lset.Get(k)
			if sv == "" {
				all = false
				break
			}
			if sv != v {
				same = false
			}
		}
		switch {
		case !all:
			delete(tags, k)
		case !same:
			delete(tags, k)
			aggTags = append(aggTags, k)
		}
	}
	slices.Sort(aggTags)
	return tags, aggTags
}

// tagsOf returns a series' labels but the metric name.
func tagsOf(lset labels.Labels) map[string]string {
	tags := make(map[string]string, lset.Len())
	lset.Range(func(l labels.Label) {
		if l.Name != labels.MetricName {
			tags[l.Name] = l.Value
		}
	})
	return tags
}

// cut returns the points in [start, end].
func cut(pts []point, start, end int64) []point {
	lo, _ := slices.BinarySearchFunc(pts, start, func(p point, t int64) int { return cmp.Compare(p.t, t) })
	hi, found := slices.BinarySearchFunc(pts, end, func(p point, t int64) int { return cmp.Compare(p.t, t) })
	if found {
		hi++
	}
	return pts[lo:hi]
}
