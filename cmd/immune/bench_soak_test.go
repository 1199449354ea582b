package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestBenchSoak runs the soak for a few seconds against a fresh server:
// ingest, queries and verdict reads in every window, every acknowledged
// sample counted back, no errors, a clean exit. The memory slope of a few
// seconds, extrapolated to an hour, says nothing, so its limit is off.
func TestBenchSoak(t *testing.T) {
	out, err := exec.Command(immuneBin, "bench", "soak", "--duration", "8s", "--sample-every", "2s", "--series", "300",
		"--interval", "1s", "--query-range", "1m", "--query-every", "500ms", "--gate-poll-every", "500ms",
		"--gate-history", "6m", "--detect-interval", "1s", "--max-rss-slope", "1e9", "--latency-floor", "1s").CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("bench soak: %v\n%s", err, text)
	}
	if !strings.HasSuffix(strings.TrimSpace(text), "PASS") {
		t.Errorf("no PASS at the end")
	}
	windows, summary := 0, map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		cells := strings.Split(line, "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case len(cells) == 17 && strings.HasSuffix(cells[1], "s"): // a window: end, RSS, ... errors
			windows++
			for i, name := range map[int]string{2: "RSS", 6: "writes", 9: "queries", 12: "verdict reads"} {
				if n, err := strconv.ParseFloat(cells[i], 64); err != nil || n <= 0 {
					t.Errorf("window %s: %s %q, want some", cells[1], name, cells[i])
				}
			}
			if cells[15] != "0" {
				t.Errorf("window %s: %s errors", cells[1], cells[15])
			}
		case len(cells) == 4:
			summary[cells[1]] = cells[2]
		}
	}
	if windows != 4 {
		t.Errorf("%d windows, want 8s / 2s = 4", windows)
	}
	acked, stored, _ := strings.Cut(summary["samples acknowledged / counted by query"], " / ")
	if n, err := strconv.Atoi(acked); err != nil || n <= 0 || stored != acked {
		t.Errorf("samples acknowledged / counted: %q, want some, all counted", summary["samples acknowledged / counted by query"])
	}
	if got := summary["errors: remote write, query, gate"]; got != "0, 0, 0" {
		t.Errorf("errors %q, want none", got)
	}
	if got := summary["server exit on SIGTERM"]; got != "clean (status 0)" {
		t.Errorf("server exit %q, want clean", got)
	}
	if t.Failed() {
		t.Log(text)
	}
}
