package detect

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/immune-dev/immune/detect/stats"
)

// KayentaJudge is the reference Immune's judge is measured against: the
// NetflixACAJudge of Spinnaker's Kayenta as its standalone analysis uses
// it. Each metric's per-step canary values are compared with the
// baseline's by Mann-Whitney with a 98% Hodges-Lehmann interval; a metric
// is High (or Low) when the interval excludes zero by more than a quarter
// of the estimate and the mean ratio passes the effect-size guard; the
// score is the share of metrics passing; any critical metric not passing,
// or a score under 75, fails. Re-running it on a growing window every
// interval, as Kayenta's standalone analysis does, peeks without
// correction: that is the point of comparing against it.
func KayentaJudge(d *Deployment, p Profile, data []MetricData, now time.Time) Verdict {
	v := verdictAt(d, now)
	passing, counted := 0, 0
	var failed []string
	for i, m := range p.Metrics {
		var md MetricData
		if i < len(data) {
			md = data[i]
		}
		canary, baseline := kayentaSeries(m, md)
		mv := MetricVerdict{Name: m.Name, Kind: m.Kind, Critical: m.Critical || m.Guard, N: len(canary),
			Canary: valueSummary(canary), Baseline: valueSummary(baseline)}
		switch {
		case len(canary) == 0 || len(baseline) == 0:
			mv.Verdict, mv.Reason = NoData, "no data" // Kayenta drops it from the score
		default:
			counted++
			class := kayentaClassify(m, canary, baseline)
			if class == "Pass" {
				passing++
				mv.Verdict = Pass
			} else {
				mv.Verdict = Fail
				if mv.Critical {
					failed = append(failed, fmt.Sprintf("%s: %s", m.Name, class))
				}
			}
			mv.Reason = class
		}
		v.Metrics = append(v.Metrics, mv)
	}
	score := 100.0
	if counted > 0 {
		score = 100 * float64(passing) / float64(counted)
	}
	elapsed := now.Sub(d.Start)
	switch {
	case len(failed) > 0:
		v.Verdict, v.Reason = Fail, "critical metric failed: "+strings.Join(failed, "; ")
	case score < 75:
		v.Verdict, v.Reason = Fail, fmt.Sprintf("score %.0f below 75", score)
	case elapsed >= time.Duration(d.MinBake) && counted > 0:
		v.Verdict, v.Reason = Pass, fmt.Sprintf("score %.0f", score)
	case elapsed >= time.Duration(d.MaxBake):
		v.Verdict, v.Reason = Inconclusive, "no data"
	default:
		v.Verdict, v.Reason = Pending, fmt.Sprintf("score %.0f, baking", score)
	}
	return v
}

// kayentaSeries is what Kayenta compares: one value per step, the ratio
// events/exposure for counts (steps without exposure removed, as its
// "remove" NaN strategy does).
func kayentaSeries(m Metric, md MetricData) (canary, baseline []float64) {
	if m.Kind == KindCount {
		for _, s := range md.Steps {
			if s.CanaryExposure > 0 {
				canary = append(canary, s.CanaryEvents/s.CanaryExposure)
			}
			if s.BaselineExposure > 0 {
				baseline = append(baseline, s.BaselineEvents/s.BaselineExposure)
			}
		}
		return canary, baseline
	}
	finite := func(xs []float64) []float64 {
		var out []float64
		for _, x := range xs {
			if !math.IsNaN(x) && !math.IsInf(x, 0) {
				out = append(out, x)
			}
		}
		return out
	}
	return finite(md.Canary), finite(md.Baseline)
}

// kayentaClassify is NetflixACAJudge's MannWhitneyClassifier with its
// defaults: direction from the metric, allowed change = the tolerance as a
// mean ratio, tolerance 0.25 on the interval, 98% confidence.
func kayentaClassify(m Metric, canary, baseline []float64) string {
	if allEqual(canary, baseline) {
		return "Pass"
	}
	r := stats.MannWhitney(baseline, canary, 0.98)
	meanRatio := mean(canary) / mean(baseline)
	guard := func(allowed float64, higher bool) bool {
		if math.IsNaN(meanRatio) || math.IsInf(meanRatio, 0) {
			return true // Kayenta skips the guard when a mean is zero
		}
		if higher {
			return meanRatio >= allowed
		}
		return meanRatio <= allowed
	}
	const tolerance = 0.25
	high := r.Lower > tolerance*math.Abs(r.Estimate) && r.Lower > 0
	low := r.Upper < -tolerance*math.Abs(r.Estimate) && r.Upper < 0
	switch {
	case m.bad() == Increase && high && guard(1+m.Tolerance, true):
		return "High"
	case m.bad() == Decrease && low && guard(1-m.Tolerance, false):
		return "Low"
	}
	return "Pass"
}

func allEqual(a, b []float64) bool {
	first := a[0]
	for _, x := range append(append([]float64(nil), a...), b...) {
		if x != first {
			return false
		}
	}
	return true
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
