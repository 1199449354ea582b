package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/immune-dev/immune/bench/quality"
)

// runQuality plays labelled deploys against the gate and the Kayenta-style
// reference and prints the comparison as Markdown.
func runQuality(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench quality", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 5, "runs of each scenario kind, with different seeds")
	seed := fs.Uint64("seed", 1, "first seed")
	lifetime := fs.Duration("lifetime", 30*time.Minute, "maximum bake time of each simulated deploy")
	poll := fs.Duration("poll", 30*time.Second, "time between polls of the gate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Now()
	results, err := quality.RunQuality(ctx, quality.Scenarios(*runs, *seed), quality.QualityOptions{
		Poll: *poll, Lifetime: *lifetime, Progress: stderr,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "runs=%d seed=%d lifetime=%s poll=%s (%s)\n\n", *runs, *seed, *lifetime, *poll, time.Since(start).Round(time.Second))
	fmt.Fprint(stdout, quality.QualityTable(results))
	return nil
}
