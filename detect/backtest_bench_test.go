package detect

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/immune-dev/immune/bench"
)

// BenchmarkBacktest replays a 30-minute deployment polled every 30s over a
// 16-host fleet scraped every 15s, with the default profile: 60 polls,
// each judging everything from the start to the poll. The minimum bake is
// the maximum, so no verdict ends the replay early. It reports the CPU
// time per replay beside the wall time.
func BenchmarkBacktest(b *testing.B) {
	clock := &simClock{}
	clock.Set(t0.Add(-30 * time.Minute))
	svc, fleet := newSimService(b, clock, checkoutFleet(16, 1, bench.Regression{}))
	end := t0.Add(30 * time.Minute)
	clock.Set(end)
	fleet.until(b, end)
	ctx := context.Background()
	def := func() *Deployment {
		return &Deployment{Service: "checkout", Version: "v2", Start: t0, Canary: oneHost, Baseline: oneHostRest,
			MinBake: Duration(30 * time.Minute), MaxBake: Duration(30 * time.Minute)}
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		bt, err := svc.Backtest(ctx, def(), Schedule{Every: 30 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		if bt.Polls != 60 {
			b.Fatalf("%d polls, want 60: %s %s", bt.Polls, bt.Verdict, bt.Reason)
		}
	}
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
