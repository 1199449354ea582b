package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/immune-dev/immune/bench"
	"github.com/immune-dev/immune/detect/stats"
	"github.com/immune-dev/immune/tsdb"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func TestExpand(t *testing.T) {
	cohort, err := ParseSelector(`{service="checkout",version="v42"}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		template string
		offset   time.Duration
		want     string
	}{
		{`sum(increase(http_requests_total{code=~"5.."}[$step]))`, 0,
			`sum(increase(http_requests_total{code=~"5..",service="checkout",version="v42"}[30s]))`},
		{`avg(process_resident_memory_bytes) / avg(up)`, 24 * time.Hour,
			`avg(process_resident_memory_bytes{service="checkout",version="v42"} offset 1d) / avg(up{service="checkout",version="v42"} offset 1d)`},
	} {
		got, err := Expand(tc.template, cohort, 30*time.Second, tc.offset)
		if err != nil || got != tc.want {
			t.Errorf("Expand(%s):\n got %s (%v)\nwant %s", tc.template, got, err, tc.want)
		}
	}
	if _, err := Expand(`sum(rate(x[$step])`, cohort, time.Minute, 0); err == nil {
		t.Error("a template that does not parse gave no error")
	}
}

func TestValidateDeployment(t *testing.T) {
	profiles := func(name string) (Profile, bool) { return DefaultProfile(), name == DefaultProfileName }
	for _, tc := range []struct {
		name string
		d    Deployment
		want string
	}{
		{"ok", Deployment{Service: "s", Version: "v2", Canary: `{version="v2"}`, Baseline: `{version!="v2"}`}, ""},
		{"no service", Deployment{Version: "v2", Canary: `{version="v2"}`}, "service is required"},
		{"bad selector", Deployment{Service: "s", Version: "v2", Canary: `{version=v2}`}, "canary"},
		{"overlap", Deployment{Service: "s", Version: "v2", Canary: `{service="s"}`, Baseline: `{service="s"}`}, "may select the same series"},
		{"future", Deployment{Service: "s", Version: "v2", Canary: `{version="v2"}`, Start: t0.Add(time.Hour)}, "in the future"},
		{"profile", Deployment{Service: "s", Version: "v2", Canary: `{version="v2"}`, Profile: "nope"}, "unknown profile"},
		{"bake", Deployment{Service: "s", Version: "v2", Canary: `{version="v2"}`, MinBake: Duration(time.Hour), MaxBake: Duration(time.Minute)}, "min_bake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.d.Validate(t0, profiles)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.d.Profile != DefaultProfileName || tc.d.Step == 0 || tc.d.Start != t0 {
					t.Fatalf("defaults not applied: %+v", tc.d)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func testDeployment() *Deployment {
	return &Deployment{ID: "d", Service: "checkout", Version: "v2", Start: t0, Canary: `{version="v2"}`, Baseline: `{version="v1"}`,
		Profile: "p", MinBake: Duration(5 * time.Minute), MaxBake: Duration(time.Hour), Step: Duration(30 * time.Second)}
}

func countProfile() Profile {
	return Profile{Name: "p", Metrics: []Metric{{Name: "errors", Kind: KindCount, Critical: true, Tolerance: 0.2,
		Events: `sum(increase(errors[$step]))`, Exposure: `sum(increase(requests[$step]))`}}}
}

// withWeekly sets weekly as md's week-old comparison, md's being a day old.
func withWeekly(md, weekly MetricData) MetricData {
	md.BaselineSource, weekly.BaselineSource = "1d", "7d"
	md.Weekly = &weekly
	return md
}

func countData(steps int, canaryRate, baselineRate float64) MetricData {
	md := MetricData{CanarySeen: true, BaselineSeen: true, BaselineSource: "concurrent"}
	for range steps {
		md.Steps = append(md.Steps, stats.CountStep{CanaryEvents: 1000 * canaryRate, CanaryExposure: 1000,
			BaselineEvents: 7000 * baselineRate, BaselineExposure: 7000})
	}
	return md
}

func TestJudge(t *testing.T) {
	d, p := testDeployment(), countProfile()
	for _, tc := range []struct {
		name    string
		data    MetricData
		at      time.Duration
		checks  []Check
		want    Status
		metric  Status
		reason  string
		wantETA bool
	}{
		{"regression", countData(20, 0.05, 0.01), 10 * time.Minute, nil, Fail, Fail, "errors: +400", false},
		{"healthy", countData(40, 0.01, 0.01), 20 * time.Minute, nil, Pass, Pass, "within tolerance", false},
		{"healthy but baking", countData(40, 0.01, 0.01), 3 * time.Minute, nil, Pending, Pass, "minimum bake time", true},
		{"fleet-wide incident", countData(40, 0.3, 0.3), 20 * time.Minute, nil, Pass, Pass, "", false},
		{"no traffic", MetricData{CanarySeen: true, BaselineSeen: true, Steps: []stats.CountStep{{BaselineExposure: 100}}}, 10 * time.Minute, nil, Pending, NoData, "no traffic on the canary", true},
		{"no traffic at max bake", MetricData{CanarySeen: true, BaselineSeen: true}, 2 * time.Hour, nil, Inconclusive, NoData, "maximum bake time", false},
		{"missing metric", MetricData{}, 10 * time.Minute, nil, Pending, Error, "metric missing", true},
		{"query error", MetricData{Err: errors.New("boom")}, 10 * time.Minute, nil, Pending, Error, "query failed: boom", true},
		{"failed check", countData(40, 0.01, 0.01), 20 * time.Minute, []Check{{Name: "smoke", Critical: true, Details: "GET /health: 503"}}, Fail, Pass, `check "smoke" failed: GET /health: 503`, false},
		// Without a baseline cohort, a change must show against a day and a
		// week earlier alike.
		{"history: both show it", withWeekly(countData(20, 0.05, 0.01), countData(20, 0.05, 0.01)), 10 * time.Minute, nil, Fail, Fail, "errors: +400", false},
		{"history: the day before differs, the week before not", withWeekly(countData(20, 0.05, 0.01), countData(20, 0.05, 0.05)), 10 * time.Minute, nil, Pending, Pending, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dd := *d
			dd.Checks = tc.checks
			v := Judge(&dd, p, []MetricData{tc.data}, t0.Add(tc.at), JudgeOptions{})
			if v.Verdict != tc.want || v.Metrics[0].Verdict != tc.metric || !strings.Contains(v.Reason, tc.reason) {
				t.Fatalf("got %s (metric %s): %s\nwant %s (metric %s) with %q", v.Verdict, v.Metrics[0].Verdict, v.Reason, tc.want, tc.metric, tc.reason)
			}
			if (v.ETASeconds != nil) != tc.wantETA {
				t.Fatalf("eta %v, want one: %v", v.ETASeconds, tc.wantETA)
			}
		})
	}
}

// TestJudgeHoldsATrend: a canary within tolerance now but heading past it
// within the metric's trend horizon (a leak) is not passed; a flat one is.
func TestJudgeHoldsATrend(t *testing.T) {
	d := testDeployment()
	d.Step = Duration(15 * time.Second)
	p := Profile{Name: "p", Metrics: []Metric{{Name: "memory", Kind: KindGauge, Critical: true, Tolerance: 0.2,
		TrendHorizon: Duration(time.Hour), Query: "avg(mem)"}}}
	gauge := func(growthPerStep float64) MetricData {
		md := MetricData{CanarySeen: true, BaselineSeen: true, BaselineSource: "concurrent"}
		for i := range 60 {
			wobble := 1 + 0.002*float64(i%3-1)
			md.Canary = append(md.Canary, 100*(1+growthPerStep*float64(i))*wobble)
			md.Baseline = append(md.Baseline, 100)
		}
		return md
	}
	at := t0.Add(15 * time.Minute)
	// +0.1% a step is +24% an hour: past +20% within the hour.
	v := Judge(d, p, []MetricData{gauge(0.001)}, at, JudgeOptions{})
	if m := v.Metrics[0]; v.Verdict != Pending || m.Verdict != Pending || !strings.Contains(m.Reason, "trending") ||
		!(float64(m.Evidence.TrendPerHour) > 0.2) {
		t.Fatalf("leak: %s; metric %s: %s (trend %v/h)", v.Verdict, m.Verdict, m.Reason, m.Evidence.TrendPerHour)
	}
	if v := Judge(d, p, []MetricData{gauge(0)}, at, JudgeOptions{}); v.Verdict != Pass {
		t.Fatalf("flat: %s: %s", v.Verdict, v.Reason)
	}
}

// TestJudgeChangeSincePreDeploy: a gross latency regression fails within a
// few steps once the ratio's pre-deploy spread is known, where the
// tolerance test alone needs many more; and a stage that changes the
// canary cohort, and so its usual ratio, is not taken for a change.
func TestJudgeChangeSincePreDeploy(t *testing.T) {
	d := testDeployment()
	d.Step = Duration(15 * time.Second)
	p := Profile{Name: "p", Metrics: []Metric{{Name: "latency", Kind: KindLatency, Critical: true, Tolerance: 0.1, Query: "avg(lat)"}}}
	noise := func(i int) float64 { return 1 + 0.03*math.Sin(float64(i)*1.7) }
	// The canary host is 15% faster than the baseline before the deploy.
	data := func(ratios ...float64) MetricData {
		md := MetricData{CanarySeen: true, BaselineSeen: true, BaselineSource: "concurrent", PreCohortSteps: len(ratios)}
		for i := range 120 {
			md.PreCanary = append(md.PreCanary, 85*noise(i))
			md.PreBaseline = append(md.PreBaseline, 100)
		}
		for i, r := range ratios {
			md.Canary = append(md.Canary, 100*r*noise(i+7))
			md.Baseline = append(md.Baseline, 100)
		}
		return md
	}
	doubled := data(1.7, 1.7, 1.7, 1.7, 1.7, 1.7, 1.7)
	v := Judge(d, p, []MetricData{doubled}, t0.Add(2*time.Minute), JudgeOptions{})
	if m := v.Metrics[0]; v.Verdict != Fail || !strings.Contains(m.Reason, "before the deploy") {
		t.Fatalf("latency doubled for 7 steps: %s: %s (evidence %+v)", v.Verdict, m.Reason, m.Evidence)
	}
	doubled.PreCanary = nil
	if v := Judge(d, p, []MetricData{doubled}, t0.Add(2*time.Minute), JudgeOptions{}); v.Verdict != Pending {
		t.Fatalf("the same without pre-deploy data: %s, want pending (the sign test alone needs more steps)", v.Verdict)
	}

	// After 8 steps a stage adds hosts of the usual speed: the cohort's
	// ratio goes from 0.85 to 1.05, within tolerance.
	staged := data(slices.Repeat([]float64{0.85}, 8)...)
	for i := range 40 {
		staged.Canary = append(staged.Canary, 105*noise(i))
		staged.Baseline = append(staged.Baseline, 100)
	}
	v = Judge(d, p, []MetricData{staged}, t0.Add(12*time.Minute), JudgeOptions{})
	if m := v.Metrics[0]; v.Verdict == Fail || float64(m.Evidence.ChangeSincePreDeploy) > 1 {
		t.Fatalf("a stage with hosts of the usual speed: %s: %s (evidence %+v)", v.Verdict, m.Reason, m.Evidence)
	}
}

// TestMinPrePairs holds the change test's need for pre-deploy pairs to
// half the window's steps: 60 at 15 s, and below a full window at longer
// steps, so one missing scrape does not disable the test.
func TestMinPrePairs(t *testing.T) {
	for _, c := range []struct {
		step time.Duration
		want int
	}{{15 * time.Second, 60}, {30 * time.Second, 30}, {time.Minute, 15}, {5 * time.Minute, 10}} {
		if got := minPrePairs(c.step); got != c.want {
			t.Errorf("minPrePairs(%s) = %d, want %d", c.step, got, c.want)
		}
	}
}

// askedSource answers every range query with one flat series and counts
// the queries asked, by query and range.
type askedSource map[string]int

func (a askedSource) QueryRange(_ context.Context, query string, start, end time.Time, step time.Duration) ([]Series, error) {
	a[fmt.Sprintf("%s [%s, %s]", query, start.Sub(t0), end.Sub(t0))]++
	var s Series
	for at := start; !at.After(end); at = at.Add(step) {
		s.Points = append(s.Points, Point{T: at.UnixMilli(), V: 1})
	}
	return []Series{s}, nil
}

// TestCollectAsksEachQueryOnce holds the weekly pass against history to
// asking the week-old baselines alone: the first pass asked the rest.
func TestCollectAsksEachQueryOnce(t *testing.T) {
	// The first stage has no baseline cohort, the second has one.
	d := &Deployment{Service: "checkout", Version: "v2", Start: t0, Canary: oneHost, Step: Duration(15 * time.Second),
		Stages: []Stage{{At: t0.Add(4 * time.Minute), Canary: twoHosts, Baseline: twoHostsRest}}}
	// Metrics may share a query (count(up)): each is collected alone.
	for _, m := range DefaultProfile().Metrics {
		src := askedSource{}
		data, err := Collect(context.Background(), src, d, Profile{Name: "p", Metrics: []Metric{m}}, t0.Add(10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if md := data[0]; md.Err != nil || md.Weekly == nil || md.Weekly.Err != nil {
			t.Fatalf("%s: collected %+v", m.Name, md)
		}
		for q, n := range src {
			if n > 1 {
				t.Errorf("%s: asked %d times: %s", m.Name, n, q)
			}
		}
	}
}

// fleetStore writes a simulated fleet into a real store: 30 minutes before
// t0 and span after it, scraped every 15s.
func fleetStore(t *testing.T, f bench.Fleet, span time.Duration) *tsdb.DB {
	t.Helper()
	db, err := tsdb.Open(t.TempDir(), tsdb.Options{Now: func() time.Time { return t0.Add(span) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for ts := t0.Add(-30 * time.Minute); !ts.After(t0.Add(span)); ts = ts.Add(15 * time.Second) {
		app := db.Appender(context.Background())
		f.Scrape(ts, 15*time.Second, func(ls labels.Labels, tm int64, v float64) {
			if _, err := app.Append(0, ls, tm, v); err != nil {
				t.Fatal(err)
			}
		})
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func engineSource(db *tsdb.DB) EngineSource {
	return EngineSource{Engine: promql.NewEngine(promql.EngineOpts{MaxSamples: 50e6, Timeout: time.Minute,
		NoStepSubqueryIntervalFn: func(int64) int64 { return 60_000 }}), Queryable: db}
}

// TestJudgeFleetOnRealStore runs the default profile's real PromQL over a
// simulated fleet in a real store, end to end below the HTTP API.
func TestJudgeFleetOnRealStore(t *testing.T) {
	fleet := func(r bench.Regression, incidents ...bench.Incident) bench.Fleet {
		return bench.Fleet{Service: "checkout", Version: "v1", CanaryVersion: "v2", Hosts: 8, Canary: 1, RPS: 200,
			ErrorRate: 0.01, LatencyMedian: 0.08, Regression: r, RegressionAt: t0, Incidents: incidents, Seed: 7}
	}
	// A deploy onto existing hosts: the canary is selected by host, its
	// series continue through the deploy, and the deploy restarts it.
	onHost := fleet(bench.Regression{})
	onHost.CanaryVersion, onHost.RestartOnDeploy, onHost.RegressionAt = "v1", true, t0.Add(10*time.Second)
	for _, tc := range []struct {
		name             string
		fleet            bench.Fleet
		want             Status
		metric           string
		canary, baseline string
	}{
		{"clean", fleet(bench.Regression{}), Pass, "", "", ""},
		{"errors x5", fleet(bench.Regression{ErrorFactor: 5}), Fail, "error-ratio", "", ""},
		{"latency x1.6", fleet(bench.Regression{LatencyFactor: 1.6}), Fail, "latency-mean", "", ""},
		{"crash loop", fleet(bench.Regression{CrashEvery: time.Minute}), Fail, "restarts", "", ""},
		{"memory leak", fleet(bench.Regression{LeakPerHour: 1}), Fail, "memory", "", ""},
		{"traffic drop", fleet(bench.Regression{TrafficFactor: 0.3}), Fail, "traffic", "", ""},
		{"fleet-wide incident", fleet(bench.Regression{}, bench.Incident{Start: t0.Add(time.Minute), End: t0.Add(20 * time.Minute), ErrorFactor: 8, LatencyFactor: 2}), Pass, "", "", ""},
		{"host-selected canary restarted by its deploy", onHost, Pass, "", `{service="checkout",instance="checkout-0:8080"}`, `{service="checkout",instance!="checkout-0:8080"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const span = 30 * time.Minute
			db := fleetStore(t, tc.fleet, span)
			d := testDeployment()
			d.Canary, d.Baseline, d.Profile = `{service="checkout",version="v2"}`, `{service="checkout",version="v1"}`, DefaultProfileName
			if tc.canary != "" {
				d.Canary, d.Baseline = tc.canary, tc.baseline
			}
			p := DefaultProfile()
			// Evaluate as the detector would, every 30s, and stop at a verdict.
			var v Verdict
			for now := t0.Add(time.Minute); !now.After(t0.Add(span)); now = now.Add(30 * time.Second) {
				data, err := Collect(context.Background(), engineSource(db), d, p, now)
				if err != nil {
					t.Fatal(err)
				}
				if v = Judge(d, p, data, now, JudgeOptions{}); v.Verdict.Terminal() {
					break
				}
			}
			if v.Verdict != tc.want || !strings.Contains(v.Reason, tc.metric) {
				for _, m := range v.Metrics {
					t.Logf("%s: %s %s", m.Name, m.Verdict, m.Reason)
				}
				t.Fatalf("at %s: %s: %s; want %s naming %q", v.At.Sub(t0), v.Verdict, v.Reason, tc.want, tc.metric)
			}
			t.Logf("%s after %s: %s", v.Verdict, v.At.Sub(t0), v.Reason)
		})
	}
}

func TestNumberJSON(t *testing.T) {
	b, err := json.Marshal(Interval{Estimate: 1.5, Lower: Number(math.NaN()), Upper: Number(math.Inf(1))})
	if err != nil || string(b) != `{"estimate":1.5,"lower":null,"upper":null}` {
		t.Fatalf("got %s %v", b, err)
	}
}

func TestServiceRegistersEvaluatesAndExports(t *testing.T) {
	f := bench.Fleet{Service: "checkout", Version: "v1", CanaryVersion: "v2", Hosts: 8, Canary: 1, RPS: 200,
		ErrorRate: 0.01, LatencyMedian: 0.08, RegressionAt: t0, Regression: bench.Regression{ErrorFactor: 5}, Seed: 3}
	db := fleetStore(t, f, 10*time.Minute)
	dir := t.TempDir()
	store, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(10 * time.Minute)
	svc, err := NewService(store, engineSource(db), Options{Now: func() time.Time { return now }, Verdicts: db})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = svc.Register(ctx, &Deployment{Service: "checkout", Version: "v3", Canary: `{version="v3"}`, Baseline: `{version="v1"}`})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "matches no series") {
		t.Fatalf("a canary matching nothing: got %v", err)
	}
	d, err := svc.Register(ctx, &Deployment{Service: "checkout", Version: "v2", Start: t0,
		Canary: `{service="checkout",version="v2"}`, Baseline: `{service="checkout",version="v1"}`})
	if err != nil {
		t.Fatal(err)
	}
	if d.State != Fail || !strings.Contains(d.Verdict.Reason, "error-ratio") {
		t.Fatalf("registered deployment: %s: %v", d.State, d.Verdict)
	}
	if _, err := svc.AddStage(ctx, d.ID, Stage{}); !errors.Is(err, ErrTerminal) {
		t.Fatalf("stage on a failed deployment: got %v", err)
	}

	// The verdict is a series in the store.
	q, err := db.Querier(now.Add(-time.Minute).UnixMilli(), now.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	set := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", VerdictMetric),
		labels.MustNewMatcher(labels.MatchEqual, "verdict", "fail"), labels.MustNewMatcher(labels.MatchEqual, "deployment", d.ID))
	if !set.Next() {
		t.Fatalf("no %s series for the verdict: %v", VerdictMetric, set.Err())
	}

	// State and history survive a restart of the store.
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store, err = OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	got, err := store.Get(d.ID)
	if err != nil || got.State != Fail {
		t.Fatalf("after reopening: %v %v", got, err)
	}
	if h, err := store.History(d.ID, 0); err != nil || len(h) != 1 || h[0].Verdict != Fail {
		t.Fatalf("history after reopening: %v %v", h, err)
	}
}

func TestKayentaJudge(t *testing.T) {
	d, p := testDeployment(), countProfile()
	noisy := func(rate float64, seed int) MetricData {
		md := MetricData{CanarySeen: true, BaselineSeen: true}
		for i := range 30 {
			jitter := 1 + 0.2*math.Sin(float64(i*seed))
			md.Steps = append(md.Steps, stats.CountStep{CanaryEvents: 1000 * rate * jitter, CanaryExposure: 1000,
				BaselineEvents: 7000 * 0.01 * (2 - jitter), BaselineExposure: 7000})
		}
		return md
	}
	if v := KayentaJudge(d, p, []MetricData{noisy(0.05, 3)}, t0.Add(15*time.Minute)); v.Verdict != Fail {
		t.Fatalf("5x errors: %s %s", v.Verdict, v.Reason)
	}
	if v := KayentaJudge(d, p, []MetricData{noisy(0.01, 3)}, t0.Add(15*time.Minute)); v.Verdict != Pass {
		t.Fatalf("equal errors: %s %s", v.Verdict, v.Reason)
	}
}
