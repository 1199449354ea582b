package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/immune-dev/immune/bench"
)

// runBenchGate starts a fresh server with a short detect interval, writes a
// simulated fleet into it in real time, registers deployments of its
// canary host with the gate, and prints the gate's verdict latency and its
// poll latency under concurrent pollers, with the server's CPU and memory.
func runBenchGate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := bench.GateOptions{Progress: stderr}
	f := bench.Fleet{Service: "checkout", Version: "v41", CanaryVersion: "v42", Canary: 1, ErrorRate: 0.01, LatencyMedian: 0.08}
	fs := flag.NewFlagSet("bench gate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	detectInterval := fs.Duration("detect-interval", time.Second, "the server's --detect-interval: how often it evaluates the deployment")
	fs.IntVar(&f.Hosts, "hosts", 8, "hosts of the simulated service, one of them the canary")
	fs.Float64Var(&f.RPS, "rps", 200, "requests per second per host")
	fs.Uint64Var(&f.Seed, "seed", 1, "simulation seed")
	fs.DurationVar(&o.ScrapeInterval, "scrape-interval", 2*time.Second, "mean time between scrapes of the fleet (the server measures its step from it)")
	fs.DurationVar(&o.History, "history", 30*time.Minute, "fleet history backfilled before the deployments (at least 5m: the server measures the step over it)")
	fs.IntVar(&o.Probes, "probes", 20, "verdict-latency probes")
	fs.DurationVar(&o.ProbePoll, "probe-poll", 10*time.Millisecond, "time between reads of the verdict while a probe waits")
	fs.IntVar(&o.Pollers, "pollers", 100, "concurrent pollers of the verdict in the poll phase")
	fs.DurationVar(&o.PollDuration, "poll-duration", 10*time.Second, "length of the poll phase")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench gate: unexpected arguments %q", fs.Args())
	}
	if f.Hosts < 2 {
		return errors.New("bench gate: --hosts must be at least 2: a canary and a baseline")
	}
	o.Fleet = &f
	self, err := os.Executable()
	if err != nil {
		return err
	}
	server, err := bench.ImmuneSystem(self, "--detect-interval", detectInterval.String()).Start(ctx)
	if err != nil {
		return err
	}
	o.URL, o.ServerPID = server.APIURL, server.Pid()
	res, err := bench.RunGate(ctx, o)
	err = errors.Join(err, server.Stop())
	if res.Poll.Requests > 0 || res.Poll.Errors > 0 {
		printGateTable(stdout, res, o, *detectInterval)
	}
	if err != nil {
		return fmt.Errorf("bench gate: %w", err)
	}
	return nil
}

func printGateTable(w io.Writer, r bench.GateResult, o bench.GateOptions, detectInterval time.Duration) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	step, tick, eval := r.MeanSplit()
	fmt.Fprintf(w, "fleet: %d hosts (%d canary) scraped every %s on average; step %s; detect interval %s; verdict read every %s; %d CPUs; polled %s\n\n",
		o.Fleet.Hosts, o.Fleet.Canary, o.ScrapeInterval, r.Step, detectInterval, o.ProbePoll, runtime.NumCPU(), r.DeploymentID)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| figure\t| value\t|")
	fmt.Fprintln(tw, "|---\t|---\t|")
	fmt.Fprintf(tw, "| verdict latency, median (%d probes)\t| %s\t|\n", len(r.Probes), ms(r.VerdictLatency(0.5)))
	fmt.Fprintf(tw, "| verdict latency, p99 (nearest rank)\t| %s\t|\n", ms(r.VerdictLatency(0.99)))
	fmt.Fprintf(tw, "| mean wait for the step to close\t| %s\t|\n", ms(step))
	fmt.Fprintf(tw, "| mean wait for the detector's tick\t| %s\t|\n", ms(tick))
	fmt.Fprintf(tw, "| mean evaluation and read\t| %s\t|\n", ms(eval))
	fmt.Fprintf(tw, "| verdict polls/s (%d pollers, %s)\t| %.0f\t|\n", r.Poll.Pollers, r.Poll.Elapsed.Round(time.Millisecond), r.Poll.Rate())
	fmt.Fprintf(tw, "| poll latency, median\t| %s\t|\n", ms(r.Poll.Latency(0.5)))
	fmt.Fprintf(tw, "| poll latency, p99\t| %s\t|\n", ms(r.Poll.Latency(0.99)))
	fmt.Fprintf(tw, "| poll errors\t| %d\t|\n", r.Poll.Errors)
	fmt.Fprintf(tw, "| server CPU-s over the poll phase\t| %.2f (%.2f CPUs)\t|\n", r.PollCPU.Seconds(), r.PollCPU.Seconds()/r.Poll.Elapsed.Seconds())
	fmt.Fprintf(tw, "| bench's own CPU-s over the poll phase\t| %.2f (%.2f CPUs)\t|\n", r.PollClientCPU.Seconds(), r.PollClientCPU.Seconds()/r.Poll.Elapsed.Seconds())
	fmt.Fprintf(tw, "| server CPUs over the probe phase, without pollers\t| %.2f\t|\n", r.ProbeCPU.Seconds()/r.ProbeElapsed.Seconds())
	fmt.Fprintf(tw, "| server peak RSS\t| %d MiB\t|\n", r.PeakRSS>>20)
	tw.Flush()
}
