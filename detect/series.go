package detect

import (
	"context"
	"time"
)

// MetricData returns what one metric of a deployment measured, step by
// step from the start, up to now or, once finished, its last verdict: the
// raw series a chart shows beside the verdicts.
func (s *Service) MetricData(ctx context.Context, d *Deployment, m Metric) (MetricData, error) {
	at := s.opts.Now()
	if d.State.Terminal() && d.Verdict != nil {
		at = d.Verdict.At
	}
	data, err := Collect(ctx, s.src, d, Profile{Name: d.Profile, Metrics: []Metric{m}}, at)
	if err != nil {
		return MetricData{}, err
	}
	return data[0], nil
}

// StepTime is the evaluation time of the i-th value of a deployment's
// MetricData: steps run from one step after the start.
func (d *Deployment) StepTime(i int) time.Time {
	return d.Start.Add(time.Duration(i+1) * time.Duration(d.Step))
}
