package opentsdb

import (
	"math"
	"slices"
	"sort"
)

// point is one sample: a Unix time in milliseconds and a value.
type point struct {
	t int64
	v float64
}

// alignDown returns the start of the interval-aligned bucket holding t
// (OpenTSDB's timestamp - timestamp % interval, floored for negative t).
func alignDown(t, interval int64) int64 {
	m := t % interval
	if m < 0 {
		m += interval
	}
	return t - m
}

// downsample merges the points of one series into buckets with ds's
// function, each point stamped with its bucket's start. For "0all" there is
// one bucket, [start, end) of the query, stamped start. Otherwise buckets
// are aligned to the interval; with a fill policy every bucket from the one
// holding from to the one holding to is emitted, empty ones filled. vals is
// scratch space, returned for reuse. Without a fill policy pts is reused.
func downsample(pts []point, ds *downsampleSpec, start, end, from, to int64, vals []float64) ([]point, []float64) {
	if ds.all {
		vals = vals[:0]
		for _, p := range pts {
			if p.t >= start && p.t < end {
				vals = append(vals, p.v)
			}
		}
		if len(vals) == 0 {
			return pts[:0], vals
		}
		v := ds.agg.fn(vals)
		return append(pts[:0], point{start, v}), vals
	}
	iv := ds.interval
	if ds.fill == fillNone {
		// Each bucket consumes at least one point before it is written, so
		// writing in place never overtakes reading.
		out := pts[:0]
		for i := 0; i < len(pts); {
			b := alignDown(pts[i].t, iv)
			vals = vals[:0]
			for ; i < len(pts) && pts[i].t < b+iv; i++ {
				vals = append(vals, pts[i].v)
			}
			out = append(out, point{b, ds.agg.fn(vals)})
		}
		return out, vals
	}
	empty := math.NaN()
	if ds.fill == fillZero {
		empty = 0
	}
	first, lastB := alignDown(from, iv), alignDown(to, iv)
	out := make([]point, 0, (lastB-first)/iv+1)
	i := 0
	for b := first; b <= lastB; b += iv {
		for i < len(pts) && pts[i].t < b {
			i++ // before the first bucket
		}
		vals = vals[:0]
		for ; i < len(pts) && pts[i].t < b+iv; i++ {
			vals = append(vals, pts[i].v)
		}
		v := empty
		if len(vals) > 0 {
			v = ds.agg.fn(vals)
		}
		out = append(out, point{b, v})
	}
	return out, vals
}

// fillBuckets returns how many buckets downsample emits per series with a
// fill policy over [from, to].
func fillBuckets(ds *downsampleSpec, from, to int64) int64 {
	if ds == nil || ds.all || ds.fill == fillNone {
		return 0
	}
	return (alignDown(to, ds.interval)-alignDown(from, ds.interval))/ds.interval + 1
}

// rate turns a series into its per-second rate of change, as OpenTSDB's
// RateSpan: each point but the first becomes (v - prev.v) / seconds since
// prev. For a counter, a decrease is a reset: the point is dropped with
// dropResets, otherwise the increase is counterMax - prev.v + v, and the
// rate is zeroed when it exceeds a positive resetValue. (OpenTSDB also
// computes a first rate against the value 0 at time 0, used only when
// interpolating before the series' second point; Immune has no such point.)
// pts is reused.
func rate(pts []point, o rateOptions) []point {
	if len(pts) == 0 {
		return pts
	}
	out := pts[:0]
	prev := pts[0]
	for _, p := range pts[1:] {
		dt := float64(p.t-prev.t) / 1000
		diff := p.v - prev.v
		r := diff / dt
		if o.counter && diff < 0 {
			if o.dropResets {
				prev = p
				continue
			}
			r = (o.counterMax - prev.v + p.v) / dt
			if o.resetValue > 0 && r > o.resetValue {
				r = 0
			}
		}
		out = append(out, point{p.t, r})
		prev = p
	}
	return out
}

// aggregateWork is how many series values aggregating series over the
// timestamps in [from, to] evaluates, for bounding the work of a query.
func aggregateWork(series [][]point, from, to int64) (timestamps []int64, work int64) {
	for _, s := range series {
		lo := sort.Search(len(s), func(i int) bool { return s[i].t >= from })
		for _, p := range s[lo:] {
			if p.t > to {
				break
			}
			timestamps = append(timestamps, p.t)
		}
	}
	slices.Sort(timestamps)
	timestamps = slices.Compact(timestamps)
	return timestamps, int64(len(timestamps)) * int64(len(series))
}

// aggregate merges the series of one group, as OpenTSDB's
// AggregationIterator: at every timestamp in ts (the union of the series'
// timestamps, see aggregateWork), each series contributes its value there
// or, between its first and last point, the interpolated value that agg
// calls for; with rate, the previous rate instead, whatever agg. vals is
// scratch space, returned for reuse.
func aggregate(series [][]point, ts []int64, agg *aggregator, isRate bool, vals []float64) ([]point, []float64) {
	if len(ts) == 0 {
		return nil, vals
	}
	cur := make([]int, len(series))
	for i, s := range series {
		cur[i] = sort.Search(len(s), func(j int) bool { return s[j].t >= ts[0] })
	}
	out := make([]point, 0, len(ts))
	for _, x := range ts {
		vals = vals[:0]
		for i, s := range series {
			c := cur[i]
			for c < len(s) && s[c].t < x {
				c++
			}
			cur[i] = c
			switch {
			case c < len(s) && s[c].t == x:
				vals = append(vals, s[c].v)
			case c == 0 || c == len(s):
				// Not started yet, or ended.
			case isRate:
				vals = append(vals, s[c-1].v)
			default:
				p0, p1 := s[c-1], s[c]
				switch agg.interp {
				case lerp:
					vals = append(vals, p0.v+float64(x-p0.t)*(p1.v-p0.v)/float64(p1.t-p0.t))
				case zim:
					vals = append(vals, 0)
				case prev:
					vals = append(vals, p0.v)
				}
			}
		}
		out = append(out, point{x, agg.fn(vals)})
	}
	return out, vals
}
