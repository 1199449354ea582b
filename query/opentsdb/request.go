package opentsdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// jsonQuery is the body of POST /api/query. Unknown fields are ignored, as
// in OpenTSDB.
type jsonQuery struct {
	Start             jsonString     `json:"start"`
	End               jsonString     `json:"end"`
	Queries           []jsonSubQuery `json:"queries"`
	MsResolution      jsonBool       `json:"msResolution"`
	ShowQuery         jsonBool       `json:"showQuery"`
	NoAnnotations     jsonBool       `json:"noAnnotations"`
	GlobalAnnotations jsonBool       `json:"globalAnnotations"`
	Timezone          string         `json:"timezone"`
	UseCalendar       jsonBool       `json:"useCalendar"`
	Delete            jsonBool       `json:"delete"`
}

// jsonSubQuery is one metric query of a POST /api/query, and what an m=
// parameter is parsed into.
type jsonSubQuery struct {
	Aggregator   string            `json:"aggregator"`
	Metric       string            `json:"metric"`
	TSUIDs       []string          `json:"tsuids"`
	Rate         jsonBool          `json:"rate"`
	RateOptions  *jsonRateOptions  `json:"rateOptions"`
	Downsample   string            `json:"downsample"`
	Tags         map[string]string `json:"tags"`
	Filters      []jsonFilter      `json:"filters"`
	ExplicitTags jsonBool          `json:"explicitTags"`
}

type jsonRateOptions struct {
	Counter    jsonBool `json:"counter"`
	CounterMax *jsonInt `json:"counterMax"`
	ResetValue *jsonInt `json:"resetValue"`
	DropResets jsonBool `json:"dropResets"`
}

type jsonFilter struct {
	Type    string   `json:"type"`
	Tagk    string   `json:"tagk"`
	Filter  string   `json:"filter"`
	GroupBy jsonBool `json:"groupBy"`
	// tagValue, set by parseM, is a value in the v1 tag syntax ("*",
	// "a|b", "type(expr)") to convert with tagFilter instead.
	tagValue string
}

// jsonString accepts a JSON string, or a number kept as its literal text:
// Jackson coerces one into the other, and clients send times as either.
type jsonString string

func (s *jsonString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = jsonString(v)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("expected a string or a number, got %s", b)
	}
	*s = jsonString(n)
	return nil
}

// jsonBool accepts true, false, "true" and "false" (the OpenTSDB docs send
// "rate": "true").
type jsonBool bool

func (v *jsonBool) UnmarshalJSON(b []byte) error {
	switch string(bytes.ToLower(bytes.Trim(b, `"`))) {
	case "true":
		*v = true
	case "false", "null", "":
		*v = false
	default:
		return fmt.Errorf("expected a boolean, got %s", b)
	}
	return nil
}

// jsonInt accepts an integer as a JSON number or string.
type jsonInt int64

func (v *jsonInt) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) >= 1<<63 {
			return fmt.Errorf("expected an integer, got %s", b)
		}
		n = int64(f)
	}
	*v = jsonInt(n)
	return nil
}

// tsQuery is a validated /api/query request. Times are Unix milliseconds.
type tsQuery struct {
	start, end   int64
	msResolution bool
	showQuery    bool
	queries      []*subQuery
}

// subQuery is one validated metric query.
type subQuery struct {
	agg          *aggregator
	metric       string
	rate         bool
	rateOpts     rateOptions
	ds           *downsampleSpec // nil: no downsampling
	filters      []*filter
	explicitTags bool
	echo         queryEcho
}

// rateOptions are OpenTSDB's RateOptions.
type rateOptions struct {
	counter    bool
	counterMax float64 // default math.MaxInt64, OpenTSDB's Long.MAX_VALUE
	resetValue float64 // 0: never reset a rate to 0
	dropResets bool
}

// queryEcho is the "query" field of a result when showQuery is set: the
// sub query as OpenTSDB echoes it. Grafana maps results to queries by index.
type queryEcho struct {
	Aggregator   string            `json:"aggregator"`
	Metric       string            `json:"metric"`
	TSUIDs       []string          `json:"tsuids"`
	Downsample   *string           `json:"downsample"`
	Rate         bool              `json:"rate"`
	Filters      []filterEcho      `json:"filters"`
	ExplicitTags bool              `json:"explicitTags"`
	Index        int               `json:"index"`
	Tags         map[string]string `json:"tags"`
	RateOptions  *rateOptionsEcho  `json:"rateOptions"`
}

type filterEcho struct {
	Tagk    string `json:"tagk"`
	Filter  string `json:"filter"`
	GroupBy bool   `json:"group_by"`
	Type    string `json:"type"`
}

type rateOptionsEcho struct {
	Counter    bool  `json:"counter"`
	CounterMax int64 `json:"counterMax"`
	ResetValue int64 `json:"resetValue"`
	DropResets bool  `json:"dropResets"`
}

// queryFromValues builds a query from GET parameters (or a form).
func queryFromValues(v url.Values, now time.Time) (*tsQuery, error) {
	start := last(v, "start")
	if start == "" {
		return nil, fmt.Errorf("missing parameter <code>start</code>")
	}
	if len(v["tsuid"]) > 0 {
		return nil, errTSUIDs
	}
	var subs []jsonSubQuery
	for _, m := range v["m"] {
		sq, err := parseM(m)
		if err != nil {
			return nil, err
		}
		subs = append(subs, sq)
	}
	if len(subs) == 0 {
		return nil, fmt.Errorf("missing sub queries")
	}
	tz := last(v, "tz")
	if tz == "" {
		tz = last(v, "timezone")
	}
	return buildQuery(start, last(v, "end"), tz, false, subs, now,
		flag(v, "ms") || flag(v, "msResolution"),
		flag(v, "show_query") || flag(v, "showQuery"))
}

// queryFromJSON builds a query from a POST body.
func queryFromJSON(body []byte, now time.Time) (*tsQuery, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("missing message content")
	}
	var jq jsonQuery
	if err := json.Unmarshal(body, &jq); err != nil {
		return nil, fmt.Errorf("unable to parse the given JSON: %w", err)
	}
	if jq.Delete {
		return nil, fmt.Errorf("deleting data is not supported")
	}
	if jq.Start == "" {
		return nil, fmt.Errorf("missing start time")
	}
	if len(jq.Queries) == 0 {
		return nil, fmt.Errorf("missing queries")
	}
	return buildQuery(string(jq.Start), string(jq.End), jq.Timezone, bool(jq.UseCalendar), jq.Queries, now,
		bool(jq.MsResolution), bool(jq.ShowQuery))
}

var errTSUIDs = fmt.Errorf("TSUID queries are not supported: series have no UIDs in Immune, query by metric and tags")

// buildQuery validates times and sub queries as OpenTSDB's TSQuery and
// TSSubQuery do.
func buildQuery(start, end, tz string, useCalendar bool, subs []jsonSubQuery, now time.Time, ms, show bool) (*tsQuery, error) {
	loc := time.UTC
	if tz != "" {
		var err error
		if loc, err = time.LoadLocation(tz); err != nil {
			return nil, fmt.Errorf("invalid timezone %q: %w", tz, err)
		}
	}
	q := &tsQuery{msResolution: ms, showQuery: show}
	var err error
	if q.start, err = parseTime(start, now, loc); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	q.end = now.UnixMilli()
	if end != "" {
		if q.end, err = parseTime(end, now, loc); err != nil {
			return nil, fmt.Errorf("end: %w", err)
		}
	}
	if q.end <= q.start {
		return nil, fmt.Errorf("end time [%d] must be greater than the start time [%d]", q.end, q.start)
	}
	for i, js := range subs {
		sq, err := buildSubQuery(js, i, useCalendar, loc)
		if err != nil {
			return nil, err
		}
		q.queries = append(q.queries, sq)
	}
	return q, nil
}

func buildSubQuery(js jsonSubQuery, index int, useCalendar bool, loc *time.Location) (*subQuery, error) {
	if js.Aggregator == "" {
		return nil, fmt.Errorf("missing the aggregation function")
	}
	agg, ok := aggregators[strings.ToLower(js.Aggregator)]
	if !ok {
		return nil, fmt.Errorf("no such aggregation function: %s", js.Aggregator)
	}
	if len(js.TSUIDs) > 0 {
		return nil, errTSUIDs
	}
	if js.Metric == "" {
		return nil, fmt.Errorf("missing the metric or tsuids, provide at least one")
	}
	sq := &subQuery{
		agg:          agg,
		metric:       js.Metric,
		rate:         bool(js.Rate),
		rateOpts:     rateOptions{counterMax: math.MaxInt64},
		explicitTags: bool(js.ExplicitTags),
	}
	echo := queryEcho{
		Aggregator:   agg.name,
		Metric:       js.Metric,
		Rate:         sq.rate,
		ExplicitTags: sq.explicitTags,
		Index:        index,
		Tags:         map[string]string{},
		Filters:      []filterEcho{},
	}
	if ro := js.RateOptions; ro != nil {
		sq.rateOpts.counter = bool(ro.Counter)
		sq.rateOpts.dropResets = bool(ro.DropResets)
		echo.RateOptions = &rateOptionsEcho{Counter: bool(ro.Counter), CounterMax: math.MaxInt64, DropResets: bool(ro.DropResets)}
		if ro.CounterMax != nil {
			if *ro.CounterMax < 0 {
				return nil, fmt.Errorf("counterMax must be positive, got %d", *ro.CounterMax)
			}
			sq.rateOpts.counterMax = float64(*ro.CounterMax)
			echo.RateOptions.CounterMax = int64(*ro.CounterMax)
		}
		if ro.ResetValue != nil {
			sq.rateOpts.resetValue = float64(*ro.ResetValue)
			echo.RateOptions.ResetValue = int64(*ro.ResetValue)
		}
	}
	if js.Downsample != "" {
		ds, err := parseDownsample(js.Downsample, useCalendar, loc)
		if err != nil {
			return nil, err
		}
		sq.ds = ds
		echo.Downsample = &js.Downsample
	}
	// Tags (v1 syntax, always group-by) and filters are ANDed; OpenTSDB
	// documents that only one of them takes effect but does not say which.
	for _, k := range slices.Sorted(maps.Keys(js.Tags)) {
		f, err := tagFilter(k, js.Tags[k], true)
		if err != nil {
			return nil, err
		}
		sq.filters = append(sq.filters, f)
		echo.Tags[k] = js.Tags[k]
	}
	for _, jf := range js.Filters {
		var f *filter
		var err error
		if jf.tagValue != "" {
			f, err = tagFilter(jf.Tagk, jf.tagValue, bool(jf.GroupBy))
		} else {
			if jf.Type == "" {
				return nil, fmt.Errorf("missing filter type for tag key %q", jf.Tagk)
			}
			f, err = newFilter(jf.Type, jf.Tagk, jf.Filter, bool(jf.GroupBy))
		}
		if err != nil {
			return nil, err
		}
		sq.filters = append(sq.filters, f)
	}
	// A tag key grouped by in one filter is grouped by in all of them.
	for _, f := range sq.filters {
		if f.groupBy {
			for _, g := range sq.filters {
				if g.tagk == f.tagk {
					g.groupBy = true
				}
			}
		}
	}
	for _, f := range sq.filters {
		echo.Filters = append(echo.Filters, filterEcho{Tagk: f.tagk, Filter: f.expr, GroupBy: f.groupBy, Type: f.typ})
	}
	sq.echo = echo
	return sq, nil
}

// downsampleSpec is a parsed "<interval>-<function>[-<fill policy>]".
type downsampleSpec struct {
	all      bool  // "0all": one bucket over the whole query range
	interval int64 // ms, when !all
	agg      *aggregator
	fill     fillPolicy
}

// fillPolicy is what an empty downsampling bucket yields.
type fillPolicy uint8

const (
	fillNone fillPolicy = iota // no point; the aggregation interpolates
	fillNaN                    // NaN, written as "NaN"
	fillNull                   // NaN, written as null
	fillZero                   // 0
)

var fillPolicies = map[string]fillPolicy{"none": fillNone, "nan": fillNaN, "null": fillNull, "zero": fillZero}

// parseDownsample parses a downsampling specification. Calendar intervals
// ("1dc", or any interval with useCalendar) are supported, in UTC only, for
// intervals that divide a day, where they coincide with OpenTSDB's modulo
// intervals.
func parseDownsample(spec string, useCalendar bool, loc *time.Location) (*downsampleSpec, error) {
	parts := strings.Split(spec, "-")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("invalid downsampling specifier '%s': must consist of interval, function and optional fill policy", spec)
	}
	ds := &downsampleSpec{}
	iv := strings.ToLower(parts[0])
	switch {
	case strings.Contains(iv, "all"):
		if iv != "all" && iv != "0all" {
			return nil, fmt.Errorf("invalid downsampling interval '%s': use 0all", parts[0])
		}
		ds.all = true
	default:
		calendar := useCalendar
		if strings.HasSuffix(iv, "c") {
			calendar, iv = true, iv[:len(iv)-1]
		}
		d, err := parseDuration(iv)
		if err != nil {
			return nil, fmt.Errorf("invalid downsampling specifier '%s': %w", spec, err)
		}
		// Calendar buckets start at midnight, January 1st: in UTC that is
		// the same as the epoch-aligned buckets when the interval divides a day.
		if calendar && loc != time.UTC {
			return nil, fmt.Errorf("invalid downsampling specifier '%s': calendar downsampling is only supported in UTC", spec)
		}
		if calendar && durationUnits["d"]%d != 0 {
			return nil, fmt.Errorf("invalid downsampling specifier '%s': calendar downsampling is only supported for intervals that divide a day", spec)
		}
		ds.interval = d
	}
	agg, ok := aggregators[strings.ToLower(parts[1])]
	if !ok {
		return nil, fmt.Errorf("no such downsampling function: %s", parts[1])
	}
	if agg == none {
		return nil, fmt.Errorf("cannot use the none aggregator for downsampling")
	}
	ds.agg = agg
	if len(parts) == 3 {
		fp, ok := fillPolicies[strings.ToLower(parts[2])]
		if !ok {
			return nil, fmt.Errorf("no such fill policy: %s", parts[2])
		}
		ds.fill = fp
	}
	return ds, nil
}

// last returns the last value of a parameter, as OpenTSDB reads them.
func last(v url.Values, name string) string {
	vs := v[name]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// flag reports whether a boolean parameter is set. OpenTSDB only checks
// presence; "false" and "0" are read as unset here.
func flag(v url.Values, name string) bool {
	vs, ok := v[name]
	if !ok {
		return false
	}
	s := strings.ToLower(last(v, name))
	return len(vs) > 0 && s != "false" && s != "0"
}
