package opentsdb

import (
	"fmt"
	"strconv"
	"strings"
)

// parseM parses the m= parameter of a GET /api/query:
//
//	<aggregator>:[rate[{counter[,<counterMax>[,<resetValue>]]}]:][<downsample>:][explicit_tags:]<metric>[{<group-by tags>}][{<filters>}]
//
// into the same form as a JSON sub query. Modifiers may come in any order.
// Unlike OpenTSDB, colons inside braces or parentheses do not split, and a
// metric name may itself contain colons (Prometheus recording rules): the
// metric is everything after the last recognised modifier, where OpenTSDB
// would silently drop unknown parts.
func parseM(m string) (jsonSubQuery, error) {
	var sq jsonSubQuery
	if m == "" {
		return sq, fmt.Errorf("the query string was empty")
	}
	parts := splitOutside(m, ':')
	if len(parts) < 2 {
		return sq, fmt.Errorf("invalid parameter m=%s (not enough :-separated parts)", m)
	}
	sq.Aggregator = parts[0]
	i := 1
modifiers:
	for ; i < len(parts)-1; i++ {
		p := parts[i]
		switch {
		case p == "rate" || strings.HasPrefix(p, "rate{") && strings.HasSuffix(p, "}"):
			ro, err := parseRateSpec(p)
			if err != nil {
				return sq, err
			}
			sq.Rate = true
			sq.RateOptions = ro
		case p != "" && p[0] >= '0' && p[0] <= '9' || strings.HasPrefix(p, "all-"):
			sq.Downsample = p
		case strings.EqualFold(p, "explicit_tags"):
			sq.ExplicitTags = true
		case strings.EqualFold(p, "pre-agg") || strings.HasPrefix(strings.ToLower(p), "rollup_"):
			// Rollup and pre-aggregate tables do not exist here: raw data
			// answers every query.
		default:
			break modifiers
		}
	}
	metric, groupBy, filters, _, err := parseMetricTags(strings.Join(parts[i:], ":"), true)
	if err != nil {
		return sq, err
	}
	sq.Metric = metric
	for _, kv := range groupBy {
		sq.Filters = append(sq.Filters, jsonFilter{tagValue: kv[1], Tagk: kv[0], GroupBy: true})
	}
	for _, kv := range filters {
		sq.Filters = append(sq.Filters, jsonFilter{tagValue: kv[1], Tagk: kv[0]})
	}
	return sq, nil
}

// parseRateSpec parses "rate" or "rate{counter[,counterMax[,resetValue]]}";
// "dropcounter" instead of "counter" also drops resets.
func parseRateSpec(spec string) (*jsonRateOptions, error) {
	if spec == "rate" {
		return nil, nil
	}
	inner := spec[len("rate{") : len(spec)-1]
	parts := strings.Split(inner, ",")
	if len(parts) > 3 {
		return nil, fmt.Errorf("incorrect number of values in rate options specification, must be counter[,counter max value,reset value], received: %d parts", len(parts))
	}
	ro := &jsonRateOptions{
		Counter:    jsonBool(strings.HasSuffix(parts[0], "counter")),
		DropResets: jsonBool(parts[0] == "dropcounter"),
	}
	if len(parts) >= 2 && parts[1] != "" {
		n, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("max value of counter was not a number, received '%s'", parts[1])
		}
		ro.CounterMax = (*jsonInt)(&n)
	}
	if len(parts) >= 3 && parts[2] != "" {
		n, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("reset value of counter was not a number, received '%s'", parts[2])
		}
		ro.ResetValue = (*jsonInt)(&n)
	}
	return ro, nil
}

// parseMetricTags splits "metric{k=v,...}{k=filter,...}" into the metric,
// the group-by pairs of the first braces, the filter pairs of the second
// and how many braces there were. Either braces may be empty or absent; an
// empty metric is allowed here (lookups) and rejected by the caller where
// it matters. With unique, a tag key repeated in the first braces must
// repeat its value.
func parseMetricTags(s string, unique bool) (metric string, groupBy, filters [][2]string, braces int, err error) {
	open := strings.IndexByte(s, '{')
	if open < 0 {
		return s, nil, nil, 0, nil
	}
	metric = s[:open]
	rest := s[open:]
	for n := 0; rest != ""; n++ {
		if n == 2 || rest[0] != '{' {
			return "", nil, nil, 0, fmt.Errorf("invalid metric query %q: expected metric{tags}{filters}", s)
		}
		end := closingBrace(rest)
		if end < 0 {
			return "", nil, nil, 0, fmt.Errorf("missing '}' at the end of: %s", s)
		}
		pairs, err := parseTagPairs(rest[1:end], unique && n == 0)
		if err != nil {
			return "", nil, nil, 0, err
		}
		if n == 0 {
			groupBy = pairs
		} else {
			filters = pairs
		}
		braces++
		rest = rest[end+1:]
	}
	return metric, groupBy, filters, braces, nil
}

// closingBrace returns the index of the '}' closing the '{' at s[0],
// ignoring braces inside parentheses (as in regexp(a{2})), or -1.
func closingBrace(s string) int {
	parens := 0
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '(':
			parens++
		case ')':
			if parens > 0 {
				parens--
			}
		case '}':
			if parens == 0 {
				return i
			}
		}
	}
	return -1
}

// parseTagPairs parses "k=v,k=v", splitting on commas outside parentheses
// and on the first '='. In the group-by braces (unique), a tag key given
// twice must have the same value, as in OpenTSDB's Tags.parse.
func parseTagPairs(s string, unique bool) ([][2]string, error) {
	if s == "" {
		return nil, nil
	}
	var pairs [][2]string
	for _, tag := range splitOutside(s, ',') {
		k, v, ok := strings.Cut(tag, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("invalid tag: %s", tag)
		}
		dup := false
		for _, p := range pairs {
			if unique && p[0] == k {
				if p[1] != v {
					return nil, fmt.Errorf("duplicate tag: %s", tag)
				}
				dup = true
			}
		}
		if !dup {
			pairs = append(pairs, [2]string{k, v})
		}
	}
	return pairs, nil
}

// splitOutside splits s on sep where it is outside braces and parentheses.
func splitOutside(s string, sep byte) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{', '(':
			depth++
		case '}', ')':
			if depth > 0 {
				depth--
			}
		case sep:
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}
