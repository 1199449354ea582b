package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/immune-dev/immune/bench"
)

// gateCLI runs the immune binary's gate subcommand and returns its exit
// code, stdout and stderr.
func gateCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(immuneBin, append([]string{"gate"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("run immune gate %v: %v", args, err)
	return 0, "", ""
}

// TestCanaryGateEndToEnd drives the real binary: a simulated fleet
// remote-writes into it, deployments are registered and awaited with the
// CLI; a regression fails naming its metric, a clean canary passes, and a
// kill -9 mid-deploy loses neither the deployment nor its verdicts.
func TestCanaryGateEndToEnd(t *testing.T) {
	dir := t.TempDir()
	server, base := startImmune(t, dir, "--detect-interval", "1s")
	writer := bench.FleetWriter{URL: base + "/api/v1/write"}
	now := time.Now().Truncate(time.Second)
	ctx := context.Background()

	// Enough traffic that a clean canary earns its pass within the bake.
	fleet := func(service string, r bench.Regression, seed uint64) *bench.Fleet {
		return &bench.Fleet{Service: service, Version: "v1", CanaryVersion: "v2", Hosts: 8, Canary: 1, RPS: 1000,
			ErrorRate: 0.01, LatencyMedian: 0.08, Regression: r, RegressionAt: now.Add(-10 * time.Minute), Seed: seed}
	}
	payments := fleet("payments", bench.Regression{ErrorFactor: 5}, 1)
	checkout := fleet("checkout", bench.Regression{}, 2)
	for _, f := range []*bench.Fleet{payments, checkout} {
		if err := writer.Backfill(ctx, f, now.Add(-40*time.Minute), now, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	start := func(service, deployStart string, extra ...string) string {
		args := append([]string{"start", "--url", base, "--service", service, "--version", "v2",
			"--canary", fmt.Sprintf(`{service=%q,version="v2"}`, service),
			"--baseline", fmt.Sprintf(`{service=%q,version="v1"}`, service), "--start", deployStart}, extra...)
		code, id, stderr := gateCLI(t, args...)
		if code != 0 {
			t.Fatalf("gate start %s: exit %d: %s", service, code, stderr)
		}
		return strings.TrimSpace(id)
	}

	// A regression: the wait ends with exit 1, naming the metric.
	id := start("payments", now.Add(-10*time.Minute).Format(time.RFC3339), "--min-bake", "1m")
	code, _, stderr := gateCLI(t, "wait", "--url", base, "--deployment", id, "--timeout", "2m", "--interval", "1s")
	if code != 1 || !strings.Contains(stderr, "error-ratio") {
		t.Fatalf("regressed canary: exit %d, want 1 naming error-ratio:\n%s", code, stderr)
	}

	// A clean canary, registered four minutes into its deploy with five to
	// bake, so it is still pending when the server is killed. The live feed
	// scrapes every 2s; the 30s step spans at least two scrapes throughout.
	feedCtx, stopFeed := context.WithCancel(ctx)
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for t := now; feedCtx.Err() == nil; {
			timer := time.NewTimer(2 * time.Second)
			select {
			case <-feedCtx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			next := time.Now()
			// Writes fail while the server is down; the fleet moves on.
			writer.Scrape(feedCtx, checkout, next, next.Sub(t))
			t = next
		}
	}()
	defer func() { stopFeed(); <-fed }()
	id = start("checkout", now.Add(-4*time.Minute).Format(time.RFC3339), "--min-bake", "5m")
	var before []json.RawMessage
	eventually(t, 30*time.Second, "verdicts recorded before the kill", func() error {
		var h struct{ Verdicts []json.RawMessage }
		if err := getJSON(base+"/api/v1/deployments/"+id+"/history", &h); err != nil {
			return err
		}
		if len(h.Verdicts) < 3 {
			return fmt.Errorf("%d verdicts", len(h.Verdicts))
		}
		before = h.Verdicts
		return nil
	})
	server.cmd.Process.Signal(syscall.SIGKILL)
	<-server.done
	startImmuneOn(t, dir, strings.TrimPrefix(base, "http://"), "--detect-interval", "1s")

	code, _, stderr = gateCLI(t, "wait", "--url", base, "--deployment", id, "--timeout", "3m", "--interval", "2s")
	if code != 0 {
		t.Fatalf("clean canary: exit %d, want 0:\n%s", code, stderr)
	}
	var h struct{ Verdicts []json.RawMessage }
	if err := getJSON(base+"/api/v1/deployments/"+id+"/history", &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Verdicts) <= len(before) || !bytes.Equal(h.Verdicts[0], before[0]) {
		t.Fatalf("history after the restart has %d verdicts, before it %d; it must continue, not restart", len(h.Verdicts), len(before))
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
