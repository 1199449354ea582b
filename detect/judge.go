package detect

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/immune-dev/immune/detect/stats"
)

// JudgeOptions sets the error rates of verdicts. Zero fields take defaults.
type JudgeOptions struct {
	// FailAlpha bounds the probability that a deployment within tolerance
	// on every metric is ever failed, over the whole rollout and however
	// often it is evaluated. It is split evenly over the critical metrics.
	// Zero means 0.01.
	FailAlpha float64
	// PassAlpha bounds, per metric, the probability of passing a canary
	// that is worse than tolerated on that metric. Zero means 0.05.
	PassAlpha float64
}

func (o JudgeOptions) withDefaults() JudgeOptions {
	if o.FailAlpha <= 0 {
		o.FailAlpha = 0.01
	}
	if o.PassAlpha <= 0 {
		o.PassAlpha = 0.05
	}
	return o
}

// MetricData is what one metric measured over the deployment so far, one
// entry per step since the start.
type MetricData struct {
	// Steps holds a count metric's events and exposure.
	Steps []stats.CountStep
	// Canary and Baseline hold a latency or gauge metric's values, NaN
	// where a step had none.
	Canary, Baseline []float64
	// PreCanary and PreBaseline are the same cohorts' values before the
	// deploy, to remove a difference the canary hosts already had and to
	// learn how far their ratio normally wanders.
	PreCanary, PreBaseline []float64
	// PreCohortSteps is how many of the first steps of Canary and Baseline
	// come from the cohorts PreCanary and PreBaseline were read for: a
	// stage changes the canary cohort, and its ratio with it.
	PreCohortSteps int
	// CanarySeen and BaselineSeen tell whether the queries returned any
	// series at all, which separates a missing metric from no traffic.
	CanarySeen, BaselineSeen bool
	// BaselineSource names what the baseline is ("concurrent", "1d").
	BaselineSource string
	// Weekly, when the baseline is the canary's own history, is the same
	// data against a week earlier instead of a day.
	Weekly *MetricData
	// Err is a query failure.
	Err error
}

// Judge evaluates a deployment from its metrics' data: it fails as soon as
// a critical metric shows a regression beyond tolerance, passes once every
// critical metric shows evidence of being within tolerance and the minimum
// bake time is over, and otherwise stays pending until the maximum bake
// time, when it is inconclusive.
func Judge(d *Deployment, p Profile, data []MetricData, now time.Time, opts JudgeOptions) Verdict {
	opts = opts.withDefaults()
	v := verdictAt(d, now)
	critical := 0 // the metrics that can fail the deployment share its error budget
	for _, m := range p.Metrics {
		if m.decides() {
			critical++
		}
	}
	failThreshold := float64(max(critical, 1)) / opts.FailAlpha
	passThreshold := 1 / opts.PassAlpha
	elapsed := now.Sub(d.Start)

	for i, m := range p.Metrics {
		var md MetricData
		if i < len(data) {
			md = data[i]
		}
		v.Metrics = append(v.Metrics, judgeMetric(m, md, time.Duration(d.Step), failThreshold, passThreshold, opts.FailAlpha/float64(max(critical, 1))))
	}

	for _, c := range d.Checks {
		if c.Critical && !c.Passed {
			v.Verdict, v.Reason = Fail, fmt.Sprintf("check %q failed: %s", c.Name, c.Details)
			return v
		}
	}
	var failed, waiting []string
	allPass := true
	var eta float64
	for _, mv := range v.Metrics {
		if !mv.Critical && !mv.Guard {
			continue
		}
		switch {
		case mv.Verdict == Fail:
			failed = append(failed, mv.Name+": "+mv.Reason)
		case mv.Verdict == Pass:
		// A guard passes without evidence, unless the data lean towards a
		// regression (likelihood 2:1): a crash loop whose first restarts
		// are in must not slip through at the minimum bake time.
		case mv.Guard && float64(mv.Evidence.Worse) < guardHold:
		default:
			allPass = false
			waiting = append(waiting, mv.Name+": "+mv.Reason)
			eta = max(eta, metricETA(mv, elapsed))
		}
	}
	switch {
	case len(failed) > 0:
		v.Verdict, v.Reason = Fail, strings.Join(failed, "; ")
	case allPass && elapsed >= time.Duration(d.MinBake):
		v.Verdict, v.Reason = Pass, "every critical metric is within tolerance"
		if guards := guardNames(v.Metrics); guards != "" {
			v.Reason += "; no regression seen on " + guards
		}
	case elapsed >= time.Duration(d.MaxBake):
		v.Verdict = Inconclusive
		v.Reason = "maximum bake time reached without enough evidence: " + strings.Join(waiting, "; ")
	default:
		v.Verdict = Pending
		if allPass {
			v.Reason = "within tolerance; baking until the minimum bake time"
		} else {
			v.Reason = strings.Join(waiting, "; ")
		}
		remaining := time.Duration(d.MaxBake) - elapsed
		eta = max(eta, (time.Duration(d.MinBake) - elapsed).Seconds())
		eta = math.Ceil(min(eta, remaining.Seconds()))
		v.ETASeconds = &eta
	}
	return v
}

// guardHold is the evidence of regression at which a guard metric holds
// the pass.
const guardHold = 2

// metricETA extrapolates the growth of the leading e-value to its
// threshold: log e-values grow about linearly in time under a steady
// effect. Without growth it returns +Inf (the caller caps it).
func metricETA(mv MetricVerdict, elapsed time.Duration) float64 {
	e, target := float64(mv.Evidence.Worse), float64(mv.Evidence.FailThreshold)
	if ne := float64(mv.Evidence.NotWorse); ne > e {
		e, target = ne, float64(mv.Evidence.PassThreshold)
	}
	if !(e > 1) || elapsed <= 0 {
		return math.Inf(1)
	}
	rate := math.Log(e) / elapsed.Seconds()
	return math.Max(0, (math.Log(target)-math.Log(e))/rate)
}

func judgeMetric(m Metric, md MetricData, step time.Duration, failThreshold, passThreshold, failAlpha float64) MetricVerdict {
	mv := MetricVerdict{Name: m.Name, Kind: m.Kind, Critical: m.Critical, Guard: m.Guard, BaselineSource: md.BaselineSource,
		Effect:   Interval{Estimate: Number(math.NaN()), Lower: Number(math.NaN()), Upper: Number(math.NaN())},
		Evidence: Evidence{Worse: 1, NotWorse: 1, FailThreshold: Number(failThreshold), PassThreshold: Number(passThreshold)},
	}
	ok := weigh(&mv, m, md, step, failAlpha)
	if ok && md.Weekly != nil && (md.Weekly.CanarySeen || md.Weekly.BaselineSeen) {
		// Against history, a change must show against both the day and
		// the week before: either alone may be a seasonal effect. The
		// smaller of two e-values is an e-value.
		weekly := mv
		if weigh(&weekly, m, *md.Weekly, step, failAlpha) {
			mv.Evidence.Worse = min(mv.Evidence.Worse, weekly.Evidence.Worse)
			mv.Evidence.NotWorse = min(mv.Evidence.NotWorse, weekly.Evidence.NotWorse)
			mv.BaselineSource = md.BaselineSource + "+7d"
		}
	}
	if !ok {
		return mv
	}
	worse, notWorse := float64(mv.Evidence.Worse), float64(mv.Evidence.NotWorse)
	change := describeEffect(mv.Effect)
	switch {
	case worse >= failThreshold:
		mv.Verdict = Fail
		mv.Reason = fmt.Sprintf("%s vs baseline, beyond the %s tolerance (evidence %.3g >= %.3g)", change, tolerance(m), worse, failThreshold)
		if moved := float64(mv.Evidence.ChangeSincePreDeploy); moved > worse {
			mv.Reason += fmt.Sprintf("; the ratio moved that far from where it stood before the deploy (evidence %.3g)", moved)
		}
	case notWorse >= passThreshold:
		mv.Verdict = Pass
		mv.Reason = fmt.Sprintf("%s vs baseline, within the %s tolerance (evidence %.3g >= %.3g)", change, tolerance(m), notWorse, passThreshold)
		if crossing, ok := trendCrossing(m, md, step, float64(mv.Evidence.PreDeployLogRatio), &mv.Evidence); ok {
			mv.Verdict = Pending
			mv.Reason = fmt.Sprintf("%s vs baseline, within the %s tolerance now but trending %+.1f%%/h towards it (there in about %s)",
				change, tolerance(m), 100*float64(mv.Evidence.TrendPerHour), crossing.Round(time.Minute))
		}
	default:
		mv.Verdict = Pending
		mv.Reason = fmt.Sprintf("%s vs baseline so far; not enough evidence yet (worse %.3g, within %.3g)", change, worse, notWorse)
	}
	return mv
}

// weigh fills mv with the evidence of md. It returns false when md cannot
// be judged, with mv's verdict and reason saying why.
func weigh(mv *MetricVerdict, m Metric, md MetricData, step time.Duration, failAlpha float64) bool {
	if md.Err != nil {
		mv.Verdict, mv.Reason = Error, "query failed: "+md.Err.Error()
		return false
	}
	if !md.CanarySeen && !md.BaselineSeen {
		mv.Verdict, mv.Reason = Error, "metric missing: no series for the canary or the baseline"
		return false
	}
	increaseBad := m.bad() == Increase
	if m.Kind == KindCount {
		ev := stats.RateRatio(md.Steps, m.Boundary(), increaseBad, failAlpha)
		mv.Canary, mv.Baseline = countSummaries(md.Steps)
		mv.N = len(md.Steps)
		if float64(mv.Canary.Exposure) <= 0 {
			mv.Verdict, mv.Reason = NoData, "no traffic on the canary yet"
			return false
		}
		if float64(mv.Baseline.Exposure) <= 0 {
			mv.Verdict, mv.Reason = NoData, "no traffic on the baseline"
			return false
		}
		mv.Evidence.Worse, mv.Evidence.NotWorse = Number(ev.Worse), Number(ev.NotWorse)
		mv.Effect = Interval{Number(ev.Estimate), Number(ev.Lower), Number(ev.Upper)}
		if m.Limit > 0 {
			lim := stats.AgainstLimit(float64(mv.Canary.Events), float64(mv.Canary.Exposure), m.Limit)
			mv.Evidence.LimitBelow = Number(lim.Below)
			mv.Evidence.NotWorse = Number(max(ev.NotWorse, lim.Below))
		}
		return true
	}
	offset := preDeployOffset(m, md)
	if offset != 0 {
		mv.Evidence.PreDeployLogRatio = Number(offset)
	}
	ev := stats.PairedShift(md.Canary, md.Baseline, offset, m.Boundary(), increaseBad, failAlpha)
	mv.Canary, mv.Baseline = valueSummary(md.Canary), valueSummary(md.Baseline)
	mv.N = ev.N
	if mv.Canary.Points == 0 {
		mv.Verdict, mv.Reason = NoData, "no canary data yet"
		return false
	}
	if ev.N == 0 {
		mv.Verdict, mv.Reason = NoData, "no baseline data at the canary's steps"
		return false
	}
	mv.Evidence.Worse, mv.Evidence.NotWorse = Number(ev.Worse), Number(ev.NotWorse)
	if m.TrendHorizon > 0 && step > 0 {
		// A metric that may drift is tested for a late regression too.
		every := max(1, int(lateShiftRestart/step))
		mv.Evidence.Worse = Number(stats.LateShift(md.Canary, md.Baseline, offset, m.Boundary(), increaseBad, every))
	}
	if change, ok := changeSincePreDeploy(m, md, step); ok {
		// The average of two e-values is an e-value: the tolerance test
		// keeps its power on slow and small regressions, the change test
		// brings the speed on large ones.
		mv.Evidence.ChangeSincePreDeploy = Number(change)
		mv.Evidence.Worse = (mv.Evidence.Worse + Number(change)) / 2
	}
	mv.Effect = Interval{Number(ev.Estimate), Number(ev.Lower), Number(ev.Upper)}
	return true
}

// lateShiftRestart is how often a drifting metric's test for a late
// regression starts afresh.
const lateShiftRestart = 4 * time.Minute

// minPrePairs is how many pre-deploy pairs the change test needs to know
// the ratio's usual spread: half the pre-deploy window's steps (60 at a
// 15 s step), so that at a longer step a missing scrape does not disable
// it; and never below 10, from which no spread can be learnt.
func minPrePairs(step time.Duration) int {
	return max(int(preDeployWindow/step)/2, 10)
}

// changeSincePreDeploy weighs the canary/baseline ratio of the first
// stage against the same cohorts' ratio before the deploy
// (stats.ConformalShift). It is not available without enough pre-deploy
// pairs.
func changeSincePreDeploy(m Metric, md MetricData, step time.Duration) (float64, bool) {
	pre := stats.LogRatios(md.PreCanary, md.PreBaseline, 0)
	if step <= 0 || len(pre) < minPrePairs(step) {
		return 0, false
	}
	k := min(md.PreCohortSteps, len(md.Canary), len(md.Baseline))
	post := stats.LogRatioSeries(md.Canary[:k], md.Baseline[:k], 0)
	every := max(1, int(changeRestart/step))
	return stats.ConformalShift(pre, post, m.Boundary(), m.bad() == Increase, every), true
}

// changeRestart is how often the change test starts afresh.
const changeRestart = time.Minute

// preDeployOffset is the canary hosts' usual log ratio to the baseline
// before the deploy, for gauges. Gauges (CPU, memory) keep a host's
// difference across load levels, so it is removed. Latency quantiles from
// histogram buckets do not: their ratio moves with the level as it crosses
// bucket bounds, so an offset learnt before a fleet-wide slowdown misleads
// during it.
func preDeployOffset(m Metric, md MetricData) float64 {
	pre := stats.LogRatios(md.PreCanary, md.PreBaseline, 0)
	if m.Kind != KindGauge || len(pre) < 10 {
		return 0
	}
	slices.Sort(pre)
	return pre[len(pre)/2]
}

// trendCrossing reports whether the canary/baseline ratio trends towards
// the bad side fast enough to cross the boundary within the metric's trend
// horizon, and in how long; it records the trend in ev. The trend must be
// significant (Sen's 95% interval clear of zero), so noise does not hold a
// healthy canary for long.
func trendCrossing(m Metric, md MetricData, step time.Duration, offset float64, ev *Evidence) (time.Duration, bool) {
	if m.TrendHorizon <= 0 || m.Kind == KindCount || step <= 0 {
		return 0, false
	}
	sign := 1.0
	if m.bad() == Decrease {
		sign = -1
	}
	d := stats.LogRatioSeries(md.Canary, md.Baseline, offset)
	for i := range d {
		d[i] *= sign
	}
	n := len(d)
	tr := stats.TheilSen(d, 0.95)
	stepsPerHour := float64(time.Hour) / float64(step)
	ev.TrendPerHour = Number(math.Expm1(tr.Slope * stepsPerHour))
	if !(tr.Lower > 0) {
		return 0, false
	}
	now := tr.Intercept + tr.Slope*float64(n-1)
	bound := sign * math.Log(m.Boundary())
	steps := (bound - now) / tr.Slope
	crossing := time.Duration(max(steps, 0) * float64(step))
	return crossing, crossing <= time.Duration(m.TrendHorizon)
}

func tolerance(m Metric) string {
	sign := "+"
	if m.bad() == Decrease {
		sign = "-"
	}
	return fmt.Sprintf("%s%g%%", sign, m.Tolerance*100)
}

// describeEffect renders a ratio and its interval as percent changes.
func describeEffect(e Interval) string {
	pct := func(r Number) string {
		f := float64(r)
		switch {
		case math.IsNaN(f):
			return "?"
		case math.IsInf(f, 1) || f > 1e5:
			return "+inf"
		}
		return fmt.Sprintf("%+.1f%%", (f-1)*100)
	}
	if math.IsNaN(float64(e.Estimate)) {
		return "no estimate"
	}
	return fmt.Sprintf("%s [%s, %s]", pct(e.Estimate), pct(e.Lower), pct(e.Upper))
}

func countSummaries(steps []stats.CountStep) (canary, baseline Summary) {
	for _, s := range steps {
		canary.Events += Number(s.CanaryEvents)
		canary.Exposure += Number(s.CanaryExposure)
		baseline.Events += Number(s.BaselineEvents)
		baseline.Exposure += Number(s.BaselineExposure)
		if s.CanaryExposure > 0 {
			canary.Points++
		}
		if s.BaselineExposure > 0 {
			baseline.Points++
		}
	}
	rate := func(s *Summary) {
		s.Mean, s.Median = Number(math.NaN()), Number(math.NaN())
		if s.Exposure > 0 {
			s.Mean = s.Events / s.Exposure
		}
	}
	rate(&canary)
	rate(&baseline)
	return canary, baseline
}

func valueSummary(values []float64) Summary {
	var finite []float64
	var sum float64
	for _, v := range values {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			finite = append(finite, v)
			sum += v
		}
	}
	s := Summary{Mean: Number(math.NaN()), Median: Number(math.NaN()), Points: len(finite)}
	if len(finite) > 0 {
		slices.Sort(finite)
		s.Mean = Number(sum / float64(len(finite)))
		s.Median = Number(finite[len(finite)/2])
	}
	return s
}

func guardNames(ms []MetricVerdict) string {
	var names []string
	for _, m := range ms {
		if m.Guard && m.Verdict != Pass {
			names = append(names, m.Name)
		}
	}
	return strings.Join(names, ", ")
}
