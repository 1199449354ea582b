package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/immune-dev/immune/bench"
	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/detect/gate"
)

// crashServeFlags run the detector and checkpoints often, so that kills
// land in both: mid-evaluation and mid-checkpoint.
var crashServeFlags = []string{"--detect-interval", "1s", "--checkpoint-interval", "1s"}

// TestKill9LosesNothingAcknowledged writes under load, registers
// deployments through the gate API meanwhile, kills the server with
// SIGKILL at a random moment, runs "immune check" on the dead server's
// data directory, restarts it, and checks that every sample the server
// acknowledged so far is there with its value, and every deployment it
// acknowledged is there with every verdict and abort it answered. The
// server checkpoints every second, and every other cycle begins with a
// clean stop and start, so that kills find samples in checkpointed chunks
// as well as in the WAL, and some land mid-checkpoint. Cycles default to
// 2; IMMUNE_CRASH_CYCLES sets more.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	cycles := 2
	if s := os.Getenv("IMMUNE_CRASH_CYCLES"); s != "" {
		var err error
		if cycles, err = strconv.Atoi(s); err != nil || cycles < 1 {
			t.Fatalf("IMMUNE_CRASH_CYCLES=%q: want a whole number >= 1", s)
		}
	}
	began := time.Now()
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	led := newCrashLedger()

	const series, steps = 200, 3000
	w := bench.NewWorkload(series, seed)
	nodeKeys := make([]string, series)
	for i := range nodeKeys {
		nodeKeys[i] = labelKey(w.Labels(i).Map())
	}
	start := time.Now().Add(-steps * time.Second).Truncate(time.Second)
	// The canary selectors of the deployments match this fleet: a
	// registration is refused unless the canary reported lately.
	fleet := &bench.Fleet{Service: "checkout", Version: "v1", CanaryVersion: "v2", Hosts: 4, Canary: 1, RPS: 100,
		ErrorRate: 0.01, LatencyMedian: 0.08, Seed: seed}
	lastScrape := time.Now().Add(-30 * time.Minute)
	var sampleChecks, depChecks, verdictChecks int
	for cycle := range cycles + 1 {
		server, base := startImmune(t, dir, crashServeFlags...)
		if cycle > 0 {
			s, d, v := led.verify(t, base, time.Since(start)+time.Minute)
			sampleChecks, depChecks, verdictChecks = sampleChecks+s, depChecks+d, verdictChecks+v
			t.Logf("cycle %d: after the restart found all %d acknowledged samples and %d deployments with %d verdicts",
				cycle-1, s, d, v)
			// The last cycle's deployments end here, so that the detector
			// keeps to a few; the aborts are checked after the next kill.
			led.abortAll(t, base)
		}
		if cycle == cycles {
			break
		}
		if cycle%2 == 1 {
			// Every other cycle starts from a clean stop, whose checkpoint
			// moves the head into chunks and deletes the WAL: the kills
			// that follow leave samples in both.
			server.stop(t, syscall.SIGTERM)
			if server.err != nil {
				t.Fatalf("cycle %d: SIGTERM: %v", cycle, server.err)
			}
			server, base = startImmune(t, dir, crashServeFlags...)
		}
		// The fleet catches up to now: the first cycle backfills half an
		// hour of it, each later one adds a scrape.
		now := time.Now()
		for next := lastScrape.Add(15 * time.Second); next.Before(now); next = next.Add(15 * time.Second) {
			if err := led.scrape(t.Context(), base, fleet, next, next.Sub(lastScrape)); err != nil {
				t.Fatal(err)
			}
			lastScrape = next
		}
		if err := led.scrape(t.Context(), base, fleet, now, now.Sub(lastScrape)); err != nil {
			t.Fatal(err)
		}
		lastScrape = now
		// One deployment is registered before the load and has a verdict
		// of the detector's besides the registration's own.
		anchor, err := led.register(t.Context(), base, fmt.Sprintf("v2-%d", cycle))
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "a detector verdict before the load", func() error {
			if n, err := led.readHistory(base, anchor); err != nil || n < 2 {
				return fmt.Errorf("%d verdicts: %v", n, err)
			}
			return nil
		})

		// Kill after a random number of this cycle's acknowledged samples.
		killAfter := 5_000 + rng.IntN(40_000)
		before := led.sampleCount()
		ctx, cancel := context.WithCancel(t.Context())
		killed := make(chan struct{})
		var once sync.Once
		// Every 2,500 acknowledged samples the registrar registers a
		// deployment and reads the anchor's history, racing the kill.
		tick := make(chan struct{}, 1)
		done := make(chan error, 1)
		go func() {
			// Each cycle writes the same workload shifted in time by a
			// fraction of the interval, so cycles add new samples to the
			// same series and never overwrite one another's.
			// Alternate the protocols: both must be durable.
			proto := []bench.Protocol{bench.RemoteWriteV1, bench.RemoteWriteV2}[cycle%2]
			_, err := bench.Write(ctx, bench.WriteOptions{
				URL: base + "/api/v1/write", Protocol: proto, Series: series, Steps: steps, Interval: time.Second,
				Start: start.Add(time.Duration(cycle) * time.Second / time.Duration(cycles)), BatchSize: 400, Concurrency: 4, Seed: seed,
				OnAck: func(samples []bench.Sample) {
					n := led.addNode(nodeKeys, samples)
					if (n-before)%2_500 < len(samples) {
						select {
						case tick <- struct{}{}:
						default:
						}
					}
					if n >= before+killAfter {
						once.Do(func() {
							server.cmd.Process.Signal(syscall.SIGKILL)
							close(killed)
						})
					}
				},
			})
			done <- err
		}()
		registrar := make(chan struct{})
		go func() {
			defer close(registrar)
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick:
				}
				// Errors are the kill's: what was not answered was not
				// acknowledged, and the ledger keeps only what was.
				led.register(ctx, base, fmt.Sprintf("v2-%d-%d", cycle, n))
				led.readHistory(base, anchor)
			}
		}()
		select {
		case <-killed:
		case err := <-done:
			t.Fatalf("cycle %d: the load ended before the kill: %v", cycle, err)
		}
		<-server.done
		cancel()
		<-done
		<-registrar

		// The check opens the stores read-only before the restart can
		// replay or repair anything.
		out, err := exec.Command(immuneBin, "check", "--data-dir", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("cycle %d: immune check after the kill: %v\n%s", cycle, err, out)
		}
		t.Logf("cycle %d: killed after %d acknowledged samples, %d deployments in all; immune check:\n%s",
			cycle, led.sampleCount(), led.deploymentCount(), bytes.TrimSpace(out))
	}
	t.Logf("survived %d kill -9 cycles in %s: %d acknowledged samples (%d sample checks), %d deployments (%d deployment checks) with %d verdict checks; immune check passed after every kill; seed %d",
		cycles, time.Since(began).Round(time.Second), led.sampleCount(), sampleChecks, led.deploymentCount(), depChecks, verdictChecks, seed)
}

// crashLedger records what the server acknowledged: samples, deployments,
// the verdicts it answered for them and the aborts it accepted.
type crashLedger struct {
	mu      sync.Mutex
	samples map[string]map[int64]float64 // label key -> t -> v; guarded by mu
	total   int                          // acknowledged samples written; guarded by mu
	deps    map[string]*ackedDeployment  // by ID; guarded by mu
}

// ackedDeployment is a registration the server answered 201.
type ackedDeployment struct {
	version  string
	verdicts map[int64]detect.Status // verdict time (ns) -> verdict
	aborted  bool
}

func newCrashLedger() *crashLedger {
	return &crashLedger{samples: map[string]map[int64]float64{}, deps: map[string]*ackedDeployment{}}
}

func (l *crashLedger) addLocked(key string, t int64, v float64) {
	m := l.samples[key]
	if m == nil {
		m = map[int64]float64{}
		l.samples[key] = m
	}
	m[t] = v
	l.total++
}

// addNode records acknowledged samples of the node workload and returns
// how many samples have been acknowledged in all.
func (l *crashLedger) addNode(keys []string, samples []bench.Sample) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range samples {
		l.addLocked(keys[s.Series], s.T, s.V)
	}
	return l.total
}

func (l *crashLedger) sampleCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *crashLedger) deploymentCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.deps)
}

// scrape remote-writes one scrape of the fleet at t and records its
// samples once acknowledged.
func (l *crashLedger) scrape(ctx context.Context, base string, f *bench.Fleet, t time.Time, dt time.Duration) error {
	type point struct {
		key string
		t   int64
		v   float64
	}
	var (
		req    prompb.WriteRequest
		points []point
	)
	f.Scrape(t, dt, func(ls labels.Labels, ms int64, v float64) {
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: v, Timestamp: ms}}}
		ls.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
		req.Timeseries = append(req.Timeseries, ts)
		points = append(points, point{labelKey(ls.Map()), ms, v})
	})
	raw, err := req.Marshal()
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("fleet scrape: %s: %s", resp.Status, msg)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range points {
		l.addLocked(p.key, p.t, p.v)
	}
	return nil
}

// register registers a deployment of the fleet's canary that stays
// pending (it bakes for an hour) and records it, with the verdict of its
// first evaluation, once the server answers 201.
func (l *crashLedger) register(ctx context.Context, base, version string) (string, error) {
	body, err := json.Marshal(gate.Registration{Service: "checkout", Version: version, Start: time.Now(),
		Canary: `{service="checkout",version="v2"}`, Baseline: `{service="checkout",version="v1"}`,
		MinBake: detect.Duration(time.Hour)})
	if err != nil {
		return "", err
	}
	var d detect.Deployment
	if err := postJSON(ctx, base+"/api/v1/deployments", body, http.StatusCreated, &d); err != nil {
		return "", fmt.Errorf("register %s: %w", version, err)
	}
	a := &ackedDeployment{version: version, verdicts: map[int64]detect.Status{}}
	if d.Verdict != nil {
		a.verdicts[d.Verdict.At.UnixNano()] = d.Verdict.Verdict
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deps[d.ID] = a
	return d.ID, nil
}

// readHistory reads a deployment's verdicts, records them as acknowledged
// and returns how many there are.
func (l *crashLedger) readHistory(base, id string) (int, error) {
	var h struct{ Verdicts []detect.Verdict }
	if err := getJSON(base+"/api/v1/deployments/"+id+"/history", &h); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range h.Verdicts {
		l.deps[id].verdicts[v.At.UnixNano()] = v.Verdict
	}
	return len(h.Verdicts), nil
}

// abortAll aborts every pending deployment, recording the aborts the
// server accepted of those the ledger holds.
func (l *crashLedger) abortAll(t *testing.T, base string) {
	t.Helper()
	var pending struct{ Deployments []detect.Deployment }
	if err := getJSON(base+"/api/v1/deployments?state=pending", &pending); err != nil {
		t.Fatal(err)
	}
	for _, s := range pending.Deployments {
		var d detect.Deployment
		if err := postJSON(t.Context(), base+"/api/v1/deployments/"+s.ID+"/abort", nil, http.StatusOK, &d); err != nil {
			t.Fatalf("abort %s: %v", s.ID, err)
		}
		l.mu.Lock()
		if a := l.deps[s.ID]; a != nil {
			a.aborted = true
		}
		l.mu.Unlock()
	}
}

// verify checks that the server at base holds every acknowledged sample
// stamped within window of now, and every acknowledged deployment with its
// verdicts and abort, and returns how many samples, deployments and
// verdicts it checked.
func (l *crashLedger) verify(t *testing.T, base string, window time.Duration) (samples, deps, verdicts int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	got, err := instant(base, fmt.Sprintf(`{job=~"node|checkout"}[%ds]`, int(window.Seconds())), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]map[int64]float64{}
	for _, r := range got.Result {
		m := map[int64]float64{}
		for _, p := range r.Values {
			m[int64(p.t*1000+0.5)] = p.v
		}
		stored[labelKey(r.Metric)] = m
	}
	missing := 0
	for key, acked := range l.samples {
		have := stored[key]
		for ts, v := range acked {
			samples++
			if sv, ok := have[ts]; !ok || sv != v {
				if missing < 5 {
					t.Errorf("series %s at %d: acknowledged %v, stored %v (present %v)", key, ts, v, sv, ok)
				}
				missing++
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged samples lost", missing, samples)
	}
	for id, a := range l.deps {
		var s gate.Status
		if err := getJSON(base+"/api/v1/deployments/"+id, &s); err != nil {
			t.Fatalf("acknowledged deployment %s (%s): %v", id, a.version, err)
		}
		if s.Version != a.version || (a.aborted && s.Verdict != detect.Aborted) {
			t.Fatalf("deployment %s: version %s, verdict %s; acknowledged %s, aborted %v", id, s.Version, s.Verdict, a.version, a.aborted)
		}
		var h struct{ Verdicts []detect.Verdict }
		if err := getJSON(base+"/api/v1/deployments/"+id+"/history", &h); err != nil {
			t.Fatal(err)
		}
		have := map[int64]detect.Status{}
		for _, v := range h.Verdicts {
			have[v.At.UnixNano()] = v.Verdict
		}
		for at, v := range a.verdicts {
			if have[at] != v {
				t.Fatalf("deployment %s: its %s verdict of %s is %q after the restart", id, v, time.Unix(0, at).Format(time.RFC3339Nano), have[at])
			}
			verdicts++
		}
		deps++
	}
	return samples, deps, verdicts
}

// postJSON POSTs body as JSON and decodes the answer into v, which must
// come with status want.
func postJSON(ctx context.Context, url string, body []byte, want int, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
