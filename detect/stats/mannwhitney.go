package stats

import (
	"cmp"
	"math"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"
)

// MannWhitneyResult is a two-sample rank-sum comparison of experiment
// against control, with the Hodges-Lehmann estimate of the location shift.
type MannWhitneyResult struct {
	// U counts the pairs where the experiment exceeds the control (ties
	// count one half): R's W statistic for wilcox.test(experiment, control).
	U float64
	// Z is the normal approximation with tie and continuity corrections.
	Z float64
	// P is the two-sided p-value of Z.
	P float64
	// Estimate is the Hodges-Lehmann shift: the median of all pairwise
	// differences experiment - control.
	Estimate float64
	// Lower and Upper are the distribution-free confidence interval of
	// the shift at the level asked, from order statistics of the pairwise
	// differences with the normal approximation of their rank.
	Lower, Upper float64
}

// MannWhitney compares experiment with control as Kayenta's
// NetflixACAJudge does. It is a fixed-sample test: repeating it on a
// growing window, as that judge does, inflates its error rate with every
// look. Immune keeps it only as the reference its own judge is measured
// against. Both samples must be non-empty.
func MannWhitney(control, experiment []float64, confidence float64) MannWhitneyResult {
	n1, n2 := float64(len(experiment)), float64(len(control))
	if n1 == 0 || n2 == 0 {
		return MannWhitneyResult{Z: math.NaN(), P: math.NaN(), Estimate: math.NaN(), Lower: math.NaN(), Upper: math.NaN()}
	}
	// Ranks over the pooled sample, ties averaged, and the tie correction.
	type obs struct {
		v   float64
		exp bool
	}
	pooled := make([]obs, 0, len(control)+len(experiment))
	for _, v := range experiment {
		pooled = append(pooled, obs{v, true})
	}
	for _, v := range control {
		pooled = append(pooled, obs{v, false})
	}
	slices.SortFunc(pooled, func(a, b obs) int { return cmp.Compare(a.v, b.v) })
	var rankSum, tieTerm float64
	for i := 0; i < len(pooled); {
		j := i
		for j < len(pooled) && pooled[j].v == pooled[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // mean of ranks i+1..j
		for k := i; k < j; k++ {
			if pooled[k].exp {
				rankSum += rank
			}
		}
		t := float64(j - i)
		tieTerm += t*t*t - t
		i = j
	}
	u := rankSum - n1*(n1+1)/2
	mean := n1 * n2 / 2
	n := n1 + n2
	sd := math.Sqrt(n1 * n2 / 12 * ((n + 1) - tieTerm/(n*(n-1))))
	res := MannWhitneyResult{U: u}
	if sd > 0 {
		diff := u - mean
		res.Z = (diff - math.Copysign(math.Min(0.5, math.Abs(diff)), diff)) / sd
		res.P = 2 * distuv.UnitNormal.Survival(math.Abs(res.Z))
	} else {
		res.Z, res.P = 0, 1
	}

	diffs := make([]float64, 0, len(control)*len(experiment))
	for _, e := range experiment {
		for _, c := range control {
			diffs = append(diffs, e-c)
		}
	}
	slices.Sort(diffs)
	res.Estimate = median(diffs)
	z := distuv.UnitNormal.Quantile((1 + confidence) / 2)
	k := int(math.Floor(mean - z*math.Sqrt(n1*n2*(n+1)/12)))
	k = max(k, 0)
	res.Lower, res.Upper = diffs[min(k, len(diffs)-1)], diffs[max(len(diffs)-1-k, 0)]
	return res
}
