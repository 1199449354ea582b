package opentsdb

import (
	"math"
	"slices"
	"testing"
)

func TestAggregatorFunctions(t *testing.T) {
	nan := math.NaN()
	vs := []float64{3, 1, 4, 1, 5, 9, 2, 6}
	for _, tc := range []struct {
		name string
		in   []float64
		want float64
	}{
		{"sum", vs, 31},
		{"sum", []float64{1, nan, 2}, 3},
		{"sum", []float64{nan, nan}, nan},
		{"zimsum", vs, 31},
		{"min", vs, 1},
		{"min", []float64{nan, 2, nan}, 2},
		{"max", vs, 9},
		{"max", []float64{nan}, nan},
		{"mimmin", vs, 1},
		{"mimmax", vs, 9},
		{"avg", vs, 31.0 / 8},
		{"avg", []float64{nan, 4, 2}, 3},
		{"count", []float64{nan, 4, 2}, 2},
		{"first", vs, 3},
		{"last", vs, 6},
		{"mult", []float64{2, 3, 4}, 24},
		{"median", vs, 4}, // upper median of 1 1 2 3 4 5 6 9
		{"median", []float64{5, 1, 3}, 3},
		{"dev", []float64{2, 4, 4, 4, 5, 5, 7, 9}, 2}, // population standard deviation
		{"dev", []float64{42}, 0},
		// Commons Math's default estimation: position p(n+1).
		{"p50", []float64{1, 2, 3, 4}, 2.5},
		{"p75", []float64{1, 2, 3, 4}, 3.75},
		{"p90", []float64{1, 2, 3, 4}, 4},
		{"p99", []float64{7}, 7},
		{"p50", []float64{nan, 1, 3}, 2},
		// R-7 (numpy's default): position 1+(n-1)p.
		{"ep90r7", []float64{1, 2, 3, 4}, 3.7},
		{"ep50r7", []float64{1, 2, 3, 4}, 2.5},
		// the nearest even rank.
		{"ep50r3", []float64{1, 2, 3, 4}, 2},
		{"ep75r3", []float64{1, 2, 3, 4}, 3},
		{"ep999r3", []float64{1, 2, 3, 4}, 4},
	} {
		agg, ok := aggregators[tc.name]
		if !ok {
			t.Fatalf("no aggregator %s", tc.name)
		}
		got := agg.fn(slices.Clone(tc.in))
		if math.IsNaN(tc.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s(%v) = %v, want %v", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestAggregatorNames(t *testing.T) {
	names := aggregatorNames
	for _, want := range []string{"avg", "count", "dev", "first", "last", "max", "mimmax", "mimmin", "min", "none", "p50", "p999", "ep99r7", "sum", "zimsum"} {
		if !slices.Contains(names, want) {
			t.Errorf("aggregators %v lack %s", names, want)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("aggregators not sorted: %v", names)
	}
}

// TestAggregate is the interpolation example of OpenTSDB's aggregators
// documentation (whose published result row has arithmetic mistakes): A
// and B are offset by 10s; each is linearly interpolated where the other
// has a point, and left out before its first and after its last point.
func TestAggregate(t *testing.T) {
	a := []point{{10, 5}, {30, 15}, {50, 5}}
	b := []point{{0, 10}, {20, 20}, {40, 10}, {60, 20}}
	series := [][]point{a, b}
	for _, tc := range []struct {
		agg   string
		rate  bool
		want  []float64 // at 0, 10, ..., 60
		from  int64
		until int64
	}{
		{agg: "sum", want: []float64{10, 20, 30, 30, 20, 20, 20}},
		{agg: "zimsum", want: []float64{10, 5, 20, 15, 10, 5, 20}},
		{agg: "pfsum", want: []float64{10, 15, 25, 35, 25, 15, 20}},
		{agg: "max", want: []float64{10, 15, 20, 15, 10, 15, 20}},
		{agg: "mimmax", want: []float64{10, 5, 20, 15, 10, 5, 20}},
		{agg: "mimmin", want: []float64{10, 5, 20, 15, 10, 5, 20}},
		{agg: "count", want: []float64{1, 2, 2, 2, 2, 2, 1}},
		{agg: "avg", want: []float64{10, 10, 15, 15, 10, 10, 20}},
		// With rate, the previous value stands in, whatever the aggregator.
		{agg: "sum", rate: true, want: []float64{10, 15, 25, 35, 25, 15, 20}},
		{agg: "zimsum", rate: true, want: []float64{10, 15, 25, 35, 25, 15, 20}},
		// Only the timestamps in range are evaluated, with neighbours outside it.
		{agg: "sum", from: 15, until: 45, want: []float64{30, 30, 20}},
	} {
		from, until := tc.from, tc.until
		if until == 0 {
			until = 60
		}
		ts, work := aggregateWork(series, from, until)
		if work != int64(len(ts)*2) {
			t.Errorf("work %d for %d timestamps", work, len(ts))
		}
		got, _ := aggregate(series, ts, aggregators[tc.agg], tc.rate, nil)
		var vals []float64
		for _, p := range got {
			vals = append(vals, p.v)
		}
		if !slices.Equal(vals, tc.want) {
			t.Errorf("%s (rate %v) over [%d, %d] = %v, want %v", tc.agg, tc.rate, from, until, got, tc.want)
		}
	}
}

func TestDownsample(t *testing.T) {
	pts := func() []point { return []point{{0, 1}, {30_000, 3}, {120_000, 5}, {150_000, 7}, {181_000, 9}} }
	spec := func(s string) *downsampleSpec {
		js, err := parseM("sum:" + s + ":m")
		if err != nil {
			t.Fatal(err)
		}
		sq, err := buildSubQuery(js, 0, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sq.ds
	}
	nan := math.NaN()
	for _, tc := range []struct {
		spec string
		want []point
	}{
		{"1m-avg", []point{{0, 2}, {120_000, 6}, {180_000, 9}}},
		{"1m-sum", []point{{0, 4}, {120_000, 12}, {180_000, 9}}},
		{"1m-count", []point{{0, 2}, {120_000, 2}, {180_000, 1}}},
		{"2m-max", []point{{0, 3}, {120_000, 9}}},
		{"1m-avg-zero", []point{{0, 2}, {60_000, 0}, {120_000, 6}, {180_000, 9}, {240_000, 0}}},
		{"1m-avg-nan", []point{{0, 2}, {60_000, nan}, {120_000, 6}, {180_000, 9}, {240_000, nan}}},
		{"0all-sum", []point{{10_000, 8}}}, // [10s, 150s): 3 + 5
	} {
		got, _ := downsample(pts(), spec(tc.spec), 10_000, 150_000, 0, 270_000, nil)
		if !slices.EqualFunc(got, tc.want, func(a, b point) bool {
			return a.t == b.t && (a.v == b.v || math.IsNaN(a.v) && math.IsNaN(b.v))
		}) {
			t.Errorf("%s: got %v, want %v", tc.spec, got, tc.want)
		}
	}
}

func TestRate(t *testing.T) {
	counter := func() []point { return []point{{0, 0}, {10_000, 100}, {20_000, 300}, {30_000, 50}, {40_000, 150}} }
	for _, tc := range []struct {
		name string
		opts rateOptions
		want []point
	}{
		{"gauge", rateOptions{counterMax: math.MaxInt64}, []point{{10_000, 10}, {20_000, 20}, {30_000, -25}, {40_000, 10}}},
		{"counter wraps at counterMax", rateOptions{counter: true, counterMax: 1000}, []point{{10_000, 10}, {20_000, 20}, {30_000, 75}, {40_000, 10}}},
		{"reset above resetValue", rateOptions{counter: true, counterMax: 1000, resetValue: 50}, []point{{10_000, 10}, {20_000, 20}, {30_000, 0}, {40_000, 10}}},
		{"reset below resetValue", rateOptions{counter: true, counterMax: 1000, resetValue: 100}, []point{{10_000, 10}, {20_000, 20}, {30_000, 75}, {40_000, 10}}},
		{"dropResets", rateOptions{counter: true, counterMax: math.MaxInt64, dropResets: true}, []point{{10_000, 10}, {20_000, 20}, {40_000, 10}}},
	} {
		if got := rate(counter(), tc.opts); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := rate([]point{{0, 1}}, rateOptions{}); len(got) != 0 {
		t.Errorf("rate of one point = %v", got)
	}
}
