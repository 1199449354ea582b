// Package opentsdb serves OpenTSDB 2.4's HTTP read API over a Prometheus
// storage.Queryable: enough of /api/query, /api/suggest, /api/search/lookup,
// /api/aggregators, /api/config/filters and /api/version that Grafana's
// built-in OpenTSDB data source works (queries, metric and tag suggestions,
// templating, the "test" button).
//
// An OpenTSDB metric sys.cpu.user with tags host=a is the Prometheus series
// {__name__="sys.cpu.user", host="a"}; series written by Prometheus remote
// write read the same way. Queries run on raw samples, not PromQL, with
// OpenTSDB 2.x semantics: select by metric and tag filters, downsample each
// series into interval-aligned buckets, turn it into a rate, then aggregate
// each group of series across time with OpenTSDB's interpolation. The
// differences from OpenTSDB are documented where they are made; the main
// ones: no TSUIDs, annotations, histograms, rollups, expressions (/api/query/
// exp, gexp) or last-point queries; NaN samples (and so Prometheus' stale
// markers) are skipped; regexp filters use Go's RE2 syntax.
package opentsdb

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/prometheus/storage"
)

// Defaults applied by New for zero-valued Options fields.
const (
	// DefaultMaxSeries is the default limit on series one query may select.
	DefaultMaxSeries = 10_000
	// DefaultMaxPoints is the default limit on data points one query may
	// read or create by filling empty buckets.
	DefaultMaxPoints = 10_000_000
	// DefaultLookback is the default time read beyond each end of a query.
	DefaultLookback = 5 * time.Minute
	// DefaultTimeout is the default time limit of one query.
	DefaultTimeout = 2 * time.Minute
)

// maxBodyBytes bounds a POST body; Grafana's queries are a few KiB.
const maxBodyBytes = 4 << 20

// versionString is the OpenTSDB version whose API is implemented.
const versionString = "2.4.1"

// Options configures the API. Zero values mean the documented defaults;
// the zero Options is valid.
type Options struct {
	// Logger receives errors the client cannot act on (storage failures,
	// write errors). Nil discards them.
	Logger *slog.Logger
	// MaxSeries is the most time series one /api/query request may select,
	// over all its sub queries, after filtering. More is a 400. Zero means
	// DefaultMaxSeries.
	MaxSeries int
	// MaxPoints is the most data points one /api/query request may read,
	// plus those it creates by filling empty downsampling buckets; ten
	// times as many values may be interpolated and aggregated. More is a
	// 400. Zero means DefaultMaxPoints.
	MaxPoints int
	// Lookback is how far before the start and after the end of a query
	// samples are read, so that rates and interpolation at the edges of the
	// range have neighbours; the downsampling interval is used when longer.
	// Zero means DefaultLookback.
	Lookback time.Duration
	// Timeout bounds each /api/query request. Zero means DefaultTimeout.
	Timeout time.Duration
	// Now returns the current time, for relative times and the default end
	// of a query. Nil means time.Now.
	Now func() time.Time
}

// API serves OpenTSDB's read API over a storage.Queryable. It is safe for
// concurrent use.
type API struct {
	queryable storage.Queryable
	logger    *slog.Logger
	maxSeries int
	maxPoints int64
	lookback  int64 // ms
	timeout   time.Duration
	now       func() time.Time
}

// New returns an API that reads from q.
func New(q storage.Queryable, opts Options) *API {
	a := &API{
		queryable: q,
		logger:    opts.Logger,
		maxSeries: opts.MaxSeries,
		maxPoints: int64(opts.MaxPoints),
		lookback:  opts.Lookback.Milliseconds(),
		timeout:   opts.Timeout,
		now:       opts.Now,
	}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	if a.maxSeries <= 0 {
		a.maxSeries = DefaultMaxSeries
	}
	if a.maxPoints <= 0 {
		a.maxPoints = DefaultMaxPoints
	}
	if a.lookback <= 0 {
		a.lookback = DefaultLookback.Milliseconds()
	}
	if a.timeout <= 0 {
		a.timeout = DefaultTimeout
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a
}

// Register registers the endpoints on mux. Each answers GET and POST and
// any other method with OpenTSDB's 405 error.
func (a *API) Register(mux *http.ServeMux) {
	mux.Handle("/api/query", a.handle(a.serveQuery))
	mux.Handle("/api/suggest", a.handle(a.serveSuggest))
	mux.Handle("/api/search/lookup", a.handle(a.serveLookup))
	mux.Handle("/api/aggregators", a.handle(a.serveAggregators))
	mux.Handle("/api/config/filters", a.handle(a.serveFilters))
	mux.Handle("/api/version", a.handle(a.serveVersion))
}

// endpoint answers one request with a value to encode as JSON, or an error.
type endpoint func(r *http.Request) (any, error)

// apiError is an error answered with OpenTSDB's error body.
type apiError struct {
	code    int
	message string
	details string
}

func (e *apiError) Error() string { return e.message }

func badRequest(msg string) *apiError {
	return &apiError{code: http.StatusBadRequest, message: msg}
}

// errorBody is OpenTSDB's error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details string `json:"details"`
}

func (a *API) handle(f endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			a.writeError(w, r, &apiError{
				code:    http.StatusMethodNotAllowed,
				message: "Method not allowed",
				details: "The HTTP method [" + r.Method + "] is not permitted for this endpoint",
			})
			return
		}
		v, err := f(r)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		b, ok := v.([]byte) // pre-encoded
		if !ok {
			if b, err = json.Marshal(v); err != nil {
				a.writeError(w, r, err)
				return
			}
		}
		a.write(w, r, http.StatusOK, b)
	})
}

// writeError answers with OpenTSDB's error body: the apiError's code, 503
// for a query out of time, 499 for a client gone, 500 for anything else.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, context.DeadlineExceeded):
		ae = &apiError{code: http.StatusServiceUnavailable, message: "Query timed out", details: err.Error()}
	case errors.Is(err, context.Canceled):
		ae = &apiError{code: 499, message: "Query canceled", details: err.Error()}
	default:
		a.logger.Error("request failed", "url", r.URL.String(), "err", err)
		ae = &apiError{code: http.StatusInternalServerError, message: "Internal error", details: err.Error()}
	}
	details := ae.details
	if details == "" {
		details = ae.message
	}
	b, _ := json.Marshal(errorBody{errorDetail{Code: ae.code, Message: ae.message, Details: details}})
	a.write(w, r, ae.code, b)
}

func (a *API) write(w http.ResponseWriter, r *http.Request, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	if _, err := w.Write(b); err != nil {
		a.logger.Debug("writing response", "url", r.URL.String(), "err", err)
	}
}

// readBody reads a POST body, bounded by maxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, badRequest("reading the request body: " + err.Error())
	}
	if len(b) > maxBodyBytes {
		return nil, &apiError{code: http.StatusRequestEntityTooLarge, message: "Request body too large"}
	}
	return b, nil
}
