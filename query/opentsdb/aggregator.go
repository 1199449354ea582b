package opentsdb

import (
	"maps"
	"math"
	"slices"
	"sort"
)

// interpolation is what a series contributes to a group at a timestamp
// where it has no point of its own but has points before and after it
// (OpenTSDB's Aggregators.Interpolation). Before its first point and after
// its last a series contributes nothing.
type interpolation uint8

const (
	// lerp interpolates linearly between the neighbouring points.
	lerp interpolation = iota
	// zim contributes zero ("zero if missing").
	zim
	// skip leaves the series out. OpenTSDB substitutes the type's maximum
	// (mimmin) or minimum (mimmax), which the min or max then ignores.
	skip
	// prev contributes the previous point's value (pfsum).
	prev
)

// aggregator is one of OpenTSDB's aggregation functions. The same function
// merges the values of a downsampling bucket and the values of a group's
// series at one timestamp.
type aggregator struct {
	name   string
	interp interpolation
	// fn computes the aggregate of vs, which is never empty. It may reorder
	// vs. NaN values (empty buckets of the nan and null fill policies) are
	// skipped by every function but first, last and mult, as in OpenTSDB.
	fn func(vs []float64) float64
}

// none is OpenTSDB's "none" aggregator: no group-by, one result per series.
// It has no function and cannot downsample.
var none = &aggregator{name: "none", interp: zim}

// aggregators are OpenTSDB 2.4's built-in aggregators by name.
var aggregators = func() map[string]*aggregator {
	m := map[string]*aggregator{
		"none":   none,
		"sum":    {interp: lerp, fn: sum},
		"zimsum": {interp: zim, fn: sum},
		"pfsum":  {interp: prev, fn: sum},
		"min":    {interp: lerp, fn: minimum},
		"mimmin": {interp: skip, fn: minimum},
		"max":    {interp: lerp, fn: maximum},
		"mimmax": {interp: skip, fn: maximum},
		"avg":    {interp: lerp, fn: avg},
		"median": {interp: lerp, fn: median},
		"dev":    {interp: lerp, fn: dev},
		"mult":   {interp: lerp, fn: mult},
		"count":  {interp: zim, fn: count},
		"first":  {interp: zim, fn: func(vs []float64) float64 { return vs[0] }},
		"last":   {interp: zim, fn: func(vs []float64) float64 { return vs[len(vs)-1] }},
	}
	for _, p := range []struct {
		name string
		q    float64
	}{{"50", 50}, {"75", 75}, {"90", 90}, {"95", 95}, {"99", 99}, {"999", 99.9}} {
		m["p"+p.name] = &aggregator{interp: lerp, fn: percentileFunc(p.q, legacy)}
		m["ep"+p.name+"r3"] = &aggregator{interp: lerp, fn: percentileFunc(p.q, r3)}
		m["ep"+p.name+"r7"] = &aggregator{interp: lerp, fn: percentileFunc(p.q, r7)}
	}
	for name, a := range m {
		a.name = name
	}
	return m
}()

// aggregatorNames are the names of all aggregators, sorted: the
// /api/aggregators reply, which must not be modified.
var aggregatorNames = slices.Sorted(maps.Keys(aggregators))

func sum(vs []float64) float64 {
	s, n := 0.0, 0
	for _, v := range vs {
		if !math.IsNaN(v) {
			s += v
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return s
}

func minimum(vs []float64) float64 {
	m := math.Inf(1)
	for _, v := range vs {
		if v < m { // false for NaN
			m = v
		}
	}
	if math.IsInf(m, 1) && !slices.Contains(vs, math.Inf(1)) {
		return math.NaN()
	}
	return m
}

func maximum(vs []float64) float64 {
	m := math.Inf(-1)
	for _, v := range vs {
		if v > m {
			m = v
		}
	}
	if math.IsInf(m, -1) && !slices.Contains(vs, math.Inf(-1)) {
		return math.NaN()
	}
	return m
}

func avg(vs []float64) float64 {
	s, n := 0.0, 0
	for _, v := range vs {
		if !math.IsNaN(v) {
			s += v
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return s / float64(n)
}

// median returns the upper median, as OpenTSDB does.
func median(vs []float64) float64 {
	vs = dropNaN(vs)
	if len(vs) == 0 {
		return math.NaN()
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

// dev is the population standard deviation by Welford's method, as in
// OpenTSDB (one value gives 0).
func dev(vs []float64) float64 {
	n := 0
	mean, m2 := 0.0, 0.0
	for _, v := range vs {
		if math.IsNaN(v) {
			continue
		}
		n++
		d := v - mean
		mean += d / float64(n)
		m2 += d * (v - mean)
	}
	if n == 0 {
		return math.NaN()
	}
	return math.Sqrt(m2 / float64(n))
}

func mult(vs []float64) float64 {
	p := 1.0
	for _, v := range vs {
		p *= v
	}
	return p
}

func count(vs []float64) float64 {
	n := 0
	for _, v := range vs {
		if !math.IsNaN(v) {
			n++
		}
	}
	return float64(n)
}

// dropNaN removes NaNs from vs in place.
func dropNaN(vs []float64) []float64 {
	out := vs[:0]
	for _, v := range vs {
		if !math.IsNaN(v) {
			out = append(out, v)
		}
	}
	return out
}

// estimation is how a percentile is estimated from a sample, named after
// Apache Commons Math's Percentile.EstimationType that OpenTSDB uses.
type estimation uint8

const (
	legacy estimation = iota // pNN: Commons Math's default
	r3                       // epNNr3
	r7                       // epNNr7
)

// percentileFunc returns the q-th percentile (0 < q <= 100) estimated as
// Commons Math does. (OpenTSDB 2.4 ignores the estimation type for
// floating-point data and always uses the default; Immune honours it.)
func percentileFunc(q float64, est estimation) func([]float64) float64 {
	p := q / 100
	return func(vs []float64) float64 {
		vs = dropNaN(vs)
		n := len(vs)
		if n == 0 {
			return math.NaN()
		}
		sort.Float64s(vs)
		if n == 1 {
			return vs[0]
		}
		var pos float64 // 1-based position in the sorted sample
		switch est {
		case r3:
			if p <= 0.5/float64(n) {
				pos = 0
			} else {
				pos = math.RoundToEven(float64(n) * p)
			}
		case r7:
			if p == 1 {
				pos = float64(n)
			} else {
				pos = 1 + float64(n-1)*p
			}
		default:
			if p == 1 {
				pos = float64(n)
			} else {
				pos = p * float64(n+1)
			}
		}
		if pos < 1 {
			return vs[0]
		}
		if pos >= float64(n) {
			return vs[n-1]
		}
		i := int(pos)
		lower, upper := vs[i-1], vs[i]
		return lower + (pos-math.Floor(pos))*(upper-lower)
	}
}
