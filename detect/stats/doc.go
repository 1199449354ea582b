// Package stats owns the statistics of canary judgement, as pure functions
// over slices: anytime-valid e-values for event counts with exposure and for
// paired, robust comparisons of latencies and gauges, the confidence
// sequences they invert into, and the Mann-Whitney / Hodges-Lehmann test of
// the Kayenta-style reference judge.
//
// An e-value E for a null hypothesis H0 is a nonnegative statistic with
// expectation at most 1 under H0. The e-values here are e-processes: built
// from data up to time t, they stay valid at any data-dependent stopping
// time, so by Ville's inequality P(E_t ≥ 1/α for some t) ≤ α under H0 however
// often a gate looks. Dividing α among k hypotheses (requiring E ≥ k/α)
// keeps the family-wise error at α.
package stats
