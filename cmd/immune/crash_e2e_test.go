package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/immune-dev/immune/bench"
)

// TestKill9LosesNothingAcknowledged writes under load, kills the server
// with SIGKILL at a random moment, restarts it, and checks that every
// sample the server acknowledged is there with its value. Cycles default
// to 2; IMMUNE_CRASH_CYCLES sets more.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	cycles := 2
	if s := os.Getenv("IMMUNE_CRASH_CYCLES"); s != "" {
		var err error
		if cycles, err = strconv.Atoi(s); err != nil {
			t.Fatalf("IMMUNE_CRASH_CYCLES: %v", err)
		}
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	const series, steps = 200, 3000
	var (
		mu    sync.Mutex
		acked = map[int]map[int64]float64{} // series -> t -> v
		total int
	)
	start := time.Now().Add(-steps * time.Second).Truncate(time.Second)
	for cycle := range cycles {
		server, base := startImmune(t, dir)
		// Kill after a random number of this cycle's acknowledged samples.
		killAfter := 5_000 + rng.IntN(40_000)
		mu.Lock()
		before := total
		mu.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		killed := make(chan struct{})
		var once sync.Once
		done := make(chan error, 1)
		go func() {
			// Each cycle writes the same workload shifted in time, so
			// cycles add new samples to the same series.
			// Alternate the protocols: both must be durable.
			proto := []bench.Protocol{bench.RemoteWriteV1, bench.RemoteWriteV2}[cycle%2]
			_, err := bench.Write(ctx, bench.WriteOptions{
				URL: base + "/api/v1/write", Protocol: proto, Series: series, Steps: steps, Interval: time.Second,
				Start: start.Add(time.Duration(cycle) * 100 * time.Millisecond), BatchSize: 400, Concurrency: 4, Seed: seed,
				OnAck: func(samples []bench.Sample) {
					mu.Lock()
					for _, s := range samples {
						if acked[s.Series] == nil {
							acked[s.Series] = map[int64]float64{}
						}
						acked[s.Series][s.T] = s.V
					}
					total += len(samples)
					n := total
					mu.Unlock()
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
		select {
		case <-killed:
		case err := <-done:
			t.Fatalf("cycle %d: the load ended before the kill: %v", cycle, err)
		}
		<-server.done
		cancel()
		<-done
		t.Logf("cycle %d: killed after %d acknowledged samples in all", cycle, total)
	}

	_, base := startImmune(t, dir)
	got, err := instant(base, fmt.Sprintf(`{job="node"}[%ds]`, steps+600), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	w := bench.NewWorkload(series, seed)
	stored := map[string]map[int64]float64{}
	for _, r := range got.Result {
		m := map[int64]float64{}
		for _, p := range r.Values {
			m[int64(p.t*1000+0.5)] = p.v
		}
		stored[labelKey(r.Metric)] = m
	}
	missing := 0
	for i, samples := range acked {
		have := stored[labelKey(w.Labels(i).Map())]
		for ts, v := range samples {
			if sv, ok := have[ts]; !ok || sv != v {
				if missing < 5 {
					t.Errorf("series %s at %d: acknowledged %v, stored %v (present %v)", w.Labels(i), ts, v, sv, ok)
				}
				missing++
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged samples lost", missing, total)
	}
}
