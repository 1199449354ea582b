package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/immune-dev/immune/bench"
)

// runBench remote-writes a synthetic node-exporter-like load and reports
// the acknowledged rate and, given the server's pid, its CPU cost.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "quality" {
		return runQuality(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "fleet" {
		return runFleet(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "compare" {
		return runBenchCompare(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "opentsdb" {
		return runBenchOpenTSDB(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "gate" {
		return runBenchGate(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "soak" {
		return runBenchSoak(ctx, args[1:], stdout, stderr)
	}
	var (
		o         bench.WriteOptions
		protocol  string
		serverPID int
	)
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:9480/api/v1/write", "remote-write endpoint")
	fs.StringVar(&protocol, "protocol", "v1", "remote-write protocol: v1 or v2")
	fs.IntVar(&o.Series, "series", 10000, "number of series")
	fs.IntVar(&o.Steps, "steps", 60, "samples per series")
	fs.DurationVar(&o.Interval, "interval", 15*time.Second, "time between a series' samples")
	fs.BoolVar(&o.RealTime, "real-time", false, "send one step per interval instead of backfilling as fast as acknowledged")
	fs.IntVar(&o.BatchSize, "batch-size", 2000, "samples per request")
	fs.IntVar(&o.Concurrency, "concurrency", 4, "concurrent senders")
	fs.Uint64Var(&o.Seed, "seed", 1, "workload seed")
	fs.IntVar(&serverPID, "server-pid", 0, "pid of the server, to report its CPU time per sample (Linux /proc)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Protocol = bench.Protocol(protocol)
	if err := waitReady(ctx, o.URL, 30*time.Second); err != nil {
		return err
	}

	var cpuBefore time.Duration
	if serverPID > 0 {
		var err error
		if cpuBefore, err = bench.ProcessCPU(serverPID); err != nil {
			return err
		}
	}
	res, err := bench.Write(ctx, o)
	fmt.Fprintf(stdout, "protocol=%s series=%d steps=%d batch=%d concurrency=%d\n", o.Protocol, o.Series, o.Steps, o.BatchSize, o.Concurrency)
	fmt.Fprintf(stdout, "acknowledged %d samples in %d requests in %.2fs: %.0f samples/s\n",
		res.Acked, res.Requests, res.Elapsed.Seconds(), res.SamplesPerSecond())
	if serverPID > 0 {
		cpuAfter, cerr := bench.ProcessCPU(serverPID)
		if cerr != nil {
			return cerr
		}
		cpu := (cpuAfter - cpuBefore).Seconds()
		rss, _ := bench.PeakRSS(serverPID)
		fmt.Fprintf(stdout, "server: %.2f CPU-s, %.0f samples per CPU-second, %.2f CPU-s per million samples, peak RSS %d MiB\n",
			cpu, float64(res.Acked)/cpu, cpu/float64(res.Acked)*1e6, rss>>20)
	}
	return err
}

// waitReady polls the /-/ready endpoint of the server behind writeURL.
func waitReady(ctx context.Context, writeURL string, timeout time.Duration) error {
	u, err := url.Parse(writeURL)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	ready := u.Scheme + "://" + u.Host + "/-/ready"
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ready, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s", ready, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
