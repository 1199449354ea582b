package detect

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// Kind is how a metric is compared.
type Kind string

// Metric kinds.
const (
	// KindCount is events with exposure, such as errors among requests:
	// compared as the ratio of rates, conditional on the events.
	KindCount Kind = "count"
	// KindLatency is a latency, typically a quantile over the cohort:
	// compared by the per-step ratio canary/baseline with a sign test.
	KindLatency Kind = "latency"
	// KindGauge is a level, such as CPU or memory per host: compared like
	// a latency.
	KindGauge Kind = "gauge"
)

// Direction is which way a metric is bad.
type Direction string

// Directions.
const (
	Increase Direction = "increase"
	Decrease Direction = "decrease"
)

// Metric is one check of a profile. Queries are PromQL templates: the
// cohort's label matchers are added to every selector in them, and three
// variables are replaced:
//
//   - $step is the evaluation step, normally the scrape interval (e.g. "15s");
//   - $window is two steps, so a window holds two consecutive scrapes and
//     no two steps share an increment: rate(x[$window]) is a step's rate;
//   - $step_seconds is the step in seconds, so irate(x[$window]) *
//     $step_seconds is a counter's exact increment over one step.
//
// Count metrics need whole counts per step (increase() extrapolates to its
// window and would count events twice), hence the irate form.
type Metric struct {
	// Name identifies the metric in verdicts and plots.
	Name string `json:"name" yaml:"name"`
	// Kind is count, latency or gauge.
	Kind Kind `json:"kind" yaml:"kind"`
	// Query is the value per step, for latency and gauge metrics.
	Query string `json:"query,omitempty" yaml:"query,omitempty"`
	// Events and Exposure are the per-step counts of a count metric.
	Events   string `json:"events,omitempty" yaml:"events,omitempty"`
	Exposure string `json:"exposure,omitempty" yaml:"exposure,omitempty"`
	// Bad is the direction that is bad. Default increase.
	Bad Direction `json:"bad,omitempty" yaml:"bad,omitempty"`
	// Tolerance is the relative change that matters: 0.1 lets the canary
	// be 10% worse than the baseline before it counts as a regression.
	Tolerance float64 `json:"tolerance" yaml:"tolerance"`
	// Critical metrics decide the verdict; others are reported only.
	Critical bool `json:"critical" yaml:"critical"`
	// Guard metrics fail the deployment on evidence of a regression, like
	// critical ones, but need no evidence to pass. For rare events such as
	// restarts, one canary cannot prove their absence within minutes; a
	// guard still catches a crash loop.
	Guard bool `json:"guard,omitempty" yaml:"guard,omitempty"`
	// TrendHorizon, for a gauge or latency, holds the pass while the
	// canary/baseline ratio trends past the tolerance within this horizon
	// (as a leak does), so a slow regression keeps the deployment baking
	// until it shows. Zero disables the trend check.
	TrendHorizon Duration `json:"trend_horizon,omitempty" yaml:"trend_horizon,omitempty"`
	// Limit, for a count metric, is an absolute rate (events per unit of
	// exposure, e.g. 0.01 for 1% errors) below which the canary counts as
	// healthy whatever the baseline does; zero means none.
	Limit float64 `json:"limit,omitempty" yaml:"limit,omitempty"`
}

// Profile is a named set of metrics checked together.
type Profile struct {
	Name    string   `json:"name" yaml:"name"`
	Metrics []Metric `json:"metrics" yaml:"metrics"`
}

// Names of the built-in profiles.
const (
	DefaultProfileName  = "default"
	WeightedProfileName = "weighted"
)

// DefaultProfile checks the metrics that Prometheus client libraries and
// common HTTP middleware expose, so one call gates a typical service. It
// assumes the canary hosts get their share of traffic like any other host,
// as in a host-by-host rollout behind a load balancer.
func DefaultProfile() Profile {
	return Profile{Name: DefaultProfileName, Metrics: []Metric{
		{Name: "error-ratio", Kind: KindCount, Critical: true, Tolerance: 0.2, Limit: 0.001,
			Events:   `sum(irate(http_requests_total{code=~"5.."}[$window])) * $step_seconds`,
			Exposure: `sum(irate(http_requests_total[$window])) * $step_seconds`},
		// Mean latency decides: unlike a quantile interpolated within
		// histogram buckets, its canary/baseline ratio does not move when a
		// fleet-wide slowdown shifts both across bucket bounds. A tail-only
		// regression still moves the mean; p99 is reported beside it.
		{Name: "latency-mean", Kind: KindLatency, Critical: true, Tolerance: 0.1,
			Query: `sum(rate(http_request_duration_seconds_sum[$window])) / sum(rate(http_request_duration_seconds_count[$window]))`},
		{Name: "latency-p99", Kind: KindLatency, Tolerance: 0.2,
			Query: `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[$window])))`},
		{Name: "restarts", Kind: KindCount, Guard: true, Tolerance: 0.5,
			Events:   `sum(changes(process_start_time_seconds[$window]))`,
			Exposure: `count(up)`},
		{Name: "down", Kind: KindCount, Guard: true, Tolerance: 0.5,
			Events:   `count(up == 0)`,
			Exposure: `count(up)`},
		{Name: "cpu", Kind: KindGauge, Critical: true, Tolerance: 0.2,
			Query: `avg(rate(process_cpu_seconds_total[$window]))`},
		// A leak passes the tolerance only after a while: the trend holds
		// the pass until the canary is clearly not heading past it.
		{Name: "memory", Kind: KindGauge, Critical: true, Tolerance: 0.2, TrendHorizon: Duration(time.Hour),
			Query: `avg(process_resident_memory_bytes)`},
		// A canary host that gets half the traffic of its peers is failing
		// health checks or refusing connections.
		{Name: "traffic", Kind: KindGauge, Critical: true, Bad: Decrease, Tolerance: 0.5,
			Query: `sum(rate(http_requests_total[$window])) / count(up)`},
	}}
}

// WeightedProfile is the default profile for rollouts that split traffic
// by weight (Argo Rollouts with a traffic router, Flagger): the canary gets
// less traffic per host on purpose, so traffic is reported, not judged.
func WeightedProfile() Profile {
	p := DefaultProfile()
	p.Name = WeightedProfileName
	for i := range p.Metrics {
		if p.Metrics[i].Name == "traffic" {
			p.Metrics[i].Critical = false
		}
	}
	return p
}

// builtinProfiles are always present and cannot be replaced.
func builtinProfiles() []Profile { return []Profile{DefaultProfile(), WeightedProfile()} }

// Validate checks the profile and every template in it.
func (p Profile) Validate() error {
	if p.Name == "" {
		return errors.New("profile: name is empty")
	}
	if len(p.Metrics) == 0 {
		return fmt.Errorf("profile %s: no metrics", p.Name)
	}
	seen := map[string]bool{}
	critical := false
	for i, m := range p.Metrics {
		critical = critical || m.Critical
		if err := m.validate(); err != nil {
			return fmt.Errorf("profile %s: metric %d (%s): %w", p.Name, i, m.Name, err)
		}
		if seen[m.Name] {
			return fmt.Errorf("profile %s: metric name %q used twice", p.Name, m.Name)
		}
		seen[m.Name] = true
	}
	if !critical {
		return fmt.Errorf("profile %s: no critical metric: nothing could pass a deployment", p.Name)
	}
	return nil
}

// decides reports whether the metric can fail the deployment.
func (m Metric) decides() bool { return m.Critical || m.Guard }

func (m Metric) validate() error {
	if m.Name == "" {
		return errors.New("name is empty")
	}
	if m.Bad != "" && m.Bad != Increase && m.Bad != Decrease {
		return fmt.Errorf("bad must be %q or %q, not %q", Increase, Decrease, m.Bad)
	}
	if m.Tolerance < 0 || (m.Bad == Decrease && m.Tolerance >= 1) {
		return fmt.Errorf("tolerance %v out of range", m.Tolerance)
	}
	if m.Limit < 0 || m.Limit >= 1 {
		return fmt.Errorf("limit %v must be a rate in [0, 1)", m.Limit)
	}
	var templates []string
	switch m.Kind {
	case KindCount:
		if m.Events == "" || m.Exposure == "" || m.Query != "" {
			return errors.New("a count metric needs events and exposure and no query")
		}
		templates = []string{m.Events, m.Exposure}
	case KindLatency, KindGauge:
		if m.Query == "" || m.Events != "" || m.Exposure != "" {
			return fmt.Errorf("a %s metric needs a query and no events or exposure", m.Kind)
		}
		if m.Limit != 0 {
			return fmt.Errorf("limit applies to count metrics only")
		}
		templates = []string{m.Query}
	default:
		return fmt.Errorf("kind must be count, latency or gauge, not %q", m.Kind)
	}
	for _, t := range templates {
		if _, err := Expand(t, nil, 30*time.Second, 0); err != nil {
			return err
		}
	}
	return nil
}

// bad returns the metric's bad direction with its default.
func (m Metric) bad() Direction {
	if m.Bad == "" {
		return Increase
	}
	return m.Bad
}

// Boundary is the canary/baseline ratio past which the metric regresses:
// 1+tolerance when an increase is bad, 1-tolerance when a decrease is.
func (m Metric) Boundary() float64 {
	if m.bad() == Decrease {
		return 1 - m.Tolerance
	}
	return 1 + m.Tolerance
}

// LoadProfiles reads profiles from a YAML file: a list under "profiles".
func LoadProfiles(path string) ([]Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Profiles []Profile `yaml:"profiles"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, p := range doc.Profiles {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return doc.Profiles, nil
}

// Expand turns a template into a query: the variables become the step's, the
// cohort's matchers are added to every selector, and offset (if not zero)
// shifts every selector back in time, for historical baselines.
func Expand(template string, cohort []*labels.Matcher, step, offset time.Duration) (string, error) {
	q := strings.NewReplacer(
		"$step_seconds", strconv.FormatFloat(step.Seconds(), 'f', -1, 64),
		"$step", formatStep(step),
		"$window", formatStep(2*step),
	).Replace(template)
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		return "", fmt.Errorf("template %q: %w", template, err)
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		vs.LabelMatchers = append(vs.LabelMatchers, cohort...)
		if offset != 0 {
			vs.OriginalOffset += offset
			vs.OriginalOffsetExpr = nil
		}
		return nil
	})
	return expr.String(), nil
}

func formatStep(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", int64(d/time.Second))
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}

// ParseSelector parses a cohort selector such as
// {service="checkout",version="v42"}.
func ParseSelector(s string) ([]*labels.Matcher, error) {
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(s)
	if err != nil {
		return nil, fmt.Errorf("selector %q: %w", s, err)
	}
	return ms, nil
}
