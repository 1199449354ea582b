package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/immune-dev/immune/bench"
)

// openTSDBOptions configure `immune bench opentsdb`.
type openTSDBOptions struct {
	load        bench.OpenTSDBLoad
	conns       int
	batch       int
	concurrency int
	rounds      int
	vm          string
	protocols   []string
}

// runBenchOpenTSDB sends the same OpenTSDB load to Immune and to
// VictoriaMetrics, each started fresh per run on loopback, alternating
// A B A B so drift cancels, and prints points per second and server
// CPU per million points for telnet put and for /api/put.
func runBenchOpenTSDB(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The load ends a minute ago: VictoriaMetrics hides the last 30 s from queries (-search.latencyOffset).
	o := openTSDBOptions{load: bench.OpenTSDBLoad{End: time.Now().Add(-time.Minute).Truncate(time.Second)}}
	var protocols string
	fs := flag.NewFlagSet("bench opentsdb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.load.Hosts, "hosts", 500, "hosts in the load (20 series each)")
	fs.IntVar(&o.load.Steps, "steps", 60, "data points per series")
	fs.DurationVar(&o.load.Interval, "interval", 10*time.Second, "time between a series' points")
	fs.Uint64Var(&o.load.Seed, "seed", 1, "workload seed")
	fs.IntVar(&o.conns, "conns", 4, "telnet connections")
	fs.IntVar(&o.batch, "batch", 1000, "data points per /api/put request")
	fs.IntVar(&o.concurrency, "concurrency", 4, "concurrent /api/put senders")
	fs.IntVar(&o.rounds, "rounds", 2, "rounds; each runs every system once per protocol")
	fs.StringVar(&o.vm, "victoria-metrics", "victoria-metrics", "VictoriaMetrics binary (Debian package victoria-metrics)")
	fs.StringVar(&protocols, "protocols", "telnet,http", "protocols to measure: telnet, http")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.protocols = strings.Split(protocols, ",")
	for _, p := range o.protocols {
		if p != "telnet" && p != "http" {
			return fmt.Errorf("unknown protocol %q: want telnet or http", p)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	systems := []openTSDBSystem{immuneSystem(self), victoriaSystem(o.vm)}
	// Rendered once, before any clock starts, for the protocols measured.
	var (
		telnet [][]byte
		bodies [][]byte
		points []int
	)
	if slices.Contains(o.protocols, "telnet") {
		telnet = o.load.TelnetLines(o.conns)
	}
	if slices.Contains(o.protocols, "http") {
		bodies, points = o.load.PutBodies(o.batch)
	}
	fmt.Fprintf(stdout, "load: %d series x %d points = %d points; telnet over %d connections, /api/put %d points per request from %d senders\n",
		o.load.Series(), o.load.Steps, o.load.Points(), o.conns, o.batch, o.concurrency)

	var results []openTSDBRun
	for round := range o.rounds {
		for _, proto := range o.protocols {
			for _, sys := range systems {
				r, err := runOpenTSDBOnce(ctx, sys, proto, o, telnet, bodies, points)
				if err != nil {
					return fmt.Errorf("round %d, %s %s: %w", round+1, sys.name, proto, err)
				}
				fmt.Fprintf(stderr, "round %d %-16s %-6s %9.0f points/s  %6.2f CPU-s per million  peak RSS %d MiB\n",
					round+1, sys.name, proto, r.rate(), r.cpuPerMillion(), r.peakRSS>>20)
				results = append(results, r)
			}
		}
	}
	printOpenTSDBTable(stdout, results, systems, o.protocols)
	return nil
}

// openTSDBSystem is a server under test.
type openTSDBSystem struct {
	name string
	// start returns the peer, its telnet address, its /api/put URL and
	// its Prometheus query API base.
	start func(ctx context.Context) (peer *bench.Peer, telnet, put, query string, err error)
	// stored reports how many OpenTSDB points the server has taken in.
	stored func(ctx context.Context, telnet, query string) (int64, error)
}

func immuneSystem(bin string) openTSDBSystem {
	return openTSDBSystem{
		name: "immune",
		start: func(ctx context.Context) (*bench.Peer, string, string, string, error) {
			httpAddr, err1 := bench.FreeAddr()
			tsdbAddr, err2 := bench.FreeAddr()
			if err := errors.Join(err1, err2); err != nil {
				return nil, "", "", "", err
			}
			p, err := bench.StartPeer(ctx, bench.PeerSpec{Name: "immune", Binary: bin,
				Args: func(dir string) []string {
					return []string{"serve", "--data-dir", dir, "--http-listen", httpAddr, "--opentsdb-listen", tsdbAddr}
				},
				ReadyURL: "http://" + httpAddr + "/-/ready"})
			return p, tsdbAddr, "http://" + httpAddr + "/api/put", "http://" + httpAddr, err
		},
		stored: func(ctx context.Context, telnet, _ string) (int64, error) {
			return immuneStoredPoints(ctx, telnet)
		},
	}
}

func victoriaSystem(bin string) openTSDBSystem {
	return openTSDBSystem{
		name: "victoria-metrics",
		start: func(ctx context.Context) (*bench.Peer, string, string, string, error) {
			httpAddr, err1 := bench.FreeAddr()
			tsdbAddr, err2 := bench.FreeAddr()
			putAddr, err3 := bench.FreeAddr()
			if err := errors.Join(err1, err2, err3); err != nil {
				return nil, "", "", "", err
			}
			p, err := bench.StartPeer(ctx, bench.PeerSpec{Name: "victoria-metrics", Binary: bin, Package: "victoria-metrics",
				Args: func(dir string) []string {
					return []string{"-storageDataPath", dir, "-httpListenAddr", httpAddr,
						"-opentsdbListenAddr", tsdbAddr, "-opentsdbHTTPListenAddr", putAddr, "-loggerLevel", "ERROR"}
				},
				ReadyURL: "http://" + httpAddr + "/health"})
			return p, tsdbAddr, "http://" + putAddr + "/api/put", "http://" + httpAddr, err
		},
		stored: func(ctx context.Context, _, query string) (int64, error) {
			return victoriaInsertedRows(ctx, query)
		},
	}
}

// openTSDBRun is one system's run of one protocol.
type openTSDBRun struct {
	system, protocol string
	points           int64
	elapsed          time.Duration
	cpu              time.Duration
	peakRSS          int64
}

func (r openTSDBRun) rate() float64 { return float64(r.points) / r.elapsed.Seconds() }

func (r openTSDBRun) cpuPerMillion() float64 { return r.cpu.Seconds() / (float64(r.points) / 1e6) }

func runOpenTSDBOnce(ctx context.Context, sys openTSDBSystem, proto string, o openTSDBOptions,
	telnet [][]byte, bodies [][]byte, points []int) (openTSDBRun, error) {
	peer, telnetAddr, putURL, queryBase, err := sys.start(ctx)
	if err != nil {
		return openTSDBRun{}, err
	}
	defer peer.Stop()
	run := openTSDBRun{system: sys.name, protocol: proto}
	cpuBefore, err := bench.ProcessCPU(peer.Pid())
	if err != nil {
		return run, err
	}
	want := int64(o.load.Points())
	start := time.Now()
	switch proto {
	case "telnet":
		res, err := bench.SendTelnet(ctx, telnetAddr, telnet)
		if err != nil {
			return run, err
		}
		if res.Replies > 0 {
			return run, fmt.Errorf("%d error replies, the first: %s", res.Replies, res.FirstReply)
		}
		// Telnet put has no acknowledgement: the run ends when the server
		// has taken in every point.
		if err := awaitStored(ctx, func() (int64, error) { return sys.stored(ctx, telnetAddr, queryBase) }, want); err != nil {
			return run, err
		}
		run.points = want
	case "http":
		acked, err := bench.PostPut(ctx, putURL, bodies, points, o.concurrency)
		if err != nil {
			return run, err
		}
		run.points = acked
	}
	run.elapsed = time.Since(start)
	cpuAfter, err := bench.ProcessCPU(peer.Pid())
	if err != nil {
		return run, err
	}
	run.cpu = cpuAfter - cpuBefore
	if run.peakRSS, err = bench.PeakRSS(peer.Pid()); err != nil {
		return run, err
	}
	// Every point counted must be queryable, whichever way it came in.
	// VictoriaMetrics makes new data searchable within seconds: AwaitCount waits.
	if err := bench.AwaitCount(ctx, queryBase, o.load.Metrics(), o.load.End, time.Duration(o.load.Steps)*o.load.Interval, want); err != nil {
		return run, fmt.Errorf("after the run: %w", err)
	}
	return run, nil
}

// awaitStored polls count until it reaches want; the polls are cheap
// counter reads.
func awaitStored(ctx context.Context, count func() (int64, error), want int64) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last int64
	for {
		n, err := count()
		if err != nil {
			return err
		}
		if n >= want {
			return nil
		}
		last = n
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d points taken in: %w", last, want, ctx.Err())
		case <-tick.C:
		}
	}
}

// victoriaInsertedRows reads vm_rows_inserted_total{type="opentsdb"} from
// VictoriaMetrics' /metrics; before the first insert there is none.
func victoriaInsertedRows(ctx context.Context, base string) (int64, error) {
	v, _, err := bench.LineValue(ctx, base+"/metrics", `vm_rows_inserted_total{type="opentsdb"} `)
	return v, err
}

// The telnet stats line counting the points Immune has committed.
const (
	immuneStoredStat = "tsd.datapoints.added"
	immuneStoredTag  = "type=all"
)

// immuneStoredPoints asks Immune's telnet listener for its stats and
// returns the points it has stored.
func immuneStoredPoints(ctx context.Context, addr string) (int64, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("stats\nexit\n")); err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 4 && f[0] == immuneStoredStat && strings.Contains(sc.Text(), immuneStoredTag) {
			return strconv.ParseInt(f[2], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s %s line in the telnet stats", immuneStoredStat, immuneStoredTag)
}

func printOpenTSDBTable(w io.Writer, runs []openTSDBRun, systems []openTSDBSystem, protocols []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "| protocol\t| system\t| points/s (runs)\t| server CPU-s per million points\t| peak RSS\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|")
	for _, proto := range protocols {
		for _, sys := range systems {
			var rates []string
			var cpu float64
			var rss int64
			n := 0
			for _, r := range runs {
				if r.system == sys.name && r.protocol == proto {
					rates = append(rates, fmt.Sprintf("%.0fk", r.rate()/1000))
					cpu += r.cpuPerMillion()
					rss = max(rss, r.peakRSS)
					n++
				}
			}
			if n == 0 {
				continue
			}
			fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %.2f\t| %d MiB\t|\n", proto, sys.name, strings.Join(rates, ", "), cpu/float64(n), rss>>20)
		}
	}
	tw.Flush()
}
