package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func noisyLogRatios(rng *rand.Rand, n int, level, sd float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = level + sd*rng.NormFloat64()
	}
	return out
}

func TestConformalShiftPower(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// The canary hosts ran 40% above the baseline before the deploy: that
	// difference is theirs, not the new version's.
	pre := noisyLogRatios(rng, 120, math.Log(1.4), 0.05)
	doubled := noisyLogRatios(rng, 6, math.Log(2.8), 0.05)
	if e := ConformalShift(pre, doubled, 1.1, true, 4); e < 2000 {
		t.Errorf("latency doubled for 6 pairs: e-value %.3g, want at least 2000", e)
	}
	// A sign test's ceiling over the same pairs, for scale.
	if e, ceiling := ConformalShift(pre, doubled[:3], 1.1, true, 4), math.Pow(2, 3); e < 10*ceiling {
		t.Errorf("3 pairs: e-value %.3g, want well beyond a sign test's %.3g", e, ceiling)
	}
	same := noisyLogRatios(rng, 60, math.Log(1.4), 0.05)
	if e := ConformalShift(pre, same, 1.1, true, 4); e > 1 {
		t.Errorf("the difference the hosts already had: e-value %.3g, want at most 1", e)
	}
	// Traffic falling to 30% where a fall is bad, and rising where it is not.
	fell := noisyLogRatios(rng, 6, math.Log(1.4*0.3), 0.05)
	if e := ConformalShift(pre, fell, 0.5, false, 4); e < 2000 {
		t.Errorf("traffic down to 30%%, decrease bad: e-value %.3g", e)
	}
	if e := ConformalShift(pre, fell, 1.1, true, 4); e > 1 {
		t.Errorf("traffic down to 30%%, increase bad: e-value %.3g, want at most 1", e)
	}
	// Late: 60 healthy pairs, then a doubling.
	late := append(noisyLogRatios(rng, 60, math.Log(1.4), 0.05), noisyLogRatios(rng, 8, math.Log(2.8), 0.05)...)
	if e := ConformalShift(pre, late, 1.1, true, 4); e < 700 {
		t.Errorf("a doubling after 60 healthy pairs: e-value %.3g, want at least 700", e)
	}
	nan := []float64{math.NaN(), math.NaN()}
	if e := ConformalShift(pre, nan, 1.1, true, 4); e != 1 {
		t.Errorf("no usable pairs: e-value %v, want 1", e)
	}
}

// A canary exactly at the boundary, its ratios exchangeable with those
// before the deploy once moved by the tolerance, watched at every pair:
// by Ville's inequality at most 1/20 of runs may ever reach 20.
func TestConformalShiftHoldsUnderContinuousMonitoring(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const runs, looks = 300, 200
	crossed := 0
	for range runs {
		pre := noisyLogRatios(rng, 120, 0, 0.1)
		post := noisyLogRatios(rng, looks, math.Log(1.2), 0.1)
		for n := 1; n <= looks; n++ {
			if ConformalShift(pre, post[:n], 1.2, true, 4) >= 20 {
				crossed++
				break
			}
		}
	}
	t.Logf("crossed 20 in %d/%d runs", crossed, runs)
	if crossed > runs*5/100 {
		t.Errorf("%d/%d runs at the boundary reached 20", crossed, runs)
	}
}
