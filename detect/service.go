package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// ErrInvalid wraps errors in what a client sent; the API answers 400.
var ErrInvalid = errors.New("invalid request")

// ErrTerminal is returned when changing a deployment that has finished.
var ErrTerminal = errors.New("deployment already finished")

// Options configures a Service. Zero fields take the documented defaults.
type Options struct {
	// Logger receives evaluation errors. Nil discards them.
	Logger *slog.Logger
	// Interval is how often every active deployment is evaluated. Zero
	// means 15s.
	Interval time.Duration
	// Workers bounds the deployments evaluated at once. Zero means 4.
	Workers int
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Judge sets the verdicts' error rates.
	Judge JudgeOptions
	// Profiles are profiles from a file, beside the built-in default and
	// those registered through the API.
	Profiles []Profile
	// Verdicts, if set, receives every verdict as series
	// (immune_deployment_verdict and friends).
	Verdicts storage.Appendable
	// Webhooks are URLs POSTed a Notification when a deployment reaches a
	// terminal verdict, with retries and backoff, while Run runs.
	Webhooks []string
	// BacktestWorkers bounds the replays run at once, over every backtest
	// and calibration together, so history replays leave CPU to ingest and
	// to the live detector. Zero means half of GOMAXPROCS, at least 1.
	BacktestWorkers int
}

// Service owns deployments: registration, changes, evaluation and the
// detector loop that evaluates every active deployment each interval.
type Service struct {
	store *Store
	src   Source
	opts  Options
	log   *slog.Logger

	notify *notifier
	// replays holds a token per replay running, BacktestWorkers at most.
	replays chan struct{}

	mu       sync.RWMutex
	profiles map[string]Profile
}

// NewService returns a service over a store and a metrics source.
func NewService(store *Store, src Source, opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Interval <= 0 {
		opts.Interval = 15 * time.Second
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BacktestWorkers <= 0 {
		opts.BacktestWorkers = max(1, runtime.GOMAXPROCS(0)/2)
	}
	s := &Service{store: store, src: src, opts: opts, log: opts.Logger, profiles: map[string]Profile{},
		notify: newNotifier(opts.Webhooks, store, opts.Logger), replays: make(chan struct{}, opts.BacktestWorkers)}
	for _, p := range builtinProfiles() {
		s.profiles[p.Name] = p
	}
	stored, err := store.Profiles()
	if err != nil {
		return nil, err
	}
	for _, p := range append(opts.Profiles, stored...) {
		if err := p.Validate(); err != nil {
			return nil, err
		}
		s.profiles[p.Name] = p
	}
	return s, nil
}

// Profile returns the named profile.
func (s *Service) Profile(name string) (Profile, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.profiles[name]
	return p, ok
}

// Profiles returns every known profile.
func (s *Service) Profiles() []Profile {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Profile, 0, len(s.profiles))
	for _, p := range s.profiles {
		out = append(out, p)
	}
	return out
}

// PutProfile validates and stores a profile; it replaces one of the same
// name, except the built-in default.
func (s *Service) PutProfile(p Profile) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, b := range builtinProfiles() {
		if p.Name == b.Name {
			return fmt.Errorf("%w: the %q profile is built in", ErrInvalid, b.Name)
		}
	}
	if err := s.store.PutProfile(p); err != nil {
		return err
	}
	s.mu.Lock()
	s.profiles[p.Name] = p
	s.mu.Unlock()
	return nil
}

// canaryLookback is how far back a new canary selector must match series.
const canaryLookback = 10 * time.Minute

// Register validates and stores a new deployment and evaluates it once.
func (s *Service) Register(ctx context.Context, d *Deployment) (*Deployment, error) {
	if err := s.prepare(ctx, d, s.opts.Now()); err != nil {
		return nil, err
	}
	if err := s.store.Create(d); err != nil {
		return nil, err
	}
	// The registration stands even if this first look fails: the detector
	// evaluates it again at its next interval.
	evaluated, err := s.Evaluate(ctx, d.ID)
	if err != nil {
		s.log.Warn("first evaluation of a new deployment", "id", d.ID, "err", err)
		return d, nil
	}
	return evaluated, nil
}

// prepare completes and checks a new deployment as it would be registered
// at asOf: defaults, profile, cohorts and stages, a canary that reports,
// and the step, measured from the scrape interval when not given. Errors
// in what the client sent wrap ErrInvalid.
func (s *Service) prepare(ctx context.Context, d *Deployment, asOf time.Time) error {
	measureStep := d.Step == 0
	d.ID, d.State, d.Verdict, d.Checks = "", Pending, nil, nil
	if err := d.Validate(asOf, s.Profile); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for i, st := range d.Stages {
		if err := validateStage(d, st); err != nil {
			return fmt.Errorf("%w: stage %d: %v", ErrInvalid, i, err)
		}
	}
	if err := s.requireSeries(ctx, d.Canary, asOf); err != nil {
		return err
	}
	if measureStep {
		d.Step = Duration(s.scrapeInterval(ctx, d, asOf))
	}
	return nil
}

// requireSeries fails with ErrInvalid when selector matched no series in
// the last canaryLookback.
func (s *Service) requireSeries(ctx context.Context, selector string, now time.Time) error {
	q := fmt.Sprintf("count(last_over_time(%s[%s]))", selector, formatStep(canaryLookback))
	series, err := s.src.QueryRange(ctx, q, now, now, time.Minute)
	if err != nil {
		return fmt.Errorf("check canary selector: %w", err)
	}
	if len(series) == 0 {
		return fmt.Errorf("%w: canary selector %s matches no series in the last %s: is the canary reporting, and are its labels right?", ErrInvalid, selector, canaryLookback)
	}
	return nil
}

// intervalProbe is the window in which samples are counted to measure the
// scrape interval.
const intervalProbe = 5 * time.Minute

// scrapeInterval measures how often the deployment's series are sampled:
// the median count of samples per series over intervalProbe, taken on the
// baseline (whose series are older than the canary's) or else the canary,
// for its most common metric name (the count drops the names, and series
// that differ only by name would collide). Evaluating at that step, with
// windows of two steps, gives each step the increment between two
// consecutive scrapes and no step shares one. It returns DefaultStep when
// the data do not tell.
func (s *Service) scrapeInterval(ctx context.Context, d *Deployment, asOf time.Time) time.Duration {
	selector := d.Baseline
	if selector == "" {
		selector = d.Canary
	}
	instant := func(q string) []Series {
		series, err := s.src.QueryRange(ctx, q, asOf, asOf, time.Minute)
		if err != nil {
			s.log.Warn("measure the scrape interval", "query", q, "err", err)
			return nil
		}
		return series
	}
	name, most := "", 0.0
	for _, sr := range instant(fmt.Sprintf("count by (__name__) (%s)", selector)) {
		if len(sr.Points) > 0 && sr.Points[0].V > most {
			name, most = sr.Labels.Get(labels.MetricName), sr.Points[0].V
		}
	}
	if name == "" {
		return DefaultStep
	}
	matchers, err := ParseSelector(selector)
	if err != nil {
		return DefaultStep
	}
	matchers = append(matchers, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, name))
	sel := (&parser.VectorSelector{LabelMatchers: matchers}).String()
	series := instant(fmt.Sprintf("quantile(0.5, count_over_time(%s[%s]))", sel, formatStep(intervalProbe)))
	if len(series) == 0 || len(series[0].Points) == 0 {
		return DefaultStep
	}
	n := series[0].Points[0].V
	if !(n >= 3) {
		return DefaultStep
	}
	step := (intervalProbe / time.Duration(n)).Round(time.Second)
	return min(max(step, time.Second), 10*time.Minute)
}

func validateStage(d *Deployment, st Stage) error {
	_, canary, baseline := d.StageAt(st.At)
	if st.Canary != "" {
		canary = st.Canary
	}
	if st.Baseline != "" {
		baseline = st.Baseline
	}
	return validateCohorts(canary, baseline)
}

// AddStage records that the canary grew. The stage starts now unless it
// says otherwise; it may not start before the previous one.
func (s *Service) AddStage(ctx context.Context, id string, st Stage) (*Deployment, error) {
	now := s.opts.Now()
	if st.At.IsZero() {
		st.At = now
	}
	if _, err := s.store.Get(id); err != nil {
		return nil, err
	}
	if st.Canary != "" {
		if err := s.requireSeries(ctx, st.Canary, now); err != nil {
			return nil, err
		}
	}
	return s.store.Update(id, func(d *Deployment) error {
		if d.State.Terminal() {
			return fmt.Errorf("%w: %s is %s", ErrTerminal, id, d.State)
		}
		if err := checkNewStage(d, st, now); err != nil {
			return err
		}
		d.Stages = append(d.Stages, st)
		return nil
	})
}

// checkNewStage checks a stage reported at now against the deployment's
// stages so far: it may not start before the deployment or the previous
// stage, nor in the future, and its cohorts must not overlap.
func checkNewStage(d *Deployment, st Stage, now time.Time) error {
	if st.At.Before(d.Start) || (len(d.Stages) > 0 && st.At.Before(d.Stages[len(d.Stages)-1].At)) {
		return fmt.Errorf("%w: a stage may not start before the deployment or the previous stage", ErrInvalid)
	}
	if st.At.After(now.Add(time.Minute)) {
		return fmt.Errorf("%w: stage start %s is in the future", ErrInvalid, st.At.Format(time.RFC3339))
	}
	if err := validateStage(d, st); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// AddCheck records external evidence; a failed critical check fails the
// deployment at its next evaluation, which this call runs at once.
func (s *Service) AddCheck(ctx context.Context, id string, c Check) (*Deployment, error) {
	if c.Name == "" {
		return nil, fmt.Errorf("%w: check name is required", ErrInvalid)
	}
	c.At = s.opts.Now()
	if _, err := s.store.Update(id, func(d *Deployment) error {
		if d.State.Terminal() {
			return fmt.Errorf("%w: %s is %s", ErrTerminal, id, d.State)
		}
		d.Checks = append(d.Checks, c)
		return nil
	}); err != nil {
		return nil, err
	}
	return s.Evaluate(ctx, id)
}

// Abort ends a deployment as aborted.
func (s *Service) Abort(id, reason string) (*Deployment, error) {
	if reason == "" {
		reason = "aborted by the deploy tool"
	}
	return s.store.Finish(id, func(d *Deployment) Verdict {
		now := s.opts.Now()
		stage, _, _ := d.StageAt(now)
		return Verdict{At: now, Verdict: Aborted, Reason: reason, Stage: stage}
	})
}

// Get returns a deployment.
func (s *Service) Get(id string) (*Deployment, error) { return s.store.Get(id) }

// Snapshot returns a deployment as last written, kept in memory for the
// readers that poll it; it must not be modified.
func (s *Service) Snapshot(id string) (*Snapshot, error) { return s.store.Snapshot(id) }

// List returns deployments, filtered by service and state when not empty.
func (s *Service) List(service string, state Status) ([]*Deployment, error) {
	return s.store.List(func(d *Deployment) bool {
		return (service == "" || d.Service == service) && (state == "" || d.State == state)
	})
}

// History returns a deployment's verdicts, oldest first.
func (s *Service) History(id string, limit int) ([]Verdict, error) {
	if _, err := s.store.Get(id); err != nil {
		return nil, err
	}
	return s.store.History(id, limit)
}

// Evaluate judges a deployment now and records the verdict. A finished
// deployment is returned as it is.
func (s *Service) Evaluate(ctx context.Context, id string) (*Deployment, error) {
	d, err := s.store.Get(id)
	if err != nil || d.State.Terminal() {
		return d, err
	}
	p, ok := s.Profile(d.Profile)
	if !ok {
		return nil, fmt.Errorf("deployment %s: profile %q is gone", id, d.Profile)
	}
	v, err := judgeAt(ctx, s.src, d, p, s.opts.Now(), s.opts.Judge, nil)
	if err != nil {
		return nil, fmt.Errorf("deployment %s: %w", id, err)
	}
	d, err = s.store.Record(id, v)
	if err == nil && v.Verdict.Terminal() && d.State == v.Verdict {
		s.notify.enqueue(Notification{ID: d.ID, Service: d.Service, Version: d.Version, Verdict: v.Verdict, Reason: v.Reason, At: v.At, Details: v})
	}
	if err == nil && s.opts.Verdicts != nil {
		// The verdict is stored; failing to chart it is only logged.
		if xerr := exportVerdict(ctx, s.opts.Verdicts, d, v); xerr != nil {
			s.log.Warn("export verdict series", "id", id, "err", xerr)
		}
	}
	return d, err
}

// judgeAt collects the deployment's metrics as they stood at asOf and
// judges them. It is the one path of both the live detector and backtests:
// queries evaluated at or before asOf see no sample stamped after it.
// inject, when not nil, changes the collected data before the judge sees
// it: only calibration's injected regressions use it; live is always nil.
func judgeAt(ctx context.Context, src Source, d *Deployment, p Profile, asOf time.Time, opts JudgeOptions, inject func([]MetricData)) (Verdict, error) {
	data, err := Collect(ctx, src, d, p, asOf)
	if err != nil {
		return Verdict{}, err
	}
	if inject != nil {
		inject(data)
	}
	return Judge(d, p, data, asOf, opts), nil
}

// Run evaluates every active deployment each interval until ctx ends, at
// most Workers at a time. Deployments left active by a restart resume.
func (s *Service) Run(ctx context.Context) error {
	notified := make(chan struct{})
	go func() {
		defer close(notified)
		s.notify.run(ctx)
	}()
	defer func() { <-notified }()
	ticker := time.NewTicker(s.opts.Interval)
	defer ticker.Stop()
	for {
		s.evaluateActive(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

func (s *Service) evaluateActive(ctx context.Context) {
	active, err := s.store.List(func(d *Deployment) bool { return !d.State.Terminal() })
	if err != nil {
		s.log.Error("list deployments", "err", err)
		return
	}
	sem := make(chan struct{}, s.opts.Workers)
	var wg sync.WaitGroup
	for _, d := range active {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ectx, cancel := context.WithTimeout(ctx, s.opts.Interval)
			defer cancel()
			if _, err := s.Evaluate(ectx, d.ID); err != nil && ctx.Err() == nil {
				s.log.Error("evaluate deployment", "id", d.ID, "err", err)
			}
		}()
	}
	wg.Wait()
}
