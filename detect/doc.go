// Package detect will own deployments, baselines, judges and verdicts: the
// canary analysis that reads the store through the Prometheus query API.
// It is empty until that work lands; nothing imports it yet.
package detect
