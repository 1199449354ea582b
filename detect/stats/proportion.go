package stats

import "gonum.org/v1/gonum/stat/distuv"

// ClopperPearson returns the exact two-sided confidence interval, at the
// given level (0.95 for 95%), of a binomial proportion after x successes
// in n trials. It never undercovers, which matters for rare events such as
// false fails: with 0 of 30 the upper bound is 11.6%, not 0. With n = 0 it
// returns [0, 1].
func ClopperPearson(x, n int, level float64) (lower, upper float64) {
	if n <= 0 {
		return 0, 1
	}
	tail := (1 - level) / 2
	lower, upper = 0, 1
	if x > 0 {
		lower = distuv.Beta{Alpha: float64(x), Beta: float64(n - x + 1)}.Quantile(tail)
	}
	if x < n {
		upper = distuv.Beta{Alpha: float64(x + 1), Beta: float64(n - x)}.Quantile(1 - tail)
	}
	return lower, upper
}
