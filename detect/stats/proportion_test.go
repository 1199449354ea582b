package stats

import (
	"math"
	"testing"
)

func TestClopperPearson(t *testing.T) {
	// Reference values: the p at which the binomial tail beyond x is 2.5%,
	// as R's binom.test(x, n)$conf.int gives them.
	for _, tc := range []struct {
		x, n         int
		lower, upper float64
	}{
		{0, 30, 0, 0.1157033},
		{1, 30, 0.0008435709, 0.1721695},
		{15, 30, 0.3129703, 0.6870297},
		{30, 30, 0.8842967, 1},
		{0, 0, 0, 1},
	} {
		lo, hi := ClopperPearson(tc.x, tc.n, 0.95)
		if math.Abs(lo-tc.lower) > 1e-6 || math.Abs(hi-tc.upper) > 1e-6 {
			t.Errorf("ClopperPearson(%d, %d) = [%.7g, %.7g], want [%.7g, %.7g]", tc.x, tc.n, lo, hi, tc.lower, tc.upper)
		}
	}
}
