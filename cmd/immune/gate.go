package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/detect/gate"
)

const gateUsage = `usage: immune gate <command> [flags]

A deploy script's side of the gate: register a deployment, grow it, report
checks, and wait for the verdict.

commands:
  start    register a deployment; prints its ID (only the ID) on stdout
  stage    record that the canary grew
  check    report external evidence (a smoke test); a failed critical check fails the deployment
  abort    end a deployment as aborted
  status   print a deployment's status as JSON
  wait     poll until a verdict: exit 0 on pass, 1 on fail, 2 on inconclusive, aborted or timeout
  backtest replay a deployment definition over stored history; prints the verdict at each poll
  calibrate
           A/A replays of a profile over a service's history: false-fail rate and power

Run "immune gate <command> -h" for a command's flags.
`

// Exit statuses of "immune gate wait" besides 0 (pass), for deploy
// scripts to branch on.
const (
	exitFail  = 1
	exitUndec = 2 // inconclusive, aborted, timed out or interrupted
)

// gateRequestTimeout bounds one HTTP call to the gate API.
const gateRequestTimeout = 10 * time.Second

// runGate runs "immune gate <command>".
func runGate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, gateUsage)
		return flag.ErrHelp
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"start": gateStart, "stage": gateStage, "check": gateCheck,
		"abort": gateAbort, "status": gateStatus, "wait": gateWait,
		"backtest": gateBacktest, "calibrate": gateCalibrate,
	}
	if f, ok := cmds[args[0]]; ok {
		return f(ctx, args[1:], stdout, stderr)
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, gateUsage)
		return nil
	}
	fmt.Fprint(stderr, gateUsage)
	return fmt.Errorf("gate: unknown command %q", args[0])
}

// gateFlags is a subcommand's flag set with the flags every one has.
type gateFlags struct {
	*flag.FlagSet
	url, deployment string
	tokenFile       string
	token           string // read from tokenFile by parse
}

func newGateFlags(name string, stderr io.Writer, withDeployment bool) *gateFlags {
	f := &gateFlags{FlagSet: flag.NewFlagSet("gate "+name, flag.ContinueOnError)}
	f.SetOutput(stderr)
	f.StringVar(&f.url, "url", "http://127.0.0.1:9480", "Immune server URL")
	f.StringVar(&f.tokenFile, "token-file", "", "file holding a bearer token, for a server with --auth-file")
	if withDeployment {
		f.StringVar(&f.deployment, "deployment", "", "deployment ID, as printed by gate start (required)")
	}
	return f
}

// parse parses args and checks the flags named in required are set.
func (f *gateFlags) parse(args []string, required ...string) error {
	if err := f.Parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", f.Name(), f.Args())
	}
	for _, name := range required {
		if f.Lookup(name).Value.String() == "" {
			return fmt.Errorf("%s: --%s is required", f.Name(), name)
		}
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name(), err)
		}
		f.token = strings.TrimSpace(string(b))
	}
	return nil
}

func (f *gateFlags) client() gateClient {
	return gateClient{base: strings.TrimRight(f.url, "/"), http: &http.Client{}, token: f.token}
}

// metadataFlag collects repeated --metadata key=value flags.
type metadataFlag map[string]string

func (m metadataFlag) String() string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (m metadataFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want key=value")
	}
	m[k] = v
	return nil
}

func gateStart(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newGateFlags("start", stderr, false)
	var reg gate.Registration
	var minBake, maxBake, step time.Duration
	var start string
	md := metadataFlag{}
	f.StringVar(&reg.Service, "service", "", "service name (required)")
	f.StringVar(&reg.Version, "version", "", "version being deployed (required)")
	f.StringVar(&reg.Canary, "canary", "", `canary cohort's label selector, e.g. {service="checkout",version="v42"} (required)`)
	f.StringVar(&reg.Baseline, "baseline", "", `baseline cohort's label selector, e.g. {service="checkout",version!="v42"}; empty compares the canary with itself a day earlier`)
	f.StringVar(&reg.Profile, "profile", "", "check profile (empty means the server's default)")
	f.DurationVar(&minBake, "min-bake", 0, "minimum bake time before a pass (0 means the server's default, 5m)")
	f.DurationVar(&maxBake, "max-bake", 0, "maximum bake time before inconclusive (0 means the server's default, 60m)")
	f.DurationVar(&step, "step", 0, "evaluation step (0 means the server's default, 30s)")
	f.StringVar(&start, "start", "", "deploy start time, RFC 3339 (empty means now)")
	f.Var(md, "metadata", "key=value kept with the deployment; repeatable")
	if err := f.parse(args, "service", "version", "canary"); err != nil {
		return err
	}
	if start != "" {
		t, err := time.Parse(time.RFC3339, start)
		if err != nil {
			return fmt.Errorf("gate start: --start: %w", err)
		}
		reg.Start = t
	}
	reg.MinBake, reg.MaxBake, reg.Step = detect.Duration(minBake), detect.Duration(maxBake), detect.Duration(step)
	if len(md) > 0 {
		reg.Metadata = md
	}
	var d detect.Deployment
	if err := f.client().call(ctx, "POST", "/api/v1/deployments", reg, &d); err != nil {
		return fmt.Errorf("gate start: %w", err)
	}
	fmt.Fprintln(stderr, statusLine(time.Now(), gate.StatusOf(&d)))
	fmt.Fprintln(stdout, d.ID)
	return nil
}

func gateStage(ctx context.Context, args []string, _, stderr io.Writer) error {
	f := newGateFlags("stage", stderr, true)
	var st detect.Stage
	f.StringVar(&st.Canary, "canary", "", "the canary's new selector (empty keeps it: more hosts now match it)")
	f.StringVar(&st.Baseline, "baseline", "", "the baseline's new selector (empty keeps it)")
	f.StringVar(&st.Note, "note", "", `note kept with the stage, e.g. "4 hosts"`)
	if err := f.parse(args, "deployment"); err != nil {
		return err
	}
	var d detect.Deployment
	if err := f.client().call(ctx, "POST", deploymentPath(f.deployment, "stages"), st, &d); err != nil {
		return fmt.Errorf("gate stage: %w", err)
	}
	fmt.Fprintf(stderr, "%s: stage %d recorded\n", d.ID, len(d.Stages))
	return nil
}

func gateCheck(ctx context.Context, args []string, _, stderr io.Writer) error {
	f := newGateFlags("check", stderr, true)
	var c gate.CheckReport
	passed := true
	c.Passed = &passed
	f.StringVar(&c.Name, "name", "", "check name, e.g. smoke (required)")
	f.BoolVar(c.Passed, "passed", true, "whether the check passed (--passed=false for a failure)")
	f.BoolVar(&c.Critical, "critical", false, "a failure fails the deployment at once")
	f.StringVar(&c.Details, "details", "", "what happened, shown in the verdict's reason")
	if err := f.parse(args, "deployment", "name"); err != nil {
		return err
	}
	var d detect.Deployment
	if err := f.client().call(ctx, "POST", deploymentPath(f.deployment, "checks"), c, &d); err != nil {
		return fmt.Errorf("gate check: %w", err)
	}
	fmt.Fprintln(stderr, statusLine(time.Now(), gate.StatusOf(&d)))
	return nil
}

func gateAbort(ctx context.Context, args []string, _, stderr io.Writer) error {
	f := newGateFlags("abort", stderr, true)
	var req gate.AbortRequest
	f.StringVar(&req.Reason, "reason", "", "why, kept as the verdict's reason")
	if err := f.parse(args, "deployment"); err != nil {
		return err
	}
	var d detect.Deployment
	if err := f.client().call(ctx, "POST", deploymentPath(f.deployment, "abort"), req, &d); err != nil {
		return fmt.Errorf("gate abort: %w", err)
	}
	fmt.Fprintln(stderr, statusLine(time.Now(), gate.StatusOf(&d)))
	return nil
}

func gateStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newGateFlags("status", stderr, true)
	if err := f.parse(args, "deployment"); err != nil {
		return err
	}
	var st json.RawMessage
	if err := f.client().call(ctx, "GET", deploymentPath(f.deployment, ""), nil, &st); err != nil {
		return fmt.Errorf("gate status: %w", err)
	}
	return printIndented(stdout, st)
}

// gateWait polls the deployment's status every interval and prints a line
// per poll until a verdict or the timeout. The server being unreachable or
// answering 5xx (a restart mid-deploy) is retried until the timeout: only
// a verdict or the deadline ends the wait.
func gateWait(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newGateFlags("wait", stderr, true)
	var timeout, interval time.Duration
	f.DurationVar(&timeout, "timeout", 15*time.Minute, "give up (exit 2) after this long")
	f.DurationVar(&interval, "interval", 10*time.Second, "time between polls")
	if err := f.parse(args, "deployment"); err != nil {
		return err
	}
	if timeout <= 0 || interval <= 0 {
		return errors.New("gate wait: --timeout and --interval must be positive")
	}
	c := f.client()
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no answer from the server"
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-waitCtx.Done():
			if ctx.Err() != nil {
				return exitCode{exitUndec, fmt.Errorf("gate wait: interrupted; last: %s", last)}
			}
			return exitCode{exitUndec, fmt.Errorf("gate wait: timed out after %s waiting for %s; last: %s", timeout, f.deployment, last)}
		case <-timer.C:
		}
		var st gate.Status
		err := c.call(waitCtx, "GET", deploymentPath(f.deployment, ""), nil, &st)
		now := time.Now()
		switch {
		case err == nil:
			last = fmt.Sprintf("%s (%s)", st.Verdict, st.Reason)
			fmt.Fprintln(stderr, statusLine(now, st))
			if done, err := verdictExit(st); done {
				fmt.Fprintln(stdout, st.Verdict)
				return err
			}
		case waitCtx.Err() != nil:
			// The deadline cut the request short; the select above reports it.
		case retryable(err):
			last = err.Error()
			fmt.Fprintf(stderr, "%s unavailable: %v; retrying\n", now.Format(time.TimeOnly), err)
		default:
			return fmt.Errorf("gate wait: %w", err)
		}
		timer.Reset(interval)
	}
}

// verdictExit maps a terminal verdict to the command's result.
func verdictExit(st gate.Status) (done bool, err error) {
	switch st.Verdict {
	case detect.Pass:
		return true, nil
	case detect.Fail:
		what := st.Reason
		if mv := worstMetric(st); mv != nil {
			what = mv.Name + ": " + mv.Reason
		}
		return true, exitCode{exitFail, fmt.Errorf("deployment %s failed: %s", st.ID, what)}
	case detect.Inconclusive:
		return true, exitCode{exitUndec, fmt.Errorf("deployment %s is inconclusive: %s", st.ID, st.Reason)}
	case detect.Aborted:
		return true, exitCode{exitUndec, fmt.Errorf("deployment %s was aborted: %s", st.ID, st.Reason)}
	}
	return false, nil
}

// statusLine is one line of progress: time, verdict, stage, the metric
// that holds the verdict up (or the reason), and the time to a verdict.
func statusLine(now time.Time, st gate.Status) string {
	parts := []string{now.Format(time.TimeOnly), string(st.Verdict)}
	if st.Stage > 0 {
		parts = append(parts, fmt.Sprintf("stage %d", st.Stage))
	}
	if mv := worstMetric(st); mv != nil {
		parts = append(parts, mv.Name+": "+mv.Reason)
	} else {
		parts = append(parts, st.Reason)
	}
	if st.ETASeconds != nil {
		parts = append(parts, "eta "+(time.Duration(*st.ETASeconds)*time.Second).String())
	}
	return strings.Join(parts, "  ")
}

// worstMetric picks the metric to show: a failed one that decides the
// verdict (critical or guard), else the first critical metric not yet
// passing, errors before pending before no data. Nil when none, as for a
// pass or a failed check.
func worstMetric(st gate.Status) *detect.MetricVerdict {
	rank := map[detect.Status]int{detect.Fail: 4, detect.Error: 3, detect.Pending: 2, detect.NoData: 1}
	var worst *detect.MetricVerdict
	for i, mv := range st.Metrics {
		r := rank[mv.Verdict]
		switch {
		case mv.Verdict == detect.Fail && (mv.Critical || mv.Guard):
		case st.Verdict == detect.Fail || !mv.Critical:
			// On a fail only the failing metrics explain it; otherwise a
			// guard or reported-only metric does not hold the verdict up.
			continue
		}
		if r > 0 && (worst == nil || r > rank[worst.Verdict]) {
			worst = &st.Metrics[i]
		}
	}
	return worst
}

func deploymentPath(id, sub string) string {
	p := "/api/v1/deployments/" + url.PathEscape(id)
	if sub != "" {
		p += "/" + sub
	}
	return p
}

// gateClient calls the gate API.
type gateClient struct {
	base  string
	http  *http.Client
	token string // sent as a bearer token, if set
	// timeout bounds one call; zero means gateRequestTimeout.
	timeout time.Duration
}

// httpError is a non-2xx answer, with the API's error message.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.code, http.StatusText(e.code), e.msg)
}

// retryable reports whether waiting may cure err: the server is down,
// restarting (503 while the store opens) or overloaded. A 4xx is the
// caller's mistake and will not change.
func retryable(err error) bool {
	var he *httpError
	if errors.As(err, &he) {
		return he.code >= 500 || he.code == http.StatusTooManyRequests || he.code == http.StatusRequestTimeout
	}
	return true
}

// call sends in as JSON (nil for no body) and decodes a 2xx answer into
// out.
func (c gateClient) call(ctx context.Context, method, path string, in, out any) error {
	timeout := c.timeout
	if timeout <= 0 {
		timeout = gateRequestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &httpError{code: resp.StatusCode, msg: msg}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: bad response: %w", method, path, err)
	}
	return nil
}
