package query

// Parameter parsing copied or adapted from Prometheus v0.316.0,
// web/api/v1/api.go (Copyright The Prometheus Authors, Apache License 2.0),
// so that Immune accepts and rejects exactly what Prometheus does.

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

var (
	// minTime is the default start of optional time ranges. It is not
	// math.MinInt64 ms for historical reasons; see Prometheus' v1.MinTime.
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	// maxTime is the default end of optional time ranges; see v1.MaxTime.
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()
)

// errTruncated is the warning Prometheus attaches when limit cut a result.
var errTruncated = errors.New("results truncated due to limit")

// invalidParam is the bad_data error for an unacceptable parameter.
func invalidParam(err error, name string) *apiError {
	return &apiError{errorBadData, fmt.Errorf("invalid parameter %q: %w", name, err)}
}

// parseTimeParam parses the form value name, returning def when it is absent.
func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	val := r.FormValue(name)
	if val == "" {
		return def, nil
	}
	t, err := parseTime(val)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time value for '%s': %w", name, err)
	}
	return t, nil
}

// parseTime accepts float Unix seconds (millisecond precision) or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		s, ns := math.Modf(t)
		ns = math.Round(ns*1000) / 1000
		return time.Unix(int64(s), int64(ns*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	// time.Parse only handles four-digit years, so the default range
	// boundaries, which clients echo back, are matched literally.
	switch s {
	case minTime.Format(time.RFC3339Nano):
		return minTime, nil
	case maxTime.Format(time.RFC3339Nano):
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration accepts float seconds or a Prometheus duration such as "1m30s".
func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		// float64(math.MaxInt64) is 2^63, which int64 cannot hold, and NaN
		// passes every comparison.
		if math.IsNaN(ts) || ts >= float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

// parseLimitParam parses limit; 0 means no limit.
func parseLimitParam(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	limit, err := strconv.Atoi(s)
	if err != nil {
		return 0, err
	}
	if limit < 0 {
		return 0, errors.New("limit must be non-negative")
	}
	return limit, nil
}

// toHintLimit asks storage for one more result than limit so that
// truncation can be detected and warned about.
func toHintLimit(limit int) int {
	if limit > 0 && limit < math.MaxInt {
		return limit + 1
	}
	return limit
}

// parseMatchersParam parses match[] selectors, rejecting any selector that
// would match every series (all matchers match the empty string).
func parseMatchersParam(p parser.Parser, matchers []string) ([][]*labels.Matcher, error) {
	sets, err := p.ParseMetricSelectors(matchers)
	if err != nil {
		return nil, err
	}
outer:
	for _, ms := range sets {
		for _, m := range ms {
			if m != nil && !m.Matches("") {
				continue outer
			}
		}
		return nil, errors.New("match[] must contain at least one non-empty matcher")
	}
	return sets, nil
}

// parseTimeout parses the optional timeout parameter; 0 means none given.
func parseTimeout(r *http.Request) (time.Duration, error) {
	v := r.FormValue("timeout")
	if v == "" {
		return 0, nil
	}
	d, err := parseDuration(v)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, fmt.Errorf("timeout must be positive, got %s", d)
	}
	return d, nil
}
