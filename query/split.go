package query

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/annotations"
)

// A range query is split in time into parts evaluated in parallel: the
// Prometheus engine evaluates one query on one goroutine, and every step of
// a range query is an instant query of its own (subquery steps are aligned
// to absolute time, not to the query's start), so consecutive runs of steps
// give the same points as the whole range. Only `@ start()` and `@ end()`
// see the range itself; queries using them are not split.

// minStepsPerPart keeps small queries whole: below it the second index
// lookup and goroutine cost more than the evaluation they share.
const minStepsPerPart = 60

// rangeParts returns how many parts the range query qry is evaluated in.
func (a *API) rangeParts(qry promql.Query) int {
	stmt, ok := qry.Statement().(*parser.EvalStmt)
	if !ok || stmt.Interval <= 0 {
		return 1
	}
	steps := int(stmt.End.Sub(stmt.Start)/stmt.Interval) + 1
	n := min(a.parallelism, steps/minStepsPerPart)
	if n < 2 || seesRangeBounds(stmt.Expr) {
		return 1
	}
	return n
}

// seesRangeBounds reports whether expr uses `@ start()` or `@ end()`.
func seesRangeBounds(expr parser.Expr) bool {
	found := false
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			found = found || n.StartOrEnd != 0
		case *parser.SubqueryExpr:
			found = found || n.StartOrEnd != 0
		}
		return nil
	})
	return found
}

// execParts evaluates expr over [start, end] as n range queries over
// consecutive runs of steps, in parallel, on the parts engine, and joins
// their matrices. It reports false, with nothing to answer, when a part
// exceeded its share of the sample limit: the query must then run whole,
// held to the whole limit.
func (a *API) execParts(ctx context.Context, p queryParams, expr string, start, end time.Time, step time.Duration, n int) (result, bool) {
	steps := int(end.Sub(start)/step) + 1
	parts := make([]promql.Query, 0, n)
	closeAll := func() {
		for _, q := range parts {
			q.Close()
		}
	}
	for i := range n {
		first, last := i*steps/n, (i+1)*steps/n-1
		q, err := a.partEngine.NewRangeQuery(ctx, a.queryable, p.opts, expr,
			start.Add(time.Duration(first)*step), start.Add(time.Duration(last)*step), step)
		if err != nil {
			closeAll()
			return result{err: queryConstructionError(err)}, true
		}
		parts = append(parts, q)
	}
	// The first failure cancels the other parts, and is the query's: the
	// others may only report that cancellation.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
	)
	results := make([]*promql.Result, n)
	var wg sync.WaitGroup
	for i, q := range parts {
		wg.Go(func() {
			results[i] = q.Exec(ctx)
			if err := results[i].Err; err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		if _, ok := errors.AsType[promql.ErrTooManySamples](firstErr); ok {
			closeAll()
			return result{}, false
		}
		return result{err: toAPIError(firstErr), finalizer: closeAll}, true
	}
	var warnings annotations.Annotations
	matrices := make([]promql.Matrix, n)
	for i, r := range results {
		warnings.Merge(r.Warnings)
		m, err := r.Matrix()
		if err != nil {
			return result{err: toAPIError(err), finalizer: closeAll}, true
		}
		matrices[i] = m
	}
	res := &promql.Result{Value: joinMatrices(matrices)}
	if p.limit > 0 && truncateResult(res, p.limit) {
		warnings.Add(errTruncated)
	}
	return result{
		data:      queryData{ResultType: res.Value.Type(), Result: promqlValue{res.Value}},
		warnings:  warnings,
		finalizer: closeAll,
	}, true
}

// joinMatrices joins matrices of consecutive time ranges, each sorted by
// labels as the engine returns them, into one sorted matrix. A series in
// several parts gets their points in part order; the points of a series in
// one part only are shared, not copied, so the parts must stay open until
// the result is written.
func joinMatrices(parts []promql.Matrix) promql.Matrix {
	var out promql.Matrix
	next := make([]int, len(parts)) // per part, the first series not yet joined
	for {
		// The smallest label set among the parts' next series.
		var lowest labels.Labels
		found := false
		for i, m := range parts {
			if next[i] < len(m) && (!found || labels.Compare(m[next[i]].Metric, lowest) < 0) {
				lowest, found = m[next[i]].Metric, true
			}
		}
		if !found {
			return out
		}
		var joined promql.Series
		sources := 0
		for i, m := range parts {
			if next[i] >= len(m) || labels.Compare(m[next[i]].Metric, lowest) != 0 {
				continue
			}
			s := m[next[i]]
			next[i]++
			switch sources++; sources {
			case 1:
				joined = s
			case 2:
				// Full slice expressions: the first append copies instead of
				// writing into a part's pooled points.
				joined.Floats = append(joined.Floats[:len(joined.Floats):len(joined.Floats)], s.Floats...)
				joined.Histograms = append(joined.Histograms[:len(joined.Histograms):len(joined.Histograms)], s.Histograms...)
			default:
				joined.Floats = append(joined.Floats, s.Floats...)
				joined.Histograms = append(joined.Histograms, s.Histograms...)
			}
		}
		out = append(out, joined)
	}
}
