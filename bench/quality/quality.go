// Package quality owns the canary judgement benchmark: labelled good and
// bad deploys on simulated fleets, played in simulated time against the
// gate's API and against the Kayenta-style reference judge, and the
// figures that compare them.
package quality

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/immune-dev/immune/bench"
	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/detect/gate"
	"github.com/immune-dev/immune/tsdb"
)

// Scenario is one simulated deploy with a label: bad deploys should fail,
// good ones should not.
type Scenario struct {
	Name string
	Bad  bool
	// Large marks a regression far past its metric's tolerance (latency
	// doubled, errors five times or from none, a crash loop, most traffic
	// lost): those must fail fast.
	Large bool
	Fleet bench.Fleet
}

// Scenarios returns labelled deploys: clean canaries at several traffic
// levels, with missing scrapes, and under a fleet-wide incident (hard
// negatives), and regressions of every kind at several magnitudes. Each
// kind is repeated runs times with different seeds.
func Scenarios(runs int, seed uint64) []Scenario {
	base := func(rps float64) bench.Fleet {
		return bench.Fleet{Service: "svc", Version: "v1", CanaryVersion: "v2", Hosts: 8, Canary: 1, RPS: rps,
			ErrorRate: 0.01, LatencyMedian: 0.08}
	}
	type kind struct {
		name       string
		bad, large bool
		make       func() bench.Fleet
	}
	with := func(rps float64, r bench.Regression) func() bench.Fleet {
		return func() bench.Fleet { f := base(rps); f.Regression = r; return f }
	}
	kinds := []kind{
		{"good/clean rps=50", false, false, with(50, bench.Regression{})},
		{"good/clean rps=500", false, false, with(500, bench.Regression{})},
		{"good/low-traffic canary rps=5", false, false, with(5, bench.Regression{})},
		{"good/missing scrapes 5%", false, false, func() bench.Fleet { f := base(200); f.MissingScrapes = 0.05; return f }},
		{"good/fleet-wide incident", false, false, func() bench.Fleet {
			f := base(200)
			f.Incidents = []bench.Incident{{Start: qualityStart.Add(3 * time.Minute), End: qualityStart.Add(20 * time.Minute), ErrorFactor: 6, LatencyFactor: 1.8}}
			return f
		}},
		{"bad/latency x1.2", true, false, with(200, bench.Regression{LatencyFactor: 1.2})},
		{"bad/latency x1.5", true, false, with(200, bench.Regression{LatencyFactor: 1.5})},
		{"bad/latency x2", true, true, with(200, bench.Regression{LatencyFactor: 2})},
		{"bad/errors x2", true, false, with(200, bench.Regression{ErrorFactor: 2})},
		{"bad/errors x5", true, true, with(200, bench.Regression{ErrorFactor: 5})},
		{"bad/errors from zero", true, true, func() bench.Fleet {
			f := base(200)
			f.ErrorRate, f.Regression = 0, bench.Regression{ErrorAdd: 0.005}
			return f
		}},
		{"bad/memory leak +100%/h", true, false, with(200, bench.Regression{LeakPerHour: 1})},
		{"bad/cpu x1.5", true, false, with(200, bench.Regression{CPUFactor: 1.5})},
		{"bad/variance only", true, false, with(200, bench.Regression{LatencySpread: 2})},
		{"bad/traffic drop x0.3", true, true, with(200, bench.Regression{TrafficFactor: 0.3})},
		{"bad/crash loop 2m", true, true, with(200, bench.Regression{CrashEvery: 2 * time.Minute})},
	}
	var out []Scenario
	for _, k := range kinds {
		for i := range runs {
			f := k.make()
			f.Seed = seed + uint64(i)*7919 + uint64(len(out))
			f.RegressionAt = qualityStart
			out = append(out, Scenario{Name: k.name, Bad: k.bad, Large: k.large, Fleet: f})
		}
	}
	return out
}

// qualityStart is the simulated deploy time.
var qualityStart = time.Date(2026, 6, 1, 14, 0, 0, 0, time.UTC)

// QualityOptions configures a quality run.
type QualityOptions struct {
	// Poll is the time between polls of the gate. Zero means 30s.
	Poll time.Duration
	// Lifetime is how long a deploy bakes at most. Zero means 30m.
	Lifetime time.Duration
	// Progress, if set, receives a line per scenario.
	Progress io.Writer
}

// Outcome is what one judge said about one scenario.
type Outcome struct {
	Verdict detect.Status
	After   time.Duration // from the deploy to the terminal verdict
	Metric  string        // for a fail, the first metric named
}

// ScenarioResult pairs Immune's outcome and the reference's.
type ScenarioResult struct {
	Scenario  Scenario
	Immune    Outcome
	Reference Outcome
}

// RunQuality plays each scenario in simulated time: the fleet is scraped
// every 15s into a fresh store, the gate is polled through its HTTP API
// every Poll, and the Kayenta-style reference judges the same data at the
// same times. Immune's judge stops at its first terminal verdict; the
// reference fails at its first failing look and otherwise passes at the
// end of the lifetime, as Kayenta's standalone analysis does.
func RunQuality(ctx context.Context, scenarios []Scenario, opts QualityOptions) ([]ScenarioResult, error) {
	if opts.Poll <= 0 {
		opts.Poll = 30 * time.Second
	}
	if opts.Lifetime <= 0 {
		opts.Lifetime = 30 * time.Minute
	}
	var out []ScenarioResult
	for i, sc := range scenarios {
		res, err := runScenario(ctx, sc, opts)
		if err != nil {
			return out, fmt.Errorf("%s: %w", sc.Name, err)
		}
		out = append(out, res)
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "%3d/%d %-32s immune %-12s %6s  reference %-12s %6s\n", i+1, len(scenarios), sc.Name,
				res.Immune.Verdict, res.Immune.After, res.Reference.Verdict, res.Reference.After)
		}
	}
	return out, nil
}

func runScenario(ctx context.Context, sc Scenario, opts QualityOptions) (ScenarioResult, error) {
	dir, err := os.MkdirTemp("", "immune-quality")
	if err != nil {
		return ScenarioResult{}, err
	}
	defer os.RemoveAll(dir)
	now := qualityStart.Add(-30 * time.Minute)
	clock := func() time.Time { return now }
	db, err := tsdb.Open(dir+"/tsdb", tsdb.Options{Now: clock})
	if err != nil {
		return ScenarioResult{}, err
	}
	defer db.Close()
	store, err := detect.OpenStore(dir+"/deployments", nil)
	if err != nil {
		return ScenarioResult{}, err
	}
	defer store.Close()
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50e6, Timeout: time.Minute,
		NoStepSubqueryIntervalFn: func(int64) int64 { return 60_000 }})
	src := detect.EngineSource{Engine: engine, Queryable: db}
	svc, err := detect.NewService(store, src, detect.Options{Now: clock})
	if err != nil {
		return ScenarioResult{}, err
	}
	mux := http.NewServeMux()
	gate.New(svc, gate.Options{}).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	fleet := sc.Fleet
	scrape := func(until time.Time) error {
		for ; !now.After(until); now = now.Add(15 * time.Second) {
			app := db.Appender(ctx)
			var appendErr error
			fleet.Scrape(now, 15*time.Second, func(ls labels.Labels, t int64, v float64) {
				if _, err := app.Append(0, ls, t, v); err != nil && appendErr == nil {
					appendErr = err
				}
			})
			if appendErr != nil {
				app.Rollback()
				return appendErr
			}
			if err := app.Commit(); err != nil {
				return err
			}
		}
		now = until
		return nil
	}
	if err := scrape(qualityStart.Add(time.Minute)); err != nil {
		return ScenarioResult{}, err
	}
	d, err := svc.Register(ctx, &detect.Deployment{Service: "svc", Version: "v2", Start: qualityStart,
		Canary: `{service="svc",version="v2"}`, Baseline: `{service="svc",version="v1"}`,
		MaxBake: detect.Duration(opts.Lifetime)})
	if err != nil {
		return ScenarioResult{}, err
	}
	profile, _ := svc.Profile(d.Profile)
	res := ScenarioResult{Scenario: sc}
	for t := qualityStart.Add(opts.Poll); !t.After(qualityStart.Add(opts.Lifetime)); t = t.Add(opts.Poll) {
		if err := scrape(t); err != nil {
			return res, err
		}
		if res.Immune.Verdict == "" {
			if _, err := svc.Evaluate(ctx, d.ID); err != nil {
				return res, err
			}
			st, err := pollStatus(ctx, srv.URL, d.ID)
			if err != nil {
				return res, err
			}
			if st.Verdict.Terminal() {
				res.Immune = Outcome{Verdict: st.Verdict, After: t.Sub(qualityStart), Metric: failedMetric(st.Metrics)}
			}
		}
		if res.Reference.Verdict == "" {
			data, err := detect.Collect(ctx, src, d, profile, t)
			if err != nil {
				return res, err
			}
			if v := detect.KayentaJudge(d, profile, data, t); v.Verdict == detect.Fail {
				res.Reference = Outcome{Verdict: detect.Fail, After: t.Sub(qualityStart), Metric: failedMetric(v.Metrics)}
			}
		}
		if res.Immune.Verdict != "" && res.Reference.Verdict != "" {
			break
		}
	}
	if res.Immune.Verdict == "" {
		res.Immune = Outcome{Verdict: detect.Inconclusive, After: opts.Lifetime}
	}
	if res.Reference.Verdict == "" {
		res.Reference = Outcome{Verdict: detect.Pass, After: opts.Lifetime}
	}
	return res, nil
}

func pollStatus(ctx context.Context, base, id string) (gate.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/deployments/"+id, nil)
	if err != nil {
		return gate.Status{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return gate.Status{}, err
	}
	defer resp.Body.Close()
	var st gate.Status
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET deployment: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func failedMetric(ms []detect.MetricVerdict) string {
	for _, m := range ms {
		if m.Verdict == detect.Fail && (m.Critical || m.Guard) {
			return m.Name
		}
	}
	return ""
}

// QualitySummary is the figures of one judge over a run.
type QualitySummary struct {
	Detection        float64       // bad deploys failed
	FalseFail        float64       // good deploys failed
	Inconclusive     float64       // deploys without a pass or fail
	MedianTimeToFail time.Duration // over failed bad deploys
	// MedianTimeToFailLarge is over failed deploys with large regressions.
	MedianTimeToFailLarge time.Duration
	Bad, Good             int
}

// Summarize computes each judge's figures.
func Summarize(results []ScenarioResult) (immune, reference QualitySummary) {
	sum := func(pick func(ScenarioResult) Outcome) QualitySummary {
		var s QualitySummary
		var detected, falseFail, inconclusive int
		var times, large []time.Duration
		for _, r := range results {
			o := pick(r)
			if r.Scenario.Bad {
				s.Bad++
				if o.Verdict == detect.Fail {
					detected++
					times = append(times, o.After)
					if r.Scenario.Large {
						large = append(large, o.After)
					}
				}
			} else {
				s.Good++
				if o.Verdict == detect.Fail {
					falseFail++
				}
			}
			if o.Verdict == detect.Inconclusive {
				inconclusive++
			}
		}
		s.Detection = ratio(detected, s.Bad)
		s.FalseFail = ratio(falseFail, s.Good)
		s.Inconclusive = ratio(inconclusive, len(results))
		s.MedianTimeToFail, s.MedianTimeToFailLarge = medianOf(times), medianOf(large)
		return s
	}
	return sum(func(r ScenarioResult) Outcome { return r.Immune }), sum(func(r ScenarioResult) Outcome { return r.Reference })
}

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// QualityTable renders per-kind outcomes and the summary as Markdown.
func QualityTable(results []ScenarioResult) string {
	type row struct {
		runs, immuneFail, refFail, immuneInc int
		immuneTimes, refTimes                []time.Duration
	}
	kinds := map[string]*row{}
	for _, r := range results {
		k := kinds[r.Scenario.Name]
		if k == nil {
			k = &row{}
			kinds[r.Scenario.Name] = k
		}
		k.runs++
		if r.Immune.Verdict == detect.Fail {
			k.immuneFail++
			k.immuneTimes = append(k.immuneTimes, r.Immune.After)
		}
		if r.Immune.Verdict == detect.Inconclusive {
			k.immuneInc++
		}
		if r.Reference.Verdict == detect.Fail {
			k.refFail++
			k.refTimes = append(k.refTimes, r.Reference.After)
		}
	}
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("| scenario | runs | Immune failed | Immune inconclusive | Immune median time to fail | reference failed | reference median time to fail |\n|---|---|---|---|---|---|---|\n")
	for _, n := range names {
		k := kinds[n]
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %d | %s |\n", n, k.runs, k.immuneFail, k.immuneInc, medianTime(k.immuneTimes),
			k.refFail, medianTime(k.refTimes))
	}
	im, ref := Summarize(results)
	b.WriteString("\n| judge | bad deploys failed | good deploys failed | inconclusive | median time to fail | median time to fail, large regressions |\n|---|---|---|---|---|---|\n")
	for _, s := range []struct {
		name string
		q    QualitySummary
	}{{"Immune (anytime-valid)", im}, {"Kayenta-style reference", ref}} {
		fmt.Fprintf(&b, "| %s | %.1f%% of %d | %.1f%% of %d | %.1f%% | %s | %s |\n", s.name, 100*s.q.Detection, s.q.Bad,
			100*s.q.FalseFail, s.q.Good, 100*s.q.Inconclusive, s.q.MedianTimeToFail, s.q.MedianTimeToFailLarge)
	}
	return b.String()
}

func medianTime(ts []time.Duration) string {
	if len(ts) == 0 {
		return "-"
	}
	return medianOf(ts).String()
}

// medianOf returns the median of ts, sorting it; zero for none.
func medianOf(ts []time.Duration) time.Duration {
	if len(ts) == 0 {
		return 0
	}
	slices.Sort(ts)
	return ts[len(ts)/2]
}
