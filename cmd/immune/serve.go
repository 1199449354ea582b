package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/model"

	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/detect/gate"
	"github.com/immune-dev/immune/ingest/memlimit"
	"github.com/immune-dev/immune/ingest/opentsdb"
	"github.com/immune-dev/immune/ingest/remotewrite"
	"github.com/immune-dev/immune/query"
	tsdbapi "github.com/immune-dev/immune/query/opentsdb"
	"github.com/immune-dev/immune/tsdb"
)

type serveFlags struct {
	dataDir          string
	httpListen       string
	openTSDBListen   string
	retention        model.Duration
	outOfOrderWindow model.Duration
	logLevel         slog.Level
	pprof            bool
	shutdownTimeout  time.Duration
	detectInterval   time.Duration
	profilesFile     string
	webhooks         []string
	backtestWorkers  int
	authFile         string
	tlsCert, tlsKey  string
	insecureListen   bool
	minFreeSpace     units.Base2Bytes
	maxActiveSeries  int64
	writeMemory      units.Base2Bytes
	checkpointEvery  time.Duration
}

func parseServeFlags(args []string, stderr io.Writer) (serveFlags, error) {
	f := serveFlags{
		retention:        model.Duration(15 * 24 * time.Hour),
		outOfOrderWindow: model.Duration(time.Hour),
		minFreeSpace:     256 * units.MiB,
		maxActiveSeries:  tsdb.DefaultMaxActiveSeries,
		writeMemory:      512 * units.MiB,
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.dataDir, "data-dir", "./data", "directory holding all data")
	fs.StringVar(&f.httpListen, "http-listen", "127.0.0.1:9480", "address of the HTTP API (remote write, Prometheus query API)")
	fs.StringVar(&f.openTSDBListen, "opentsdb-listen", "127.0.0.1:4242", "address of the OpenTSDB port: telnet put and, as on OpenTSDB's port, the HTTP API (empty disables)")
	fs.Var(durationFlag{&f.retention}, "retention", "how long samples are kept (Prometheus duration: 15d, 12h, 2w)")
	fs.Var(durationFlag{&f.outOfOrderWindow}, "out-of-order-window", "how far behind a series' newest sample a sample is still accepted")
	fs.TextVar(&f.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go profiles under /debug/pprof/")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long SIGTERM waits for in-flight requests")
	fs.DurationVar(&f.detectInterval, "detect-interval", 15*time.Second, "how often every active deployment is evaluated")
	fs.StringVar(&f.profilesFile, "profiles-file", "", "YAML file of check profiles, beside the built-in default")
	fs.IntVar(&f.backtestWorkers, "backtest-workers", 0, "backtest replays run at once, over all backtests and calibrations (0 means half the CPUs, at least 1)")
	fs.StringVar(&f.authFile, "auth-file", "", "YAML file of clients (bearer tokens, basic-auth bcrypt hashes) and their scopes: write, read, gate, admin; reloaded on SIGHUP")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate for HTTPS and OpenTSDB over TLS (with --tls-key; reloaded on SIGHUP)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.Var(bytesFlag{&f.minFreeSpace}, "min-free-space", "free disk space below which writes are refused (503 with Retry-After) until space returns, e.g. 256MiB, 1GiB; 0 disables")
	fs.DurationVar(&f.checkpointEvery, "checkpoint-interval", 5*time.Minute, "how often the head's open chunks are written to the store and the WAL they cover deleted; bounds what a restart after a crash replays")
	fs.Int64Var(&f.maxActiveSeries, "max-active-series", f.maxActiveSeries, "series the store holds in memory at once (those written to in about the last 3h); samples of further new series are refused (400, the rest of the request is stored); 0 means no limit")
	fs.Var(bytesFlag{&f.writeMemory}, "write-memory-limit", "memory the remote-write and /api/put requests in progress may hold at once (bodies, decoded samples); beyond it requests wait, then get 503 with Retry-After")
	fs.BoolVar(&f.insecureListen, "insecure-listen", false, "allow listening on non-loopback addresses without --auth-file")
	fs.Func("webhook", "URL POSTed each deployment's terminal verdict (repeatable)", func(s string) error {
		f.webhooks = append(f.webhooks, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	if f.maxActiveSeries < 0 {
		return f, fmt.Errorf("serve: --max-active-series must be 0 (no limit) or more, got %d", f.maxActiveSeries)
	}
	if f.checkpointEvery <= 0 {
		return f, fmt.Errorf("serve: --checkpoint-interval must be positive, got %s", f.checkpointEvery)
	}
	if f.writeMemory <= 0 {
		return f, fmt.Errorf("serve: --write-memory-limit must be more than 0, got %s", f.writeMemory)
	}
	return f, nil
}

// minFreeBytes maps the flag, where 0 disables the check, to the store's
// option, where 0 means its default.
func minFreeBytes(b units.Base2Bytes) int64 {
	if b <= 0 {
		return -1
	}
	return int64(b)
}

// noLimitIfZero maps a flag's 0 (no limit) to tsdb's negative one.
func noLimitIfZero(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// bytesFlag parses sizes with base-2 units, as Prometheus'
// --storage.tsdb.retention.size: 512MB, 1GiB.
type bytesFlag struct{ b *units.Base2Bytes }

func (f bytesFlag) String() string {
	if f.b == nil {
		return ""
	}
	return f.b.String()
}

func (f bytesFlag) Set(s string) error {
	b, err := units.ParseBase2Bytes(s)
	if err != nil {
		return err
	}
	*f.b = b
	return nil
}

// durationFlag parses Prometheus-style durations such as 15d.
type durationFlag struct{ d *model.Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

func (f durationFlag) Set(s string) error {
	d, err := model.ParseDuration(s)
	if err != nil {
		return err
	}
	if d <= 0 {
		return errors.New("must be positive")
	}
	*f.d = d
	return nil
}

// runServe runs the server until ctx is cancelled, then drains requests
// and closes the store.
func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	f, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: f.logLevel}))
	sec, err := newSecurity(f)
	if err != nil {
		return err
	}
	if err := checkListen("http-listen", f.httpListen, sec.guard != nil, f.insecureListen); err != nil {
		return err
	}
	if f.openTSDBListen != "" {
		if err := checkListen("opentsdb-listen", f.openTSDBListen, sec.guard != nil, f.insecureListen); err != nil {
			return err
		}
	}
	sec.reloadOnHangup(ctx, log)

	ln, err := net.Listen("tcp", f.httpListen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ln = sec.listen(ln)
	// The listener is up before the store opens, so /-/healthy answers and
	// /-/ready says "not yet" while the WAL replays.
	var ready atomic.Bool
	var api atomic.Pointer[http.Handler]
	mux := http.NewServeMux()
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Immune is Healthy.")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Immune is Ready.")
	})
	if f.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h := api.Load()
		if h == nil {
			w.Header().Set("Retry-After", "5")
			http.Error(w, "starting: replaying the write-ahead log", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	})
	handler := sec.handler(mux)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "version", version)

	var profiles []detect.Profile
	if f.profilesFile != "" {
		if profiles, err = detect.LoadProfiles(f.profilesFile); err != nil {
			srv.Close()
			return err
		}
	}
	db, err := tsdb.Open(tsdbDir(f.dataDir), tsdb.Options{
		Logger:             log.With("component", "tsdb"),
		Retention:          time.Duration(f.retention),
		OutOfOrderWindow:   time.Duration(f.outOfOrderWindow),
		MinFreeBytes:       minFreeBytes(f.minFreeSpace),
		MaxActiveSeries:    noLimitIfZero(f.maxActiveSeries),
		CheckpointInterval: f.checkpointEvery,
	})
	if err != nil {
		srv.Close()
		return fmt.Errorf("open store: %w", err)
	}
	deployments, err := detect.OpenStore(deploymentsDir(f.dataDir), log.With("component", "deployments"))
	if err != nil {
		srv.Close()
		return errors.Join(err, db.Close())
	}
	apiMux := http.NewServeMux()
	// One budget for both front ends: their requests share the memory.
	writeMemory := memlimit.New(int64(f.writeMemory))
	apiMux.Handle("/api/v1/write", remotewrite.NewHandler(db, remotewrite.Options{Logger: log.With("component", "remotewrite"), Memory: writeMemory}))
	openTSDB := opentsdb.NewServer(db, opentsdb.Options{Logger: log.With("component", "opentsdb"), Version: version, Authenticate: sec.telnetAuth(), Memory: writeMemory})
	apiMux.Handle("/api/put", openTSDB.PutHandler())
	tsdbapi.New(db, tsdbapi.Options{Logger: log.With("component", "opentsdb-query")}).Register(apiMux)
	queryAPI := query.New(db, query.Options{
		Logger:    log.With("component", "query"),
		Metadata:  db,
		BuildInfo: buildInfo(),
	})
	queryAPI.Register(apiMux)
	detector, err := detect.NewService(deployments, detect.EngineSource{Engine: queryAPI.Engine(), Queryable: db}, detect.Options{
		Logger:          log.With("component", "detect"),
		Interval:        f.detectInterval,
		Profiles:        profiles,
		Verdicts:        db,
		Webhooks:        f.webhooks,
		BacktestWorkers: f.backtestWorkers,
	})
	if err != nil {
		srv.Close()
		return errors.Join(err, deployments.Close(), db.Close())
	}
	gate.New(detector, gate.Options{Logger: log.With("component", "gate")}).Register(apiMux)
	apiMux.Handle("POST /api/v1/admin/backup", backupHandler(f.dataDir, db, deployments, log.With("component", "backup")))
	detectCtx, stopDetect := context.WithCancel(context.Background())
	detectDone := make(chan struct{})
	go func() {
		defer close(detectDone)
		detector.Run(detectCtx)
	}()
	// closeStores stops the detector, then closes what it and the API use.
	closeStores := func() error {
		stopDetect()
		<-detectDone
		return errors.Join(deployments.Close(), db.Close())
	}
	var h http.Handler = apiMux
	api.Store(&h)
	var port *openTSDBPort
	var portFailed <-chan error // nil, so never ready, without the port
	if f.openTSDBListen != "" {
		if port, err = serveOpenTSDB(f.openTSDBListen, sec, openTSDB, handler, log); err != nil {
			srv.Close()
			return errors.Join(err, closeStores())
		}
		portFailed = port.failed
	}
	ready.Store(true)
	log.Info("ready", "dataDir", f.dataDir, "series", db.Stats().HeadSeries)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		ready.Store(false)
		return errors.Join(fmt.Errorf("http server: %w", err), port.shutdown(context.Background()), closeStores())
	case err := <-portFailed:
		ready.Store(false)
		return errors.Join(fmt.Errorf("opentsdb port: %w", err), srv.Close(), port.shutdown(context.Background()), closeStores())
	}
	log.Info("shutting down: draining requests")
	ready.Store(false)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	var shutdownErr error
	var drained sync.WaitGroup
	drained.Go(func() { shutdownErr = srv.Shutdown(shutdownCtx) })
	portErr := port.shutdown(shutdownCtx) // both ports drain within the one timeout
	drained.Wait()
	shutdownErr = errors.Join(shutdownErr, portErr)
	closeErr := closeStores()
	if closeErr == nil {
		log.Info("store closed")
	}
	return errors.Join(shutdownErr, closeErr)
}

// openTSDBPort is the OpenTSDB port while it serves: telnet and, as on
// OpenTSDB's own port, HTTP.
type openTSDBPort struct {
	http       *http.Server
	telnet     *opentsdb.Server
	telnetDone chan struct{}
	// failed receives the error that stopped either side on its own.
	failed chan error
}

// serveOpenTSDB listens on addr for OpenTSDB's telnet protocol and for HTTP
// (handler, the whole API), both over TLS if sec has a certificate.
func serveOpenTSDB(addr string, sec *security, telnet *opentsdb.Server, handler http.Handler, log *slog.Logger) (*openTSDBPort, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("opentsdb listen: %w", err)
	}
	// TLS first: HTTP is told from telnet by the decrypted bytes.
	telnetLn, httpLn := opentsdb.SplitHTTP(sec.listen(ln), opentsdb.DefaultIdleTimeout, opentsdb.DefaultMaxConnections)
	p := &openTSDBPort{
		http:       &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		telnet:     telnet,
		telnetDone: make(chan struct{}),
		failed:     make(chan error, 2),
	}
	go func() {
		defer close(p.telnetDone)
		// Serve returns nil once Shutdown is called.
		if err := telnet.Serve(context.Background(), telnetLn); err != nil {
			p.failed <- fmt.Errorf("telnet: %w", err)
		}
	}()
	go func() {
		if err := p.http.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			p.failed <- fmt.Errorf("http: %w", err)
		}
	}()
	log.Info("listening for OpenTSDB", "addr", ln.Addr().String())
	return p, nil
}

// shutdown drains both sides at once and waits for the telnet connections
// to commit, at most until ctx ends. A nil port has nothing to stop.
func (p *openTSDBPort) shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	var httpErr error
	var drained sync.WaitGroup
	drained.Go(func() { httpErr = p.http.Shutdown(ctx) })
	telnetErr := p.telnet.Shutdown(ctx)
	drained.Wait()
	select {
	case <-p.telnetDone:
	case <-ctx.Done():
		// A connection stuck in storage: give up on it rather than hang.
		telnetErr = errors.Join(telnetErr, fmt.Errorf("opentsdb telnet connections still open: %w", ctx.Err()))
	}
	return errors.Join(httpErr, telnetErr)
}

// buildInfo describes the binary for /api/v1/status/buildinfo. Clients such
// as Grafana read "version" to decide which Prometheus API features exist,
// so it carries the Prometheus version whose engine and API Immune embeds;
// Immune's own version is in "revision" and "branch" says "immune".
func buildInfo() query.BuildInfo {
	bi := query.BuildInfo{Version: "3.0.0", Revision: "immune-" + version, Branch: "immune", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return bi
	}
	for _, m := range info.Deps {
		// Prometheus' Go module v0.MINOR.PATCH is release 3.(MINOR-300).PATCH.
		if m.Path != "github.com/prometheus/prometheus" {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(m.Version, "v"), ".")
		if len(parts) != 3 {
			break
		}
		if minor, err := strconv.Atoi(parts[1]); err == nil && minor >= 300 {
			bi.Version = fmt.Sprintf("3.%d.%s", minor-300, parts[2])
		}
	}
	return bi
}
