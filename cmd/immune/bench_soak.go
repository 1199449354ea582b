package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/immune-dev/immune/bench"
)

// runBenchSoak starts a fresh server and runs ingest, queries and gate
// polls against it together for a bounded time, then prints its memory and
// latencies window by window and whether they stayed flat.
func runBenchSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := bench.SoakOptions{Progress: stderr}
	var protocol string
	fs := flag.NewFlagSet("bench soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.Duration, "duration", 30*time.Minute, "how long ingest, queries and gate polls run together")
	fs.DurationVar(&o.SampleEvery, "sample-every", time.Minute, "window length: memory is read and latencies summed up once per window")
	fs.DurationVar(&o.WarmUp, "warm-up", 0, "start left out of the memory slope (0 means half of --duration)")
	fs.IntVar(&o.Series, "series", 5000, "series of the node-exporter-like load")
	fs.DurationVar(&o.Interval, "interval", 10*time.Second, "time between a series' samples, and the gate's fleet's scrape interval")
	fs.IntVar(&o.Concurrency, "concurrency", 2, "concurrent remote-write senders")
	fs.StringVar(&protocol, "protocol", "v1", "remote-write protocol: v1 or v2")
	fs.DurationVar(&o.QueryRange, "query-range", 10*time.Minute, "span of the range queries (the load is backfilled over it first)")
	fs.DurationVar(&o.QueryEvery, "query-every", time.Second, "time between two queries, run one at a time")
	fs.DurationVar(&o.GatePollEvery, "gate-poll-every", time.Second, "time between two reads of the deployment's verdict")
	fs.DurationVar(&o.GateHistory, "gate-history", 30*time.Minute, "fleet history backfilled before the deployment is registered (at least 5m)")
	detectInterval := fs.Duration("detect-interval", 5*time.Second, "the server's --detect-interval")
	fs.Float64Var(&o.MaxRSSSlope, "max-rss-slope", 64, "largest RSS growth after the warm-up that passes, MiB per hour")
	fs.Float64Var(&o.MaxLatencyGrowth, "max-latency-growth", 3, "largest ratio of the last window's p99 to the first's that passes")
	fs.DurationVar(&o.LatencyFloor, "latency-floor", 50*time.Millisecond, "least first-window p99 the growth is measured against")
	fs.Uint64Var(&o.Seed, "seed", 1, "load and fleet seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench soak: unexpected arguments %q", fs.Args())
	}
	o.Protocol = bench.Protocol(protocol)
	if o.Duration < o.Interval || o.SampleEvery > o.Duration {
		return errors.New("bench soak: --duration must be at least --interval and --sample-every")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// --pprof: the soak reads the Go heap from the heap profile.
	sys := bench.ImmuneSystem(self, "--detect-interval", detectInterval.String(), "--pprof")
	started := time.Now()
	res, err := bench.RunSoak(ctx, sys, o)
	if len(res.Windows) > 0 {
		printSoak(stdout, res, started, *detectInterval, err == nil)
	}
	if err != nil {
		return fmt.Errorf("bench soak: %w", err)
	}
	if fails := res.Failures(); len(fails) > 0 {
		return fmt.Errorf("bench soak: FAIL:\n  %s", strings.Join(fails, "\n  "))
	}
	fmt.Fprintln(stdout, "\nPASS")
	return nil
}

// printSoak prints the windows and the summary; stopped says whether the
// soak got as far as stopping the server.
func printSoak(w io.Writer, r bench.SoakResult, started time.Time, detectInterval time.Duration, stopped bool) {
	o := r.Options
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	mib := func(b int64) string {
		if b < 0 {
			return "?"
		}
		return fmt.Sprintf("%.0f", float64(b)/(1<<20))
	}
	fmt.Fprintf(w, "soak of %s from %s: %d series every %s (%s, %d senders), a query every %s over %s, a verdict read every %s, detect interval %s; %d CPUs\n\n",
		r.Elapsed.Round(time.Second), started.UTC().Format(time.RFC3339), o.Series, o.Interval, o.Protocol, o.Concurrency,
		o.QueryEvery, o.QueryRange, o.GatePollEvery, detectInterval, runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| end\t| RSS MiB\t| heap MiB\t| disk MiB\t| server CPUs\t| writes\t| p50 ms\t| p99 ms\t| queries\t| p50 ms\t| p99 ms\t| verdict reads\t| p50 ms\t| p99 ms\t| errors\t|")
	fmt.Fprintln(tw, strings.Repeat("|---\t", 15)+"|")
	for _, win := range r.Windows {
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %.2f\t| %d\t| %s\t| %s\t| %d\t| %s\t| %s\t| %d\t| %s\t| %s\t| %d\t|\n",
			win.End.Round(time.Second), mib(win.RSS), mib(win.HeapInuse), mib(win.Disk), win.CPU.Seconds()/win.Length.Seconds(),
			win.Ingest.Requests, ms(win.Ingest.P50), ms(win.Ingest.P99),
			win.Query.Requests, ms(win.Query.P50), ms(win.Query.P99),
			win.Gate.Requests, ms(win.Gate.P50), ms(win.Gate.P99),
			win.Ingest.Errors+win.Query.Errors+win.Gate.Errors)
	}
	tw.Flush()

	first, last := r.Windows[0], r.Windows[len(r.Windows)-1]
	var rssMax int64
	for _, win := range r.Windows {
		rssMax = max(rssMax, win.RSS)
	}
	slope, n := r.RSSSlope()
	heapSlope, _ := r.HeapSlope()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| figure\t| value\t|")
	fmt.Fprintln(tw, "|---\t|---\t|")
	fmt.Fprintf(tw, "| duration\t| %s in %d windows\t|\n", r.Elapsed.Round(time.Second), len(r.Windows))
	fmt.Fprintf(tw, "| samples backfilled, then written in real time\t| %d, %d in %d requests\t|\n", r.Backfilled, r.Write.Acked+r.Write.Rejected, r.Write.Requests)
	fmt.Fprintf(tw, "| samples acknowledged / counted by query\t| %d / %d\t|\n", r.Backfilled+r.Write.Acked, r.Stored)
	fmt.Fprintf(tw, "| errors: remote write, query, gate\t| %d, %d, %d\t|\n", r.Ingest.Errors, r.Query.Errors, r.Gate.Errors)
	fmt.Fprintf(tw, "| requests: remote write, query, gate\t| %d, %d, %d\t|\n", r.Ingest.Requests, r.Query.Requests, r.Gate.Requests)
	fmt.Fprintf(tw, "| deployments registered\t| %d\t|\n", r.Deployments)
	fmt.Fprintf(tw, "| RSS first / last / max\t| %s / %s / %s MiB\t|\n", mib(first.RSS), mib(last.RSS), mib(rssMax))
	fmt.Fprintf(tw, "| RSS slope after %s (%d windows)\t| %.1f MiB/h (limit %.0f)\t|\n", o.WarmUp, n, slope, o.MaxRSSSlope)
	fmt.Fprintf(tw, "| Go heap first / last, slope\t| %s / %s MiB, %.1f MiB/h\t|\n", mib(first.HeapInuse), mib(last.HeapInuse), heapSlope)
	fmt.Fprintf(tw, "| data directory first / last\t| %s / %s MiB\t|\n", mib(first.Disk), mib(last.Disk))
	for _, c := range []struct {
		name        string
		first, last bench.LatencyStats
	}{{"remote write", first.Ingest, last.Ingest}, {"query", first.Query, last.Query}, {"verdict read", first.Gate, last.Gate}} {
		fmt.Fprintf(tw, "| %s p50, p99 ms: first / last window\t| %s, %s / %s, %s\t|\n", c.name, ms(c.first.P50), ms(c.first.P99), ms(c.last.P50), ms(c.last.P99))
	}
	if stopped {
		exit := r.ServerExit
		if exit == "" {
			exit = "clean (status 0)"
		}
		fmt.Fprintf(tw, "| server exit on SIGTERM\t| %s\t|\n", exit)
	}
	tw.Flush()
}
