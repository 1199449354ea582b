package detect

import (
	"context"
	"math"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// Series written for every verdict, so Grafana can chart and annotate
// deployments from the same store.
const (
	// VerdictMetric is 1 for the deployment's current state and 0 for
	// the others, one series per state.
	VerdictMetric = "immune_deployment_verdict"
	// EvidenceMetric is a metric's e-value, direction "worse" or "not_worse".
	EvidenceMetric = "immune_deployment_metric_evidence"
	// EffectMetric is a metric's canary/baseline ratio estimate.
	EffectMetric = "immune_deployment_metric_effect"
)

// exportVerdict appends the verdict's series to app at the verdict's time.
func exportVerdict(ctx context.Context, app storage.Appendable, d *Deployment, v Verdict) error {
	a := app.Appender(ctx)
	ts := v.At.UnixMilli()
	base := []string{"deployment", d.ID, "service", d.Service, "version", d.Version}
	var err error
	add := func(name string, value float64, extra ...string) {
		if err != nil || math.IsNaN(value) {
			return
		}
		pairs := append(append([]string{"__name__", name}, base...), extra...)
		_, err = a.Append(0, labels.FromStrings(pairs...), ts, value)
	}
	for _, s := range States {
		value := 0.0
		if s == v.Verdict {
			value = 1
		}
		add(VerdictMetric, value, "verdict", string(s))
	}
	for _, m := range v.Metrics {
		add(EvidenceMetric, float64(m.Evidence.Worse), "metric", m.Name, "direction", "worse")
		add(EvidenceMetric, float64(m.Evidence.NotWorse), "metric", m.Name, "direction", "not_worse")
		if e := float64(m.Effect.Estimate); !math.IsInf(e, 0) {
			add(EffectMetric, e, "metric", m.Name)
		}
	}
	if err != nil {
		a.Rollback()
		return err
	}
	return a.Commit()
}
