package detect

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// prefixSource is the Source of one replay. Each poll of a backtest asks
// the same range queries as the poll before, from the same start to a
// later end; prefixSource keeps each answer and queries only the steps
// after those it has. A step of a range query is computed from the
// samples at or before it alone, so over stored history the result is
// the one a fresh query would give (the backtest-equals-live test holds
// it to that), and a replay costs about one pass over its window instead
// of one per poll. Series are kept in label order, as the PromQL engine
// returns them. It is not safe for concurrent use: a replay polls in turn.
type prefixSource struct {
	src     Source
	entries map[prefixKey]*prefixEntry
}

type prefixKey struct {
	query string
	start int64 // ms
	step  time.Duration
}

type prefixEntry struct {
	last   time.Time // the last step evaluated
	series []Series  // in label order
}

func newPrefixSource(src Source) *prefixSource {
	return &prefixSource{src: src, entries: map[prefixKey]*prefixEntry{}}
}

// QueryRange implements Source.
func (p *prefixSource) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) ([]Series, error) {
	if step <= 0 || !end.After(start) {
		return p.src.QueryRange(ctx, query, start, end, step)
	}
	key := prefixKey{query: query, start: start.UnixMilli(), step: step}
	last := start.Add(end.Sub(start) / step * step)
	e, ok := p.entries[key]
	if !ok {
		series, err := p.src.QueryRange(ctx, query, start, last, step)
		if err != nil {
			return nil, err
		}
		series = slices.Clone(series)
		slices.SortFunc(series, func(a, b Series) int { return labels.Compare(a.Labels, b.Labels) })
		e = &prefixEntry{last: last, series: series}
		p.entries[key] = e
	} else if last.After(e.last) {
		more, err := p.src.QueryRange(ctx, query, e.last.Add(step), last, step)
		if err != nil {
			return nil, err
		}
		e.merge(more)
		e.last = last
	}
	return e.upTo(last.UnixMilli()), nil
}

// merge appends the points of later steps to the series they belong to,
// inserting the series seen for the first time in label order.
func (e *prefixEntry) merge(more []Series) {
	for _, s := range more {
		i, found := slices.BinarySearchFunc(e.series, s.Labels, func(x Series, ls labels.Labels) int { return labels.Compare(x.Labels, ls) })
		if found {
			e.series[i].Points = append(e.series[i].Points, s.Points...)
			continue
		}
		e.series = slices.Insert(e.series, i, Series{Labels: s.Labels, Points: slices.Clone(s.Points)})
	}
}

// upTo returns the series with their points up to lastMs, capped so that
// a caller cannot append into the kept arrays. Series without a point by
// then are left out, as the query would have left them.
func (e *prefixEntry) upTo(lastMs int64) []Series {
	out := make([]Series, 0, len(e.series))
	for _, s := range e.series {
		n, _ := slices.BinarySearchFunc(s.Points, lastMs+1, func(p Point, t int64) int { return cmp.Compare(p.T, t) })
		if n > 0 {
			out = append(out, Series{Labels: s.Labels, Points: s.Points[:n:n]})
		}
	}
	return out
}
