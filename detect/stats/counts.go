package stats

import (
	"math"
)

// CountStep is one interval of a count metric: events (for example errors)
// and exposure (for example requests) of the canary and of the baseline.
// Events are whole counts; fractional values, as PromQL's increase()
// extrapolates, are rounded.
type CountStep struct {
	CanaryEvents, BaselineEvents     float64
	CanaryExposure, BaselineExposure float64
}

// RateEvidence is the evidence about the ratio r of the canary's event rate
// to the baseline's, r = (canary events/exposure) / (baseline events/exposure).
type RateEvidence struct {
	// Worse is the e-value against "r is on the good side of the
	// boundary": large means evidence the canary is worse than tolerated.
	Worse float64
	// NotWorse is the e-value against "r is on the bad side of the
	// boundary": large means evidence the canary is within tolerance.
	NotWorse float64
	// Estimate is the maximum-likelihood r; NaN without events.
	Estimate float64
	// Lower and Upper bound a confidence sequence for r at the level asked:
	// with probability 1-alpha it covers r at every time. Without events
	// they are 0 and +Inf.
	Lower, Upper float64
	// CanaryEvents, BaselineEvents, CanaryExposure and BaselineExposure
	// total the steps that carried information.
	CanaryEvents, BaselineEvents     float64
	CanaryExposure, BaselineExposure float64
}

// mixtureFactors are the alternatives of the rate-ratio mixtures, as
// multiples of the boundary, each with equal prior weight. They span small
// to gross regressions so both get power.
var mixtureFactors = []float64{1.05, 1.1, 1.2, 1.35, 1.5, 2, 3, 5, 10, 30}

// RateRatio weighs the steps' counts as a conditional binomial: given the N
// events of a step, the canary's share is Binomial(N, ρ(r)) with
// ρ(r) = r·ec / (r·ec + eb), where ec and eb are the step's exposures. The
// model is valid from zero events upward (a step without events carries no
// information) and is unmoved by anything that scales both rates alike,
// such as a fleet-wide incident or daily seasonality.
//
// boundary is the ratio that separates good from bad, 1+tolerance when an
// increase is bad (increaseBad) and 1-tolerance when a decrease is. The
// confidence sequence is at level 1-alpha.
func RateRatio(steps []CountStep, boundary float64, increaseBad bool, alpha float64) RateEvidence {
	ev := RateEvidence{Estimate: math.NaN(), Upper: math.Inf(1)}
	var used []countObs
	for _, s := range steps {
		xc, xb := math.Round(s.CanaryEvents), math.Round(s.BaselineEvents)
		if xc < 0 || xb < 0 || xc+xb == 0 || !(s.CanaryExposure > 0) || !(s.BaselineExposure > 0) ||
			math.IsInf(s.CanaryExposure, 0) || math.IsInf(s.BaselineExposure, 0) {
			continue
		}
		used = append(used, countObs{xc, xb, math.Log(s.CanaryExposure / s.BaselineExposure)})
		ev.CanaryEvents += xc
		ev.BaselineEvents += xb
		ev.CanaryExposure += s.CanaryExposure
		ev.BaselineExposure += s.BaselineExposure
	}
	if len(used) == 0 {
		ev.Worse, ev.NotWorse = 1, 1
		return ev
	}
	ll := func(logR float64) float64 { return logLikelihood(used, logR) }
	up, down := mixtures(ll, math.Log(boundary))
	if increaseBad {
		ev.Worse, ev.NotWorse = up, down
	} else {
		ev.Worse, ev.NotWorse = down, up
	}
	ev.Estimate = math.Exp(maximize(ll, ev.CanaryEvents, ev.BaselineEvents))
	ev.Lower, ev.Upper = confidenceSequence(ll, math.Log(ev.Estimate), alpha)
	return ev
}

type countObs struct {
	xc, xb      float64
	logExposure float64 // log(ec/eb)
}

// logLikelihood is Σ xc·log ρ + xb·log(1-ρ) with ρ = sigmoid(log r + log(ec/eb)).
func logLikelihood(obs []countObs, logR float64) float64 {
	var sum float64
	for _, o := range obs {
		z := logR + o.logExposure
		// log ρ = -log(1+e^-z), log(1-ρ) = -log(1+e^z), computed stably.
		sum -= o.xc*softplus(-z) + o.xb*softplus(z)
	}
	return sum
}

func softplus(x float64) float64 {
	if x > 30 {
		return x
	}
	return math.Log1p(math.Exp(x))
}

// mixtures returns the equal-weight mixtures of likelihood ratios of the
// alternatives boundary·f (up, the e-value against r ≤ boundary) and
// boundary/f (down, against r ≥ boundary) against the boundary itself. Both
// share one evaluation of the boundary's likelihood.
func mixtures(ll func(float64) float64, logBoundary float64) (up, down float64) {
	base := ll(logBoundary)
	for _, f := range mixtureFactors {
		lf := math.Log(f)
		up += math.Exp(ll(logBoundary+lf) - base)
		down += math.Exp(ll(logBoundary-lf) - base)
	}
	n := float64(len(mixtureFactors))
	return up / n, down / n
}

// maximize returns the log rate ratio maximizing ll, which is concave in it.
// With events on one side only the maximum is at the edge of the searched
// range (a ratio of 1e-6 or 1e6).
func maximize(ll func(float64) float64, xc, xb float64) float64 {
	lo, hi := math.Log(1e-6), math.Log(1e6)
	switch {
	case xb == 0:
		return hi
	case xc == 0:
		return lo
	}
	// Golden-section search.
	const g = 0.6180339887498949
	a, b := lo, hi
	c, d := b-g*(b-a), a+g*(b-a)
	fc, fd := ll(c), ll(d)
	for b-a > 1e-9 {
		if fc > fd {
			b, d, fd = d, c, fc
			c = b - g*(b-a)
			fc = ll(c)
		} else {
			a, c, fc = c, d, fd
			d = a + g*(b-a)
			fd = ll(d)
		}
	}
	return (a + b) / 2
}

// confidenceSequence inverts the two-sided mixture test: it keeps every
// ratio r0 whose e-value ½(up+down) stays under 1/alpha. The set is an
// interval around the estimate because the likelihood is concave; its
// edges are found by bisection.
func confidenceSequence(ll func(float64) float64, logEst, alpha float64) (float64, float64) {
	rejected := func(logR0 float64) bool {
		up, down := mixtures(ll, logR0)
		return (up+down)/2 >= 1/alpha
	}
	const far = 14.0 // e^14 ≈ 1.2e6
	edge := func(dir float64) float64 {
		in, out := logEst, logEst+dir*far
		if !rejected(out) {
			return math.Inf(int(dir))
		}
		for math.Abs(out-in) > 1e-4 { // 0.01%: finer is not shown
			mid := (in + out) / 2
			if rejected(mid) {
				out = mid
			} else {
				in = mid
			}
		}
		return in
	}
	return math.Exp(edge(-1)), math.Exp(edge(+1))
}

// RateLimit is the evidence about a single rate p = events/exposure against
// an absolute limit, each unit of exposure an independent trial (for
// example each request erring or not).
type RateLimit struct {
	// Above is the e-value against p ≤ limit: large means the rate is
	// above the limit.
	Above float64
	// Below is the e-value against p ≥ limit: large means the rate is
	// below the limit. It grows with exposure even at zero events, which
	// is how a clean canary earns evidence of health.
	Below float64
}

// AgainstLimit weighs events over exposure against limit (0 < limit < 1).
func AgainstLimit(events, exposure, limit float64) RateLimit {
	x, n := math.Round(events), math.Round(exposure)
	if !(limit > 0 && limit < 1) || n <= 0 || x < 0 {
		return RateLimit{Above: 1, Below: 1}
	}
	x = min(x, n)
	ll := func(p float64) float64 { return x*math.Log(p) + (n-x)*math.Log1p(-p) }
	base := ll(limit)
	var above, below float64
	for _, f := range mixtureFactors {
		if p := limit * f; p < 1 {
			above += math.Exp(ll(p) - base)
		}
		below += math.Exp(ll(limit/f) - base)
	}
	return RateLimit{Above: above / float64(len(mixtureFactors)), Below: below / float64(len(mixtureFactors))}
}
