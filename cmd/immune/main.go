// Command immune is a metrics store and canary judge in one process. Its
// subcommands are thin: each parses flags and hands the work to a package.
//
//	immune serve   run the server (remote write and OpenTSDB in, Prometheus and OpenTSDB APIs out)
//	immune bench   remote-write a synthetic load and report acknowledged samples/s;
//	               "bench compare" runs Immune, VictoriaMetrics and Prometheus side by side;
//	               "bench opentsdb" compares OpenTSDB ingest with VictoriaMetrics;
//	               "bench gate" measures the gate's verdict and poll latency;
//	               "bench soak" runs ingest, queries and gate polls together for a bounded time
//	immune gate    register a deployment with the gate and wait for its verdict, or backtest one
//	immune compact compact a data directory no server is using
//	immune check   verify a data directory no server is using, changing nothing
//	immune backup  have a running server copy its data directory consistently
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var code exitCode
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.As(err, &code):
		if code.err != nil {
			fmt.Fprintln(os.Stderr, "immune:", code.err)
		}
		os.Exit(code.code)
	default:
		fmt.Fprintln(os.Stderr, "immune:", err)
		os.Exit(1)
	}
}

// exitCode is an error that sets the process's exit status, for commands
// whose status carries meaning: "gate wait" exits 1 on a fail and 2 when
// there is no verdict, and a deploy script branches on that.
type exitCode struct {
	code int
	err  error // printed to stderr when not nil
}

func (e exitCode) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e exitCode) Unwrap() error { return e.err }

const usage = `usage: immune <command> [flags]

commands:
  serve    run the server
  bench    remote-write a synthetic load to a server and report the rate;
           bench compare | opentsdb | gate | soak | quality | fleet: side by side with VictoriaMetrics
           and Prometheus, OpenTSDB ingest, the gate's latency, a bounded soak, the judge, a simulated service
  gate     register deployments with the gate and wait for verdicts; replay them over history
  compact  compact a data directory no server is using
  check    verify a data directory no server is using (Pebble's checksums and levels, the layout)
  backup   have a running server copy its data directory, consistently, to a new one
  version  print the version

Run "immune <command> -h" for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "gate":
		return runGate(ctx, args[1:], stdout, stderr)
	case "compact":
		return runCompact(ctx, args[1:], stdout, stderr)
	case "check":
		return runCheck(args[1:], stdout, stderr)
	case "backup":
		return runBackup(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "immune", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
