// Package query owns Immune's read path over HTTP: the subset of the
// Prometheus HTTP API (/api/v1/...) that Grafana's built-in Prometheus data
// source uses, served over any storage.Queryable. PromQL is evaluated by the
// Prometheus engine used as a library; request parsing, response envelopes,
// error types and status codes follow Prometheus so that clients cannot tell
// the difference.
package query

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// Defaults applied by New for zero-valued Options fields.
const (
	// DefaultLookbackDelta is the engine's staleness lookback, as in Prometheus.
	DefaultLookbackDelta = 5 * time.Minute
	// DefaultTimeout is the per-query timeout, as Prometheus' -query.timeout.
	DefaultTimeout = 2 * time.Minute
	// DefaultMaxSamples is the engine's per-query sample limit, as
	// Prometheus' -query.max-samples.
	DefaultMaxSamples = 50_000_000
	// DefaultMaxPoints is the maximum number of points per series a range
	// query may ask for, hard-coded to this value in Prometheus.
	DefaultMaxPoints = 11_000
)

// noStepSubqueryInterval is the subquery step, in milliseconds, used when a
// subquery omits it (`[30m:]`). Prometheus uses the global evaluation
// interval, which defaults to one minute; Immune has no such setting.
const noStepSubqueryInterval = int64(time.Minute / time.Millisecond)

// Options configures the API. Zero values mean the documented defaults.
type Options struct {
	// Logger receives errors the client cannot act on (internal failures,
	// encoding and write errors). Nil discards them.
	Logger *slog.Logger
	// LookbackDelta is how far back an instant selector looks for the
	// latest sample. Zero means DefaultLookbackDelta. Requests may override
	// it with the lookback_delta parameter.
	LookbackDelta time.Duration
	// Timeout bounds every query's evaluation. Zero means DefaultTimeout.
	// Requests may shorten it with the timeout parameter.
	Timeout time.Duration
	// MaxSamples is the most samples a query may hold in memory at once,
	// and the most steps its subqueries may evaluate in total. Zero means
	// DefaultMaxSamples.
	MaxSamples int
	// MaxPoints is the most points per series a range query may ask for,
	// that is (end-start)/step. Zero means DefaultMaxPoints.
	MaxPoints int
	// Metadata serves /api/v1/metadata. Nil means that endpoint always
	// returns an empty object.
	Metadata MetadataReader
	// BuildInfo is served verbatim by /api/v1/status/buildinfo, except that
	// an empty GoVersion is replaced by runtime.Version().
	BuildInfo BuildInfo
	// Registerer receives the PromQL engine's metrics
	// (prometheus_engine_*). Nil means they are not registered.
	Registerer prometheus.Registerer
	// Parallelism is the most parts a range query is split into in time
	// and evaluated at once; a part holds at least 60 steps and at most
	// MaxSamples/Parallelism samples (a query whose part needs more runs
	// whole). Zero means GOMAXPROCS; 1 evaluates every query whole.
	Parallelism int
}

// MetadataReader is what /api/v1/metadata consumes (implemented by the tsdb).
type MetadataReader interface {
	// MetricMetadata returns metadata per metric family; metric "" means all
	// families; limit <= 0 means no limit on the number of families.
	MetricMetadata(ctx context.Context, metric string, limit int) (map[string][]metadata.Metadata, error)
}

// BuildInfo is the payload of /api/v1/status/buildinfo. It deliberately has
// no "features" field: Grafana takes a non-empty one to mean Mimir/Cortex.
type BuildInfo struct {
	// Version is the release version, e.g. "0.1.0".
	Version string `json:"version"`
	// Revision is the VCS revision the binary was built from.
	Revision string `json:"revision"`
	// Branch is the VCS branch the binary was built from.
	Branch string `json:"branch"`
	// BuildUser is who built the binary, e.g. "user@host".
	BuildUser string `json:"buildUser"`
	// BuildDate is when the binary was built.
	BuildDate string `json:"buildDate"`
	// GoVersion is the Go toolchain version; empty means runtime.Version().
	GoVersion string `json:"goVersion"`
}

// API serves the Prometheus HTTP query API over a storage.Queryable. It is
// safe for concurrent use.
type API struct {
	queryable storage.Queryable
	engine    *promql.Engine
	// partEngine evaluates the parts of split range queries, each held to
	// its share of the sample limit (query/split.go).
	partEngine  *promql.Engine
	parser      parser.Parser
	logger      *slog.Logger
	metadata    MetadataReader
	buildInfo   BuildInfo
	maxPoints   int
	maxSamples  int
	parallelism int
}

// New returns an API that evaluates queries against q with its own PromQL
// engine configured from opts.
func New(q storage.Queryable, opts Options) *API {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	lookback := opts.LookbackDelta
	if lookback == 0 {
		lookback = DefaultLookbackDelta
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	maxSamples := opts.MaxSamples
	if maxSamples == 0 {
		maxSamples = DefaultMaxSamples
	}
	maxPoints := opts.MaxPoints
	if maxPoints == 0 {
		maxPoints = DefaultMaxPoints
	}
	parallelism := opts.Parallelism
	if parallelism <= 0 {
		parallelism = runtime.GOMAXPROCS(0)
	}
	buildInfo := opts.BuildInfo
	if buildInfo.GoVersion == "" {
		buildInfo.GoVersion = runtime.Version()
	}
	// One parser for the engine and for match[] / format_query, so that every
	// endpoint accepts the same syntax.
	p := parser.NewParser(parser.Options{})
	engineOpts := promql.EngineOpts{
		Logger:        logger,
		Reg:           opts.Registerer,
		MaxSamples:    maxSamples,
		Timeout:       timeout,
		LookbackDelta: lookback,
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return noStepSubqueryInterval
		},
		// Both are on by default in Prometheus since v2.33; Grafana emits @.
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		Parser:               p,
	}
	engine := promql.NewEngine(engineOpts)
	partOpts := engineOpts
	partOpts.Reg = nil // its metrics would collide with the main engine's
	partOpts.MaxSamples = max(1, maxSamples/parallelism)
	return &API{
		queryable:   q,
		engine:      engine,
		partEngine:  promql.NewEngine(partOpts),
		parser:      p,
		logger:      logger,
		metadata:    opts.Metadata,
		buildInfo:   buildInfo,
		maxPoints:   maxPoints,
		maxSamples:  maxSamples,
		parallelism: parallelism,
	}
}

// Engine returns the API's PromQL engine, so other readers of the same
// store (the canary detector) evaluate with the same settings.
func (a *API) Engine() *promql.Engine { return a.engine }

// Register registers every endpoint on mux under /api/v1/. All but
// metadata and buildinfo answer POST (form-encoded, as Grafana sends by
// default) as well as GET.
func (a *API) Register(mux *http.ServeMux) {
	getPost := map[string]apiFunc{
		"/api/v1/query":               a.query,
		"/api/v1/query_range":         a.queryRange,
		"/api/v1/series":              a.series,
		"/api/v1/labels":              a.labelNames,
		"/api/v1/label/{name}/values": a.labelValues,
		"/api/v1/query_exemplars":     a.queryExemplars,
		"/api/v1/format_query":        a.formatQuery,
	}
	for path, f := range getPost {
		h := a.wrap(f)
		mux.Handle("GET "+path, h)
		mux.Handle("POST "+path, h)
	}
	mux.Handle("GET /api/v1/metadata", a.wrap(a.metricMetadata))
	mux.Handle("GET /api/v1/status/buildinfo", a.wrap(a.serveBuildInfo))
}

// apiFunc is one endpoint: it turns a request with parsed form into a result.
type apiFunc func(r *http.Request) result

// result is what an endpoint produces. finalizer, if set, runs after the
// response is written, because the data may point into memory owned by a
// query or querier (pooled points, mmapped index strings) until it is closed.
type result struct {
	data      any
	err       *apiError
	warnings  annotations.Annotations
	finalizer func()
}

func (a *API) wrap(f apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Parse once up front so that handlers can read r.Form; Prometheus'
		// FormValue would swallow the error instead.
		if err := r.ParseForm(); err != nil {
			a.respondError(w, r, &apiError{errorBadData, fmt.Errorf("error parsing form values: %w", err)})
			return
		}
		res := f(r)
		if res.finalizer != nil {
			defer res.finalizer()
		}
		if res.err != nil {
			a.respondError(w, r, res.err)
			return
		}
		a.respond(w, r, res)
	})
}
