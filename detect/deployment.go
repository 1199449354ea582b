package detect

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"go.yaml.in/yaml/v3"
)

// Status is the state of a deployment's verdict or of one metric in it.
type Status string

// Verdicts. Pass, Fail, Inconclusive and Aborted are terminal.
const (
	Pending      Status = "pending"
	Pass         Status = "pass"
	Fail         Status = "fail"
	Inconclusive Status = "inconclusive"
	Aborted      Status = "aborted"
	// NoData and Error describe a metric, never a deployment: no traffic
	// on the canary yet, or the metric's series are missing or failed.
	NoData Status = "nodata"
	Error  Status = "error"
)

// States are the states a deployment can be in, in the order a verdict's
// series are exported and the API lists them.
var States = []Status{Pending, Pass, Fail, Inconclusive, Aborted}

// Terminal reports whether a deployment in this state is finished.
func (s Status) Terminal() bool {
	return s == Pass || s == Fail || s == Inconclusive || s == Aborted
}

// Deployment is a release being judged: a canary cohort compared with a
// baseline cohort from Start on, with the profile's metrics.
type Deployment struct {
	ID      string    `json:"id"`
	Service string    `json:"service"`
	Version string    `json:"version"`
	Start   time.Time `json:"start"`
	// Canary and Baseline are label selectors for the two cohorts, as
	// {service="checkout",version="v42"}. An empty baseline compares the
	// canary with itself one day earlier.
	Canary   string `json:"canary"`
	Baseline string `json:"baseline,omitempty"`
	// Stages record the canary growing (1, then 2, then 4 hosts). Evidence
	// is carried from one stage to the next: the test runs over the whole
	// deployment, with one error budget.
	Stages  []Stage  `json:"stages"`
	Profile string   `json:"profile"`
	MinBake Duration `json:"min_bake"`
	MaxBake Duration `json:"max_bake"`
	// Step is the evaluation step; each metric yields one value per step.
	Step   Duration `json:"step"`
	Checks []Check  `json:"checks,omitempty"`
	// State is the latest verdict; Verdict holds its details.
	State   Status   `json:"state"`
	Verdict *Verdict `json:"verdict,omitempty"`
	// Metadata is free-form, for the deploy tool (for example Flagger's
	// checksum).
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Stage is a change of the canary cohort at a time.
type Stage struct {
	At       time.Time `json:"at"`
	Canary   string    `json:"canary"`
	Baseline string    `json:"baseline,omitempty"`
	Note     string    `json:"note,omitempty"`
}

// Check is external evidence reported by a deploy tool or the service
// itself, such as a smoke test.
type Check struct {
	Name     string    `json:"name"`
	Passed   bool      `json:"passed"`
	Critical bool      `json:"critical"`
	Details  string    `json:"details,omitempty"`
	At       time.Time `json:"at"`
}

// Verdict is one evaluation of a deployment.
type Verdict struct {
	At      time.Time       `json:"at"`
	Verdict Status          `json:"verdict"`
	Reason  string          `json:"reason"`
	Stage   int             `json:"stage"`
	Metrics []MetricVerdict `json:"metrics"`
	// ETASeconds estimates the time to a pass or fail while pending.
	ETASeconds *float64 `json:"eta_seconds"`
	// DataThrough is the last time of the step grid (start + k×step) at
	// or before At: every step's windows end at its time, so the verdict
	// reflects the samples stamped up to it that were stored when it was
	// judged. Nil when no data was judged (an abort).
	DataThrough *time.Time `json:"data_through"`
}

// MetricVerdict is the evidence about one metric.
type MetricVerdict struct {
	Name     string `json:"name"`
	Kind     Kind   `json:"kind"`
	Critical bool   `json:"critical"`
	Guard    bool   `json:"guard,omitempty"`
	Verdict  Status `json:"verdict"`
	Reason   string `json:"reason"`
	// BaselineSource says what the canary was compared with: the
	// concurrent baseline cohort ("concurrent"), or the canary itself a
	// day earlier ("1d"), or both a day and a week earlier ("1d+7d").
	BaselineSource string  `json:"baseline_source,omitempty"`
	Canary         Summary `json:"canary"`
	Baseline       Summary `json:"baseline"`
	// Effect is the canary/baseline ratio (of rates for counts, of typical
	// values otherwise) with a confidence sequence at the fail level.
	Effect Interval `json:"effect"`
	// Evidence holds the e-values and the thresholds they are held to.
	Evidence Evidence `json:"evidence"`
	// N is the number of steps (counts) or pairs (others) used.
	N int `json:"n"`
}

// Summary describes one cohort's data over the deployment.
type Summary struct {
	Mean     Number `json:"mean"`
	Median   Number `json:"median"`
	Events   Number `json:"events,omitempty"`
	Exposure Number `json:"exposure,omitempty"`
	Points   int    `json:"points"`
}

// Interval is an estimate with a lower and upper bound.
type Interval struct {
	Estimate Number `json:"estimate"`
	Lower    Number `json:"lower"`
	Upper    Number `json:"upper"`
}

// Evidence holds a metric's e-values: Worse measures evidence of a
// regression beyond tolerance, NotWorse of being within it. A verdict is
// reached when one meets its threshold.
type Evidence struct {
	Worse             Number `json:"worse"`
	NotWorse          Number `json:"not_worse"`
	FailThreshold     Number `json:"fail_threshold"`
	PassThreshold     Number `json:"pass_threshold"`
	LimitBelow        Number `json:"limit_below,omitempty"`
	PreDeployLogRatio Number `json:"pre_deploy_log_ratio,omitempty"`
	// ChangeSincePreDeploy is the e-value of the canary/baseline ratio
	// having moved beyond tolerance from where it stood before the
	// deploy; Worse is its average with the tolerance test's.
	ChangeSincePreDeploy Number `json:"change_since_pre_deploy,omitempty"`
	// TrendPerHour is how fast the canary/baseline ratio moves towards
	// the bad side, as a relative change per hour, for metrics with a
	// trend horizon.
	TrendPerHour Number `json:"trend_per_hour,omitempty"`
}

// Number is a float64 that encodes NaN and ±Inf as JSON null.
type Number float64

// MarshalJSON implements json.Marshaler.
func (n Number) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(f)
}

// UnmarshalJSON implements json.Unmarshaler; null becomes NaN.
func (n *Number) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Number(math.NaN())
		return nil
	}
	var f float64
	err := json.Unmarshal(b, &f)
	*n = Number(f)
	return err
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("15m"); numbers are read as seconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("duration: want a string such as \"15m\" or seconds, got %s", b)
		}
		ns := secs * float64(time.Second)
		// Converting a float beyond int64 is implementation-defined: on
		// amd64, 1e10 seconds became minus 292 years.
		if !(ns >= math.MinInt64 && ns < math.MaxInt64) {
			return fmt.Errorf("duration: %s seconds is out of range: at most %d", b, int64(math.MaxInt64/time.Second))
		}
		*d = Duration(ns)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler: a Go duration string.
func (d *Duration) UnmarshalYAML(value *yaml.Node) error {
	v, err := time.ParseDuration(value.Value)
	if err != nil {
		return fmt.Errorf("line %d: duration: want a string such as \"1h\": %w", value.Line, err)
	}
	*d = Duration(v)
	return nil
}

// Defaults for a registration that leaves them out.
const (
	DefaultMinBake = 5 * time.Minute
	DefaultMaxBake = 60 * time.Minute
	DefaultStep    = 30 * time.Second
)

// Validate completes defaults and checks a registration. now bounds the
// start time; profiles resolves the profile name.
func (d *Deployment) Validate(now time.Time, profiles func(string) (Profile, bool)) error {
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if d.Service == "" {
		add("service is required")
	}
	if d.Version == "" {
		add("version is required")
	}
	if d.Start.IsZero() {
		d.Start = now
	}
	if d.Start.After(now.Add(time.Minute)) {
		add("start %s is in the future", d.Start.Format(time.RFC3339))
	}
	if d.Profile == "" {
		d.Profile = DefaultProfileName
	}
	if _, ok := profiles(d.Profile); !ok {
		add("unknown profile %q", d.Profile)
	}
	if d.MinBake == 0 {
		d.MinBake = Duration(DefaultMinBake)
	}
	if d.MaxBake == 0 {
		d.MaxBake = Duration(DefaultMaxBake)
	}
	if d.Step == 0 {
		d.Step = Duration(DefaultStep)
	}
	if d.MinBake < 0 || d.MaxBake < d.MinBake {
		add("min_bake %s and max_bake %s: want 0 <= min_bake <= max_bake", time.Duration(d.MinBake), time.Duration(d.MaxBake))
	}
	if d.MaxBake > Duration(7*24*time.Hour) {
		add("max_bake %s is over a week", time.Duration(d.MaxBake))
	}
	if time.Duration(d.Step) < time.Second || time.Duration(d.Step) > 10*time.Minute {
		add("step %s: want between 1s and 10m", time.Duration(d.Step))
	}
	if err := validateCohorts(d.Canary, d.Baseline); err != nil {
		add("%v", err)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// validateCohorts checks both selectors and that they cannot match the
// same series: some label must be pinned to different values, or one side
// must exclude the other's value.
func validateCohorts(canary, baseline string) error {
	if canary == "" {
		return errors.New("canary selector is required")
	}
	cm, err := ParseSelector(canary)
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	if baseline == "" {
		return nil
	}
	bm, err := ParseSelector(baseline)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	if !disjoint(cm, bm) {
		return fmt.Errorf("canary %s and baseline %s may select the same series: pin a label to different values, e.g. version=\"v42\" and version!=\"v42\"", canary, baseline)
	}
	return nil
}

// disjoint reports whether no label set can satisfy both matcher lists,
// judged on the matchers that allow a finite set of values (equality, and
// regexes that are alternations of literals, as instance=~"h1|h2"): every
// value one side allows for a label is rejected by the other side's
// matcher for it.
func disjoint(a, b []*labels.Matcher) bool {
	check := func(x, y []*labels.Matcher) bool {
		for _, mx := range x {
			var values []string
			switch mx.Type {
			case labels.MatchEqual:
				values = []string{mx.Value}
			case labels.MatchRegexp:
				values = mx.SetMatches()
			}
			if len(values) == 0 {
				continue
			}
			for _, my := range y {
				if my.Name == mx.Name && !slices.ContainsFunc(values, my.Matches) {
					return true
				}
			}
		}
		return false
	}
	return check(a, b) || check(b, a)
}

// StageAt returns the index and cohorts in force at t.
func (d *Deployment) StageAt(t time.Time) (int, string, string) {
	idx, canary, baseline := 0, d.Canary, d.Baseline
	for i, s := range d.Stages {
		if s.At.After(t) {
			break
		}
		idx = i + 1
		if s.Canary != "" {
			canary = s.Canary
		}
		if s.Baseline != "" {
			baseline = s.Baseline
		}
	}
	return idx, canary, baseline
}
