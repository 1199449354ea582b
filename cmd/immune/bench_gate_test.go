package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
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
	// With a 1 s step and a 1 s detect interval a verdict reflects a
	// sample within about 2 s; 15 s would mean the step was not measured.
	median, p99 := figure("verdict latency, median"), figure("verdict latency, p99")
	if !(median > 0 && median <= p99 && p99 < 15000) {
		t.Errorf("verdict latency median %g ms, p99 %g ms: want 0 < median <= p99 < 15 s\n%s", median, p99, out)
	}
	if polls := figure("verdict polls/s"); !(polls > 0) {
		t.Errorf("%g polls/s, want some\n%s", polls, out)
	}
	if median, p99 := figure("poll latency, median"), figure("poll latency, p99"); !(median > 0 && median <= p99) {
		t.Errorf("poll latency median %g ms, p99 %g ms: want 0 < median <= p99\n%s", median, p99, out)
	}
	if errs := figure("poll errors"); errs != 0 {
		t.Errorf("%g poll errors, want none\n%s", errs, out)
	}
	if rss := figure("server peak RSS"); !(rss > 0) {
		t.Errorf("peak RSS %g MiB, want some\n%s", rss, out)
	}
}
