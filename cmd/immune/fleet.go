package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/immune-dev/immune/bench"
)

// runFleet remote-writes the history of a simulated service up to now,
// with a deploy on its canary hosts some time ago, so backtests and A/A
// calibrations have something to replay. It prints the deploy's time.
func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	writeURL := fs.String("url", "http://127.0.0.1:9480/api/v1/write", "remote-write endpoint")
	f := bench.Fleet{ErrorRate: 0.01, LatencyMedian: 0.08}
	fs.StringVar(&f.Service, "service", "checkout", "service label")
	fs.StringVar(&f.Version, "version", "v41", "version label of the hosts not deployed to")
	fs.StringVar(&f.CanaryVersion, "canary-version", "v42", "version label of the canary hosts (for the whole history)")
	fs.IntVar(&f.Hosts, "hosts", 8, "hosts of the service")
	fs.IntVar(&f.Canary, "canary", 1, "canary hosts among them")
	fs.Float64Var(&f.RPS, "rps", 200, "requests per second per host")
	fs.Float64Var(&f.Regression.LatencyFactor, "latency-factor", 0, "the canary's latency multiplier from the deploy on (0 means unchanged)")
	fs.Float64Var(&f.Regression.ErrorFactor, "error-factor", 0, "the canary's error-rate multiplier from the deploy on (0 means unchanged)")
	fs.Uint64Var(&f.Seed, "seed", 42, "simulation seed")
	history := fs.Duration("history", 6*time.Hour, "how far back the history starts")
	deployAgo := fs.Duration("deploy-ago", 40*time.Minute, "how long ago the canary hosts were deployed to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench fleet: unexpected arguments %q", fs.Args())
	}
	now := time.Now().Truncate(time.Minute)
	f.RegressionAt = now.Add(-*deployAgo)
	if err := waitReady(ctx, *writeURL, 30*time.Second); err != nil {
		return err
	}
	began := time.Now()
	if err := (bench.FleetWriter{URL: *writeURL}).Backfill(ctx, &f, now.Add(-*history), now, 15*time.Second); err != nil {
		return fmt.Errorf("bench fleet: %w", err)
	}
	fmt.Fprintf(stderr, "wrote %s of %d %s hosts (%d on %s) in %s; deploy at:\n", *history, f.Hosts, f.Service, f.Canary, f.CanaryVersion,
		time.Since(began).Round(time.Millisecond))
	fmt.Fprintln(stdout, f.RegressionAt.UTC().Format(time.RFC3339))
	return nil
}
