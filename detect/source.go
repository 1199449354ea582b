package detect

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/immune-dev/immune/detect/stats"
)

// Source evaluates PromQL range queries. The local PromQL engine over the
// store is one; a remote Prometheus-compatible API (Mimir, Thanos,
// VictoriaMetrics) is another.
type Source interface {
	// QueryRange evaluates query at start, start+step, ..., up to end.
	QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) ([]Series, error)
}

// Series is one result series of a range query.
type Series struct {
	Labels labels.Labels
	Points []Point
}

// Point is a sample: milliseconds since the epoch and a value.
type Point struct {
	T int64
	V float64
}

// preDeployWindow is how far before the start the same cohorts are read to
// learn the canary hosts' usual difference from the baseline.
const preDeployWindow = 30 * time.Minute

// Without a baseline cohort, the canary is compared with itself a day
// earlier and a week earlier: the same hour, and the same day of the week.
const (
	dailyOffset  = 24 * time.Hour
	weeklyOffset = 7 * 24 * time.Hour
)

// segment is a span of steps with one pair of cohorts.
type segment struct {
	canary, baseline []*labels.Matcher
	source           string
	offset           time.Duration // of the canary's history, without a baseline
	start, end       time.Time     // first and last evaluation time
	// Steps before settled are left empty: their windows reach back
	// before the cohort changed.
	settled time.Time
}

// settleTime is the first evaluation time whose window (two steps) lies
// wholly after t. A window reaching back before a deploy or a stage would
// count the restart that put the new version on a host-selected canary as
// a restart of the new version, and mix in the old version's values.
func settleTime(t time.Time, step time.Duration) time.Time { return t.Add(2 * step) }

// Collect queries every metric of the profile for the deployment from its
// start to now, one value per step, stage by stage.
func Collect(ctx context.Context, src Source, d *Deployment, p Profile, now time.Time) ([]MetricData, error) {
	step := time.Duration(d.Step)
	segs, err := segments(d, now)
	if err != nil {
		return nil, err
	}
	weekly, historical := weeklySegments(segs)
	out := make([]MetricData, len(p.Metrics))
	for i, m := range p.Metrics {
		md := &out[i]
		// The weekly pass differs from the first only in the week-old
		// baselines: the first pass's answers serve for the rest.
		msrc := src
		if historical {
			msrc = &memoSource{src: src, answers: map[memoKey][]Series{}}
		}
		collectSegments(ctx, msrc, m, segs, step, md)
		if historical && md.Err == nil {
			md.Weekly = &MetricData{}
			collectSegments(ctx, msrc, m, weekly, step, md.Weekly)
		}
		if md.Err == nil && m.Kind != KindCount && len(segs) > 0 {
			first := segs[0]
			pre := segment{canary: first.canary, baseline: first.baseline, source: first.source, offset: first.offset,
				start: d.Start.Add(-preDeployWindow + step), end: d.Start}
			var pmd MetricData
			if err := collectSegment(ctx, src, m, pre, step, &pmd); err == nil {
				md.PreCanary, md.PreBaseline = pmd.Canary, pmd.Baseline
				md.PreCohortSteps = int(first.end.Sub(d.Start.Add(step))/step) + 1
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// lastStep is the last time of the step grid from start, start + k×step
// for a whole k, at or before now.
func lastStep(start time.Time, step time.Duration, now time.Time) time.Time {
	k := now.Sub(start) / step
	if k*step > now.Sub(start) {
		k-- // division truncates towards zero: floor it for a now before start
	}
	return start.Add(k * step)
}

// verdictAt starts a verdict on d judged at now with what every judge
// sets alike: its time, its stage and its DataThrough, in now's location
// as At is (none without a step).
func verdictAt(d *Deployment, now time.Time) Verdict {
	stage, _, _ := d.StageAt(now)
	v := Verdict{At: now, Stage: stage}
	if d.Step > 0 {
		t := lastStep(d.Start, time.Duration(d.Step), now).In(now.Location())
		v.DataThrough = &t
	}
	return v
}

// segments splits [start+step, now] into the stages' spans, each aligned to
// the step grid from the start.
func segments(d *Deployment, now time.Time) ([]segment, error) {
	step := time.Duration(d.Step)
	last := lastStep(d.Start, step, now)
	var out []segment
	for t := d.Start.Add(step); !t.After(last); {
		stage, canary, baseline := d.StageAt(t)
		seg := segment{start: t, source: "concurrent", settled: settleTime(d.Start, step)}
		if stage > 0 {
			seg.settled = settleTime(d.Stages[stage-1].At, step)
		}
		var err error
		if seg.canary, err = ParseSelector(canary); err != nil {
			return nil, err
		}
		if baseline == "" {
			seg.source, seg.offset = "1d", dailyOffset
		} else if seg.baseline, err = ParseSelector(baseline); err != nil {
			return nil, err
		}
		// The segment runs until the step before the next stage begins.
		end := last
		for _, s := range d.Stages {
			if s.At.After(t) {
				if before := d.Start.Add((s.At.Sub(d.Start) - 1) / step * step); before.Before(end) {
					end = before
				}
				break
			}
		}
		seg.end = end
		out = append(out, seg)
		t = end.Add(step)
	}
	return out, nil
}

func collectSegments(ctx context.Context, src Source, m Metric, segs []segment, step time.Duration, md *MetricData) {
	for _, seg := range segs {
		if err := collectSegment(ctx, src, m, seg, step, md); err != nil {
			md.Err = err
			return
		}
		md.BaselineSource = seg.source
	}
}

// weeklySegments returns segs with the week-old history in place of the
// day-old, when some segment has no baseline cohort.
func weeklySegments(segs []segment) ([]segment, bool) {
	out := slices.Clone(segs)
	historical := false
	for i := range out {
		if out[i].baseline == nil {
			out[i].source, out[i].offset = "7d", weeklyOffset
			historical = true
		}
	}
	return out, historical
}

// memoSource is a Source that keeps its answers, so a query asked again
// over the same range is answered without asking src. It is not safe for
// concurrent use.
type memoSource struct {
	src     Source
	answers map[memoKey][]Series
}

type memoKey struct {
	query      string
	start, end int64 // ms
	step       time.Duration
}

// QueryRange implements Source.
func (s *memoSource) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) ([]Series, error) {
	key := memoKey{query: query, start: start.UnixMilli(), end: end.UnixMilli(), step: step}
	if series, ok := s.answers[key]; ok {
		return series, nil
	}
	series, err := s.src.QueryRange(ctx, query, start, end, step)
	if err == nil {
		s.answers[key] = series
	}
	return series, err
}

func collectSegment(ctx context.Context, src Source, m Metric, seg segment, step time.Duration, md *MetricData) error {
	n := int(seg.end.Sub(seg.start)/step) + 1
	if n <= 0 {
		return nil
	}
	query := func(template string, baseline bool) ([]float64, bool, error) {
		cohort, offset := seg.canary, time.Duration(0)
		if baseline {
			if seg.baseline == nil {
				offset = seg.offset
			} else {
				cohort = seg.baseline
			}
		}
		q, err := Expand(template, cohort, step, offset)
		if err != nil {
			return nil, false, err
		}
		series, err := src.QueryRange(ctx, q, seg.start, seg.end, step)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", q, err)
		}
		vals := align(series, seg.start, step, n, m.Kind == KindCount)
		for k := 0; k < n && seg.start.Add(time.Duration(k)*step).Before(seg.settled); k++ {
			vals[k] = math.NaN()
		}
		return vals, len(series) > 0, nil
	}
	if m.Kind == KindCount {
		var vals [4][]float64
		var seen [4]bool
		for i, t := range []struct {
			template string
			baseline bool
		}{{m.Events, false}, {m.Exposure, false}, {m.Events, true}, {m.Exposure, true}} {
			var err error
			if vals[i], seen[i], err = query(t.template, t.baseline); err != nil {
				return err
			}
		}
		md.CanarySeen = md.CanarySeen || seen[0] || seen[1]
		md.BaselineSeen = md.BaselineSeen || seen[2] || seen[3]
		for k := range n {
			md.Steps = append(md.Steps, stats.CountStep{
				CanaryEvents: zeroIfNaN(vals[0][k]), CanaryExposure: zeroIfNaN(vals[1][k]),
				BaselineEvents: zeroIfNaN(vals[2][k]), BaselineExposure: zeroIfNaN(vals[3][k]),
			})
		}
		return nil
	}
	canary, cSeen, err := query(m.Query, false)
	if err != nil {
		return err
	}
	baseline, bSeen, err := query(m.Query, true)
	if err != nil {
		return err
	}
	md.CanarySeen = md.CanarySeen || cSeen
	md.BaselineSeen = md.BaselineSeen || bSeen
	md.Canary = append(md.Canary, canary...)
	md.Baseline = append(md.Baseline, baseline...)
	return nil
}

// align places the series' points on the n-step grid from start. Several
// series are summed (sum) or averaged; steps without points are NaN.
func align(series []Series, start time.Time, step time.Duration, n int, sum bool) []float64 {
	vals := make([]float64, n)
	counts := make([]int, n)
	for _, s := range series {
		for _, p := range s.Points {
			k := int((p.T - start.UnixMilli()) / step.Milliseconds())
			if k < 0 || k >= n || math.IsNaN(p.V) {
				continue
			}
			vals[k] += p.V
			counts[k]++
		}
	}
	for k := range vals {
		switch {
		case counts[k] == 0:
			vals[k] = math.NaN()
		case !sum:
			vals[k] /= float64(counts[k])
		}
	}
	return vals
}

func zeroIfNaN(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}
