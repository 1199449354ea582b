// Package detect owns deployments and their judgement: the deployment
// model and check profiles, the collection of each metric's data for the
// canary and baseline cohorts through PromQL (from the local store or any
// Prometheus-compatible source), the judge that turns it into a verdict
// with its evidence, the Pebble store of deployments and verdict history,
// the detector loop that evaluates every active deployment each interval,
// and backtests: replays of a deployment, or of A/A windows with a healthy
// host as the canary, over stored history through the detector's own
// judgement. The statistics are in detect/stats and the HTTP API in
// detect/gate.
package detect
