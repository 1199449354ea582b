package stats

import (
	"math"
	"slices"
)

// ShiftEvidence is the evidence about the typical ratio of a canary value
// to the baseline value at the same time, for latencies and gauges.
type ShiftEvidence struct {
	// Worse is the e-value against "the median ratio is on the good side
	// of the boundary".
	Worse float64
	// NotWorse is the e-value against "the median ratio is on the bad side
	// of the boundary".
	NotWorse float64
	// Estimate is the median ratio (after the offset); NaN without pairs.
	Estimate float64
	// Lower and Upper bound a confidence sequence for the median ratio.
	Lower, Upper float64
	// N is the number of usable pairs.
	N int
}

// signFactors are the alternatives of the sign-test mixtures: the
// probability that a pair falls on the bad side of the boundary.
var signFactors = []float64{0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 0.95}

// PairedShift compares canary and baseline values taken at the same times
// (canary[i] with baseline[i]) by the sign of d = log(canary/baseline) -
// logOffset against log(boundary): a sign test, so outliers weigh no more
// than any other pair, ties carry no weight, and a fleet-wide change that
// moves both sides alike cancels. logOffset removes a known difference
// between the cohorts, such as the canary hosts' typical ratio to the
// baseline before the deploy. Pairs where either value is not positive and
// finite are skipped.
//
// Under the null, pairs are taken as independent given the past; steps far
// enough apart (tens of seconds) make that a fair approximation for
// latency and resource gauges.
func PairedShift(canary, baseline []float64, logOffset, boundary float64, increaseBad bool, alpha float64) ShiftEvidence {
	d := LogRatios(canary, baseline, logOffset)
	ev := ShiftEvidence{Estimate: math.NaN(), Upper: math.Inf(1), N: len(d)}
	if len(d) == 0 {
		ev.Worse, ev.NotWorse = 1, 1
		return ev
	}
	above, below := signMixtures(d, math.Log(boundary))
	if increaseBad {
		ev.Worse, ev.NotWorse = above, below
	} else {
		ev.Worse, ev.NotWorse = below, above
	}
	slices.Sort(d)
	ev.Estimate = math.Exp(median(d))
	ev.Lower, ev.Upper = signConfidenceSequence(d, alpha)
	return ev
}

// LogRatios returns log(canary[i]/baseline[i]) - logOffset for the pairs
// where both values are positive and finite.
func LogRatios(canary, baseline []float64, logOffset float64) []float64 {
	d := LogRatioSeries(canary, baseline, logOffset)
	usable := d[:0]
	for _, x := range d {
		if !math.IsNaN(x) {
			usable = append(usable, x)
		}
	}
	return usable
}

// LogRatioSeries is LogRatios kept in step: NaN where a pair is unusable,
// for statistics that need each pair's position in time.
func LogRatioSeries(canary, baseline []float64, logOffset float64) []float64 {
	n := min(len(canary), len(baseline))
	d := make([]float64, n)
	for i := range n {
		c, b := canary[i], baseline[i]
		d[i] = math.NaN()
		if c > 0 && b > 0 && !math.IsInf(c, 0) && !math.IsInf(b, 0) {
			d[i] = math.Log(c/b) - logOffset
		}
	}
	return d
}

// signMixtures returns the mixture e-values against "at most half the
// pairs lie above t" and against "at most half lie below t".
func signMixtures(d []float64, t float64) (above, below float64) {
	var k, n float64 // pairs above t, pairs not tied with t
	for _, x := range d {
		switch {
		case x > t:
			k++
			n++
		case x < t:
			n++
		}
	}
	return signMixture(k, n), signMixture(n-k, n)
}

// signMixture is the mixture over p of p^k (1-p)^(n-k) / (1/2)^n.
func signMixture(k, n float64) float64 {
	var sum float64
	for _, p := range signFactors {
		sum += math.Exp(k*math.Log(2*p) + (n-k)*math.Log(2*(1-p)))
	}
	return sum / float64(len(signFactors))
}

// signConfidenceSequence keeps every median m whose two-sided sign e-value
// stays under 1/alpha; d must be sorted. The e-value only changes at the
// data, so testing the data points and the gaps between them suffices.
func signConfidenceSequence(d []float64, alpha float64) (float64, float64) {
	kept := func(m float64) bool {
		above, below := signMixtures(d, m)
		return (above+below)/2 < 1/alpha
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	consider := func(m float64) {
		if kept(m) {
			lo, hi = min(lo, m), max(hi, m)
		}
	}
	for i, x := range d {
		consider(x)
		if i+1 < len(d) {
			consider((x + d[i+1]) / 2)
		}
	}
	if kept(d[0] - 1) {
		lo = math.Inf(-1)
	}
	if kept(d[len(d)-1] + 1) {
		hi = math.Inf(1)
	}
	if lo > hi { // nothing kept: the data sit on one value
		return math.Exp(d[0]), math.Exp(d[0])
	}
	return math.Exp(lo), math.Exp(hi)
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// LateShift is the e-value against "at most half the pairs lie on the bad
// side of the boundary", like PairedShift's Worse, for regressions that
// begin late or grow slowly, such as a leak: a sign test from the first
// pair is diluted by the healthy pairs before the change. It mixes sign
// tests started every `every` pairs, the j-th with weight 1/((j+1)(j+2)):
// the weights sum to at most 1, so the mixture is an e-process under the
// same null, and a test started after the change sees only its pairs.
func LateShift(canary, baseline []float64, logOffset, boundary float64, increaseBad bool, every int) float64 {
	d := LogRatios(canary, baseline, logOffset)
	t := math.Log(boundary)
	if !increaseBad {
		for i := range d {
			d[i] = -d[i]
		}
		t = -t
	}
	every = max(every, 1)
	var e float64
	for j := 0; j*every < len(d); j++ {
		above, _ := signMixtures(d[j*every:], t)
		e += above / float64((j+1)*(j+2))
	}
	// Starts not yet reached are tests that have seen nothing: worth 1.
	j := (len(d) + every - 1) / every
	e += 1 / float64(j+1)
	return e
}
