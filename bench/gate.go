package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"
)

// GateOptions configures RunGate. Zero fields take the documented defaults.
type GateOptions struct {
	// URL is the base URL of a running Immune server, as
	// http://127.0.0.1:9480. Required.
	URL string
	// Fleet is the simulated service, written in real time throughout; its
	// canary hosts (version CanaryVersion) are the deployments' canary and
	// the others (Version) their baseline. Required.
	Fleet *Fleet
	// ScrapeInterval is the mean time between two scrapes of the fleet.
	// Live scrapes are spaced uniformly between half and one and a half of
	// it, so each probe's sample falls at a random point of the gate's
	// step. Zero means 2s.
	ScrapeInterval time.Duration
	// History is how much of the fleet's past is backfilled, every
	// ScrapeInterval, before the deployments are registered: the server
	// measures the scrape interval (their step) over the last 5 minutes
	// (detect's intervalProbe), and reads from 30 minutes before a
	// deployment's start (detect's preDeployWindow), one to two minutes
	// before its registration. Zero means 30m.
	History time.Duration
	// Probes is the number of verdict-latency probes. Zero means 20.
	Probes int
	// ProbePoll is the time between two reads of the verdict while probes
	// wait. Zero means 10ms.
	ProbePoll time.Duration
	// Pollers is the number of concurrent pollers of the poll phase. Zero
	// means 100.
	Pollers int
	// PollDuration is how long the poll phase lasts. Zero means 10s.
	PollDuration time.Duration
	// ServerPID is the server's pid, for its CPU time over each phase and
	// its peak RSS from /proc. Required: the server runs on this host
	// anyway, since verdicts' evaluation times are read against this
	// host's clock.
	ServerPID int
	// Progress, if set, receives a line per stage of the run and per
	// probe.
	Progress io.Writer
}

func (o GateOptions) withDefaults() GateOptions {
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = 2 * time.Second
	}
	if o.History <= 0 {
		o.History = 30 * time.Minute
	}
	if o.Probes <= 0 {
		o.Probes = 20
	}
	if o.ProbePoll <= 0 {
		o.ProbePoll = 10 * time.Millisecond
	}
	if o.Pollers <= 0 {
		o.Pollers = 100
	}
	if o.PollDuration <= 0 {
		o.PollDuration = 10 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

const (
	// gateBake is the deployments' minimum and maximum bake time: they
	// stay pending, and so evaluated every detector tick, however long the
	// run.
	gateBake = "24h"
	// probeTimeout bounds the wait of one probe.
	probeTimeout = 2 * time.Minute
	// gateRequestTimeout bounds one HTTP request of the benchmark.
	gateRequestTimeout = 10 * time.Second
)

// The gate API's JSON, as far as the benchmark writes and reads it. The
// benchmark is a client of the HTTP API like any deploy tool; importing
// package detect would also make an import cycle of detect's tests, which
// use this package's fleet.
type (
	gateRegistration struct {
		Service  string    `json:"service"`
		Version  string    `json:"version"`
		Start    time.Time `json:"start"`
		Canary   string    `json:"canary"`
		Baseline string    `json:"baseline"`
		MinBake  string    `json:"min_bake"`
		MaxBake  string    `json:"max_bake"`
	}
	gateDeployment struct {
		ID    string    `json:"id"`
		Start time.Time `json:"start"`
		Step  string    `json:"step"`
		step  time.Duration
		url   string // of its status, GET /api/v1/deployments/{id}
	}
	gateStatus struct {
		ID          string     `json:"id"`
		Verdict     string     `json:"verdict"`
		Reason      string     `json:"reason"`
		Updated     time.Time  `json:"updated"`
		DataThrough *time.Time `json:"data_through"`
	}
)

// terminal reports whether a gate state is final, as detect.Status.Terminal.
func terminal(state string) bool {
	return state == "pass" || state == "fail" || state == "inconclusive" || state == "aborted"
}

// GateResult is what RunGate measured.
type GateResult struct {
	// DeploymentID is the last probe's deployment, which the poll phase
	// polls.
	DeploymentID string
	// Step is its evaluation step, chosen by the server at registration
	// (the scrape interval it measured).
	Step time.Duration
	// Probes are the verdict-latency probes, in the order of their samples.
	Probes []VerdictProbe
	// ProbeElapsed is how long the probe phase took and ProbeCPU the
	// server's CPU time over it (ingest, detector, registrations and one
	// verdict poller).
	ProbeElapsed, ProbeCPU time.Duration
	// Poll is the poll phase and PollCPU the server's CPU time over it.
	Poll    PollStats
	PollCPU time.Duration
	// PollClientCPU is this process's CPU time over the poll phase (the
	// pollers and the live writes), which on a small host competes with
	// the server's for the same CPUs.
	PollClientCPU time.Duration
	// PeakRSS is the server's peak resident set size at the end, in bytes.
	PeakRSS int64
}

// VerdictProbe is one verdict-latency measurement: a scrape of the fleet
// whose samples carry the timestamp Sample, whose remote-write request was
// acknowledged at Acked, and the first verdict read that reflects it.
// Times are wall-clock times of this host, the server's clock too (it
// stamps the verdict's evaluation time).
//
// A verdict reflects the sample when it was evaluated (its "updated")
// after the acknowledgement and its data_through, the last point of the
// deployment's step grid (start + k*step) it covered, is at or after
// StepEnd: each point's windows end at that point, and StepEnd is the
// first grid point at or after Sample, so the first whose windows hold it.
type VerdictProbe struct {
	Sample, Acked time.Time
	// StepEnd is the first time of the deployment's step grid at or after
	// Sample.
	StepEnd time.Time
	// Evaluated is the evaluation time of the first verdict read that
	// reflects the sample.
	Evaluated time.Time
	// Seen is when the GET that returned that verdict completed.
	Seen time.Time
}

// Latency is the verdict latency: from the acknowledgement to the read
// that first showed a verdict reflecting the sample.
func (p VerdictProbe) Latency() time.Duration { return p.Seen.Sub(p.Acked) }

// Split divides Latency into the wait for the step grid to reach the
// sample (StepEnd after the acknowledgement), the wait for the detector's
// next evaluation after that, and the evaluation's run plus the delay
// until the poller read its verdict. The three sum to Latency.
func (p VerdictProbe) Split() (step, tick, evaluation time.Duration) {
	ready := p.Acked
	if p.StepEnd.After(ready) {
		ready = p.StepEnd
	}
	return ready.Sub(p.Acked), p.Evaluated.Sub(ready), p.Seen.Sub(p.Evaluated)
}

// VerdictLatency returns the q-quantile of the probes' latencies by
// nearest rank (with 20 probes, q=0.99 is the largest).
func (r GateResult) VerdictLatency(q float64) time.Duration {
	ls := make([]time.Duration, len(r.Probes))
	for i, p := range r.Probes {
		ls[i] = p.Latency()
	}
	slices.Sort(ls)
	return quantile(ls, q)
}

// MeanSplit averages the probes' Split: where the latency goes.
func (r GateResult) MeanSplit() (step, tick, evaluation time.Duration) {
	if len(r.Probes) == 0 {
		return 0, 0, 0
	}
	for _, p := range r.Probes {
		s, t, e := p.Split()
		step, tick, evaluation = step+s, tick+t, evaluation+e
	}
	n := time.Duration(len(r.Probes))
	return step / n, tick / n, evaluation / n
}

// PollStats counts the poll phase: concurrent pollers GETting the
// deployment's verdict (GET /api/v1/deployments/{id}, which Argo Rollouts'
// web metric provider reads too) in a loop.
type PollStats struct {
	// Pollers is the number of concurrent pollers.
	Pollers int
	// Requests counts the requests answered 200 with a whole body.
	Requests int64
	// Errors counts the others: transport errors and other answers.
	Errors int64
	// FirstError is one of them: the first that some poller met.
	FirstError error
	// Elapsed runs from the first request to the end of the last.
	Elapsed time.Duration
	// Latencies are the 200 requests' times from sending to the last byte
	// of the body, sorted.
	Latencies []time.Duration
}

// Rate is the 200 requests per second.
func (s PollStats) Rate() float64 { return float64(s.Requests) / s.Elapsed.Seconds() }

// Latency returns the q-quantile of the 200 requests' latencies by nearest
// rank.
func (s PollStats) Latency(q float64) time.Duration { return quantile(s.Latencies, q) }

// quantile returns the smallest of sorted with at least a fraction q of
// sorted at or below it (the nearest rank, ceil(q*n)); zero for none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// RunGate benchmarks the deploy gate of the server at o.URL. It backfills
// o.History of the fleet, then writes it in real time while it registers
// deployments of the canary hosts through the gate API and measures, in
// turn:
//
//   - verdict latency: for o.Probes live scrapes, each with a deployment of
//     its own, from the remote-write acknowledgement to the first GET of
//     the verdict, read every o.ProbePoll, that reflects the scrape (see
//     VerdictProbe);
//   - poll latency: o.Pollers concurrent pollers GET the last deployment's
//     verdict in a loop for o.PollDuration.
//
// The server must run on this host: the verdicts' evaluation times are
// compared with this host's clock. Any failed write, unexpected answer or
// transport error, and a deployment that stops being evaluated (a terminal
// verdict), is an error; RunGate returns what it measured with it.
func RunGate(ctx context.Context, opts GateOptions) (GateResult, error) {
	o := opts.withDefaults()
	var res GateResult
	if o.URL == "" || o.Fleet == nil || o.ServerPID <= 0 {
		return res, errors.New("bench gate: URL, Fleet and ServerPID are required")
	}
	client := &http.Client{Timeout: gateRequestTimeout}
	writer := FleetWriter{URL: o.URL + "/api/v1/write", Client: client}

	began := time.Now()
	if err := writer.Backfill(ctx, o.Fleet, began.Add(-o.History), began, o.ScrapeInterval); err != nil {
		return res, fmt.Errorf("backfill: %w", err)
	}
	fmt.Fprintf(o.Progress, "backfilled %s of %d hosts every %s in %s\n", o.History, o.Fleet.Hosts, o.ScrapeInterval,
		time.Since(began).Round(time.Millisecond))

	feedCtx, stopFeed := context.WithCancel(ctx)
	f := &gateFeed{acks: make(chan scrapeAck, 64), failed: make(chan error, 1)}
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		f.run(feedCtx, writer, o.Fleet, began, o.ScrapeInterval)
	}()
	defer func() { stopFeed(); <-fed }()

	server0, _, err := gateCPU(o.ServerPID)
	if err != nil {
		return res, err
	}
	probeStart := time.Now()
	var dep *gateDeployment
	res.Probes, dep, err = probeVerdicts(ctx, client, f, o)
	res.ProbeElapsed = time.Since(probeStart)
	if err != nil {
		return res, err
	}
	res.DeploymentID, res.Step = dep.ID, dep.step
	server1, self1, err := gateCPU(o.ServerPID)
	if err != nil {
		return res, err
	}
	res.ProbeCPU = server1 - server0
	fmt.Fprintf(o.Progress, "%d probes in %s: median verdict latency %s\n", len(res.Probes),
		res.ProbeElapsed.Round(time.Millisecond), res.VerdictLatency(0.5).Round(time.Millisecond))

	res.Poll = pollVerdicts(ctx, dep.url, o.Pollers, o.PollDuration)
	server2, self2, err := gateCPU(o.ServerPID)
	if err != nil {
		return res, err
	}
	res.PollCPU, res.PollClientCPU = server2-server1, self2-self1
	if res.PeakRSS, err = PeakRSS(o.ServerPID); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Progress, "%d pollers for %s: %d requests, %d errors\n", o.Pollers, o.PollDuration, res.Poll.Requests, res.Poll.Errors)
	select {
	case err := <-f.failed:
		return res, err
	default:
	}
	if res.Poll.Errors > 0 {
		return res, fmt.Errorf("%d of %d verdict polls failed; the first: %w", res.Poll.Errors, res.Poll.Errors+res.Poll.Requests, res.Poll.FirstError)
	}
	return res, nil
}

// gateCPU returns the CPU time the server and this process have used.
func gateCPU(serverPID int) (server, self time.Duration, err error) {
	server, err1 := ProcessCPU(serverPID)
	self, err2 := ProcessCPU(os.Getpid())
	return server, self, errors.Join(err1, err2)
}

// scrapeAck is a live scrape stamped sample and acknowledged at acked.
type scrapeAck struct{ sample, acked time.Time }

// gateFeed writes the fleet in real time and reports each acknowledged
// scrape on acks (dropped when nobody reads) and the error that stopped
// it on failed.
type gateFeed struct {
	acks   chan scrapeAck
	failed chan error
}

// run scrapes the fleet from after prev until ctx ends, spacing scrapes
// uniformly between half and one and a half of interval.
func (g *gateFeed) run(ctx context.Context, w FleetWriter, f *Fleet, prev time.Time, interval time.Duration) {
	rng := rand.New(rand.NewPCG(f.Seed, 0x6a7e))
	for {
		gap := interval/2 + time.Duration(rng.Int64N(int64(interval)))
		if sleepUntil(ctx, prev.Add(gap)) != nil {
			return
		}
		// The samples' timestamp, to the millisecond as stored.
		t := time.UnixMilli(time.Now().UnixMilli())
		if err := w.Scrape(ctx, f, t, t.Sub(prev)); err != nil {
			if ctx.Err() == nil {
				g.failed <- fmt.Errorf("live remote write: %w", err)
			}
			return
		}
		select {
		case g.acks <- scrapeAck{sample: t, acked: time.Now().Round(0)}:
		default:
		}
		prev = t
	}
}

// registerGate registers a deployment of the fleet's canary hosts from
// start on, with the other hosts as its baseline, and returns it as the
// server stored it.
func registerGate(ctx context.Context, client *http.Client, base string, f *Fleet, start time.Time) (*gateDeployment, error) {
	reg := gateRegistration{
		Service: f.Service, Version: f.CanaryVersion, Start: start,
		Canary:   fmt.Sprintf(`{service=%q,version=%q}`, f.Service, f.CanaryVersion),
		Baseline: fmt.Sprintf(`{service=%q,version=%q}`, f.Service, f.Version),
		MinBake:  gateBake, MaxBake: gateBake,
	}
	var d gateDeployment
	if err := gateCall(ctx, client, http.MethodPost, base+"/api/v1/deployments", reg, http.StatusCreated, &d); err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	step, err := time.ParseDuration(d.Step)
	if err != nil || step <= 0 {
		return nil, fmt.Errorf("register: %s: step %q: %v", d.ID, d.Step, err)
	}
	d.step, d.url = step, base+"/api/v1/deployments/"+url.PathEscape(d.ID)
	return &d, nil
}

// probeVerdicts measures o.Probes verdict latencies, each on a deployment
// of its own: it registers one that started between one and two minutes
// ago, so its first two steps (left out of every verdict) are past and its
// step grid falls at a random phase of the detector's ticks, as a real
// deployment's does; it takes the next live scrape as the probe, and
// aborts the deployment once the probe is measured, so the detector
// evaluates one at a time, but the last, which it returns.
func probeVerdicts(ctx context.Context, client *http.Client, f *gateFeed, o GateOptions) ([]VerdictProbe, *gateDeployment, error) {
	rng := rand.New(rand.NewPCG(o.Fleet.Seed, 0x57a7))
	var probes []VerdictProbe
	var dep *gateDeployment
	for range o.Probes {
		if dep != nil {
			abort := map[string]string{"reason": "bench gate: probe measured"}
			if err := gateCall(ctx, client, http.MethodPost, dep.url+"/abort", abort, http.StatusOK, nil); err != nil {
				return probes, nil, fmt.Errorf("abort %s: %w", dep.ID, err)
			}
		}
		start := time.Now().Add(-time.Minute - time.Duration(rng.Int64N(int64(time.Minute))))
		var err error
		if dep, err = registerGate(ctx, client, o.URL, o.Fleet, start); err != nil {
			return probes, nil, err
		}
		p, err := probeOne(ctx, client, dep, f, o.ProbePoll)
		if err != nil {
			return probes, nil, err
		}
		probes = append(probes, p)
		step, tick, eval := p.Split()
		fmt.Fprintf(o.Progress, "probe %d (%s, step %s): sample %s, latency %s = step %s + tick %s + evaluation and read %s\n",
			len(probes), dep.ID, dep.step, p.Sample.Format("15:04:05.000"), p.Latency().Round(time.Millisecond),
			step.Round(time.Millisecond), tick.Round(time.Millisecond), eval.Round(time.Millisecond))
	}
	return probes, dep, nil
}

// probeOne takes the first live scrape stamped after its call, just after
// dep's registration, as the probe of dep and reads dep's verdict every
// poll until one reflects the scrape.
func probeOne(ctx context.Context, client *http.Client, dep *gateDeployment, f *gateFeed, poll time.Duration) (VerdictProbe, error) {
	registered := time.Now()
	var p VerdictProbe
	for p.Sample.IsZero() {
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case err := <-f.failed:
			return p, err
		case a := <-f.acks:
			if !a.sample.After(registered) {
				continue
			}
			// The first grid point at or after the sample.
			k := (a.sample.Sub(dep.Start) + dep.step - 1) / dep.step
			p = VerdictProbe{Sample: a.sample, Acked: a.acked, StepEnd: dep.Start.Add(k * dep.step)}
		}
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case err := <-f.failed:
			return p, err
		case <-tick.C:
		}
		var st gateStatus
		err := gateCall(ctx, client, http.MethodGet, dep.url, nil, http.StatusOK, &st)
		seen := time.Now().Round(0) // wall clock, as the server's
		switch {
		case err != nil:
			return p, err
		// Also what a registration that came back terminal meets.
		case terminal(st.Verdict):
			return p, fmt.Errorf("deployment %s reached %s (%s): the detector no longer evaluates it", st.ID, st.Verdict, st.Reason)
		// data_through is the last step the evaluation covered: it reflects
		// the sample once it reaches the step holding it.
		case st.Updated.After(p.Acked) && st.DataThrough != nil && !st.DataThrough.Before(p.StepEnd):
			p.Evaluated, p.Seen = st.Updated, seen
			return p, nil
		case seen.Sub(p.Acked) > probeTimeout:
			return p, fmt.Errorf("deployment %s: no verdict reflected the sample at %s within %s; the last was evaluated at %s",
				st.ID, p.Sample.Format(time.RFC3339Nano), probeTimeout, st.Updated.Format(time.RFC3339Nano))
		}
	}
}

// pollVerdicts runs pollers concurrent GET loops on statusURL for
// duration over kept-alive connections (as many as pollers), reading every
// body to its end. A request under way at the end is finished and counted.
func pollVerdicts(ctx context.Context, statusURL string, pollers int, duration time.Duration) PollStats {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = pollers, pollers
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: gateRequestTimeout, Transport: tr}
	s := PollStats{Pollers: pollers}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(duration)
	for range pollers {
		wg.Go(func() {
			var lat []time.Duration
			var errs int64
			var first error
			for ctx.Err() == nil && time.Now().Before(end) {
				t0 := time.Now()
				if err := gateCall(ctx, client, http.MethodGet, statusURL, nil, http.StatusOK, nil); err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			defer mu.Unlock()
			s.Latencies = append(s.Latencies, lat...)
			s.Errors += errs
			if s.FirstError == nil {
				s.FirstError = first
			}
		})
	}
	wg.Wait()
	s.Elapsed = time.Since(start)
	s.Requests = int64(len(s.Latencies))
	slices.Sort(s.Latencies)
	if err := ctx.Err(); err != nil && s.FirstError == nil {
		s.Errors++
		s.FirstError = err
	}
	return s
}

// gateCall sends a request of method to u, with in as its JSON body
// unless in is nil, and wants the status code want; it decodes the
// answer's body into out unless out is nil, and else reads it to its end,
// so that the connection is kept alive.
func gateCall(ctx context.Context, client *http.Client, method, u string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, bytes.TrimSpace(msg))
	}
	if out != nil {
		err = json.NewDecoder(resp.Body).Decode(out)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
	}
	return nil
}
