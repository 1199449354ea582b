package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/immune-dev/immune/bench"
)

// TestBenchGate runs the gate benchmark in a short configuration: a fresh
// server, a few verdict-latency probes and a 2 s poll phase of 10 pollers.
// Its figures must be sane: latencies positive and ordered, polls made,
// none failed.
func TestBenchGate(t *testing.T) {
	out, err := exec.Command(immuneBin, "bench", "gate", "--probes", "3", "--pollers", "10", "--poll-duration", "2s",
		"--scrape-interval", "1s", "--history", "6m").CombinedOutput()
	if err != nil {
		t.Fatalf("bench gate: %v\n%s", err, out)
	}
	rows := map[string]string{}
	for line := range strings.SplitSeq(string(out), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 4 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(cells[1]), " (")
		rows[name] = strings.TrimSpace(cells[2])
	}
	figure := func(name string) float64 {
		t.Helper()
		v, ok := rows[name]
		if !ok {
			t.Fatalf("no row %q in:\n%s", name, out)
		}
		f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
		if err != nil {
			t.Fatalf("row %q: %q is not a number:\n%s", name, v, out)
		}
		return f
	}
	if !strings.Contains(string(out), "verdict latency, median (3 probes)") {
		t.Errorf("the table does not say 3 probes:\n%s", out)
	}
	// The server measures the step from the scrape interval; unmeasured,
	// it would be detect.DefaultStep, 30 s.
	if !strings.Contains(string(out), "; step 1s;") {
		t.Errorf("the step is not the 1 s scrape interval:\n%s", out)
	}
	// A verdict reflects a sample after at most a step (1 s) for the grid
	// to reach it and a detect interval (1 s) for the next evaluation,
	// plus the evaluation and the read: about 2 s. With the 30 s default
	// step the wait for the grid alone is uniform over 0-30 s.
	median, p99 := figure("verdict latency, median"), figure("verdict latency, p99")
	if !(median > 0 && median <= p99 && p99 < 15000) {
		t.Errorf("verdict latency median %g ms, p99 %g ms: want 0 < median <= p99 < 15 s\n%s", median, p99, out)
	}
	// The split's means sum to the mean latency, at most the largest,
	// which p99 is with 3 probes; each is at least 0 (rows are rounded to
	// 0.1 ms).
	step, tick, eval := figure("mean wait for the step to close"), figure("mean wait for the detector's tick"), figure("mean evaluation and read")
	if sum := step + tick + eval; !(step >= 0 && tick >= 0 && eval >= 0 && sum > 0 && sum <= p99+0.2) {
		t.Errorf("mean split %g + %g + %g ms: want each >= 0 and 0 < sum <= p99 %g ms\n%s", step, tick, eval, p99, out)
	}
	if polls := figure("verdict polls/s"); !(polls > 0) {
		t.Errorf("%g polls/s, want some\n%s", polls, out)
	}
	if median, p99 := figure("poll latency, median"), figure("poll latency, p99"); !(median > 0 && median <= p99) {
		t.Errorf("poll latency median %g ms, p99 %g ms: want 0 < median <= p99\n%s", median, p99, out)
	}
	// A failed poll also fails the command, above; this is the table's
	// own account of it.
	if errs := figure("poll errors"); errs != 0 {
		t.Errorf("%g poll errors, want none\n%s", errs, out)
	}
	if rss := figure("server peak RSS"); !(rss > 0) {
		t.Errorf("peak RSS %g MiB, want some\n%s", rss, out)
	}
}

// TestBenchGateFigures checks the figures derived from the gate benchmark's
// measurements, which the run above can only bound: quantiles by nearest
// rank, and the split of a probe's latency, which sums to it.
func TestBenchGateFigures(t *testing.T) {
	const ms = time.Millisecond
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	var r bench.GateResult
	for i := range 20 { // latencies 20 ms down to 1 ms
		acked := t0.Add(time.Duration(i) * time.Second)
		r.Probes = append(r.Probes, bench.VerdictProbe{Acked: acked, StepEnd: acked, Evaluated: acked, Seen: acked.Add(time.Duration(20-i) * ms)})
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 10 * ms}, {0.95, 19 * ms}, {0.99, 20 * ms}, {1, 20 * ms}, {0, 1 * ms}} {
		if got := r.VerdictLatency(c.q); got != c.want {
			t.Errorf("VerdictLatency(%g) of 1..20 ms = %s, want %s", c.q, got, c.want)
		}
	}
	// 0.99 of 60 is 59.4: the nearest rank is the 60th.
	var poll bench.PollStats
	for i := range 60 {
		poll.Latencies = append(poll.Latencies, time.Duration(i+1)*ms)
	}
	if got := poll.Latency(0.99); got != 60*ms {
		t.Errorf("p99 of 1..60 ms = %s, want 60ms", got)
	}
	if got := (bench.PollStats{}).Latency(0.5); got != 0 {
		t.Errorf("median of no latencies = %s, want 0", got)
	}

	// Acknowledged before its step closed: it waits for the step.
	p := bench.VerdictProbe{Acked: t0, StepEnd: t0.Add(300 * ms), Evaluated: t0.Add(700 * ms), Seen: t0.Add(750 * ms)}
	// Acknowledged after: it waits for no step.
	q := bench.VerdictProbe{Acked: t0.Add(300 * ms), StepEnd: t0, Evaluated: t0.Add(500 * ms), Seen: t0.Add(520 * ms)}
	for _, c := range []struct {
		p                      bench.VerdictProbe
		step, tick, evaluation time.Duration
	}{{p, 300 * ms, 400 * ms, 50 * ms}, {q, 0, 200 * ms, 20 * ms}} {
		step, tick, evaluation := c.p.Split()
		if step != c.step || tick != c.tick || evaluation != c.evaluation || step+tick+evaluation != c.p.Latency() {
			t.Errorf("Split() = %s, %s, %s; want %s, %s, %s summing to Latency() %s",
				step, tick, evaluation, c.step, c.tick, c.evaluation, c.p.Latency())
		}
	}
	step, tick, evaluation := bench.GateResult{Probes: []bench.VerdictProbe{p, q}}.MeanSplit()
	if step != 150*ms || tick != 300*ms || evaluation != 35*ms {
		t.Errorf("MeanSplit() = %s, %s, %s; want 150ms, 300ms, 35ms", step, tick, evaluation)
	}
	if step, tick, evaluation := (bench.GateResult{}).MeanSplit(); step != 0 || tick != 0 || evaluation != 0 {
		t.Errorf("MeanSplit() of no probes = %s, %s, %s; want zeros", step, tick, evaluation)
	}
}
