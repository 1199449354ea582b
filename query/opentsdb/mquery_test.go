package opentsdb

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ptrInt(n int64) *jsonInt { v := jsonInt(n); return &v }

func TestParseM(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want jsonSubQuery
		err  string
	}{
		{in: "sum:sys.cpu.user", want: jsonSubQuery{Aggregator: "sum", Metric: "sys.cpu.user"}},
		{in: "avg:rate:sys.cpu.user", want: jsonSubQuery{Aggregator: "avg", Metric: "sys.cpu.user", Rate: true}},
		{
			in: "sum:rate{counter}:if.octets",
			want: jsonSubQuery{Aggregator: "sum", Metric: "if.octets", Rate: true,
				RateOptions: &jsonRateOptions{Counter: true}},
		},
		{
			in: "sum:rate{counter,65535,1000}:if.octets",
			want: jsonSubQuery{Aggregator: "sum", Metric: "if.octets", Rate: true,
				RateOptions: &jsonRateOptions{Counter: true, CounterMax: ptrInt(65535), ResetValue: ptrInt(1000)}},
		},
		{
			in: "sum:rate{counter,,1000}:if.octets",
			want: jsonSubQuery{Aggregator: "sum", Metric: "if.octets", Rate: true,
				RateOptions: &jsonRateOptions{Counter: true, ResetValue: ptrInt(1000)}},
		},
		{
			in: "sum:rate{dropcounter}:if.octets",
			want: jsonSubQuery{Aggregator: "sum", Metric: "if.octets", Rate: true,
				RateOptions: &jsonRateOptions{Counter: true, DropResets: true}},
		},
		{in: "sum:1m-avg:m", want: jsonSubQuery{Aggregator: "sum", Metric: "m", Downsample: "1m-avg"}},
		{in: "sum:0all-max:m", want: jsonSubQuery{Aggregator: "sum", Metric: "m", Downsample: "0all-max"}},
		{in: "sum:all-max:m", want: jsonSubQuery{Aggregator: "sum", Metric: "m", Downsample: "all-max"}},
		{
			in:   "sum:1m-avg-nan:rate:explicit_tags:m",
			want: jsonSubQuery{Aggregator: "sum", Metric: "m", Downsample: "1m-avg-nan", Rate: true, ExplicitTags: true},
		},
		{
			in: "sum:m{host=*,dc=lga}",
			want: jsonSubQuery{Aggregator: "sum", Metric: "m", Filters: []jsonFilter{
				{Tagk: "host", tagValue: "*", GroupBy: true},
				{Tagk: "dc", tagValue: "lga", GroupBy: true},
			}},
		},
		{
			in: "sum:m{host=web01|web02}{dc=regexp(lg.*),rack=wildcard(r*)}",
			want: jsonSubQuery{Aggregator: "sum", Metric: "m", Filters: []jsonFilter{
				{Tagk: "host", tagValue: "web01|web02", GroupBy: true},
				{Tagk: "dc", tagValue: "regexp(lg.*)"},
				{Tagk: "rack", tagValue: "wildcard(r*)"},
			}},
		},
		{
			in: "sum:m{}{host=not_key()}",
			want: jsonSubQuery{Aggregator: "sum", Metric: "m", Filters: []jsonFilter{
				{Tagk: "host", tagValue: "not_key()"},
			}},
		},
		{
			// Commas, colons and braces inside a filter's parentheses.
			in: "sum:m{}{host=regexp(web{1,2}:x)}",
			want: jsonSubQuery{Aggregator: "sum", Metric: "m", Filters: []jsonFilter{
				{Tagk: "host", tagValue: "regexp(web{1,2}:x)"},
			}},
		},
		{in: "sum:m{}", want: jsonSubQuery{Aggregator: "sum", Metric: "m"}},
		{in: "sum:m{host=a,host=a}", want: jsonSubQuery{Aggregator: "sum", Metric: "m", Filters: []jsonFilter{{Tagk: "host", tagValue: "a", GroupBy: true}}}},
		{
			// A Prometheus recording rule name keeps its colons.
			in:   "sum:rate:job:http_requests:rate5m{job=api}",
			want: jsonSubQuery{Aggregator: "sum", Metric: "job:http_requests:rate5m", Rate: true, Filters: []jsonFilter{{Tagk: "job", tagValue: "api", GroupBy: true}}},
		},
		{in: "sum:pre-agg:rollup_raw:m", want: jsonSubQuery{Aggregator: "sum", Metric: "m"}},
		{in: "", err: "empty"},
		{in: "sum", err: "not enough"},
		{in: "sum:m{host=a", err: "missing '}'"},
		{in: "sum:m{host}", err: "invalid tag: host"},
		{in: "sum:m{host=}", err: "invalid tag"},
		{in: "sum:m{=a}", err: "invalid tag"},
		{in: "sum:m{host=a,host=b}", err: "duplicate tag"},
		{in: "sum:m{a=b}{c=d}{e=f}", err: "expected metric{tags}{filters}"},
		{in: "sum:m{a=b}x", err: "expected metric{tags}{filters}"},
		{in: "sum:rate{counter,x}:m", err: "max value of counter was not a number"},
		{in: "sum:rate{counter,1,x}:m", err: "reset value of counter was not a number"},
		{in: "sum:rate{counter,1,2,3}:m", err: "incorrect number of values"},
	} {
		got, err := parseM(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseM(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseM(%q) =\n  %+v, %v\nwant\n  %+v", tc.in, got, err, tc.want)
		}
	}
}

// TestBuildSubQuery checks validation of parsed sub queries: aggregators,
// downsampling specifications and the conversion of tags into filters.
func TestBuildSubQuery(t *testing.T) {
	for _, tc := range []struct {
		in      string
		check   func(*subQuery) bool
		explain string
		err     string
	}{
		{in: "sum:m", check: func(sq *subQuery) bool { return sq.agg.name == "sum" && sq.ds == nil && !sq.rate }},
		{in: "SUM:m", check: func(sq *subQuery) bool { return sq.agg.name == "sum" }},
		{in: "p99:m", check: func(sq *subQuery) bool { return sq.agg.name == "p99" }},
		{in: "ep999r7:m", check: func(sq *subQuery) bool { return sq.agg.name == "ep999r7" }},
		{
			in: "sum:rate:m", explain: "default rate options",
			check: func(sq *subQuery) bool {
				return sq.rate && !sq.rateOpts.counter && sq.rateOpts.counterMax == math.MaxInt64 && sq.rateOpts.resetValue == 0
			},
		},
		{
			in: "sum:5m-p95-zero:m",
			check: func(sq *subQuery) bool {
				return sq.ds.interval == 300_000 && sq.ds.agg.name == "p95" && sq.ds.fill == fillZero
			},
		},
		{in: "sum:1m-avg-null:m", check: func(sq *subQuery) bool { return sq.ds.fill == fillNull }},
		{in: "sum:1m-avg-NaN:m", check: func(sq *subQuery) bool { return sq.ds.fill == fillNaN }},
		{in: "sum:1m-avg-none:m", check: func(sq *subQuery) bool { return sq.ds.fill == fillNone }},
		{in: "sum:500ms-count:m", check: func(sq *subQuery) bool { return sq.ds.interval == 500 }},
		{in: "sum:0all-sum:m", check: func(sq *subQuery) bool { return sq.ds.all }},
		{in: "sum:1dc-sum:m", check: func(sq *subQuery) bool { return sq.ds.interval == 86_400_000 }},
		{in: "sum:15mc-sum:m", check: func(sq *subQuery) bool { return sq.ds.interval == 900_000 }},
		{
			in: "sum:m{host=*,dc=lga|lax,rack=R1*}{os=iliteral_or(Linux)}", explain: "v1 tag conversions",
			check: func(sq *subQuery) bool {
				want := []filterEcho{
					{Tagk: "host", Filter: "*", GroupBy: true, Type: filterWildcard},
					{Tagk: "dc", Filter: "lga|lax", GroupBy: true, Type: filterLiteralOr},
					{Tagk: "rack", Filter: "R1*", GroupBy: true, Type: filterIWildcard},
					{Tagk: "os", Filter: "Linux", Type: filterILiteralOr},
				}
				return reflect.DeepEqual(sq.echo.Filters, want)
			},
		},
		{
			in: "sum:m{host=literal_or(a)}{host=regexp(.*)}", explain: "group-by spreads to all filters on the key",
			check: func(sq *subQuery) bool { return sq.filters[0].groupBy && sq.filters[1].groupBy },
		},
		{in: "bogus:m", err: "no such aggregation function: bogus"},
		{in: "sum:1m-bogus:m", err: "no such downsampling function"},
		{in: "sum:1m-none:m", err: "cannot use the none aggregator"},
		{in: "sum:1m-avg-sometimes:m", err: "no such fill policy"},
		{in: "sum:1m:m", err: "invalid downsampling specifier"},
		{in: "sum:1m-avg-nan-x:m", err: "invalid downsampling specifier"},
		{in: "sum:0m-avg:m", err: "zero or negative"},
		{in: "sum:1x-avg:m", err: "invalid duration"},
		{in: "sum:1nc-sum:m", err: "calendar"},
		{in: "sum:7dc-sum:m", err: "calendar"},
		{in: "sum:1wc-sum:m", err: "calendar"},
		{in: "sum:5all-sum:m", err: "use 0all"},
		{in: "sum:m{host=bogus(x)}", err: "could not find a filter with the type: bogus"},
		{in: "sum:m{host=regexp(x}", err: "missing '}'"},
		{in: "sum:m{host=regexp(x(}", err: "missing '}'"},
		{in: "sum:m{host=regexp(a)b}", err: "filter must end with a ')'"},
		{in: "sum:m{}{host=regexp(a[)}", err: "invalid regexp"},
		{in: "sum:m{}{host=regexp(a(b)}", err: "missing '}'"},
		{in: "sum:m{}{host=wildcard(abc)}", err: "must contain an asterisk"},
		{in: "sum:m{}{host=not_key(x)}", err: "must be empty"},
		{in: "sum:m{}{host=literal_or(|)}", err: "at least one value"},
		{in: "sum:m{__name__=x}", err: "No such name for 'tagk'"},
		{in: "sum:{host=a}", err: "missing the metric"},
	} {
		js, err := parseM(tc.in)
		var sq *subQuery
		if err == nil {
			sq, err = buildSubQuery(js, 0, false, time.UTC)
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.err)) {
				t.Errorf("%q: got %v, want error containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if !tc.check(sq) {
			t.Errorf("%q: %s: unexpected sub query %+v (echo %+v)", tc.in, tc.explain, sq, sq.echo)
		}
	}
}

func TestQueryFromJSON(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		body string
		err  string
	}{
		{body: `{"start":1709290800000,"queries":[{"aggregator":"sum","metric":"m"}]}`},
		{body: `{"start":"1h-ago","end":"now","queries":[{"aggregator":"sum","metric":"m","rate":"true","rateOptions":{"counter":true,"counterMax":"100","resetValue":5.0}}]}`},
		{body: `{"start":"1h-ago","queries":[{"aggregator":"sum","metric":"m","rateOptions":{"counterMax":null}}],"someFutureField":[1]}`},
		{body: ``, err: "missing message content"},
		{body: `{`, err: "unable to parse the given JSON"},
		{body: `{"queries":[{"aggregator":"sum","metric":"m"}]}`, err: "missing start time"},
		{body: `{"start":"1h-ago"}`, err: "missing queries"},
		{body: `{"start":"1h-ago","end":"2h-ago","queries":[{"aggregator":"sum","metric":"m"}]}`, err: "must be greater than the start time"},
		{body: `{"start":"1h-ago","end":"1h-ago","queries":[{"aggregator":"sum","metric":"m"}]}`, err: "must be greater than the start time"},
		{body: `{"start":"1h-ago","queries":[{"metric":"m"}]}`, err: "missing the aggregation function"},
		{body: `{"start":"1h-ago","queries":[{"aggregator":"sum"}]}`, err: "missing the metric"},
		{body: `{"start":"1h-ago","queries":[{"aggregator":"sum","tsuids":["000001"]}]}`, err: "TSUID"},
		{body: `{"start":"1h-ago","queries":[{"aggregator":"sum","metric":"m","rate":"maybe"}]}`, err: "expected a boolean"},
		{body: `{"start":"1h-ago","queries":[{"aggregator":"sum","metric":"m","rateOptions":{"counterMax":1.5}}]}`, err: "expected an integer"},
		{body: `{"start":"1h-ago","queries":[{"aggregator":"sum","metric":"m","rateOptions":{"counterMax":-1}}]}`, err: "counterMax must be positive"},
		{body: `{"start":"1h-ago","queries":[{"aggregator":"sum","metric":"m","filters":[{"tagk":"host","filter":"a"}]}]}`, err: "missing filter type"},
		{body: `{"start":"1h-ago","timezone":"Not/AZone","queries":[{"aggregator":"sum","metric":"m"}]}`, err: "invalid timezone"},
		{body: `{"start":"1h-ago","delete":true,"queries":[{"aggregator":"sum","metric":"m"}]}`, err: "deleting"},
		{body: `{"start":"1h-ago","useCalendar":true,"queries":[{"aggregator":"sum","metric":"m","downsample":"1n-sum"}]}`, err: "calendar"},
	} {
		_, err := queryFromJSON([]byte(tc.body), now)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: got %v, want error %q", tc.body, err, tc.err)
		}
	}
}
