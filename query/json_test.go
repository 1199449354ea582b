package query

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

func testHistogram() *histogram.FloatHistogram {
	return &histogram.FloatHistogram{
		Count:           3,
		Sum:             2.5,
		ZeroThreshold:   0.001,
		ZeroCount:       1,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 3}},
		PositiveBuckets: []float64{1, 0, 1}, // The empty bucket is omitted.
	}
}

// TestEncodingMatchesPromQL checks the hand-written encoder against
// promql's own MarshalJSON methods on values both format alike (no
// trailing zeros in the milliseconds, no tiny or huge floats).
func TestEncodingMatchesPromQL(t *testing.T) {
	metric := labels.FromStrings("__name__", "a", "x", `<"&">`)
	values := []parser.Value{
		promql.Matrix{},
		promql.Vector{},
		promql.Matrix{
			{Metric: metric, Floats: []promql.FPoint{{T: 1501, F: 1}, {T: 2001, F: -2.25}}},
			{Metric: labels.EmptyLabels(), Histograms: []promql.HPoint{{T: 3000, H: testHistogram()}}},
			{Metric: metric, Floats: []promql.FPoint{{T: 0, F: 0}}, Histograms: []promql.HPoint{{T: 11, H: testHistogram()}}},
		},
		promql.Vector{
			{Metric: metric, T: 1507, F: 123456.789},
			{Metric: metric, T: 123, H: testHistogram()},
		},
		promql.Scalar{T: 4000, V: 2},
		promql.String{T: 1, V: "s"},
	}
	for _, v := range values {
		got, err := json.Marshal(promqlValue{v})
		if err != nil {
			t.Fatalf("%v: %v", v, err)
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%v: %v", v, err)
		}
		if string(want) == "null" {
			want = []byte("[]") // Prometheus renders empty results as [].
		}
		if string(got) != string(want) {
			t.Errorf("%s:\ngot  %s\nwant %s", v.Type(), got, want)
		}
	}
}

// TestEncodingPrometheusFormat pins what Prometheus' jsoniter codec writes
// where promql's MarshalJSON differs: exponents for tiny and huge values,
// and timestamps that always carry three fractional digits when they have
// any (JSON-equal to promql's, byte-for-byte Prometheus').
func TestEncodingPrometheusFormat(t *testing.T) {
	m := promql.Matrix{{
		Metric: labels.FromStrings("__name__", "a"),
		Floats: []promql.FPoint{
			{T: -1500, F: math.NaN()},
			{T: 1, F: math.Inf(1)},
			{T: 1010, F: math.Inf(-1)},
			{T: 1700000000123, F: 1e-7},
			{T: 1700000000120, F: 1e21},
			{T: 1700000000100, F: 1e20},
		},
	}}
	got, err := json.Marshal(promqlValue{m})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"metric":{"__name__":"a"},"values":[[-1.500,"NaN"],[0.001,"+Inf"],[1.010,"-Inf"],[1700000000.123,"1e-07"],[1700000000.120,"1e+21"],[1700000000.100,"100000000000000000000"]]}]`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
