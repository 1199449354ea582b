package opentsdb

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
)

// Filter types, as named in OpenTSDB (query/filters).
const (
	filterLiteralOr     = "literal_or"
	filterILiteralOr    = "iliteral_or"
	filterNotLiteralOr  = "not_literal_or"
	filterNotILiteralOr = "not_iliteral_or"
	filterWildcard      = "wildcard"
	filterIWildcard     = "iwildcard"
	filterRegexp        = "regexp"
	filterNotKey        = "not_key"
)

// filterInfo is the /api/config/filters entry of one filter type.
type filterInfo struct {
	Examples    string `json:"examples"`
	Description string `json:"description"`
}

// filterInfos describes the supported filter types for /api/config/filters.
var filterInfos = map[string]filterInfo{
	filterLiteralOr: {
		Examples:    `host=literal_or(web01),  host=literal_or(web01|web02|web03)  {"type":"literal_or","tagk":"host","filter":"web01|web02|web03","groupBy":false}`,
		Description: "Matches series whose value for the tag key is exactly one of the pipe-separated values. Case sensitive.",
	},
	filterILiteralOr: {
		Examples:    `host=iliteral_or(web01),  host=iliteral_or(web01|web02|web03)  {"type":"iliteral_or","tagk":"host","filter":"web01|web02|web03","groupBy":false}`,
		Description: "Like literal_or, but case insensitive.",
	},
	filterNotLiteralOr: {
		Examples:    `host=not_literal_or(web01),  host=not_literal_or(web01|web02|web03)  {"type":"not_literal_or","tagk":"host","filter":"web01|web02|web03","groupBy":false}`,
		Description: "Matches series that have the tag key with a value other than the pipe-separated values. Case sensitive.",
	},
	filterNotILiteralOr: {
		Examples:    `host=not_iliteral_or(web01),  host=not_iliteral_or(web01|web02|web03)  {"type":"not_iliteral_or","tagk":"host","filter":"web01|web02|web03","groupBy":false}`,
		Description: "Like not_literal_or, but case insensitive.",
	},
	filterWildcard: {
		Examples:    `host=wildcard(web*),  host=wildcard(web*.tsdb.net)  {"type":"wildcard","tagk":"host","filter":"web*.tsdb.net","groupBy":false}`,
		Description: "Glob match of the whole value, where * matches any run of characters; * alone matches any value. Case sensitive. At least one * is required.",
	},
	filterIWildcard: {
		Examples:    `host=iwildcard(web*),  host=iwildcard(web*.tsdb.net)  {"type":"iwildcard","tagk":"host","filter":"web*.tsdb.net","groupBy":false}`,
		Description: "Like wildcard, but case insensitive.",
	},
	filterRegexp: {
		Examples:    `host=regexp(.*)  {"type":"regexp","tagk":"host","filter":".*","groupBy":false}`,
		Description: "Matches values that contain a match of the regular expression (unanchored). The syntax is Go's RE2, close to but not identical with Java's: no backreferences or lookaround.",
	},
	filterNotKey: {
		Examples:    `host=not_key()  {"type":"not_key","tagk":"host","filter":"","groupBy":false}`,
		Description: "Skips any series that has the tag key, whatever its value. The filter expression must be empty.",
	},
}

// filter is one tag value filter. Every filter but not_key requires the
// series to have the tag key. Case-insensitive filters compare with Unicode
// simple case folding (strings.EqualFold, Go's (?i)), where OpenTSDB
// lower-cases with Java's toLowerCase.
type filter struct {
	typ     string
	tagk    string
	expr    string // as given, without the type and parentheses
	groupBy bool

	literals []string       // the literal_or family
	re       *regexp.Regexp // wildcards and regexp, as matched in Go
	// promRegex is the anchored Prometheus regex equivalent to the filter,
	// "" when it is pushed down as an equality or not at all.
	promRegex string
}

// newFilter validates and compiles a filter. typ is case-insensitive.
func newFilter(typ, tagk, expr string, groupBy bool) (*filter, error) {
	typ = strings.ToLower(typ)
	if tagk == "" {
		return nil, fmt.Errorf("filter must have a tagk")
	}
	if tagk == labels.MetricName {
		return nil, fmt.Errorf("no such name for 'tagk': '%s'", tagk)
	}
	f := &filter{typ: typ, tagk: tagk, expr: expr, groupBy: groupBy}
	switch typ {
	case filterLiteralOr, filterILiteralOr, filterNotLiteralOr, filterNotILiteralOr:
		if expr == "" || expr == "|" {
			return nil, fmt.Errorf("filter %s on %q must have at least one value", typ, tagk)
		}
		f.literals = splitLiterals(expr)
		quoted := make([]string, len(f.literals))
		for i, l := range f.literals {
			quoted[i] = regexp.QuoteMeta(l)
		}
		f.promRegex = strings.Join(quoted, "|")
		if f.caseInsensitive() {
			f.promRegex = "(?i:" + f.promRegex + ")"
		}
	case filterWildcard, filterIWildcard:
		if !strings.Contains(expr, "*") {
			return nil, fmt.Errorf("filter %s on %q must contain an asterisk: %q", typ, tagk, expr)
		}
		parts := strings.Split(expr, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		f.promRegex = strings.Join(parts, ".*")
		if f.caseInsensitive() {
			f.promRegex = "(?i:" + f.promRegex + ")"
		}
		f.re = regexp.MustCompile("^(?s:" + f.promRegex + ")$")
	case filterRegexp:
		if expr == "" {
			return nil, fmt.Errorf("filter regexp on %q cannot be empty", tagk)
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("invalid regexp filter on %q: %w", tagk, err)
		}
		f.re = re
		// OpenTSDB uses Matcher.find(): a match anywhere in the value. The
		// expression is embedded in its parsed form, where \Q...\E cannot
		// reach beyond it. Prometheus matches with (?s), so "." also matches
		// a newline there: the matchers select a superset, which matches()
		// narrows down.
		parsed, err := syntax.Parse(expr, syntax.Perl)
		if err != nil {
			return nil, fmt.Errorf("invalid regexp filter on %q: %w", tagk, err)
		}
		f.promRegex = ".*(?:" + parsed.String() + ").*"
	case filterNotKey:
		if expr != "" {
			return nil, fmt.Errorf("the filter must be empty for the not_key filter")
		}
	default:
		return nil, fmt.Errorf("could not find a filter with the type: %s", typ)
	}
	return f, nil
}

// splitLiterals splits on '|', dropping trailing empty strings as Java's
// String.split does.
func splitLiterals(expr string) []string {
	ls := strings.Split(expr, "|")
	for len(ls) > 0 && ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1]
	}
	return ls
}

func (f *filter) caseInsensitive() bool {
	return f.typ == filterILiteralOr || f.typ == filterNotILiteralOr || f.typ == filterIWildcard
}

// matches reports whether a series with these labels passes the filter.
func (f *filter) matches(ls labels.Labels) bool {
	v := ls.Get(f.tagk)
	if f.typ == filterNotKey {
		return v == ""
	}
	if v == "" {
		return false
	}
	switch f.typ {
	case filterLiteralOr:
		return slices.Contains(f.literals, v)
	case filterNotLiteralOr:
		return !slices.Contains(f.literals, v)
	case filterILiteralOr:
		return slices.ContainsFunc(f.literals, func(l string) bool { return strings.EqualFold(l, v) })
	case filterNotILiteralOr:
		return !slices.ContainsFunc(f.literals, func(l string) bool { return strings.EqualFold(l, v) })
	default: // wildcards and regexp
		return f.re.MatchString(v)
	}
}

// matchers returns label matchers that select the series passing the
// filter (exactly, but for newlines in values with a regexp filter), so that
// storage does the filtering.
func (f *filter) matchers() ([]*labels.Matcher, error) {
	switch f.typ {
	case filterNotKey:
		return []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, f.tagk, "")}, nil
	case filterLiteralOr:
		if len(f.literals) == 1 {
			return []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, f.tagk, f.literals[0])}, nil
		}
	case filterWildcard, filterIWildcard:
		if f.expr == strings.Repeat("*", len(f.expr)) {
			return []*labels.Matcher{labels.MustNewMatcher(labels.MatchNotEqual, f.tagk, "")}, nil
		}
	}
	// The tag key must be present, which a regex matcher alone does not
	// require when its pattern matches the empty string.
	exists := labels.MustNewMatcher(labels.MatchNotEqual, f.tagk, "")
	typ := labels.MatchRegexp
	if f.typ == filterNotLiteralOr || f.typ == filterNotILiteralOr {
		typ = labels.MatchNotRegexp
	}
	m, err := labels.NewMatcher(typ, f.tagk, f.promRegex)
	if err != nil {
		return nil, fmt.Errorf("filter %s on %q: %w", f.typ, f.tagk, err)
	}
	return []*labels.Matcher{exists, m}, nil
}

// tagFilter converts a tag value of the v1 syntax (the "tags" map of a JSON
// query or the first curly braces of m=) into a filter, as OpenTSDB 2.2+
// does: "*" is a wildcard, "type(expr)" names a filter, a value containing
// "*" is a case-insensitive wildcard, anything else is a literal_or
// ("a|b" for several values).
func tagFilter(tagk, value string, groupBy bool) (*filter, error) {
	if value == "" {
		return nil, fmt.Errorf("invalid tag: %s=%s", tagk, value)
	}
	if open := strings.IndexByte(value, '('); open >= 0 {
		if !strings.HasSuffix(value, ")") {
			return nil, fmt.Errorf("filter must end with a ')': %s", value)
		}
		return newFilter(value[:open], tagk, value[open+1:len(value)-1], groupBy)
	}
	switch {
	case value == "*":
		return newFilter(filterWildcard, tagk, value, groupBy)
	case strings.Contains(value, "*"):
		return newFilter(filterIWildcard, tagk, value, groupBy)
	default:
		return newFilter(filterLiteralOr, tagk, value, groupBy)
	}
}
