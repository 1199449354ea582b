package stats

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"
)

// Trend is a robust linear trend of a series against its index.
type Trend struct {
	// Slope is the Theil–Sen estimate: the median of the slopes between
	// every pair of points, per index step.
	Slope float64
	// Lower and Upper bound Sen's confidence interval for the slope, from
	// the distribution of Kendall's S.
	Lower, Upper float64
	// Intercept is the median of y - Slope·x, so Intercept + Slope·x is
	// the fitted value at index x.
	Intercept float64
	// N is the number of finite points used.
	N int
}

// maxTrendPoints bounds the points of a trend: the pairs grow with their
// square, and a trend needs no more resolution than this.
const maxTrendPoints = 240

// TheilSen fits a trend to y against its index, skipping points that are
// not finite, with a two-sided confidence interval at level conf. It
// resists outliers (29% breakdown) and assumes nothing about the noise
// but independence; with fewer than 3 points the interval is unbounded.
// Long series are thinned evenly to maxTrendPoints.
func TheilSen(y []float64, conf float64) Trend {
	stride := max(1, (len(y)+maxTrendPoints-1)/maxTrendPoints)
	var xs, ys []float64
	for i := 0; i < len(y); i += stride {
		if v := y[i]; !math.IsNaN(v) && !math.IsInf(v, 0) {
			xs, ys = append(xs, float64(i)), append(ys, v)
		}
	}
	tr := Trend{Slope: math.NaN(), Intercept: math.NaN(), Lower: math.Inf(-1), Upper: math.Inf(1), N: len(xs)}
	if len(xs) < 2 {
		return tr
	}
	slopes := make([]float64, 0, len(xs)*(len(xs)-1)/2)
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			slopes = append(slopes, (ys[j]-ys[i])/(xs[j]-xs[i]))
		}
	}
	slices.Sort(slopes)
	tr.Slope = median(slopes)
	resid := make([]float64, len(xs))
	for i := range xs {
		resid[i] = ys[i] - tr.Slope*xs[i]
	}
	slices.Sort(resid)
	tr.Intercept = median(resid)

	// Sen (1968): with S's variance n(n-1)(2n+5)/18 (ties ignored), the
	// interval runs between the ordered slopes (N-C)/2 and (N+C)/2+1.
	n := float64(len(xs))
	if n < 3 {
		return tr
	}
	z := distuv.UnitNormal.Quantile(1 - (1-conf)/2)
	c := z * math.Sqrt(n*(n-1)*(2*n+5)/18)
	total := float64(len(slopes))
	lo, hi := int(math.Floor((total-c)/2)), int(math.Ceil((total+c)/2))
	if lo >= 0 {
		tr.Lower = slopes[lo]
	}
	if hi < len(slopes) {
		tr.Upper = slopes[hi]
	}
	return tr
}
