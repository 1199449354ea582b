package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/immune-dev/immune/tsdb"
)

// runCompact opens a data directory no server is using, compacts it fully
// (tsdb.DB.Compact) and closes it: maintenance, and what the benchmark
// harness does before it measures Immune's bytes on disk.
func runCompact(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compact", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "./data", "data directory (no server may be running on it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir := tsdbDir(*dataDir)
	// Opening would create an empty store where there is none.
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("no store in %s: %w", *dataDir, err)
	}
	start := time.Now()
	db, err := tsdb.Open(dir, tsdb.Options{})
	if err != nil {
		return err
	}
	err = db.Compact(ctx)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "compacted %s in %s\n", *dataDir, time.Since(start).Round(time.Millisecond))
	return nil
}

// tsdbDir is where a data directory keeps its metrics store.
func tsdbDir(dataDir string) string { return filepath.Join(dataDir, "tsdb") }
