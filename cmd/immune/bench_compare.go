package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/immune-dev/immune/bench"
)

// runBenchCompare runs the same remote-write load and query set on Immune,
// VictoriaMetrics and Prometheus, each started fresh per run, in rounds
// (A B C A B C ...) so that drift on a shared machine cancels, and prints
// the side-by-side tables of BENCHMARKS.md.
func runBenchCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		o        bench.CompareOptions
		protocol string
		systems  string
		ranges   string
		rounds   int
		vmBin    string
		promBin  string
	)
	fs := flag.NewFlagSet("bench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&systems, "systems", "immune,victoria-metrics,prometheus", "systems to compare, in the order they run each round")
	fs.IntVar(&o.Write.Series, "series", 10000, "series in the load (100 per simulated host)")
	duration := fs.Duration("duration", 24*time.Hour, "span of data written, ending a minute ago (a backfill) or, with --real-time, the run's length")
	fs.DurationVar(&o.Write.Interval, "interval", time.Minute, "time between a series' samples")
	fs.BoolVar(&o.Write.RealTime, "real-time", false, "send one step per interval instead of backfilling as fast as acknowledged")
	fs.StringVar(&protocol, "protocol", "v1", "remote-write protocol: v1, or v2 (systems that do not take it are left out)")
	fs.IntVar(&o.Write.BatchSize, "batch-size", 2000, "samples per request")
	fs.IntVar(&o.Write.Concurrency, "concurrency", 4, "concurrent senders")
	fs.Uint64Var(&o.Write.Seed, "seed", 1, "workload seed")
	fs.IntVar(&rounds, "rounds", 2, "rounds; each runs every system once")
	fs.IntVar(&o.QueryRuns, "query-runs", 10, "runs of each query over each range")
	fs.StringVar(&ranges, "ranges", "1h,24h", "query_range spans, each ending at the last sample")
	fs.StringVar(&vmBin, "victoria-metrics", "victoria-metrics", "VictoriaMetrics binary (Debian package victoria-metrics)")
	fs.StringVar(&promBin, "prometheus", "prometheus", "Prometheus binary (Debian package prometheus)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Write.Protocol = bench.Protocol(protocol)
	o.Write.Steps = int(*duration / o.Write.Interval)
	if o.Write.Steps < 1 {
		return fmt.Errorf("--duration %s is shorter than --interval %s", *duration, o.Write.Interval)
	}
	if !o.Write.RealTime {
		o.Write.Start = time.Now().Add(-*duration - time.Minute).Truncate(o.Write.Interval)
	}
	for _, s := range strings.Split(ranges, ",") {
		r, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("--ranges: %w", err)
		}
		o.Ranges = append(o.Ranges, r)
	}
	o.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	self, err := os.Executable()
	if err != nil {
		return err
	}
	known := map[string]bench.System{
		"immune":           bench.ImmuneSystem(self),
		"victoria-metrics": bench.VictoriaMetricsSystem(vmBin),
		"prometheus":       bench.PrometheusSystem(promBin),
	}
	var order []bench.System
	for _, name := range strings.Split(systems, ",") {
		sys, ok := known[name]
		if !ok {
			return fmt.Errorf("unknown system %q: want immune, victoria-metrics or prometheus", name)
		}
		if o.Write.Protocol == bench.RemoteWriteV2 && !sys.RemoteWriteV2 {
			fmt.Fprintf(stderr, "%s does not take remote write 2.0: left out\n", name)
			continue
		}
		order = append(order, sys)
	}
	fmt.Fprintf(stdout, "load: %d series x %d samples every %s = %d samples, remote write %s, %d samples per request from %d senders\n",
		o.Write.Series, o.Write.Steps, o.Write.Interval, o.Write.Series*o.Write.Steps, o.Write.Protocol, o.Write.BatchSize, o.Write.Concurrency)

	var runs []bench.Run
	for round := range rounds {
		for _, sys := range order {
			r, err := bench.RunSystem(ctx, sys, o)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, sys.Name, err)
			}
			fmt.Fprintf(stderr, "round %d %-16s %9.0f samples/s  %5.2f CPU-s per million  peak RSS %4d MiB  %.3f bytes/sample\n",
				round+1, sys.Name, r.SamplesPerSecond(), r.CPUPerMillion(), r.PeakRSS>>20, r.BytesPerSample())
			runs = append(runs, r)
		}
	}
	printCompare(stdout, runs, order, o)
	return nil
}

// printCompare prints the ingest and query tables, pooling the rounds.
func printCompare(w io.Writer, runs []bench.Run, order []bench.System, o bench.CompareOptions) {
	bySystem := map[string][]bench.Run{}
	for _, r := range runs {
		bySystem[r.System] = append(bySystem[r.System], r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "\n| system\t| samples/s (runs)\t| server CPU-s per million samples: ingest / with flush and compaction\t| peak RSS\t| bytes/sample on disk\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|")
	for _, sys := range order {
		rs := bySystem[sys.Name]
		var rates []string
		var cpu, total, disk float64
		var rss, reserve int64
		for _, r := range rs {
			rates = append(rates, fmt.Sprintf("%.0fk", r.SamplesPerSecond()/1000))
			cpu += r.CPUPerMillion() / float64(len(rs))
			total += r.TotalCPUPerMillion() / float64(len(rs))
			disk += r.BytesPerSample() / float64(len(rs))
			rss = max(rss, r.PeakRSS)
			reserve = max(reserve, r.Disk.Reserve)
		}
		note := ""
		if reserve > 0 {
			note = fmt.Sprintf(" (+%d MiB reserve)", reserve>>20)
		}
		fmt.Fprintf(tw, "| %s\t| %s\t| %.2f / %.2f\t| %d MiB\t| %.3f%s\t|\n", sys.Name, strings.Join(rates, ", "), cpu, total, rss>>20, disk, note)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nquery_range latency, median / p99 of", o.QueryRuns*len(runs)/max(len(order), 1), "runs:")
	tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprint(tw, "| query\t| range\t| series")
	for _, sys := range order {
		fmt.Fprintf(tw, "\t| %s", sys.Name)
	}
	fmt.Fprint(tw, "\t|\n|---\t|---\t|---")
	fmt.Fprint(tw, strings.Repeat("\t|---", len(order)))
	fmt.Fprintln(tw, "\t|")
	for _, r := range o.Ranges {
		for _, q := range bench.Queries {
			counts := map[int]bool{}
			var cells []string
			for _, sys := range order {
				pooled := bench.QueryTiming{Query: q, Range: r}
				for _, run := range bySystem[sys.Name] {
					for _, t := range run.Queries {
						if t.Query == q && t.Range == r {
							pooled.Latencies = append(pooled.Latencies, t.Latencies...)
							counts[t.Series] = true
						}
					}
				}
				cells = append(cells, fmt.Sprintf("%s / %s", roundLatency(pooled.Quantile(0.5)), roundLatency(pooled.Quantile(0.99))))
			}
			var series []string
			for _, n := range slices.Sorted(maps.Keys(counts)) {
				series = append(series, fmt.Sprint(n))
			}
			fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t|\n", q.Name, shortDuration(r), strings.Join(series, "/"), strings.Join(cells, "\t| "))
		}
	}
	tw.Flush()

	fmt.Fprintln(w, "\non disk:")
	for _, sys := range order {
		if rs := bySystem[sys.Name]; len(rs) > 0 {
			fmt.Fprintf(w, "- %s: %s\n", sys.Name, rs[0].Disk.What)
		}
	}
	if slices.ContainsFunc(order, func(s bench.System) bool { return s.Name == "immune" }) {
		printRatios(w, bySystem, order)
	}
}

// printRatios prints Immune's figures as ratios to each peer's.
func printRatios(w io.Writer, bySystem map[string][]bench.Run, order []bench.System) {
	mean := func(rs []bench.Run, f func(bench.Run) float64) float64 {
		var s float64
		for _, r := range rs {
			s += f(r) / float64(len(rs))
		}
		return s
	}
	im := bySystem["immune"]
	for _, sys := range order {
		if sys.Name == "immune" {
			continue
		}
		rs := bySystem[sys.Name]
		fmt.Fprintf(w, "immune / %s: samples per CPU-second %.2fx (with flush and compaction %.2fx), bytes per sample %.2fx, peak RSS %.2fx\n", sys.Name,
			mean(rs, bench.Run.CPUPerMillion)/mean(im, bench.Run.CPUPerMillion),
			mean(rs, bench.Run.TotalCPUPerMillion)/mean(im, bench.Run.TotalCPUPerMillion),
			mean(im, bench.Run.BytesPerSample)/mean(rs, bench.Run.BytesPerSample),
			mean(im, func(r bench.Run) float64 { return float64(r.PeakRSS) })/mean(rs, func(r bench.Run) float64 { return float64(r.PeakRSS) }))
	}
}

// roundLatency shows a latency to 3 significant digits or so.
func roundLatency(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

// shortDuration prints 1h0m0s as 1h and 24h0m0s as 24h.
func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	return strings.TrimSuffix(s, "0m")
}
