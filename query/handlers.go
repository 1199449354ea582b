package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// checkContextEvery is how many series the series endpoint reads between
// checks for cancellation, as in Prometheus.
const checkContextEvery = 128

// queryData is the "data" of query and query_range responses.
type queryData struct {
	ResultType parser.ValueType `json:"resultType"`
	Result     promqlValue      `json:"result"`
}

// queryParams holds what query and query_range share.
type queryParams struct {
	limit   int
	timeout time.Duration
	opts    promql.QueryOpts
}

// parseQueryParams parses the parameters query and query_range share.
func parseQueryParams(r *http.Request) (queryParams, *apiError) {
	limit, err := parseLimitParam(r.FormValue("limit"))
	if err != nil {
		return queryParams{}, invalidParam(err, "limit")
	}
	timeout, err := parseTimeout(r)
	if err != nil {
		return queryParams{}, invalidParam(err, "timeout")
	}
	var lookback time.Duration // 0: the engine's default
	if s := r.FormValue("lookback_delta"); s != "" {
		if lookback, err = parseDuration(s); err != nil {
			return queryParams{}, &apiError{errorBadData, fmt.Errorf("error parsing lookback delta duration: %w", err)}
		}
	}
	return queryParams{
		limit:   limit,
		timeout: timeout,
		opts:    promql.NewPrometheusQueryOpts(false, lookback, nil),
	}, nil
}

// query serves /api/v1/query, an instant query at time (default now).
func (a *API) query(r *http.Request) result {
	ts, err := parseTimeParam(r, "time", time.Now())
	if err != nil {
		return result{err: invalidParam(err, "time")}
	}
	p, apiErr := parseQueryParams(r)
	if apiErr != nil {
		return result{err: apiErr}
	}
	ctx, cancel := withTimeout(r.Context(), p.timeout)
	defer cancel()
	qry, err := a.engine.NewInstantQuery(ctx, a.queryable, p.opts, r.FormValue("query"), ts)
	if err != nil {
		return result{err: queryConstructionError(err)}
	}
	return a.exec(ctx, qry, p.limit)
}

// queryRange serves /api/v1/query_range; start, end and step are required.
func (a *API) queryRange(r *http.Request) result {
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		return result{err: invalidParam(err, "start")}
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		return result{err: invalidParam(err, "end")}
	}
	if end.Before(start) {
		return result{err: invalidParam(errors.New("end timestamp must not be before start time"), "end")}
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		return result{err: invalidParam(err, "step")}
	}
	if step <= 0 {
		return result{err: invalidParam(errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"), "step")}
	}
	// Bound the points per series so that one request cannot ask for an
	// arbitrarily large result.
	if end.Sub(start)/step > time.Duration(a.maxPoints) {
		return result{err: &apiError{errorBadData, fmt.Errorf(
			"exceeded maximum resolution of %s points per timeseries. Try decreasing the query resolution (?step=XX)",
			groupThousands(a.maxPoints))}}
	}
	p, apiErr := parseQueryParams(r)
	if apiErr != nil {
		return result{err: apiErr}
	}
	ctx, cancel := withTimeout(r.Context(), p.timeout)
	defer cancel()
	qry, err := a.engine.NewRangeQuery(ctx, a.queryable, p.opts, r.FormValue("query"), start, end, step)
	if err != nil {
		return result{err: queryConstructionError(err)}
	}
	if n := a.rangeParts(qry); n > 1 {
		if err := a.checkSubquerySteps(qry); err != nil {
			return result{err: &apiError{errorBadData, err}, finalizer: qry.Close}
		}
		if res, ok := a.execParts(ctx, p, r.FormValue("query"), start, end, step, n); ok {
			qry.Close() // parsed and checked whole, evaluated in parts
			return res
		}
	}
	return a.exec(ctx, qry, p.limit)
}

// withTimeout applies the request's timeout parameter, if any; the engine
// enforces its own configured timeout independently.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

// exec runs qry and hands its Close to the result: the result's points are
// pooled by the engine until then.
func (a *API) exec(ctx context.Context, qry promql.Query, limit int) result {
	if err := a.checkSubquerySteps(qry); err != nil {
		return result{err: &apiError{errorBadData, err}, finalizer: qry.Close}
	}
	res := qry.Exec(ctx)
	if res.Err != nil {
		return result{err: toAPIError(res.Err), finalizer: qry.Close}
	}
	warnings := res.Warnings
	if limit > 0 && truncateResult(res, limit) {
		warnings.Add(errTruncated)
	}
	return result{
		data:      queryData{ResultType: res.Value.Type(), Result: promqlValue{res.Value}},
		warnings:  warnings,
		finalizer: qry.Close,
	}
}

// checkSubquerySteps rejects a query whose subqueries would evaluate more
// steps in total than a query may hold samples. The engine allocates 16
// bytes of statistics per subquery step before looking at any data and
// checks no limit while doing so, so a single `up[100y:1ms]` would exhaust
// memory and kill the process. The count is an upper bound: every subquery
// is assumed to span the whole query range plus its enclosing subqueries.
func (a *API) checkSubquerySteps(qry promql.Query) error {
	stmt, ok := qry.Statement().(*parser.EvalStmt)
	if !ok {
		return nil
	}
	span := stmt.End.Sub(stmt.Start).Seconds()
	// Floats, because summed ranges can overflow time.Duration.
	var total float64
	parser.Inspect(stmt.Expr, func(node parser.Node, path []parser.Node) error {
		sq, ok := node.(*parser.SubqueryExpr)
		if !ok {
			return nil
		}
		window := span + sq.Range.Seconds()
		for _, n := range path {
			if outer, ok := n.(*parser.SubqueryExpr); ok {
				window += outer.Range.Seconds()
			}
		}
		step := sq.Step
		if step <= 0 {
			step = time.Duration(noStepSubqueryInterval) * time.Millisecond
		}
		// The engine works in milliseconds.
		step = max(step, time.Millisecond)
		total += window/step.Seconds() + 1
		return nil
	})
	if total > float64(a.maxSamples) {
		return fmt.Errorf("subqueries would evaluate up to %.0f steps, more than the limit of %d; use a coarser subquery resolution", total, a.maxSamples)
	}
	return nil
}

// truncateResult cuts a vector or matrix to limit series, reporting whether
// it did. Scalars and strings are left alone.
func truncateResult(res *promql.Result, limit int) bool {
	switch v := res.Value.(type) {
	case promql.Matrix:
		if len(v) > limit {
			res.Value = v[:limit]
			return true
		}
	case promql.Vector:
		if len(v) > limit {
			res.Value = v[:limit]
			return true
		}
	}
	return false
}

// queryConstructionError classifies an error from building a query as
// Prometheus does: running out of time or being canceled keeps its type,
// anything else is a bad query.
func queryConstructionError(err error) *apiError {
	if _, ok := errors.AsType[promql.ErrQueryTimeout](err); ok {
		return toAPIError(err)
	}
	if _, ok := errors.AsType[promql.ErrQueryCanceled](err); ok {
		return toAPIError(err)
	}
	return &apiError{errorBadData, fmt.Errorf("invalid parameter %q: %w", "query", err)}
}

// groupThousands formats n with comma separators, as Prometheus' fixed
// "11,000" message does.
func groupThousands(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// labelQuery holds the parameters shared by labels and label values.
type labelQuery struct {
	limit       int
	start, end  time.Time
	matcherSets [][]*labels.Matcher
}

// parseLabelQuery parses the parameters labels and label values share.
func (a *API) parseLabelQuery(r *http.Request) (labelQuery, *apiError) {
	var (
		q   labelQuery
		err error
	)
	if q.limit, err = parseLimitParam(r.FormValue("limit")); err != nil {
		return q, invalidParam(err, "limit")
	}
	if q.start, err = parseTimeParam(r, "start", minTime); err != nil {
		return q, invalidParam(err, "start")
	}
	if q.end, err = parseTimeParam(r, "end", maxTime); err != nil {
		return q, invalidParam(err, "end")
	}
	if q.matcherSets, err = parseMatchersParam(a.parser, r.Form["match[]"]); err != nil {
		return q, &apiError{errorBadData, err}
	}
	return q, nil
}

// labelNames serves /api/v1/labels.
func (a *API) labelNames(r *http.Request) result {
	lq, apiErr := a.parseLabelQuery(r)
	if apiErr != nil {
		return result{err: apiErr}
	}
	q, err := a.queryable.Querier(timestamp.FromTime(lq.start), timestamp.FromTime(lq.end))
	if err != nil {
		return result{err: toAPIError(err)}
	}
	closer := a.closer(q)
	names, warnings, err := collectLabels(lq.matcherSets, func(ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelNames(r.Context(), &storage.LabelHints{Limit: toHintLimit(lq.limit)}, ms...)
	})
	if err != nil {
		return result{err: toAPIError(err), finalizer: closer}
	}
	return truncateLabels(names, warnings, lq.limit, closer)
}

// labelValues serves /api/v1/label/{name}/values. The name may be escaped
// with the U__ value encoding, as Prometheus 3 clients do for UTF-8 names.
func (a *API) labelValues(r *http.Request) result {
	name := r.PathValue("name")
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if !model.UTF8Validation.IsValidLabelName(name) {
		return result{err: &apiError{errorBadData, fmt.Errorf("invalid label name: %q", name)}}
	}
	lq, apiErr := a.parseLabelQuery(r)
	if apiErr != nil {
		return result{err: apiErr}
	}
	q, err := a.queryable.Querier(timestamp.FromTime(lq.start), timestamp.FromTime(lq.end))
	if err != nil {
		return result{err: toAPIError(err)}
	}
	closer := a.closer(q)
	vals, warnings, err := collectLabels(lq.matcherSets, func(ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelValues(r.Context(), name, &storage.LabelHints{Limit: toHintLimit(lq.limit)}, ms...)
	})
	if err != nil {
		return result{err: toAPIError(err), finalizer: closer}
	}
	return truncateLabels(vals, warnings, lq.limit, closer)
}

// closer returns a finalizer that closes q, logging failure: the response
// has been written by then.
func (a *API) closer(q storage.Querier) func() {
	return func() {
		if err := q.Close(); err != nil {
			a.logger.Warn("closing querier", "err", err)
		}
	}
}

// collectLabels calls get once per matcher set (once with none if there are
// none) and returns the sorted union of the results.
func collectLabels(matcherSets [][]*labels.Matcher, get func(...*labels.Matcher) ([]string, annotations.Annotations, error)) ([]string, annotations.Annotations, error) {
	if len(matcherSets) <= 1 {
		var ms []*labels.Matcher
		if len(matcherSets) == 1 {
			ms = matcherSets[0]
		}
		vals, warnings, err := get(ms...)
		if err != nil {
			return nil, warnings, err
		}
		// Storage returns sorted values; sort anyway because the Queryable
		// is pluggable and clients rely on the order.
		slices.Sort(vals)
		return vals, warnings, nil
	}
	var warnings annotations.Annotations
	set := map[string]struct{}{}
	for _, ms := range matcherSets {
		vals, w, err := get(ms...)
		warnings.Merge(w)
		if err != nil {
			return nil, warnings, err
		}
		for _, v := range vals {
			set[v] = struct{}{}
		}
	}
	vals := make([]string, 0, len(set))
	for v := range set {
		vals = append(vals, v)
	}
	slices.Sort(vals)
	return vals, warnings, nil
}

func truncateLabels(vals []string, warnings annotations.Annotations, limit int, closer func()) result {
	if vals == nil {
		vals = []string{} // [] rather than null, as Prometheus renders it.
	}
	if limit > 0 && len(vals) > limit {
		vals = vals[:limit]
		warnings.Add(errTruncated)
	}
	return result{data: vals, warnings: warnings, finalizer: closer}
}

// series serves /api/v1/series; at least one match[] is required.
func (a *API) series(r *http.Request) result {
	if len(r.Form["match[]"]) == 0 {
		return result{err: &apiError{errorBadData, errors.New("no match[] parameter provided")}}
	}
	limit, err := parseLimitParam(r.FormValue("limit"))
	if err != nil {
		return result{err: invalidParam(err, "limit")}
	}
	start, err := parseTimeParam(r, "start", minTime)
	if err != nil {
		return result{err: invalidParam(err, "start")}
	}
	end, err := parseTimeParam(r, "end", maxTime)
	if err != nil {
		return result{err: invalidParam(err, "end")}
	}
	matcherSets, err := parseMatchersParam(a.parser, r.Form["match[]"])
	if err != nil {
		return result{err: invalidParam(err, "match[]")}
	}

	ctx := r.Context()
	q, err := a.queryable.Querier(timestamp.FromTime(start), timestamp.FromTime(end))
	if err != nil {
		return result{err: toAPIError(err)}
	}
	closer := a.closer(q)
	hints := &storage.SelectHints{
		Start: timestamp.FromTime(start),
		End:   timestamp.FromTime(end),
		Func:  "series", // Not a PromQL function: tells storage that no samples are needed.
		Limit: toHintLimit(limit),
	}
	var set storage.SeriesSet
	if len(matcherSets) > 1 {
		sets := make([]storage.SeriesSet, 0, len(matcherSets))
		for _, ms := range matcherSets {
			// Sorted, so that the merge can deduplicate.
			sets = append(sets, q.Select(ctx, true, hints, ms...))
		}
		set = storage.NewMergeSeriesSet(sets, 0, storage.ChainedSeriesMerge)
	} else {
		set = q.Select(ctx, false, hints, matcherSets[0]...)
	}

	metrics := []labels.Labels{}
	for i := 1; set.Next(); i++ {
		// A huge result must not outlive a client that gave up; checking
		// every series would cost more than the iteration itself.
		if i%checkContextEvery == 0 {
			if err := ctx.Err(); err != nil {
				return result{err: toAPIError(err), finalizer: closer}
			}
		}
		metrics = append(metrics, set.At().Labels())
		if limit > 0 && len(metrics) > limit {
			warnings := set.Warnings()
			warnings.Add(errTruncated)
			return result{data: metrics[:limit], warnings: warnings, finalizer: closer}
		}
	}
	if err := set.Err(); err != nil {
		return result{err: toAPIError(err), warnings: set.Warnings(), finalizer: closer}
	}
	return result{data: metrics, warnings: set.Warnings(), finalizer: closer}
}

// metricMetadata serves /api/v1/metadata from the MetadataReader.
func (a *API) metricMetadata(r *http.Request) result {
	limit := -1
	if s := r.FormValue("limit"); s != "" {
		var err error
		if limit, err = strconv.Atoi(s); err != nil {
			return result{err: &apiError{errorBadData, errors.New("limit must be a number")}}
		}
	}
	limitPerMetric := -1
	if s := r.FormValue("limit_per_metric"); s != "" {
		var err error
		if limitPerMetric, err = strconv.Atoi(s); err != nil {
			return result{err: &apiError{errorBadData, errors.New("limit_per_metric must be a number")}}
		}
	}
	res := map[string][]metadata.Metadata{}
	// Prometheus returns nothing for limit=0 and everything for a negative one.
	if a.metadata == nil || limit == 0 {
		return result{data: res}
	}
	md, err := a.metadata.MetricMetadata(r.Context(), r.FormValue("metric"), max(limit, 0))
	if err != nil {
		return result{err: toAPIError(err)}
	}
	for name, ms := range md {
		if limitPerMetric > 0 && len(ms) > limitPerMetric {
			ms = ms[:limitPerMetric]
		}
		res[name] = ms
	}
	return result{data: res}
}

// serveBuildInfo serves /api/v1/status/buildinfo.
func (a *API) serveBuildInfo(*http.Request) result {
	return result{data: a.buildInfo}
}

// queryExemplars serves /api/v1/query_exemplars. Immune stores no exemplars,
// so the answer is always empty; Grafana asks whenever exemplars are enabled.
func (a *API) queryExemplars(*http.Request) result {
	return result{data: []struct{}{}}
}

// formatQuery serves /api/v1/format_query: the query, pretty-printed.
func (a *API) formatQuery(r *http.Request) result {
	expr, err := a.parser.ParseExpr(r.FormValue("query"))
	if err != nil {
		return result{err: invalidParam(err, "query")}
	}
	return result{data: parser.Prettify(expr)}
}
