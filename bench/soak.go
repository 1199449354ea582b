package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gonum.org/v1/gonum/stat"
)

// SoakOptions configures RunSoak. Zero fields take the documented defaults.
type SoakOptions struct {
	// Duration is how long ingest, queries and gate polls run together.
	// Zero means 30m.
	Duration time.Duration
	// SampleEvery is the length of a window: the server's memory is read
	// and the latencies summed up once per window. Zero means 1m.
	SampleEvery time.Duration
	// WarmUp is how much of the start the memory slope leaves out: the
	// block cache and the head's open chunks fill at first. Zero means
	// half of Duration.
	WarmUp time.Duration
	// Series is the number of series of the node-exporter-like load.
	// Zero means 5000.
	Series int
	// Interval is the time between two samples of a series, and between
	// two scrapes of the gate's fleet (its deployment's step). Zero means
	// 10s.
	Interval time.Duration
	// Concurrency is the number of concurrent remote-write senders. Zero
	// means 2.
	Concurrency int
	// Protocol is the remote-write protocol; empty means RemoteWriteV1.
	Protocol Protocol
	// QueryRange is the span of the range queries, ending now; the load
	// is backfilled over it first so that every query reads as much data
	// from the first window to the last. Zero means 10m.
	QueryRange time.Duration
	// QueryEvery is the time between the starts of two queries, which run
	// one at a time (a slow one delays the next). Zero means 1s.
	QueryEvery time.Duration
	// GatePollEvery is the time between two reads of the deployment's
	// verdict. Zero means 1s.
	GatePollEvery time.Duration
	// GateHistory is how much of the fleet is backfilled before the
	// deployment is registered (see GateOptions.History). Zero means 30m.
	GateHistory time.Duration
	// MaxRSSSlope is the largest RSS growth after WarmUp that passes, in
	// MiB per hour. Zero means 64.
	MaxRSSSlope float64
	// MaxLatencyGrowth is the largest ratio of the last window's p99 to
	// the first window's that passes, for each kind of request. Zero
	// means 3.
	MaxLatencyGrowth float64
	// LatencyFloor is the least first-window p99 the growth is measured
	// against: below it a ratio is scheduling noise on a shared host.
	// Zero means 50ms.
	LatencyFloor time.Duration
	// Seed makes the load and the fleet deterministic.
	Seed uint64
	// Progress, if set, receives a line per stage and per window.
	Progress io.Writer
}

func (o SoakOptions) withDefaults() SoakOptions {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Duration, 30*time.Minute)
	def(&o.SampleEvery, time.Minute)
	def(&o.WarmUp, o.Duration/2)
	def(&o.Interval, 10*time.Second)
	def(&o.QueryRange, 10*time.Minute)
	def(&o.QueryEvery, time.Second)
	def(&o.GatePollEvery, time.Second)
	def(&o.GateHistory, 30*time.Minute)
	def(&o.LatencyFloor, 50*time.Millisecond)
	if o.Series <= 0 {
		o.Series = 5000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.Protocol == "" {
		o.Protocol = RemoteWriteV1
	}
	if o.MaxRSSSlope <= 0 {
		o.MaxRSSSlope = 64
	}
	if o.MaxLatencyGrowth <= 0 {
		o.MaxLatencyGrowth = 3
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// soakRequestTimeout bounds one query or gate request of the soak.
const soakRequestTimeout = 30 * time.Second

// SoakResult is what RunSoak measured.
type SoakResult struct {
	// Options are the options the soak ran with, defaults filled in.
	Options SoakOptions
	// Began is when the soak's load began, after the backfills.
	Began time.Time
	// Elapsed runs from Began to the end of the last request.
	Elapsed time.Duration
	// Backfilled counts the load's samples acknowledged before Began.
	Backfilled int64
	// Write counts the real-time load.
	Write Result
	// WriteErr is what stopped the real-time load early, if anything did.
	WriteErr error
	// Stored counts the load's samples the server answered a count query
	// with at the end; Backfilled plus Write.Acked when nothing was lost.
	Stored int64
	// Deployments is the number of deployments registered: one, and one
	// more each time a verdict was terminal (the detector stops
	// evaluating a deployment that has one).
	Deployments int
	// Windows are the measurements, one per SampleEvery.
	Windows []SoakWindow
	// Ingest, Query and Gate add up the windows' requests of each kind,
	// with the first error met.
	Ingest, Query, Gate SoakTotal
	// ServerExit is how the server ended on SIGTERM: "" for a clean exit.
	ServerExit string
}

// SoakTotal counts one kind of request over the whole soak.
type SoakTotal struct {
	Requests, Errors int64
	// FirstError is the first error met, if any.
	FirstError error
}

// SoakWindow is one window of the soak.
type SoakWindow struct {
	// End is the window's end after Began, and Length its length: the
	// last window runs to the end of the last request, past Duration.
	End, Length time.Duration
	// RSS is the server's resident set at the window's end (VmRSS), in
	// bytes.
	RSS int64
	// HeapInuse is the server's Go heap in use at the window's end, in
	// bytes, from its /debug/pprof/heap; -1 when it could not be read.
	HeapInuse int64
	// Disk is the size of the server's data directory at the window's
	// end, in bytes.
	Disk int64
	// CPU is the server's CPU time over the window.
	CPU time.Duration
	// Ingest are the load's remote-write requests (to the reply's
	// headers), Query the PromQL queries and Gate the verdict reads (to
	// the reply's last byte) that ended in the window.
	Ingest, Query, Gate LatencyStats
}

// LatencyStats sums up the requests of one kind in one window.
type LatencyStats struct {
	// Requests counts the successful requests and Errors the others.
	Requests, Errors int64
	// P50, P99 and Max are the successful requests' latency quantiles by
	// nearest rank; zero for none.
	P50, P99, Max time.Duration
}

// RSSSlope is the least-squares slope of the windows' RSS after WarmUp, in
// MiB per hour, and the number of windows it fits; NaN for fewer than two.
func (r SoakResult) RSSSlope() (float64, int) {
	return r.slope(func(w SoakWindow) float64 { return float64(w.RSS) / (1 << 20) })
}

// HeapSlope is RSSSlope for the Go heap in use; NaN when some window's
// heap is unknown.
func (r SoakResult) HeapSlope() (float64, int) {
	return r.slope(func(w SoakWindow) float64 {
		if w.HeapInuse < 0 {
			return math.NaN()
		}
		return float64(w.HeapInuse) / (1 << 20)
	})
}

func (r SoakResult) slope(y func(SoakWindow) float64) (float64, int) {
	var xs, ys []float64
	for _, w := range r.Windows {
		if w.End > r.Options.WarmUp {
			xs, ys = append(xs, w.End.Hours()), append(ys, y(w))
		}
	}
	if len(xs) < 2 {
		return math.NaN(), len(xs)
	}
	_, beta := stat.LinearRegression(xs, ys, nil, false)
	return beta, len(xs)
}

// Failures lists why the soak failed, against its options' thresholds:
// a write refused or lost, a failed query or verdict read, memory that
// grows faster than MaxRSSSlope after the warm-up, a last window's p99
// more than MaxLatencyGrowth times the first's (or LatencyFloor), an
// unclean exit. None means it passed.
func (r SoakResult) Failures() []string {
	o := r.Options
	var fails []string
	failf := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
	if len(r.Windows) == 0 || r.Write.Acked == 0 {
		failf("nothing measured: %d windows, %d samples acknowledged", len(r.Windows), r.Write.Acked)
	}
	if r.WriteErr != nil || r.Write.Rejected > 0 {
		failf("remote write refused %d samples: %v", r.Write.Rejected, r.WriteErr)
	}
	if want := r.Backfilled + r.Write.Acked; r.Stored < want {
		failf("lost samples: %d of %d acknowledged are queryable", r.Stored, want)
	}
	for _, c := range []struct {
		name string
		t    SoakTotal
	}{{"remote-write", r.Ingest}, {"query", r.Query}, {"gate", r.Gate}} {
		if c.t.Errors > 0 {
			failf("%d of %d %s requests failed; the first: %v", c.t.Errors, c.t.Errors+c.t.Requests, c.name, c.t.FirstError)
		}
	}
	if slope, n := r.RSSSlope(); !(slope <= o.MaxRSSSlope) {
		failf("RSS slope %.1f MiB/h over %d windows after %s, above %.0f MiB/h", slope, n, o.WarmUp, o.MaxRSSSlope)
	}
	if len(r.Windows) > 1 {
		first, last := r.Windows[0], r.Windows[len(r.Windows)-1]
		for _, c := range []struct {
			name        string
			first, last LatencyStats
		}{{"remote-write", first.Ingest, last.Ingest}, {"query", first.Query, last.Query}, {"gate", first.Gate, last.Gate}} {
			if limit := time.Duration(o.MaxLatencyGrowth * float64(max(c.first.P99, o.LatencyFloor))); c.last.P99 > limit {
				failf("%s p99 grew from %s in the first window to %s in the last, above %s", c.name, c.first.P99, c.last.P99, limit)
			}
		}
	}
	if r.ServerExit != "" {
		failf("server exit on SIGTERM: %s", r.ServerExit)
	}
	return fails
}

// RunSoak starts sys (Immune, with --pprof for its heap figures) fresh and
// runs for o.Duration, together: a real-time remote write of the
// node-exporter-like load, one PromQL query after another (instant and
// range, over the load), and reads of a pending deployment's verdict
// while a simulated fleet is written in real time for it. Every
// o.SampleEvery it reads the server's memory and sums up the latencies of
// each kind of request. At the end it counts the load's samples through
// the query API and stops the server with SIGTERM.
//
// What fails the soak is in the result (see Failures); the error is for a
// soak that could not run: a server that did not start, a backfill or the
// registration refused, ctx ended.
func RunSoak(ctx context.Context, sys System, opts SoakOptions) (SoakResult, error) {
	o := opts.withDefaults()
	res := SoakResult{Options: o}
	in, err := sys.Start(ctx)
	if err != nil {
		return res, err
	}
	defer in.Stop()
	fmt.Fprintf(o.Progress, "server pid %d at %s, data in %s\n", in.Pid(), in.APIURL, in.DataDir)

	// The load over QueryRange first, so the queries read as much data in
	// the first window as in the last.
	backfill := WriteOptions{URL: in.WriteURL, Protocol: o.Protocol, Series: o.Series, Steps: int(o.QueryRange / o.Interval),
		Interval: o.Interval, Concurrency: o.Concurrency, Seed: o.Seed}
	backfill.Start = time.Now().Add(-time.Duration(backfill.Steps) * o.Interval)
	bf, err := Write(ctx, backfill)
	if err != nil {
		return res, fmt.Errorf("backfill: %w", err)
	}
	res.Backfilled = bf.Acked
	fmt.Fprintf(o.Progress, "backfilled %d samples of %d series over %s in %s\n", bf.Acked, o.Series, o.QueryRange, bf.Elapsed.Round(time.Millisecond))

	client := &http.Client{Timeout: soakRequestTimeout}
	fleet := &Fleet{Service: "checkout", Version: "v41", CanaryVersion: "v42", Hosts: 8, Canary: 1, RPS: 200,
		ErrorRate: 0.01, LatencyMedian: 0.08, Seed: o.Seed}
	fw := FleetWriter{URL: in.WriteURL, Client: client}
	now := time.Now()
	if err := fw.Backfill(ctx, fleet, now.Add(-o.GateHistory), now, o.Interval); err != nil {
		return res, fmt.Errorf("fleet backfill: %w", err)
	}
	poller := &soakPoller{client: client, base: in.APIURL, fleet: fleet}
	if err := poller.register(ctx); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Progress, "fleet of %d hosts backfilled over %s; deployment %s registered, step %s\n",
		fleet.Hosts, o.GateHistory, poller.dep.ID, poller.dep.step)

	cpu0, err := ProcessCPU(in.Pid())
	if err != nil {
		return res, err
	}
	var ingest, query, gate soakRecorder
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	res.Began = time.Now()
	end := res.Began.Add(o.Duration)
	var wg sync.WaitGroup
	wg.Go(func() {
		live := backfill
		live.Steps, live.Start, live.RealTime = int(o.Duration/o.Interval), res.Began, true
		live.Client = &http.Client{Timeout: soakRequestTimeout, Transport: timedTransport{http.DefaultTransport, &ingest}}
		res.Write, res.WriteErr = Write(runCtx, live)
		if res.WriteErr != nil {
			cancel() // the rest measures nothing without the load
		}
	})
	wg.Go(func() { soakQueries(runCtx, in.APIURL, o, end, &query) })
	wg.Go(func() { poller.run(runCtx, o.GatePollEvery, end, &gate) })
	feedCtx, stopFeed := context.WithCancel(runCtx)
	defer stopFeed()
	feed := &gateFeed{acks: make(chan scrapeAck), failed: make(chan error, 1)} // acks nobody reads are dropped
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		feed.run(feedCtx, fw, fleet, now, o.Interval)
		select {
		case err := <-feed.failed:
			ingest.fail(fmt.Errorf("fleet: %w", err))
			cancel()
		default:
		}
	}()

	w := soakSampler{in: in, began: res.Began, last: res.Began, cpu: cpu0, ingest: &ingest, query: &query, gate: &gate, progress: o.Progress}
	for k := 1; res.Began.Add(time.Duration(k) * o.SampleEvery).Before(end); k++ {
		if sleepUntil(runCtx, res.Began.Add(time.Duration(k)*o.SampleEvery)) != nil {
			break
		}
		res.Windows = append(res.Windows, w.sample(ctx))
	}
	wg.Wait()
	stopFeed()
	<-fed
	res.Windows = append(res.Windows, w.sample(ctx))
	res.Elapsed = time.Since(res.Began)
	res.Ingest, res.Query, res.Gate = ingest.total(), query.total(), gate.total()
	res.Deployments = poller.registered
	if err := ctx.Err(); err != nil {
		return res, err
	}

	stored, err := countStored(ctx, in.APIURL, time.Since(backfill.Start)+o.Interval, res.Backfilled+res.Write.Acked)
	res.Stored = stored
	if err != nil {
		return res, err
	}
	fmt.Fprintf(o.Progress, "%d samples counted through the query API; stopping the server\n", stored)
	res.ServerExit = terminateClean(in)
	return res, nil
}

// timedTransport records the latency of each request it carries, to the
// reply's headers, and counts transport errors and non-2xx replies.
type timedTransport struct {
	next http.RoundTripper
	rec  *soakRecorder
}

// RoundTrip implements http.RoundTripper.
func (t timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t0 := time.Now()
	resp, err := t.next.RoundTrip(req)
	switch {
	case err != nil:
		t.rec.fail(err)
	case resp.StatusCode/100 != 2:
		t.rec.fail(fmt.Errorf("%s %s: %s", req.Method, req.URL, resp.Status))
	default:
		t.rec.ok(time.Since(t0))
	}
	return resp, err
}

// soakRecorder collects one kind of request's latencies and errors for the
// current window, and the totals.
type soakRecorder struct {
	mu struct {
		sync.Mutex
		window []time.Duration // successful requests' latencies since the last take
		errors int64           // failed requests since the last take
		total  SoakTotal
	}
}

func (r *soakRecorder) ok(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.window = append(r.mu.window, d)
	r.mu.total.Requests++
}

func (r *soakRecorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.errors++
	r.mu.total.Errors++
	if r.mu.total.FirstError == nil {
		r.mu.total.FirstError = err
	}
}

// take sums up the window and starts the next.
func (r *soakRecorder) take() LatencyStats {
	r.mu.Lock()
	lat, errs := r.mu.window, r.mu.errors
	r.mu.window, r.mu.errors = nil, 0
	r.mu.Unlock()
	slices.Sort(lat)
	s := LatencyStats{Requests: int64(len(lat)), Errors: errs, P50: quantile(lat, 0.5), P99: quantile(lat, 0.99)}
	if len(lat) > 0 {
		s.Max = lat[len(lat)-1]
	}
	return s
}

func (r *soakRecorder) total() SoakTotal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.total
}

// soakSampler measures the server at the end of each window.
type soakSampler struct {
	in                  *Instance
	began, last         time.Time
	cpu                 time.Duration
	ingest, query, gate *soakRecorder
	progress            io.Writer
}

// sample ends the current window. A figure it cannot read is zero (-1 for
// the heap), which the report shows.
func (s *soakSampler) sample(ctx context.Context) SoakWindow {
	now := time.Now()
	w := SoakWindow{End: now.Sub(s.began), Length: now.Sub(s.last), HeapInuse: -1,
		Ingest: s.ingest.take(), Query: s.query.take(), Gate: s.gate.take()}
	s.last = now
	w.RSS, _ = procStatusBytes(s.in.Pid(), "VmRSS")
	if h, err := heapInuse(ctx, s.in.APIURL); err == nil {
		w.HeapInuse = h
	}
	w.Disk, _ = dirBytes(s.in.DataDir, nil)
	if cpu, err := ProcessCPU(s.in.Pid()); err == nil {
		w.CPU, s.cpu = cpu-s.cpu, cpu
	}
	fmt.Fprintf(s.progress, "window %s: RSS %d MiB, heap %d MiB, %.2f CPUs; remote write %d (p99 %s), queries %d (p99 %s), gate %d (p99 %s), errors %d\n",
		w.End.Round(time.Second), w.RSS>>20, w.HeapInuse>>20, w.CPU.Seconds()/w.Length.Seconds(),
		w.Ingest.Requests, w.Ingest.P99.Round(time.Microsecond), w.Query.Requests, w.Query.P99.Round(time.Microsecond),
		w.Gate.Requests, w.Gate.P99.Round(time.Microsecond), w.Ingest.Errors+w.Query.Errors+w.Gate.Errors)
	return w
}

// soakQueries runs one query every o.QueryEvery until end, going round
// the query set, each once as an instant query at now and once as a range
// query over the o.QueryRange before now. A query under way at the end is
// finished and counted; one with no series in its result is an error (the
// load covers every query).
func soakQueries(ctx context.Context, base string, o SoakOptions, end time.Time, rec *soakRecorder) {
	step := strconv.FormatFloat(queryStep(o.QueryRange, o.Interval).Seconds(), 'f', -1, 64)
	for i := range ticks(ctx, o.QueryEvery, end) {
		q := Queries[i%len(Queries)]
		now := time.Now()
		path, params := "/api/v1/query", url.Values{"query": {q.Expr}, "time": {unixSeconds(now)}}
		if i/len(Queries)%2 == 1 {
			path, params = "/api/v1/query_range", url.Values{"query": {q.Expr}, "start": {unixSeconds(now.Add(-o.QueryRange))},
				"end": {unixSeconds(now)}, "step": {step}}
		}
		reqCtx, cancel := context.WithTimeout(ctx, soakRequestTimeout)
		t0 := time.Now()
		body, err := getBody(reqCtx, base+path+"?"+params.Encode())
		d := time.Since(t0)
		cancel()
		if err == nil {
			var env struct {
				Data struct {
					Result []json.RawMessage `json:"result"`
				} `json:"data"`
			}
			if err = json.Unmarshal(body, &env); err == nil && len(env.Data.Result) == 0 {
				err = fmt.Errorf("%s %q: no series in the result", path, q.Expr)
			}
		}
		switch {
		case ctx.Err() != nil: // the soak was stopped, not the query
			return
		case err != nil:
			rec.fail(err)
		default:
			rec.ok(d)
		}
	}
}

func unixSeconds(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// soakPoller reads a deployment's verdict, as a deploy tool waiting for it
// does, and registers a new one when a verdict is terminal.
type soakPoller struct {
	client     *http.Client
	base       string
	fleet      *Fleet
	dep        *gateDeployment
	registered int
}

// register registers a deployment of the fleet's canary that started a
// minute ago, so that its first steps, left out of every verdict, are
// past.
func (p *soakPoller) register(ctx context.Context) error {
	dep, err := registerGate(ctx, p.client, p.base, p.fleet, time.Now().Add(-time.Minute))
	if err != nil {
		return err
	}
	p.dep = dep
	p.registered++
	return nil
}

// run reads the verdict every every until end, recording each read.
func (p *soakPoller) run(ctx context.Context, every time.Duration, end time.Time, rec *soakRecorder) {
	for range ticks(ctx, every, end) {
		var st gateStatus
		t0 := time.Now()
		err := gateCall(ctx, p.client, http.MethodGet, p.dep.url, nil, http.StatusOK, &st)
		d := time.Since(t0)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			rec.fail(err)
			continue
		}
		rec.ok(d)
		if terminal(st.Verdict) {
			if err := p.register(ctx); err != nil && ctx.Err() == nil {
				rec.fail(err)
			}
		}
	}
}

// ticks yields 0, 1, 2, ... once every every, until end or until ctx
// ends. A body still running at end is not cut short.
func ticks(ctx context.Context, every time.Duration, end time.Time) iter.Seq[int] {
	return func(yield func(int) bool) {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if !now.Before(end) {
					return
				}
			}
			if !yield(i) {
				return
			}
		}
	}
}

// countStored counts the load's samples (job="node") over the window
// before now, metric by metric (count_over_time drops the name, so series
// of two metrics with the same labels would collide), until they are want
// or a minute has passed, and returns the last count.
func countStored(ctx context.Context, base string, window time.Duration, want int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		var got float64
		at := time.Now()
		for _, name := range MetricNames() {
			q := fmt.Sprintf(`sum(count_over_time({__name__=%q,job="node"}[%ds]))`, name, int(window.Seconds())+1)
			v, err := instantScalar(ctx, base, q, at)
			if err != nil {
				return int64(got), fmt.Errorf("count: %w", err)
			}
			got += v
		}
		if int64(got) >= want {
			return int64(got), nil
		}
		select {
		case <-ctx.Done():
			return int64(got), nil // short: Failures says so
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// terminateClean stops the server with SIGTERM and says what was unclean
// about its exit, with its log's last lines: "" for exit status 0.
func terminateClean(in *Instance) string {
	if err := in.Terminate(); err != nil {
		return err.Error()
	}
	if in.cmd.ProcessState.Success() {
		return ""
	}
	log, _ := os.ReadFile(in.log.Name())
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	return fmt.Sprintf("%s; log: %s", in.cmd.ProcessState, strings.Join(lines[max(0, len(lines)-5):], " | "))
}

// heapInuse reads the Go heap in use from the server's heap profile in
// text form, whose runtime.MemStats lines end it: the server exposes no
// /metrics. Reading it takes no garbage collection.
func heapInuse(ctx context.Context, base string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, soakRequestTimeout)
	defer cancel()
	v, ok, err := LineValue(ctx, base+"/debug/pprof/heap?debug=1", "# HeapInuse = ")
	if err == nil && !ok {
		err = errors.New("heap profile: no HeapInuse line")
	}
	return v, err
}

// LineValue GETs url and returns the integer that follows prefix on the
// first line of the body starting with it, as in a Prometheus exposition
// or a Go heap profile; ok is false when no line does.
func LineValue(ctx context.Context, url, prefix string) (v int64, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if s, found := strings.CutPrefix(sc.Text(), prefix); found {
			v, err := strconv.ParseInt(s, 10, 64)
			return v, err == nil, err
		}
	}
	return 0, false, sc.Err()
}
