package detect

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Bounds and defaults of a backtest's schedule.
const (
	// DefaultBacktestEvery is the time between a backtest's polls when the
	// schedule does not say.
	DefaultBacktestEvery = 30 * time.Second
	// MinBacktestEvery is the shortest time between polls.
	MinBacktestEvery = time.Second
	// MaxBacktestPolls bounds the evaluations of one backtest.
	MaxBacktestPolls = 10_000
)

// Schedule is when a backtest polls the gate: at start+Every,
// start+2·Every, ... up to Until, as a deploy tool polling the live gate
// would.
type Schedule struct {
	// Every is the time between polls. Zero means DefaultBacktestEvery.
	Every time.Duration
	// Until is the time of the last poll. Zero means the deployment's
	// maximum bake time, or now if that is sooner.
	Until time.Time
}

// Backtest is the replay of a deployment over stored history: the verdicts
// the gate would have given had it been polled through it.
type Backtest struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// Deployment is the definition as the gate would have registered it:
	// defaults applied and the step measured from the scrape interval.
	Deployment Deployment `json:"deployment"`
	Every      Duration   `json:"every"`
	Until      time.Time  `json:"until"`
	// Verdict is the outcome: the gate's first terminal verdict, or
	// inconclusive when the schedule ended before one (never pass).
	Verdict Status `json:"verdict"`
	Reason  string `json:"reason"`
	// At is when the gate reached Verdict, or the last poll when it did not.
	At time.Time `json:"at"`
	// Decided tells whether the gate itself reached Verdict; false when
	// the schedule ended while it was still pending.
	Decided bool `json:"decided"`
	// Polls is the number of evaluations in Timeline.
	Polls int `json:"polls"`
	// Timeline is every evaluation, oldest first. It stops at the first
	// terminal verdict, as the live detector does. Lists leave it out.
	Timeline []Verdict `json:"timeline,omitempty"`
}

// Backtest replays a deployment definition, as accepted by Register, over
// stored history and stores the result. It registers nothing: the live
// detector never sees it. The definition is checked as Register checks it,
// with the same errors (wrapping ErrInvalid), as of the first poll; stages
// and checks in it apply from their times, as if reported then.
func (s *Service) Backtest(ctx context.Context, d *Deployment, sched Schedule) (*Backtest, error) {
	bt, err := s.replay(ctx, d, sched, nil)
	if err != nil {
		return nil, err
	}
	bt.Created = s.opts.Now()
	if err := s.store.CreateBacktest(bt); err != nil {
		return nil, err
	}
	s.log.Info("backtest", "id", bt.ID, "service", d.Service, "version", d.Version, "verdict", bt.Verdict, "polls", bt.Polls)
	return bt, nil
}

// GetBacktest returns a stored backtest with its timeline.
func (s *Service) GetBacktest(id string) (*Backtest, error) { return s.store.GetBacktest(id) }

// ListBacktests returns stored backtests without their timelines, of one
// service when service is not empty.
func (s *Service) ListBacktests(service string) ([]*Backtest, error) {
	return s.store.ListBacktests(func(b *Backtest) bool { return service == "" || b.Deployment.Service == service })
}

// replay checks the definition and the schedule, then evaluates the
// deployment at each poll with judgeAt, the live detector's own path,
// passing inject through (nil but for calibration's injected regressions).
func (s *Service) replay(ctx context.Context, d *Deployment, sched Schedule, inject func([]MetricData)) (*Backtest, error) {
	now := s.opts.Now()
	every := sched.Every
	if every == 0 {
		every = DefaultBacktestEvery
	}
	if every < MinBacktestEvery {
		return nil, fmt.Errorf("%w: every %s: want at least %s", ErrInvalid, every, MinBacktestEvery)
	}
	if d.Start.IsZero() {
		return nil, fmt.Errorf("%w: start is required: a backtest replays a deployment that started in the past", ErrInvalid)
	}
	until := sched.Until
	if !until.IsZero() {
		if err := checkUntil(d.Start, until, every, now); err != nil {
			return nil, err
		}
	}
	first := d.Start.Add(every)
	if first.After(now) {
		return nil, fmt.Errorf("%w: the first poll, %s after the start, is in the future: nothing to replay yet", ErrInvalid, every)
	}
	// prepare forgets checks: live, they are reported after registration.
	checks := slices.Clone(d.Checks)
	// The deployment is registered at its first poll, as a deploy tool
	// registering it then would have been: the canary must have reported
	// in the 10 minutes before, and the step is measured then.
	if err := s.prepare(ctx, d, first); err != nil {
		return nil, err
	}
	if err := s.checkStages(ctx, d); err != nil {
		return nil, err
	}
	if until.IsZero() {
		until = d.Start.Add(time.Duration(d.MaxBake))
		if until.After(now) {
			until = now
		}
		if err := checkUntil(d.Start, until, every, now); err != nil {
			return nil, err
		}
	}
	times, err := pollTimes(d.Start, until, every, checks)
	if err != nil {
		return nil, err
	}
	p, ok := s.Profile(d.Profile)
	if !ok {
		return nil, fmt.Errorf("%w: unknown profile %q", ErrInvalid, d.Profile)
	}

	select {
	case s.replays <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.replays }()

	bt := &Backtest{Deployment: *d, Every: Duration(every), Until: until}
	src := newPrefixSource(s.src)
	view := *d
	for _, t := range times {
		// A check counts from the time it was reported, as AddCheck
		// records it and evaluates at once.
		view.Checks = nil
		for _, c := range checks {
			if !c.At.After(t) {
				view.Checks = append(view.Checks, c)
			}
		}
		v, err := judgeAt(ctx, src, &view, p, t, s.opts.Judge, inject)
		if err != nil {
			return nil, fmt.Errorf("backtest at %s: %w", t.Format(time.RFC3339), err)
		}
		bt.Timeline = append(bt.Timeline, v)
		if v.Verdict.Terminal() {
			break
		}
	}
	bt.Deployment.Checks = checks
	bt.Polls = len(bt.Timeline)
	last := bt.Timeline[len(bt.Timeline)-1]
	bt.At = last.At
	if last.Verdict.Terminal() {
		bt.Verdict, bt.Reason, bt.Decided = last.Verdict, last.Reason, true
	} else {
		// The gate was still pending: a replay that ran out of schedule or
		// of data is inconclusive, never a pass.
		bt.Verdict = Inconclusive
		bt.Reason = fmt.Sprintf("the schedule ended at %s, %s after the start, before a verdict; the gate was still pending: %s",
			until.Format(time.RFC3339), until.Sub(d.Start), last.Reason)
	}
	return bt, nil
}

// checkUntil checks the end of a schedule: after the start by at least a
// poll, not in the future, and at most MaxBacktestPolls polls.
func checkUntil(start, until time.Time, every time.Duration, now time.Time) error {
	switch {
	case !until.After(start):
		return fmt.Errorf("%w: until %s is not after the start %s", ErrInvalid, until.Format(time.RFC3339), start.Format(time.RFC3339))
	case until.After(now):
		return fmt.Errorf("%w: until %s is in the future: a backtest replays stored history; leave it out to replay up to now", ErrInvalid, until.Format(time.RFC3339))
	case until.Sub(start) < every:
		return fmt.Errorf("%w: until %s is less than one poll (every %s) after the start", ErrInvalid, until.Format(time.RFC3339), every)
	}
	if n := until.Sub(start) / every; n > MaxBacktestPolls {
		return fmt.Errorf("%w: the schedule has %d polls (every %s from %s to %s): at most %d; poll less often or end sooner",
			ErrInvalid, n, every, start.Format(time.RFC3339), until.Format(time.RFC3339), MaxBacktestPolls)
	}
	return nil
}

// pollTimes returns the schedule's polls and, between them, the times of
// the checks: the live gate evaluates when a check is reported.
func pollTimes(start, until time.Time, every time.Duration, checks []Check) ([]time.Time, error) {
	var times []time.Time
	for t := start.Add(every); !t.After(until); t = t.Add(every) {
		times = append(times, t)
	}
	for _, c := range checks {
		if c.Name == "" {
			return nil, fmt.Errorf("%w: check name is required", ErrInvalid)
		}
		if !c.At.After(start) {
			return nil, fmt.Errorf("%w: check %q: at %s: want the time it was reported, after the start", ErrInvalid, c.Name, c.At.Format(time.RFC3339))
		}
		if !c.At.After(until) {
			times = append(times, c.At)
		}
	}
	slices.SortFunc(times, time.Time.Compare)
	times = slices.CompactFunc(times, time.Time.Equal)
	if len(times) > MaxBacktestPolls {
		return nil, fmt.Errorf("%w: the schedule and the checks make %d polls: at most %d", ErrInvalid, len(times), MaxBacktestPolls)
	}
	return times, nil
}

// checkStages checks each stage as AddStage would have when it was
// reported at its time: in order, not before the deployment, and a new
// canary that reported in the 10 minutes before.
func (s *Service) checkStages(ctx context.Context, d *Deployment) error {
	for i, st := range d.Stages {
		if st.At.IsZero() {
			return fmt.Errorf("%w: stage %d: at is required in a backtest: the time the canary grew", ErrInvalid, i)
		}
		if st.Canary != "" {
			if err := s.requireSeries(ctx, st.Canary, st.At); err != nil {
				return err
			}
		}
		before := *d
		before.Stages = d.Stages[:i]
		if err := checkNewStage(&before, st, st.At); err != nil {
			return err
		}
	}
	return nil
}
