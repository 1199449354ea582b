package opentsdb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// serveQuery serves /api/query: a JSON body on POST, m= parameters on GET
// (or on a POST without a body). The arrays parameter switches dps from an
// object to [[timestamp, value], ...] in either case.
func (a *API) serveQuery(r *http.Request) (any, error) {
	now := a.now()
	params := r.URL.Query()
	var q *tsQuery
	var err error
	if r.Method == http.MethodPost {
		var body []byte
		if body, err = readBody(r); err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(body)) == 0 && params.Has("m") {
			q, err = queryFromValues(params, now)
		} else {
			q, err = queryFromJSON(body, now)
		}
	} else {
		q, err = queryFromValues(params, now)
	}
	if err != nil {
		return nil, asBadRequest(err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	results, err := a.execute(ctx, q)
	if err != nil {
		return nil, err
	}
	return encodeResults(results, q.msResolution, flag(params, "arrays")), nil
}

// asBadRequest makes a parsing error a 400.
func asBadRequest(err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		return err
	}
	return badRequest(err.Error())
}

// defaultSuggestions is OpenTSDB's default for max in /api/suggest and
// limit in /api/search/lookup.
const defaultSuggestions = 25

// serveSuggest serves /api/suggest: metric names, tag keys or tag values
// (of any key) starting with q, case-sensitively, sorted, at most max.
func (a *API) serveSuggest(r *http.Request) (any, error) {
	params := map[string]string{}
	if r.Method == http.MethodPost {
		body, err := readBody(r)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(body)) > 0 {
			var m map[string]jsonString
			if err := json.Unmarshal(body, &m); err != nil {
				return nil, badRequest("unable to parse the given JSON: " + err.Error())
			}
			for k, v := range m {
				params[k] = string(v)
			}
		}
	}
	if len(params) == 0 {
		query := r.URL.Query()
		for k := range query {
			params[k] = last(query, k)
		}
	}
	typ := params["type"]
	if typ == "" {
		return nil, badRequest("missing parameter <code>type</code>")
	}
	limit := defaultSuggestions
	if s := params["max"]; s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, badRequest("unable to parse 'max' as a number")
		}
		if n > 0 {
			limit = n
		}
	}
	prefix := params["q"]

	querier, err := a.queryable.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		return nil, fmt.Errorf("open querier: %w", err)
	}
	defer a.closeQuerier(querier)
	ctx := r.Context()
	var names []string
	switch typ {
	case "metrics", "metric":
		names, _, err = querier.LabelValues(ctx, labels.MetricName, nil)
	case "tagk":
		names, err = tagKeys(ctx, querier)
	case "tagv":
		var keys []string
		if keys, err = tagKeys(ctx, querier); err != nil {
			break
		}
		for _, k := range keys {
			vs, _, err := querier.LabelValues(ctx, k, nil)
			if err != nil {
				return nil, fmt.Errorf("look up values of %q: %w", k, err)
			}
			names = append(names, vs...)
		}
	default:
		return nil, badRequest("invalid 'type' parameter:" + typ)
	}
	if err != nil {
		return nil, fmt.Errorf("suggest %s: %w", typ, err)
	}
	out := []string{}
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// tagKeys returns every label name but the metric name.
func tagKeys(ctx context.Context, querier storage.Querier) ([]string, error) {
	names, _, err := querier.LabelNames(ctx, nil)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(names, func(n string) bool { return n == labels.MetricName }), nil
}

// lookupTag is a tag pair of a lookup; either side may be "*".
type lookupTag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type lookupRequest struct {
	Metric string      `json:"metric"`
	Tags   []lookupTag `json:"tags"`
	Limit  *jsonInt    `json:"limit"`
}

type lookupResponse struct {
	Type         string         `json:"type"`
	Metric       string         `json:"metric"`
	Tags         []lookupTag    `json:"tags"`
	Limit        int            `json:"limit"`
	Time         int64          `json:"time"`
	Results      []lookupResult `json:"results"`
	StartIndex   int            `json:"startIndex"`
	TotalResults int            `json:"totalResults"`
}

type lookupResult struct {
	TSUID  string            `json:"tsuid"`
	Metric string            `json:"metric"`
	Tags   map[string]string `json:"tags"`
}

// serveLookup serves /api/search/lookup: the series with a metric and tag
// pairs, from GET m=metric{k=v,k=*,*=v} or a POST {metric, tags, limit}.
// Pairs of the same key are ORed, different keys ANDed; "*=v" matches any
// key with value v. Series have no UIDs, so tsuid is empty. Lookups read
// labels only and are not bounded by MaxSeries.
func (a *API) serveLookup(r *http.Request) (any, error) {
	start := a.now()
	var req lookupRequest
	params := r.URL.Query()
	body := []byte(nil)
	if r.Method == http.MethodPost {
		var err error
		if body, err = readBody(r); err != nil {
			return nil, err
		}
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, badRequest("unable to parse the given JSON: " + err.Error())
		}
	} else {
		m := last(params, "m")
		if m == "" {
			return nil, badRequest("missing parameter <code>m</code>")
		}
		metric, pairs, _, braces, err := parseMetricTags(m, false)
		if err != nil {
			return nil, badRequest(err.Error())
		}
		if braces > 1 {
			return nil, badRequest("a lookup takes one set of tags: " + m)
		}
		req.Metric = metric
		for _, p := range pairs {
			req.Tags = append(req.Tags, lookupTag{Key: p[0], Value: p[1]})
		}
		if s := last(params, "limit"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, badRequest("unable to parse 'limit' as a number")
			}
			req.Limit = (*jsonInt)(&n)
		}
	}
	if req.Metric == "*" {
		req.Metric = ""
	}
	limit := defaultSuggestions
	if req.Limit != nil && *req.Limit > 0 && *req.Limit <= math.MaxInt32 {
		limit = int(*req.Limit)
	}
	if req.Metric == "" && len(req.Tags) == 0 {
		return nil, badRequest("a lookup needs a metric, a tag key or a tag value")
	}

	ms, anyKeyValues, tagks, err := lookupMatchers(req)
	if err != nil {
		return nil, badRequest(err.Error())
	}
	querier, err := a.queryable.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		return nil, fmt.Errorf("open querier: %w", err)
	}
	defer a.closeQuerier(querier)
	ctx := r.Context()
	set := querier.Select(ctx, true, &storage.SelectHints{Start: math.MinInt64, End: math.MaxInt64, Func: "series"}, ms...)
	resp := lookupResponse{Type: "LOOKUP", Metric: req.Metric, Tags: req.Tags, Limit: limit, Results: []lookupResult{}}
	if resp.Metric == "" {
		resp.Metric = "*"
	}
	if resp.Tags == nil {
		resp.Tags = []lookupTag{}
	}
	for n := 1; set.Next(); n++ {
		if n%checkContextEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		lset := set.At().Labels()
		if len(anyKeyValues) > 0 && !hasAnyValue(lset, anyKeyValues) {
			continue
		}
		resp.TotalResults++
		if len(resp.Results) < limit {
			resp.Results = append(resp.Results, lookupResult{Metric: lset.Get(labels.MetricName), Tags: tagsOf(lset)})
		}
	}
	if err := set.Err(); err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	if resp.TotalResults == 0 {
		if req.Metric != "" {
			if err := a.checkMetric(ctx, querier, req.Metric); err != nil {
				return nil, err
			}
		}
		if err := checkTagks(ctx, querier, tagks); err != nil {
			return nil, err
		}
	}
	resp.Time = a.now().Sub(start).Milliseconds()
	return resp, nil
}

// lookupMatchers returns the matchers of a lookup, the values of "*=v"
// pairs (checked in Go) and the tag keys named.
func lookupMatchers(req lookupRequest) (ms []*labels.Matcher, anyKeyValues, tagks []string, err error) {
	if req.Metric != "" {
		ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, req.Metric))
	}
	values := map[string][]string{}
	for _, t := range req.Tags {
		switch {
		case t.Key == "" || t.Value == "":
			return nil, nil, nil, fmt.Errorf("invalid tag pair %q=%q", t.Key, t.Value)
		case t.Key == labels.MetricName:
			return nil, nil, nil, fmt.Errorf("no such name for 'tagk': '%s'", t.Key)
		case t.Key == "*":
			if t.Value != "*" {
				anyKeyValues = append(anyKeyValues, t.Value)
			}
		default:
			if _, ok := values[t.Key]; !ok {
				tagks = append(tagks, t.Key)
			}
			values[t.Key] = append(values[t.Key], t.Value)
		}
	}
	for _, k := range tagks {
		vs := values[k]
		switch {
		case slices.Contains(vs, "*"): // a wildcard takes priority
			ms = append(ms, labels.MustNewMatcher(labels.MatchNotEqual, k, ""))
		case len(vs) == 1:
			ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, k, vs[0]))
		default:
			quoted := make([]string, len(vs))
			for i, v := range vs {
				quoted[i] = regexp.QuoteMeta(v)
			}
			m, err := labels.NewMatcher(labels.MatchRegexp, k, strings.Join(quoted, "|"))
			if err != nil {
				return nil, nil, nil, err
			}
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		ms = append(ms, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"))
	}
	return ms, anyKeyValues, tagks, nil
}

// hasAnyValue reports whether a tag (not the metric name) has one of vs.
func hasAnyValue(lset labels.Labels, vs []string) bool {
	found := false
	lset.Range(func(l labels.Label) {
		if !found && l.Name != labels.MetricName && slices.Contains(vs, l.Value) {
			found = true
		}
	})
	return found
}

// serveAggregators serves /api/aggregators: the aggregator names, sorted.
func (a *API) serveAggregators(*http.Request) (any, error) {
	return aggregatorNames, nil
}

// serveFilters serves /api/config/filters: filter type → examples and
// description.
func (a *API) serveFilters(*http.Request) (any, error) {
	return filterInfos, nil
}

// serveVersion serves /api/version in OpenTSDB's shape.
func (a *API) serveVersion(*http.Request) (any, error) {
	return map[string]string{
		"version":        versionString,
		"short_revision": "",
		"full_revision":  "",
		"timestamp":      "",
		"repo_status":    "",
		"user":           "",
		"host":           "",
		"repo":           "",
		"branch":         "",
		"implementation": "Immune: the OpenTSDB " + versionString + " HTTP read API served over Immune's store, not OpenTSDB",
	}, nil
}
