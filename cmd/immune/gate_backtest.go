package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/detect/gate"
)

// gateBacktest posts a deployment definition from a file to
// /api/v1/backtests and prints the verdict at each poll as a table, or the
// whole result with --json. Progress goes to stderr.
func gateBacktest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newGateFlags("backtest", stderr, false)
	var file, until string
	var every, timeout time.Duration
	var asJSON bool
	f.StringVar(&file, "file", "", `deployment definition, JSON as for POST /api/v1/deployments (with "start"); may hold "every", "until" and "checks" (required)`)
	f.DurationVar(&every, "every", 0, "time between polls (0 means the file's, else the server's default, 30s)")
	f.StringVar(&until, "until", "", `last poll: RFC 3339, "now" or a negative duration such as -1h (empty means the file's, else the maximum bake or now)`)
	f.BoolVar(&asJSON, "json", false, "print the whole result as JSON instead of a table")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "give up on the server's answer after this long")
	if err := f.parse(args, "file"); err != nil {
		return err
	}
	req, err := readBacktestFile(file)
	if err != nil {
		return fmt.Errorf("gate backtest: %w", err)
	}
	if every != 0 {
		req.Every = detect.Duration(every)
	}
	if until != "" {
		if req.Until, err = parseWhen(until, time.Now()); err != nil {
			return fmt.Errorf("gate backtest: --until: %w", err)
		}
	}
	c := f.client()
	c.timeout = timeout
	fmt.Fprintf(stderr, "backtest %s %s from %s: replaying on %s...\n", req.Service, req.Version, req.Start.Format(time.RFC3339), c.base)
	began := time.Now()
	var raw json.RawMessage
	if err := c.call(ctx, "POST", "/api/v1/backtests", req, &raw); err != nil {
		return fmt.Errorf("gate backtest: %w", err)
	}
	var bt detect.Backtest
	if err := json.Unmarshal(raw, &bt); err != nil {
		return fmt.Errorf("gate backtest: bad response: %w", err)
	}
	fmt.Fprintf(stderr, "backtest %s: %d polls every %s in %s: %s\n", bt.ID, bt.Polls, time.Duration(bt.Every),
		time.Since(began).Round(time.Millisecond), outcomeLine(&bt))
	if asJSON {
		return printIndented(stdout, raw)
	}
	return backtestTable(stdout, &bt)
}

// readBacktestFile reads a backtest request, refusing unknown fields as
// the server would, but here with the file's name.
func readBacktestFile(path string) (gate.BacktestRequest, error) {
	var req gate.BacktestRequest
	b, err := os.ReadFile(path)
	if err != nil {
		return req, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("%s: %w", path, err)
	}
	return req, nil
}

// outcomeLine says how the replay ended, with the metric of a fail.
func outcomeLine(bt *detect.Backtest) string {
	after := bt.At.Sub(bt.Deployment.Start)
	if !bt.Decided {
		return fmt.Sprintf("no verdict by %s: %s", after, bt.Reason)
	}
	return fmt.Sprintf("%s after %s: %s", bt.Verdict, after, bt.Reason)
}

// backtestTable prints a row per poll: its time, the verdict, and the
// metric closest to failing the deployment, with its effect and evidence.
func backtestTable(w io.Writer, bt *detect.Backtest) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POLL\tTIME\tAFTER\tVERDICT\tSTAGE\tMETRIC\tEFFECT\tWORSE\tWITHIN\tREASON")
	for i, v := range bt.Timeline {
		metric, effect, worse, within, reason := "-", "-", "-", "-", v.Reason
		if mv := leadingMetric(v); mv != nil {
			metric, reason = mv.Name, mv.Reason
			effect = percent(float64(mv.Effect.Estimate))
			worse = fmt.Sprintf("%.3g/%.3g", float64(mv.Evidence.Worse), float64(mv.Evidence.FailThreshold))
			within = fmt.Sprintf("%.3g/%.3g", float64(mv.Evidence.NotWorse), float64(mv.Evidence.PassThreshold))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", i+1, v.At.Format(time.RFC3339), v.At.Sub(bt.Deployment.Start),
			v.Verdict, v.Stage, metric, effect, worse, within, reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "outcome: %s\n", outcomeLine(bt))
	return err
}

// leadingMetric is the metric that can fail the deployment (critical or
// guard) with the most evidence of a regression relative to its
// threshold: the failing one on a fail, the one to watch while pending.
// Nil for a pass or a failed check, whose reason says it all.
func leadingMetric(v detect.Verdict) *detect.MetricVerdict {
	if v.Verdict == detect.Pass || (v.Verdict == detect.Fail && strings.HasPrefix(v.Reason, "check ")) {
		return nil
	}
	var lead *detect.MetricVerdict
	score := func(mv *detect.MetricVerdict) float64 {
		return float64(mv.Evidence.Worse) / float64(mv.Evidence.FailThreshold)
	}
	for i := range v.Metrics {
		mv := &v.Metrics[i]
		if (mv.Critical || mv.Guard) && (lead == nil || score(mv) > score(lead)) {
			lead = mv
		}
	}
	return lead
}

// percent renders a ratio as a change: 1.8 is +80.0%.
func percent(ratio float64) string {
	if math.IsNaN(ratio) || math.IsInf(ratio, 0) {
		return "?"
	}
	return fmt.Sprintf("%+.1f%%", (ratio-1)*100)
}

// gateCalibrate posts an A/A calibration to /api/v1/backtests/aa and
// prints its figures, or the whole result with --json.
func gateCalibrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newGateFlags("calibrate", stderr, false)
	var req detect.CalibrationRequest
	var from, to string
	var duration, every, timeout time.Duration
	var asJSON bool
	f.StringVar(&req.Profile, "profile", "", "check profile to calibrate (empty means the server's default)")
	f.StringVar(&req.Service, "service", "", "service whose history is replayed (required)")
	f.StringVar(&from, "from", "", `start of the history: RFC 3339 or a negative duration such as -24h (required)`)
	f.StringVar(&to, "to", "now", `end of the history: RFC 3339, "now" or a negative duration`)
	f.IntVar(&req.Runs, "runs", 100, fmt.Sprintf("windows replayed (at most %d)", detect.MaxCalibrationRuns))
	f.DurationVar(&duration, "duration", 0, "each window's maximum bake (0 means the server's default, 30m)")
	f.DurationVar(&every, "every", 0, "time between polls (0 means the server's default, 30s)")
	f.IntVar(&req.Hosts, "hosts", 0, "canary hosts per window (0 means 1)")
	f.StringVar(&req.HostLabel, "host-label", "", `label naming a host (empty means "instance")`)
	f.StringVar(&req.ServiceLabel, "service-label", "", `label naming the service (empty means "service")`)
	f.Uint64Var(&req.Seed, "seed", 0, "picks the windows and hosts: the same seed, the same runs")
	f.Func("effect", "regression injected into the pseudo-canary, metric=factor (latency-mean=1.5); repeatable", func(s string) error {
		metric, factor, ok := strings.Cut(s, "=")
		x, err := strconv.ParseFloat(factor, 64)
		if !ok || metric == "" || err != nil {
			return errors.New("want metric=factor, e.g. latency-mean=2")
		}
		req.Effects = append(req.Effects, detect.Effect{Metric: metric, Factor: x})
		return nil
	})
	f.BoolVar(&asJSON, "json", false, "print the whole result as JSON")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "give up on the server's answer after this long")
	if err := f.parse(args, "service", "from"); err != nil {
		return err
	}
	now := time.Now()
	var err error
	if req.From, err = parseWhen(from, now); err != nil {
		return fmt.Errorf("gate calibrate: --from: %w", err)
	}
	if req.To, err = parseWhen(to, now); err != nil {
		return fmt.Errorf("gate calibrate: --to: %w", err)
	}
	req.Duration, req.Every = detect.Duration(duration), detect.Duration(every)
	c := f.client()
	c.timeout = timeout
	fmt.Fprintf(stderr, "calibrate %s: %d windows in [%s, %s], replaying on %s...\n", req.Service, req.Runs,
		req.From.Format(time.RFC3339), req.To.Format(time.RFC3339), c.base)
	began := time.Now()
	var raw json.RawMessage
	if err := c.call(ctx, "POST", "/api/v1/backtests/aa", req, &raw); err != nil {
		return fmt.Errorf("gate calibrate: %w", err)
	}
	var cal detect.Calibration
	if err := json.Unmarshal(raw, &cal); err != nil {
		return fmt.Errorf("gate calibrate: bad response: %w", err)
	}
	fmt.Fprintf(stderr, "calibration %s done in %s\n", cal.ID, time.Since(began).Round(time.Millisecond))
	if asJSON {
		return printIndented(stdout, raw)
	}
	return calibrationReport(stdout, &cal)
}

// calibrationReport prints the A/A figures and the power per effect.
func calibrationReport(w io.Writer, c *detect.Calibration) error {
	r := c.Request
	pct := func(x detect.Number) string { return fmt.Sprintf("%.1f%%", 100*float64(x)) }
	times := func(q detect.Quantiles) string {
		return fmt.Sprintf("p50 %s  p90 %s  max %s", time.Duration(q.P50), time.Duration(q.P90), time.Duration(q.Max))
	}
	within := "above it"
	if c.WithinBudget {
		within = "within it"
	}
	aa := c.AA
	fmt.Fprintf(w, "profile %s on %s: %d windows of %s in [%s, %s], %d canary host(s) each, seed %d\n", r.Profile, r.Service, r.Runs,
		time.Duration(r.Duration), r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), r.Hosts, r.Seed)
	fmt.Fprintf(w, "A/A: %d replayed, %d skipped\n", aa.Runs, c.Skipped)
	fmt.Fprintf(w, "  false fails      %d/%d  %s  95%% CI [%s, %s]  budget %s: %s\n", aa.Fail, aa.Runs, pct(aa.FailRate),
		pct(aa.FailCI[0]), pct(aa.FailCI[1]), pct(detect.Number(c.FailBudget)), within)
	fmt.Fprintf(w, "  inconclusive     %d/%d  %s\n", aa.Inconclusive, aa.Runs, pct(aa.InconclusiveRate))
	fmt.Fprintf(w, "  pass             %d/%d  %s\n", aa.Pass, aa.Runs, pct(aa.PassRate))
	fmt.Fprintf(w, "  time to verdict  %s\n", times(aa.TimeToVerdict))
	for _, run := range c.Runs {
		if run.Verdict == detect.Fail {
			fmt.Fprintf(w, "  false fail at %s on %s: %s\n", run.Start.Format(time.RFC3339), strings.Join(run.Canary, ","), run.Reason)
		}
	}
	if len(c.Power) > 0 {
		fmt.Fprintln(w, "injected regressions:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  EFFECT\tDETECTED\t95% CI\tNAMING THE METRIC\tTIME TO FAIL")
		for _, p := range c.Power {
			fmt.Fprintf(tw, "  %s\t%d/%d %s\t[%s, %s]\t%d\t%s\n", p.Effect, p.Fail, p.Runs, pct(p.FailRate),
				pct(p.FailCI[0]), pct(p.FailCI[1]), p.Named, times(p.TimeToVerdict))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if c.Skipped > 0 {
		for _, run := range c.Runs {
			if run.Skipped != "" {
				fmt.Fprintf(w, "skipped, e.g. the window at %s: %s\n", run.Start.Format(time.RFC3339), run.Skipped)
				break
			}
		}
	}
	return nil
}

// parseWhen reads a time flag: RFC 3339, "now", or a negative duration
// before now ("-6h").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d > 0 {
		return time.Time{}, fmt.Errorf("%q: want RFC 3339, \"now\" or a negative duration such as -6h", s)
	}
	return now.Add(d), nil
}

func printIndented(w io.Writer, raw json.RawMessage) error {
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, out.String())
	return err
}
