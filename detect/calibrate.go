package detect

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/immune-dev/immune/detect/stats"
)

// Bounds and defaults of a calibration.
const (
	// MaxCalibrationRuns bounds the windows of one calibration.
	MaxCalibrationRuns = 1000
	// MaxCalibrationEffects bounds the injected regressions; each replays
	// every window again.
	MaxCalibrationEffects = 10
	// DefaultCalibrationDuration is how long each pseudo-deployment bakes
	// at most when the request does not say.
	DefaultCalibrationDuration = 30 * time.Minute
)

// CalibrationRequest asks for A/A replays of a profile over a service's
// history: Runs windows drawn at random in [From, To], in each a random
// healthy host (or Hosts of them) treated as a canary against the rest of
// the service, and the same windows again with each Effect injected.
type CalibrationRequest struct {
	// Profile is the check profile to calibrate. Empty means "default".
	Profile string    `json:"profile,omitempty"`
	Service string    `json:"service"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Runs    int       `json:"runs"`
	// Duration is each window's maximum bake. Zero means 30m.
	Duration Duration `json:"duration,omitzero"`
	// Every is the time between polls. Zero means 30s.
	Every Duration `json:"every,omitzero"`
	// Hosts is the number of canary hosts per window. Zero means 1.
	Hosts int `json:"hosts,omitzero"`
	// HostLabel names a host; zero means "instance". ServiceLabel names
	// the service; zero means "service".
	HostLabel    string `json:"host_label,omitempty"`
	ServiceLabel string `json:"service_label,omitempty"`
	// Seed picks the windows and hosts: the same seed, the same runs.
	Seed uint64 `json:"seed,omitempty"`
	// Effects are regressions injected into the pseudo-canary.
	Effects []Effect `json:"effects,omitempty"`
}

// Effect is a regression injected into a pseudo-canary: its values of
// Metric are multiplied by Factor (its events, for a count metric), from
// the window's start on.
type Effect struct {
	Metric string  `json:"metric"`
	Factor float64 `json:"factor"`
}

// String renders the effect as "latency-mean x2".
func (e Effect) String() string { return fmt.Sprintf("%s x%g", e.Metric, e.Factor) }

// Calibration is the result of a CalibrationRequest.
type Calibration struct {
	ID      string             `json:"id"`
	Created time.Time          `json:"created"`
	Request CalibrationRequest `json:"request"`
	// FailBudget is the judge's FailAlpha: the probability of ever failing
	// a canary within tolerance that the profile is built to stay under.
	FailBudget float64 `json:"fail_budget"`
	// AA counts the verdicts of the A/A replays: every fail is a false
	// fail, since no host changed.
	AA Outcomes `json:"aa"`
	// WithinBudget tells whether the false fails are consistent with the
	// budget: the fail rate's interval reaches down to it.
	WithinBudget bool `json:"within_budget"`
	// Power has, per injected effect, how often it was caught (failed).
	Power []Power `json:"power,omitempty"`
	// Skipped counts the windows that could not be replayed (too few
	// hosts, a definition the gate refused); their runs say why.
	Skipped int              `json:"skipped"`
	Runs    []CalibrationRun `json:"runs,omitempty"`
}

// Outcomes counts the verdicts of a set of replays.
type Outcomes struct {
	Runs         int    `json:"runs"`
	Pass         int    `json:"pass"`
	Fail         int    `json:"fail"`
	Inconclusive int    `json:"inconclusive"`
	PassRate     Number `json:"pass_rate"`
	FailRate     Number `json:"fail_rate"`
	// FailCI is the 95% Clopper-Pearson interval of the fail rate.
	FailCI           [2]Number `json:"fail_ci"`
	InconclusiveRate Number    `json:"inconclusive_rate"`
	// TimeToVerdict is the time from the start to a pass or a fail.
	TimeToVerdict Quantiles `json:"time_to_verdict"`
}

// Quantiles summarise durations; all zero when there are none.
type Quantiles struct {
	P50 Duration `json:"p50"`
	P90 Duration `json:"p90"`
	Max Duration `json:"max"`
}

// Power is how an injected effect fared: a fail is a detection.
type Power struct {
	Effect Effect `json:"effect"`
	Outcomes
	// Named counts the fails whose reason names the effect's metric.
	Named int `json:"named"`
}

// CalibrationRun is one window.
type CalibrationRun struct {
	Start time.Time `json:"start"`
	// Canary holds the pseudo-canary's host label values.
	Canary []string `json:"canary"`
	// Verdict, After (from the start) and Reason are the A/A outcome.
	Verdict Status   `json:"verdict,omitempty"`
	After   Duration `json:"after,omitzero"`
	Reason  string   `json:"reason,omitempty"`
	// Effects are the outcomes with each effect injected, in the
	// request's order.
	Effects []Status `json:"effects,omitempty"`
	// Skipped says why the window was not replayed.
	Skipped string `json:"skipped,omitempty"`
}

// Calibrate replays a profile over windows of a service's history with no
// registered deployment, each with random hosts as a pseudo-canary, and
// reports the false-fail rate against the judge's budget, the
// inconclusive rate, the time to a verdict and, per injected effect, the
// detection rate. Replays go through Backtest's path (the live detector's
// judgeAt), at most BacktestWorkers at a time across the service. The
// result is stored.
func (s *Service) Calibrate(ctx context.Context, req CalibrationRequest) (*Calibration, error) {
	now := s.opts.Now()
	if err := s.completeCalibration(&req, now); err != nil {
		return nil, err
	}
	p, _ := s.Profile(req.Profile)
	dur, every := time.Duration(req.Duration), time.Duration(req.Every)
	spans, err := s.deploymentSpans(req.Service, now)
	if err != nil {
		return nil, err
	}
	starts := windowStarts(req.From, req.To.Add(-dur), dur, spans)
	if len(starts) == 0 {
		return nil, fmt.Errorf("%w: every %s window in [%s, %s] overlaps a registered deployment of %s (or the %s before it): widen from/to",
			ErrInvalid, dur, req.From.Format(time.RFC3339), req.To.Format(time.RFC3339), req.Service, preDeployWindow)
	}
	rng := rand.New(rand.NewPCG(req.Seed, 0xaa))
	runs := make([]CalibrationRun, req.Runs)
	for i := range runs {
		runs[i].Start = starts.draw(rng)
	}
	slices.SortStableFunc(runs, func(a, b CalibrationRun) int { return a.Start.Compare(b.Start) })
	for i := range runs {
		hosts, err := s.hostsAt(ctx, req, runs[i].Start.Add(every))
		if err != nil {
			return nil, err
		}
		if len(hosts) <= req.Hosts {
			runs[i].Skipped = fmt.Sprintf("%d hosts of %s reported in the %s before the first poll: need more than %d, for a baseline", len(hosts), req.Service, canaryLookback, req.Hosts)
			continue
		}
		for _, k := range rng.Perm(len(hosts))[:req.Hosts] {
			runs[i].Canary = append(runs[i].Canary, hosts[k])
		}
		slices.Sort(runs[i].Canary)
		runs[i].Effects = make([]Status, len(req.Effects))
	}

	results, err := s.replayWindows(ctx, req, p, runs)
	if err != nil {
		return nil, err
	}
	c := &Calibration{Request: req, FailBudget: s.opts.Judge.withDefaults().FailAlpha, Runs: runs}
	aa := make([]outcome, 0, len(runs))
	power := make([][]outcome, len(req.Effects))
	for i := range runs {
		r := &runs[i]
		if r.Skipped != "" {
			c.Skipped++
			r.Effects = nil
			continue
		}
		o := results[i][0]
		r.Verdict, r.After, r.Reason = o.verdict, Duration(o.after), o.reason
		aa = append(aa, o)
		for e := range req.Effects {
			r.Effects[e] = results[i][1+e].verdict
			power[e] = append(power[e], results[i][1+e])
		}
	}
	c.AA = countOutcomes(aa)
	c.WithinBudget = c.AA.Runs > 0 && float64(c.AA.FailCI[0]) <= c.FailBudget
	for e, eff := range req.Effects {
		pw := Power{Effect: eff, Outcomes: countOutcomes(power[e])}
		for _, o := range power[e] {
			if o.verdict == Fail && namesMetric(o.reason, eff.Metric) {
				pw.Named++
			}
		}
		c.Power = append(c.Power, pw)
	}
	c.Created = s.opts.Now()
	if err := s.store.PutCalibration(c); err != nil {
		return nil, err
	}
	s.log.Info("calibration", "id", c.ID, "service", req.Service, "profile", req.Profile, "runs", c.AA.Runs,
		"false_fails", c.AA.Fail, "skipped", c.Skipped)
	return c, nil
}

// GetCalibration returns a stored calibration.
func (s *Service) GetCalibration(id string) (*Calibration, error) { return s.store.GetCalibration(id) }

// ListCalibrations returns stored calibrations without their runs, of one
// service when service is not empty.
func (s *Service) ListCalibrations(service string) ([]*Calibration, error) {
	cs, err := s.store.ListCalibrations(func(c *Calibration) bool { return service == "" || c.Request.Service == service })
	for _, c := range cs {
		c.Runs = nil
	}
	return cs, err
}

// replayWindows replays every window that has a canary, plain and with
// each effect, on BacktestWorkers goroutines. results[i][0] is window i's
// A/A outcome and results[i][1+e] its outcome with effect e. A definition
// the gate refuses skips the window (runs[i].Skipped says why); any other
// error ends them all.
func (s *Service) replayWindows(ctx context.Context, req CalibrationRequest, p Profile, runs []CalibrationRun) ([][]outcome, error) {
	type job struct{ run, effect int } // effect -1 is the A/A replay
	results := make([][]outcome, len(runs))
	refused := make([][]error, len(runs)) // each job writes its own slot
	for i := range runs {
		results[i] = make([]outcome, 1+len(req.Effects))
		refused[i] = make([]error, 1+len(req.Effects))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range s.opts.BacktestWorkers {
		wg.Go(func() {
			for j := range jobs {
				r := &runs[j.run]
				var inject func([]MetricData)
				if j.effect >= 0 {
					inject = injectEffect(p, req.Effects[j.effect])
				}
				sched := Schedule{Every: time.Duration(req.Every), Until: r.Start.Add(time.Duration(req.Duration))}
				bt, err := s.replay(ctx, pseudoDeployment(req, *r), sched, inject)
				switch {
				case errors.Is(err, ErrInvalid):
					refused[j.run][j.effect+1] = err
				case err != nil:
					cancel(fmt.Errorf("window at %s: %w", r.Start.Format(time.RFC3339), err))
				default:
					// Only the outcome is kept: a thousand timelines would not fit.
					results[j.run][j.effect+1] = outcome{verdict: bt.Verdict, reason: bt.Reason, after: bt.At.Sub(bt.Deployment.Start)}
				}
			}
		})
	}
feed:
	for i := range runs {
		if runs[i].Skipped != "" {
			continue
		}
		for e := -1; e < len(req.Effects); e++ {
			select {
			case jobs <- job{i, e}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	// The replays of a window share its definition: one refused skips it.
	for i := range runs {
		if k := slices.IndexFunc(refused[i], func(err error) bool { return err != nil }); k >= 0 {
			runs[i].Skipped = "refused by the gate: " + refused[i][k].Error()
		}
	}
	return results, nil
}

// pseudoDeployment is a window's A/A deployment: the run's hosts of the
// service against the rest of it.
func pseudoDeployment(req CalibrationRequest, r CalibrationRun) *Deployment {
	op, value := "=", r.Canary[0]
	if len(r.Canary) > 1 {
		quoted := make([]string, len(r.Canary))
		for i, h := range r.Canary {
			quoted[i] = regexp.QuoteMeta(h)
		}
		op, value = "=~", strings.Join(quoted, "|")
	}
	cohort := func(op string) string {
		return fmt.Sprintf("{%s=%q,%s%s%q}", req.ServiceLabel, req.Service, req.HostLabel, op, value)
	}
	dur := time.Duration(req.Duration)
	return &Deployment{Service: req.Service, Version: "aa", Start: r.Start, Profile: req.Profile,
		Canary: cohort(op), Baseline: cohort("!" + op[len(op)-1:]),
		MinBake: Duration(min(DefaultMinBake, dur)), MaxBake: Duration(dur)}
}

// injectEffect returns the change of the collected data that applies e to
// the canary: its values (a latency or gauge) or its events (a count)
// multiplied by the factor. The pre-deploy values stay as they were.
func injectEffect(p Profile, e Effect) func([]MetricData) {
	i := slices.IndexFunc(p.Metrics, func(m Metric) bool { return m.Name == e.Metric })
	count := p.Metrics[i].Kind == KindCount
	return func(data []MetricData) {
		md := &data[i]
		if count {
			for k := range md.Steps {
				md.Steps[k].CanaryEvents *= e.Factor
			}
			return
		}
		for k := range md.Canary {
			md.Canary[k] *= e.Factor
		}
	}
}

// hostsAt returns the values of the host label among the service's series
// in the canaryLookback before at: the hosts the gate would find reporting
// if one of them were registered as a canary then.
func (s *Service) hostsAt(ctx context.Context, req CalibrationRequest, at time.Time) ([]string, error) {
	q := fmt.Sprintf("group by (%s) (last_over_time({%s=%q}[%s]))", req.HostLabel, req.ServiceLabel, req.Service, formatStep(canaryLookback))
	series, err := s.src.QueryRange(ctx, q, at, at, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("find the hosts of %s: %w", req.Service, err)
	}
	var hosts []string
	for _, sr := range series {
		if h := sr.Labels.Get(req.HostLabel); h != "" {
			hosts = append(hosts, h)
		}
	}
	slices.Sort(hosts)
	return hosts, nil
}

// deploymentSpans returns, for each registered deployment of the service,
// its start and end: its terminal verdict, or its maximum bake while it
// runs.
func (s *Service) deploymentSpans(service string, now time.Time) ([][2]time.Time, error) {
	ds, err := s.store.List(func(d *Deployment) bool { return d.Service == service })
	if err != nil {
		return nil, err
	}
	spans := make([][2]time.Time, 0, len(ds))
	for _, d := range ds {
		end := d.Start.Add(time.Duration(d.MaxBake))
		if d.State.Terminal() && d.Verdict != nil {
			end = d.Verdict.At
		}
		spans = append(spans, [2]time.Time{d.Start, end})
	}
	return spans, nil
}

// startSet is a union of disjoint spans of whole seconds, from which
// window starts are drawn uniformly.
type startSet [][2]int64 // [first, last] Unix seconds

// windowStarts returns the starts in [from, last] whose window (with the
// pre-deploy window before it, which gauges read) overlaps none of spans.
func windowStarts(from, last time.Time, dur time.Duration, spans [][2]time.Time) startSet {
	first := from.Unix()
	if from.After(time.Unix(first, 0)) {
		first++
	}
	set := startSet{{first, last.Unix()}}
	if set[0][0] > set[0][1] {
		return nil
	}
	for _, sp := range spans {
		// [st - pre, st + dur] meets [start, end] when st is in (a, b).
		a := sp[0].Add(-dur).Unix()
		b := int64(math.Ceil(float64(sp[1].Add(preDeployWindow).UnixNano()) / 1e9))
		var next startSet
		for _, iv := range set {
			if lo, hi := iv[0], min(iv[1], a); lo <= hi {
				next = append(next, [2]int64{lo, hi})
			}
			if lo, hi := max(iv[0], b), iv[1]; lo <= hi {
				next = append(next, [2]int64{lo, hi})
			}
		}
		set = next
	}
	return set
}

// draw picks a start uniformly among the set's seconds.
func (set startSet) draw(rng *rand.Rand) time.Time {
	var total int64
	for _, iv := range set {
		total += iv[1] - iv[0] + 1
	}
	k := rng.Int64N(total)
	for _, iv := range set {
		if n := iv[1] - iv[0] + 1; k >= n {
			k -= n
			continue
		}
		return time.Unix(iv[0]+k, 0).UTC()
	}
	panic("startSet.draw: index beyond the set")
}

// namesMetric reports whether a fail's reason ("m1: ...; m2: ...") names
// the metric among those that failed.
func namesMetric(reason, metric string) bool {
	for part := range strings.SplitSeq(reason, "; ") {
		if strings.HasPrefix(part, metric+": ") {
			return true
		}
	}
	return false
}

// outcome is how one replay ended.
type outcome struct {
	verdict Status
	reason  string
	after   time.Duration // from the start to the verdict
}

// countOutcomes counts the replays' verdicts.
func countOutcomes(replays []outcome) Outcomes {
	o := Outcomes{Runs: len(replays)}
	var times []time.Duration
	for _, r := range replays {
		switch r.verdict {
		case Pass:
			o.Pass++
		case Fail:
			o.Fail++
		default:
			o.Inconclusive++
			continue
		}
		times = append(times, r.after)
	}
	rate := func(k int) Number {
		if o.Runs == 0 {
			return Number(math.NaN())
		}
		return Number(float64(k) / float64(o.Runs))
	}
	o.PassRate, o.FailRate, o.InconclusiveRate = rate(o.Pass), rate(o.Fail), rate(o.Inconclusive)
	lo, hi := stats.ClopperPearson(o.Fail, o.Runs, 0.95)
	o.FailCI = [2]Number{Number(lo), Number(hi)}
	if len(times) > 0 {
		slices.Sort(times)
		at := func(q float64) Duration { return Duration(times[int(math.Ceil(q*float64(len(times))))-1]) }
		o.TimeToVerdict = Quantiles{P50: at(0.5), P90: at(0.9), Max: Duration(times[len(times)-1])}
	}
	return o
}

// completeCalibration applies the defaults and checks the request; errors
// wrap ErrInvalid and name the bound.
func (s *Service) completeCalibration(req *CalibrationRequest, now time.Time) error {
	if req.Profile == "" {
		req.Profile = DefaultProfileName
	}
	if req.Duration == 0 {
		req.Duration = Duration(DefaultCalibrationDuration)
	}
	if req.Every == 0 {
		req.Every = Duration(DefaultBacktestEvery)
	}
	if req.Hosts == 0 {
		req.Hosts = 1
	}
	if req.HostLabel == "" {
		req.HostLabel = "instance"
	}
	if req.ServiceLabel == "" {
		req.ServiceLabel = "service"
	}
	if !req.To.IsZero() && req.To.After(now) && !req.To.After(now.Add(time.Minute)) {
		req.To = now // a client's clock a little ahead
	}
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	p, ok := s.Profile(req.Profile)
	if !ok {
		add("unknown profile %q", req.Profile)
	}
	if req.Service == "" {
		add("service is required")
	}
	if req.Runs < 1 || req.Runs > MaxCalibrationRuns {
		add("runs %d: want between 1 and %d", req.Runs, MaxCalibrationRuns)
	}
	dur, every := time.Duration(req.Duration), time.Duration(req.Every)
	switch {
	case req.From.IsZero() || req.To.IsZero():
		add("from and to are required")
	case !req.From.Before(req.To):
		add("from %s is not before to %s", req.From.Format(time.RFC3339), req.To.Format(time.RFC3339))
	case req.To.After(now):
		add("to %s is in the future: a calibration replays stored history", req.To.Format(time.RFC3339))
	case dur <= 0 || dur > req.To.Sub(req.From):
		add("duration %s: want more than 0 and at most to - from (%s)", dur, req.To.Sub(req.From))
	}
	switch {
	case every < MinBacktestEvery:
		add("every %s: want at least %s", every, MinBacktestEvery)
	case dur >= every && dur/every > MaxBacktestPolls:
		add("duration %s polled every %s makes %d polls: at most %d", dur, every, dur/every, MaxBacktestPolls)
	case dur < every:
		add("duration %s is shorter than one poll (every %s)", dur, every)
	}
	if req.Hosts < 1 {
		add("hosts %d: want at least 1", req.Hosts)
	}
	for _, l := range []string{req.HostLabel, req.ServiceLabel} {
		// Legacy names only: the selectors write them unquoted.
		if !model.LegacyValidation.IsValidLabelName(l) {
			add("%q is not a label name", l)
		}
	}
	if req.HostLabel == req.ServiceLabel {
		add("host_label and service_label are both %q", req.HostLabel)
	}
	if len(req.Effects) > MaxCalibrationEffects {
		add("%d effects: at most %d", len(req.Effects), MaxCalibrationEffects)
	}
	for _, e := range req.Effects {
		if ok && !slices.ContainsFunc(p.Metrics, func(m Metric) bool { return m.Name == e.Metric }) {
			add("effect on %q: profile %s has no such metric", e.Metric, req.Profile)
		}
		if !(e.Factor > 0) || math.IsInf(e.Factor, 0) {
			add("effect on %q: factor %v: want a positive number (2 doubles the canary's values)", e.Metric, e.Factor)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}
