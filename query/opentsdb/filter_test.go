package opentsdb

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// filterSeries are the series the filter tests select from, by name.
var filterSeries = map[string]labels.Labels{
	"web01":      labels.FromStrings("__name__", "m", "host", "web01", "dc", "dal"),
	"web02":      labels.FromStrings("__name__", "m", "host", "web02", "dc", "dal"),
	"WEB03":      labels.FromStrings("__name__", "m", "host", "WEB03", "dc", "lax"),
	"db01":       labels.FromStrings("__name__", "m", "host", "db01.lax.example.com"),
	"web.01":     labels.FromStrings("__name__", "m", "host", "web.01"),
	"newline":    labels.FromStrings("__name__", "m", "host", "web\n01"),
	"nohost":     labels.FromStrings("__name__", "m", "dc", "dal"),
	"regexmeta":  labels.FromStrings("__name__", "m", "host", "b(c)*.+"),
	"webx01.com": labels.FromStrings("__name__", "m", "host", "webx01.com"),
}

func TestFilters(t *testing.T) {
	for _, tc := range []struct {
		typ, tagk, expr string
		want            []string // names in filterSeries
		err             string
	}{
		{typ: "literal_or", tagk: "host", expr: "web01", want: []string{"web01"}},
		{typ: "literal_or", tagk: "host", expr: "web01|web02|nope", want: []string{"web01", "web02"}},
		{typ: "literal_or", tagk: "host", expr: "web01|", want: []string{"web01"}},
		{typ: "literal_or", tagk: "host", expr: "WEB01", want: nil},
		{typ: "literal_or", tagk: "host", expr: "b(c)*.+", want: []string{"regexmeta"}},
		{typ: "literal_or", tagk: "host", expr: "b(c)", want: nil},
		{typ: "LITERAL_OR", tagk: "host", expr: "web.01", want: []string{"web.01"}},
		{typ: "iliteral_or", tagk: "host", expr: "WEB01|web03", want: []string{"web01", "WEB03"}},
		{typ: "not_literal_or", tagk: "host", expr: "web01|web02",
			want: []string{"WEB03", "db01", "web.01", "newline", "regexmeta", "webx01.com"}},
		{typ: "not_iliteral_or", tagk: "host", expr: "WEB01|web03|B(C)*.+",
			want: []string{"web02", "db01", "web.01", "newline", "webx01.com"}},
		{typ: "wildcard", tagk: "host", expr: "*",
			want: []string{"web01", "web02", "WEB03", "db01", "web.01", "newline", "regexmeta", "webx01.com"}},
		{typ: "wildcard", tagk: "host", expr: "web*", want: []string{"web01", "web02", "web.01", "newline", "webx01.com"}},
		{typ: "wildcard", tagk: "host", expr: "*01", want: []string{"web01", "web.01", "newline"}},
		{typ: "wildcard", tagk: "host", expr: "web*01", want: []string{"web01", "web.01", "newline"}},
		{typ: "wildcard", tagk: "host", expr: "*.lax.*", want: []string{"db01"}},
		{typ: "wildcard", tagk: "host", expr: "web*01*", want: []string{"web01", "web.01", "newline", "webx01.com"}},
		{typ: "wildcard", tagk: "host", expr: "b(c)*", want: []string{"regexmeta"}},
		{typ: "wildcard", tagk: "host", expr: "b(c)*x", want: nil},
		{typ: "iwildcard", tagk: "host", expr: "web*", want: []string{"web01", "web02", "WEB03", "web.01", "newline", "webx01.com"}},
		{typ: "regexp", tagk: "host", expr: "web0[12]", want: []string{"web01", "web02"}},
		{typ: "regexp", tagk: "host", expr: "^web", want: []string{"web01", "web02", "web.01", "newline", "webx01.com"}},
		{typ: "regexp", tagk: "host", expr: "lax", want: []string{"db01"}},
		{typ: "regexp", tagk: "host", expr: "01$", want: []string{"web01", "web.01", "newline"}},
		{typ: "regexp", tagk: "host", expr: "(?i)web03", want: []string{"WEB03"}},
		{typ: "regexp", tagk: "host", expr: ".*",
			want: []string{"web01", "web02", "WEB03", "db01", "web.01", "newline", "regexmeta", "webx01.com"}},
		{typ: "regexp", tagk: "host", expr: "x|y", want: []string{"db01", "webx01.com"}},
		{typ: "regexp", tagk: "host", expr: `\Qb(c)*.+`, want: []string{"regexmeta"}},
		{typ: "regexp", tagk: "host", expr: `\Qa)|(.*`, want: nil}, // \Q cannot escape the matcher's group
		{typ: "not_key", tagk: "host", expr: "", want: []string{"nohost"}},
		{typ: "not_key", tagk: "dc", expr: "", want: []string{"db01", "web.01", "newline", "regexmeta", "webx01.com"}},
		{typ: "literal_or", tagk: "rack", expr: "r1", want: nil},

		{typ: "literal_or", tagk: "host", expr: "", err: "at least one value"},
		{typ: "literal_or", tagk: "", expr: "a", err: "must have a tagk"},
		{typ: "wildcard", tagk: "host", expr: "web", err: "asterisk"},
		{typ: "regexp", tagk: "host", expr: "(?<=x)a", err: "invalid regexp"},
		{typ: "regexp", tagk: "host", expr: "", err: "cannot be empty"},
		{typ: "not_key", tagk: "host", expr: "x", err: "must be empty"},
		{typ: "bogus", tagk: "host", expr: "x", err: "could not find a filter"},
	} {
		f, err := newFilter(tc.typ, tc.tagk, tc.expr, false)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s(%s) on %s: got %v, want error %q", tc.typ, tc.expr, tc.tagk, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s(%s) on %s: %v", tc.typ, tc.expr, tc.tagk, err)
			continue
		}
		ms, err := f.matchers()
		if err != nil {
			t.Errorf("%s(%s): matchers: %v", tc.typ, tc.expr, err)
			continue
		}
		var got []string
		for _, name := range slices.Sorted(maps.Keys(filterSeries)) {
			ls := filterSeries[name]
			inGo := f.matches(ls)
			byMatchers := true
			for _, m := range ms {
				byMatchers = byMatchers && m.Matches(ls.Get(m.Name))
			}
			if inGo != byMatchers {
				t.Errorf("%s(%s) on %s: series %s: filter says %v, matchers %v say %v", tc.typ, tc.expr, tc.tagk, name, inGo, ms, byMatchers)
			}
			if inGo {
				got = append(got, name)
			}
		}
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s(%s) on %s: matched %v, want %v", tc.typ, tc.expr, tc.tagk, got, want)
		}
	}
}

func TestTagFilter(t *testing.T) {
	for _, tc := range []struct {
		value, typ, expr string
	}{
		{"*", filterWildcard, "*"},
		{"web01", filterLiteralOr, "web01"},
		{"web01|web02", filterLiteralOr, "web01|web02"},
		{"web*", filterIWildcard, "web*"},
		{"regexp(web.*)", filterRegexp, "web.*"},
		{"Literal_Or(a|b)", filterLiteralOr, "a|b"},
		{"not_key()", filterNotKey, ""},
	} {
		f, err := tagFilter("host", tc.value, true)
		if err != nil || f.typ != tc.typ || f.expr != tc.expr || !f.groupBy {
			t.Errorf("tagFilter(host, %q) = %+v, %v; want %s(%s) grouped", tc.value, f, err, tc.typ, tc.expr)
		}
	}
}
