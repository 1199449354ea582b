// Package detect will own deployments, baselines, judges and verdicts: the
// canary analysis that reads the store through the Prometheus query API.
// Its statistics are in detect/stats; the deployment model, detector loop
// and gate API are not written yet, so nothing imports this package.
package detect
