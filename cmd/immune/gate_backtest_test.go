package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/immune-dev/immune/bench"
	"github.com/immune-dev/immune/detect"
)

// TestGateBacktestCLI drives the real binary: a fleet whose canary turned
// twice as slow 30 minutes ago is remote-written with past timestamps,
// then "gate backtest --file" replays its deploy (as JSON and as a table),
// "gate calibrate" replays A/A windows of the clean hour before it, and a
// definition the gate refuses is refused with the server's 400.
func TestGateBacktestCLI(t *testing.T) {
	dir := t.TempDir()
	_, base := startImmune(t, dir)
	now := time.Now().Truncate(time.Second)
	deploy := now.Add(-30 * time.Minute)
	fleet := &bench.Fleet{Service: "payments", Version: "v1", CanaryVersion: "v2", Hosts: 8, Canary: 1, RPS: 200,
		ErrorRate: 0.01, LatencyMedian: 0.08, Regression: bench.Regression{LatencyFactor: 2}, RegressionAt: deploy, Seed: 9}
	if err := (bench.FleetWriter{URL: base + "/api/v1/write"}).Backfill(t.Context(), fleet, now.Add(-90*time.Minute), now, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "deployment.json")
	writeDefinition := func(baseline string) {
		def := fmt.Sprintf(`{"service":"payments","version":"v2","start":%q,"canary":"{service=\"payments\",version=\"v2\"}","baseline":%q}`,
			deploy.Format(time.RFC3339), baseline)
		if err := os.WriteFile(file, []byte(def), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeDefinition(`{service="payments",version="v1"}`)

	code, stdout, stderr := gateCLI(t, "backtest", "--url", base, "--file", file, "--until", "-10m", "--json")
	if code != 0 {
		t.Fatalf("backtest --json: exit %d\n%s", code, stderr)
	}
	var bt detect.Backtest
	if err := json.Unmarshal([]byte(stdout), &bt); err != nil {
		t.Fatalf("backtest --json printed %q: %v", stdout, err)
	}
	if bt.Verdict != detect.Fail || !strings.HasPrefix(bt.Reason, "latency-mean: ") || bt.Polls != len(bt.Timeline) || bt.Polls < 2 {
		t.Fatalf("backtest: %s after %d polls: %s", bt.Verdict, bt.Polls, bt.Reason)
	}
	if !strings.Contains(stderr, "backtest payments v2 from "+deploy.UTC().Format(time.RFC3339)) || !strings.Contains(stderr, bt.ID+": ") {
		t.Errorf("progress lines: %q", stderr)
	}

	code, stdout, stderr = gateCLI(t, "backtest", "--url", base, "--file", file, "--every", "1m")
	if code != 0 {
		t.Fatalf("backtest: exit %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "POLL  TIME ") || !strings.Contains(lines[0], "VERDICT") {
		t.Fatalf("table:\n%s", stdout)
	}
	if row := strings.Fields(lines[1]); row[0] != "1" || row[2] != "1m0s" || row[3] != "pending" {
		t.Errorf("first row %q: want poll 1, 1m0s after the start, pending", lines[1])
	}
	failRow := lines[len(lines)-2]
	if f := strings.Fields(failRow); f[3] != "fail" || f[5] != "latency-mean" || !strings.HasPrefix(f[6], "+") {
		t.Errorf("last row %q: want a fail on latency-mean with its effect", failRow)
	}
	if !strings.HasPrefix(lines[len(lines)-1], "outcome: fail after ") {
		t.Errorf("outcome line %q", lines[len(lines)-1])
	}

	code, stdout, stderr = gateCLI(t, "calibrate", "--url", base, "--service", "payments",
		"--from", now.Add(-90*time.Minute).Format(time.RFC3339), "--to", "-35m", "--runs", "3", "--duration", "10m", "--effect", "latency-mean=2")
	if code != 0 {
		t.Fatalf("calibrate: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "A/A: 3 replayed, 0 skipped") || !strings.Contains(stdout, "budget 1.0%") || !strings.Contains(stdout, "latency-mean x2") {
		t.Errorf("calibrate report:\n%s", stdout)
	}

	writeDefinition(`{service="payments"}`)
	code, _, stderr = gateCLI(t, "backtest", "--url", base, "--file", file)
	if code != 1 || !strings.Contains(stderr, "400 Bad Request: invalid request: canary") || !strings.Contains(stderr, "may select the same series") {
		t.Errorf("overlapping cohorts: exit %d: %s", code, stderr)
	}
	var list struct{ Backtests []detect.Backtest }
	if err := getJSON(base+"/api/v1/backtests?service=payments", &list); err != nil || len(list.Backtests) != 2 {
		t.Errorf("listed backtests: %d %v", len(list.Backtests), err)
	}
}
