package detect

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/immune-dev/immune/bench"
	"github.com/immune-dev/immune/tsdb"
)

// simClock is a clock the test moves.
type simClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *simClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// feed scrapes a fleet into a real store as simulated time passes, every
// 15s, as Prometheus would remote-write it.
type feed struct {
	db    *tsdb.DB
	fleet *bench.Fleet
	next  time.Time
}

func (f *feed) until(t testing.TB, end time.Time) {
	t.Helper()
	for ; !f.next.After(end); f.next = f.next.Add(15 * time.Second) {
		app := f.db.Appender(context.Background())
		f.fleet.Scrape(f.next, 15*time.Second, func(ls labels.Labels, tm int64, v float64) {
			if _, err := app.Append(0, ls, tm, v); err != nil {
				t.Fatal(err)
			}
		})
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// newSimService returns a service over a fresh real store whose clock and
// the store's are clock, with a fleet feeding it from 30 minutes before t0.
func newSimService(t testing.TB, clock *simClock, fleet bench.Fleet) (*Service, *feed) {
	t.Helper()
	db, err := tsdb.Open(t.TempDir(), tsdb.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	svc, err := NewService(store, engineSource(db), Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return svc, &feed{db: db, fleet: &fleet, next: t0.Add(-30 * time.Minute)}
}

func checkoutFleet(hosts, canary int, r bench.Regression) bench.Fleet {
	return bench.Fleet{Service: "checkout", Version: "v1", CanaryVersion: "v2", Hosts: hosts, Canary: canary, RPS: 200,
		ErrorRate: 0.01, LatencyMedian: 0.08, Regression: r, RegressionAt: t0, Seed: 11}
}

// Cohorts by host: the canary grows from host 0 to hosts 0 and 1.
const (
	oneHost      = `{service="checkout",instance="checkout-0:8080"}`
	oneHostRest  = `{service="checkout",instance!="checkout-0:8080"}`
	twoHosts     = `{service="checkout",instance=~"checkout-0:8080|checkout-1:8080"}`
	twoHostsRest = `{service="checkout",instance!~"checkout-0:8080|checkout-1:8080"}`
)

func verdictJSON(t *testing.T, v Verdict) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBacktestEqualsLiveDetector runs a deployment live in simulated time,
// the fleet's samples arriving as the clock moves and the canary growing
// at 90 seconds, then backtests the same definition after more data has
// arrived: the verdicts at each poll are the same, reason and evidence
// included.
func TestBacktestEqualsLiveDetector(t *testing.T) {
	ctx := context.Background()
	clock := &simClock{}
	svc, fleet := newSimService(t, clock, checkoutFleet(8, 2, bench.Regression{LatencyFactor: 2}))
	const every = 30 * time.Second
	stageAt := t0.Add(90 * time.Second)
	def := func() *Deployment {
		return &Deployment{Service: "checkout", Version: "v2", Start: t0, Canary: oneHost, Baseline: oneHostRest}
	}

	// Live: registered at the first poll, evaluated every 30s after it.
	now := t0.Add(every)
	clock.Set(now)
	fleet.until(t, now)
	d, err := svc.Register(ctx, def())
	if err != nil {
		t.Fatal(err)
	}
	for !d.State.Terminal() && now.Before(t0.Add(30*time.Minute)) {
		now = now.Add(every)
		clock.Set(now)
		fleet.until(t, now)
		if now.Equal(stageAt) {
			if _, err := svc.AddStage(ctx, d.ID, Stage{Canary: twoHosts, Baseline: twoHostsRest}); err != nil {
				t.Fatal(err)
			}
		}
		if d, err = svc.Evaluate(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
	}
	live, err := svc.History(d.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != Fail || !strings.Contains(d.Verdict.Reason, "latency-mean") || d.Verdict.Stage != 1 {
		t.Fatalf("live: %s at stage %d after %s: %s; want a fail on latency-mean after the stage", d.State, d.Verdict.Stage, d.Verdict.At.Sub(t0), d.Verdict.Reason)
	}

	// The rest of the hour arrives before the backtest runs.
	end := t0.Add(time.Hour)
	clock.Set(end)
	fleet.until(t, end)
	bd := def()
	bd.Stages = []Stage{{At: stageAt, Canary: twoHosts, Baseline: twoHostsRest}}
	bt, err := svc.Backtest(ctx, bd, Schedule{Every: every, Until: end})
	if err != nil {
		t.Fatal(err)
	}
	if len(bt.Timeline) != len(live) {
		t.Fatalf("backtest has %d polls, live %d (live ended %s at %s, backtest %s at %s)",
			len(bt.Timeline), len(live), d.State, d.Verdict.At.Sub(t0), bt.Verdict, bt.At.Sub(t0))
	}
	for i := range live {
		if got, want := verdictJSON(t, bt.Timeline[i]), verdictJSON(t, live[i]); got != want {
			t.Fatalf("poll %d at %s differs:\nbacktest %s\nlive     %s", i, live[i].At.Sub(t0), got, want)
		}
	}
	if bt.Verdict != Fail || !bt.Decided || !bt.At.Equal(d.Verdict.At) || bt.Reason != d.Verdict.Reason {
		t.Fatalf("outcome %s (decided %v) at %s: %s; live %s at %s", bt.Verdict, bt.Decided, bt.At, bt.Reason, d.State, d.Verdict.At)
	}
	t.Logf("%d polls, %s after %s: %s", len(live), bt.Verdict, bt.At.Sub(t0), bt.Reason)
}

// TestBacktestBackfilledRegression backtests a deployment over a fleet
// written into the store beforehand, whose canary is twice as slow from the
// deploy on: it fails on latency-mean at the poll where judging the store
// afresh at each poll (no shared state between polls) first fails, and the
// result is stored, listed, and registers nothing.
func TestBacktestBackfilledRegression(t *testing.T) {
	ctx := context.Background()
	clock := &simClock{}
	svc, fleet := newSimService(t, clock, checkoutFleet(8, 1, bench.Regression{LatencyFactor: 2}))
	end := t0.Add(30 * time.Minute)
	clock.Set(end)
	fleet.until(t, end)
	def := &Deployment{Service: "checkout", Version: "v2", Start: t0,
		Canary: `{service="checkout",version="v2"}`, Baseline: `{service="checkout",version="v1"}`}
	bt, err := svc.Backtest(ctx, def, Schedule{})
	if err != nil {
		t.Fatal(err)
	}

	// The live judgement: Collect and Judge over the store at each poll.
	d := bt.Deployment
	p, _ := svc.Profile(d.Profile)
	var want Verdict
	for now := t0.Add(DefaultBacktestEvery); !now.After(end); now = now.Add(DefaultBacktestEvery) {
		data, err := Collect(ctx, svc.src, &d, p, now)
		if err != nil {
			t.Fatal(err)
		}
		if want = Judge(&d, p, data, now, JudgeOptions{}); want.Verdict.Terminal() {
			break
		}
	}
	if want.Verdict != Fail || !strings.HasPrefix(want.Reason, "latency-mean: ") {
		t.Fatalf("the judge itself says %s at %s: %s", want.Verdict, want.At.Sub(t0), want.Reason)
	}
	if bt.Verdict != Fail || !bt.Decided || !bt.At.Equal(want.At) || verdictJSON(t, bt.Timeline[len(bt.Timeline)-1]) != verdictJSON(t, want) {
		t.Fatalf("backtest: %s at %s: %s\nwant %s at %s: %s", bt.Verdict, bt.At.Sub(t0), bt.Reason, want.Verdict, want.At.Sub(t0), want.Reason)
	}
	if want := int(want.At.Sub(t0) / DefaultBacktestEvery); bt.Polls != want || len(bt.Timeline) != want {
		t.Fatalf("%d polls (%d in the timeline), want %d: one every 30s until the fail", bt.Polls, len(bt.Timeline), want)
	}
	for _, v := range bt.Timeline[:len(bt.Timeline)-1] {
		if v.Verdict != Pending {
			t.Fatalf("poll at %s: %s before the fail", v.At.Sub(t0), v.Verdict)
		}
	}
	if bt.Deployment.Step != Duration(15*time.Second) || !bt.Until.Equal(t0.Add(time.Hour)) && !bt.Until.Equal(end) {
		t.Errorf("step %s (want the 15s scrape interval), until %s", time.Duration(bt.Deployment.Step), bt.Until)
	}

	got, err := svc.GetBacktest(bt.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustJSON(t, got), mustJSON(t, bt); a != b {
		t.Fatalf("stored backtest differs:\n got %s\nwant %s", a, b)
	}
	list, err := svc.ListBacktests("checkout")
	if err != nil || len(list) != 1 || list[0].ID != bt.ID || list[0].Timeline != nil || list[0].Verdict != Fail {
		t.Fatalf("list: %v %v", list, err)
	}
	if other, err := svc.ListBacktests("payments"); err != nil || len(other) != 0 {
		t.Fatalf("list of another service: %v %v", other, err)
	}
	if _, err := svc.GetBacktest("bt-nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown backtest: %v", err)
	}
	if ds, err := svc.List("", ""); err != nil || len(ds) != 0 {
		t.Fatalf("a backtest registered deployments: %v %v", ds, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBacktestCheckAtItsTime: a failed critical check fails the replay at
// the time it was reported, with a poll there, as AddCheck evaluates at
// once; the polls before it do not see it.
func TestBacktestCheckAtItsTime(t *testing.T) {
	clock := &simClock{}
	svc, fleet := newSimService(t, clock, checkoutFleet(8, 1, bench.Regression{}))
	end := t0.Add(30 * time.Minute)
	clock.Set(end)
	fleet.until(t, end)
	at := t0.Add(2*time.Minute + 10*time.Second)
	def := &Deployment{Service: "checkout", Version: "v2", Start: t0, MinBake: Duration(10 * time.Minute),
		Canary: `{service="checkout",version="v2"}`, Baseline: `{service="checkout",version="v1"}`,
		Checks: []Check{{Name: "smoke", Critical: true, Details: "GET /healthz: 503", At: at}}}
	bt, err := svc.Backtest(context.Background(), def, Schedule{Until: end})
	if err != nil {
		t.Fatal(err)
	}
	if bt.Verdict != Fail || !bt.At.Equal(at) || bt.Reason != `check "smoke" failed: GET /healthz: 503` || bt.Polls != 5 {
		t.Fatalf("%s at %s after %d polls: %s", bt.Verdict, bt.At.Sub(t0), bt.Polls, bt.Reason)
	}
	if before := bt.Timeline[3]; before.Verdict != Pending || !before.At.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("poll before the check: %s at %s", before.Verdict, before.At.Sub(t0))
	}
	if len(bt.Deployment.Checks) != 1 {
		t.Fatalf("the result lost the checks: %+v", bt.Deployment.Checks)
	}
}

// TestBacktestNoDataIsInconclusive: the fleet stops reporting at the deploy.
// A schedule that ends before the maximum bake ends inconclusive with the
// reason; one that reaches it ends as the gate would, inconclusive too;
// never a pass.
func TestBacktestNoDataIsInconclusive(t *testing.T) {
	clock := &simClock{}
	svc, fleet := newSimService(t, clock, checkoutFleet(8, 1, bench.Regression{}))
	clock.Set(t0)
	fleet.until(t, t0)
	clock.Set(t0.Add(2 * time.Hour))
	def := func() *Deployment {
		return &Deployment{Service: "checkout", Version: "v2", Start: t0,
			Canary: `{service="checkout",version="v2"}`, Baseline: `{service="checkout",version="v1"}`}
	}
	for _, tc := range []struct {
		until   time.Duration
		decided bool
		reason  string
	}{
		{20 * time.Minute, false, "the schedule ended at 2026-03-02T10:20:00Z, 20m0s after the start, before a verdict; the gate was still pending: error-ratio: "},
		{time.Hour, true, "maximum bake time reached without enough evidence: error-ratio: "},
	} {
		bt, err := svc.Backtest(context.Background(), def(), Schedule{Until: t0.Add(tc.until)})
		if err != nil {
			t.Fatal(err)
		}
		if bt.Verdict != Inconclusive || bt.Decided != tc.decided || !strings.HasPrefix(bt.Reason, tc.reason) || !bt.At.Equal(t0.Add(tc.until)) {
			t.Fatalf("until %s: %s (decided %v) at %s: %s", tc.until, bt.Verdict, bt.Decided, bt.At.Sub(t0), bt.Reason)
		}
		for _, v := range bt.Timeline {
			if v.Verdict == Pass {
				t.Fatalf("until %s: pass at %s without data", tc.until, v.At.Sub(t0))
			}
		}
	}
}

// TestBacktestBadInput: a definition the gate refuses live is refused with
// the same error; a schedule out of bounds is refused naming the bound.
func TestBacktestBadInput(t *testing.T) {
	ctx := context.Background()
	clock := &simClock{}
	svc, fleet := newSimService(t, clock, checkoutFleet(8, 1, bench.Regression{}))
	fleet.next = t0.Add(-4 * time.Hour)
	now := t0.Add(30 * time.Minute)
	clock.Set(now)
	fleet.until(t, now)
	def := func(tweak func(*Deployment)) *Deployment {
		d := &Deployment{Service: "checkout", Version: "v2", Start: t0,
			Canary: `{service="checkout",version="v2"}`, Baseline: `{service="checkout",version="v1"}`}
		if tweak != nil {
			tweak(d)
		}
		return d
	}
	for _, tc := range []struct {
		name  string
		tweak func(*Deployment)
	}{
		{"overlapping cohorts", func(d *Deployment) { d.Baseline = `{service="checkout"}` }},
		{"canary matches nothing", func(d *Deployment) { d.Canary = `{service="checkout",version="v9"}` }},
		{"unknown profile", func(d *Deployment) { d.Profile = "nope" }},
		{"bad bake", func(d *Deployment) { d.MinBake, d.MaxBake = Duration(time.Hour), Duration(time.Minute) }},
		{"overlapping stage", func(d *Deployment) {
			d.Stages = []Stage{{At: t0.Add(time.Minute), Canary: `{service="checkout"}`}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, liveErr := svc.Register(ctx, def(tc.tweak))
			_, err := svc.Backtest(ctx, def(tc.tweak), Schedule{})
			if liveErr == nil || !errors.Is(err, ErrInvalid) || err.Error() != liveErr.Error() {
				t.Fatalf("backtest: %v\nlive:     %v", err, liveErr)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		tweak func(*Deployment)
		sched Schedule
		want  string
	}{
		{"until before start", nil, Schedule{Until: t0.Add(-time.Minute)}, "until 2026-03-02T09:59:00Z is not after the start 2026-03-02T10:00:00Z"},
		{"too many polls", func(d *Deployment) { d.Start = t0.Add(-3 * time.Hour) }, Schedule{Every: time.Second, Until: now},
			"the schedule has 12600 polls (every 1s from 2026-03-02T07:00:00Z to 2026-03-02T10:30:00Z): at most 10000"},
		{"too many polls by default", func(d *Deployment) { d.Start = t0.Add(-3 * time.Hour); d.MaxBake = Duration(6 * time.Hour) },
			Schedule{Every: time.Second}, "at most 10000"},
		{"every under a second", nil, Schedule{Every: 500 * time.Millisecond}, "every 500ms: want at least 1s"},
		{"until in the future", nil, Schedule{Until: now.Add(time.Hour)}, "is in the future: a backtest replays stored history"},
		{"no start", func(d *Deployment) { d.Start = time.Time{} }, Schedule{}, "start is required"},
		{"stage without a time", func(d *Deployment) { d.Stages = []Stage{{Note: "2 hosts"}} }, Schedule{}, "stage 0: at is required in a backtest"},
		{"stages out of order", func(d *Deployment) { d.Stages = []Stage{{At: t0.Add(2 * time.Minute)}, {At: t0.Add(time.Minute)}} }, Schedule{},
			"a stage may not start before the deployment or the previous stage"},
		{"check before the start", func(d *Deployment) { d.Checks = []Check{{Name: "smoke", At: t0}} }, Schedule{}, `check "smoke": at`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.Backtest(ctx, def(tc.tweak), tc.sched)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an invalid request saying %q", err, tc.want)
			}
		})
	}
	if bts, err := svc.ListBacktests(""); err != nil || len(bts) != 0 {
		t.Fatalf("refused backtests were stored: %v %v", bts, err)
	}
}
