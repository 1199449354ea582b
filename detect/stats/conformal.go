package stats

import (
	"math"
	"slices"
	"sort"
)

// conformalExponents are the calibrators' exponents κ: a p-value p becomes
// the e-value κ·p^(κ-1), whose mean is 1 when p is uniform. Small
// exponents bet on p-values near the smallest possible.
var conformalExponents = []float64{0.1, 0.25}

// ConformalShift is the e-value against "after the deploy, the canary's
// log ratio to the baseline, moved by the boundary towards the good side,
// is no more extreme on the bad side than the same cohorts' log ratios
// before it". It is a conformal test martingale (Vovk): each post-deploy
// ratio is ranked among the pre-deploy ratios and the post-deploy ratios
// before it; under exchangeability those ranks give independent uniform
// p-values, and a product of calibrated p-values is a test martingale.
//
// Where the sign test earns at most a factor 2 per pair however large the
// change, this test learns from the pre-deploy ratios how far they
// normally wander, and a ratio beyond all of them earns about the number
// of them: with 120 pre-deploy pairs, a gross regression is evident in a
// handful of pairs. A constant difference the cohorts already had cancels.
// It assumes the ratio before the deploy is a fair sample of its noise;
// the sign test, which does not, stays beside it.
//
// pre and post are log ratios in time order (LogRatioSeries); NaN entries
// are skipped. Tests start afresh every `every` post-deploy pairs and are
// mixed with weights 1/((j+1)(j+2)), as in LateShift, so a regression that
// begins after a long healthy stretch is not weighed down by it.
func ConformalShift(pre, post []float64, boundary float64, increaseBad bool, every int) float64 {
	sign := 1.0
	if !increaseBad {
		sign = -1
	}
	margin := math.Abs(math.Log(boundary))
	bag := make([]float64, 0, len(pre)+len(post))
	for _, x := range pre {
		if !math.IsNaN(x) {
			bag = append(bag, sign*x)
		}
	}
	slices.Sort(bag)
	var ps []float64
	for _, x := range post {
		if math.IsNaN(x) {
			continue
		}
		y := sign*x - margin
		i := sort.SearchFloat64s(bag, y) // bag[i:] >= y; ties count against the canary's evidence
		ps = append(ps, float64(len(bag)-i+1)/float64(len(bag)+1))
		bag = slices.Insert(bag, i, y)
	}
	every = max(every, 1)
	var e float64
	for j := 0; j*every < len(ps); j++ {
		var mixed float64
		for _, k := range conformalExponents {
			logE := 0.0
			for _, p := range ps[j*every:] {
				logE += math.Log(k) + (k-1)*math.Log(p)
			}
			mixed += math.Exp(logE)
		}
		e += mixed / float64(len(conformalExponents)) / float64((j+1)*(j+2))
	}
	j := (len(ps) + every - 1) / every
	return e + 1/float64(j+1)
}
