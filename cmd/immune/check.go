package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/tsdb"
)

// runCheck verifies both stores of a data directory no server is using
// (tsdb.Check, detect.CheckStore), without changing them: after a crash it
// shows what the restart will find. Each store gets a line; any problem
// fails the command, naming it.
func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "./data", "data directory (no server may be running on it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Now()
	var errs []error
	ts, err := tsdb.Check(tsdbDir(*dataDir))
	if err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintf(stdout, "metrics: ok: %d tables, %d keys, %d series, %d WAL records of %d samples to replay\n",
			ts.Tables, ts.Keys, ts.Series, ts.WALRecords, ts.WALSamples)
	}
	ds, err := detect.CheckStore(deploymentsDir(*dataDir))
	if err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintf(stdout, "deployments: ok: %d tables, %d keys, %d deployments, %d verdicts\n",
			ds.Tables, ds.Keys, ds.Deployments, ds.Verdicts)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "checked %s in %s\n", *dataDir, time.Since(start).Round(time.Millisecond))
	return nil
}
