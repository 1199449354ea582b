package chunk

import (
	"math"
	"math/rand/v2"
	"slices"
)

// This file generates the kinds of series the codecs are measured on: those
// of the benchmark workload (bench/workload.go, which tsdb may not import),
// with its distributions, and kinds real scrapes add.

const (
	genStart   = 1_700_000_040_000 // ms, on a minute
	genDay     = 24 * 60           // samples of a series scraped every minute for a day
	bucketSize = 2 * 3600 * 1000   // ms: the tsdb's default bucket, one value of frames
)

// kind is one kind of series: gen returns the i-th series of the kind.
type kind struct {
	name string
	gen  func(i int) []Sample
}

// workloadKinds are the benchmark workload's kinds with how many of each
// series a host of 100 has.
var workloadKinds = []struct {
	kind
	perHost int
}{
	{kind{"counter", counterSeries}, 36},
	{kind{"gauge", gaugeSeries}, 8},
	{kind{"bucket", func(i int) []Sample { return histogramSeries(i/12, i%12) }}, 48},
	{kind{"sum", func(i int) []Sample { return histogramSeries(i, 12) }}, 4},
	{kind{"count", func(i int) []Sample { return histogramSeries(i, 13) }}, 4},
}

// kinds are the workload's kinds, the workload's mix of them, and kinds
// real scrapes add.
var kinds = func() []kind {
	var ks []kind
	for _, k := range workloadKinds {
		ks = append(ks, k.kind)
	}
	return append(ks,
		kind{"workload", workloadSeries},
		kind{"constant", constantSeries},
		kind{"steady", steadySeries},
		kind{"cpu", cpuSeries},
		kind{"jitter15s", jitterSeries},
		kind{"float", floatSeries},
	)
}()

// minutes returns a day of samples a minute apart with values from next.
func minutes(next func(i int, t int64) float64) []Sample {
	out := make([]Sample, genDay)
	for i := range out {
		t := genStart + int64(i)*60_000
		out[i] = Sample{t, next(i, t)}
	}
	return out
}

func seriesRand(kind, i int) *rand.Rand { return rand.New(rand.NewPCG(uint64(kind), uint64(i))) }

// counterSeries grows by a uniform 0..999 from about 1e6, and resets to 0
// about once in 100,000 samples, like the workload's counters.
func counterSeries(i int) []Sample {
	rng := seriesRand(1, i)
	v := math.Round(rng.Float64() * 1e6)
	return minutes(func(int, int64) float64 {
		if rng.IntN(100_000) == 0 {
			v = 0
		} else {
			v += float64(rng.IntN(1000))
		}
		return v
	})
}

// gaugeSeries is the workload's gauge: a daily sine around 1e6 with
// N(0, 1000) noise, rounded to two decimals.
func gaugeSeries(i int) []Sample {
	rng := seriesRand(2, i)
	phase := rng.Float64() * 2 * math.Pi
	return minutes(func(_ int, t int64) float64 {
		day := 2 * math.Pi * float64(t%86_400_000) / 86_400_000
		return math.Round((1e6+2e5*math.Sin(day+phase)+rng.NormFloat64()*1e3)*100) / 100
	})
}

var histogramBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.Inf(1)}

// histogramSeries is part of the workload's histogram h: bucket 0..11,
// 12 for _sum, 13 for _count. Each minute the histogram takes 50..249
// requests with log-normal durations around a median of 30 to 90 ms.
func histogramSeries(h, part int) []Sample {
	v := 0.0
	return minutes(func(_ int, t int64) float64 {
		x := mix64(uint64(h)<<32 ^ uint64(t))
		requests := float64(50 + x%200)
		median := 0.03 * (1 + 2*float64(x>>32&0xffff)/0xffff)
		switch {
		case part < len(histogramBounds)-1:
			share := 0.5 * math.Erfc(-math.Log(histogramBounds[part]/median)/math.Sqrt2)
			v += math.Round(requests * share)
		case part == len(histogramBounds):
			v += requests * median * math.Exp(0.5)
		default: // +Inf bucket and _count
			v += requests
		}
		return v
	})
}

// workloadSeries mixes the workload's kinds as a host of 100 series does.
func workloadSeries(i int) []Sample {
	k, j := workloadKind(i)
	return k.gen(j)
}

// workloadKind returns the kind of workloadSeries(i) and which series of
// the kind it is.
func workloadKind(i int) (kind, int) {
	host, j := i/100, i%100
	for _, k := range workloadKinds {
		if j < k.perHost {
			return k.kind, host*k.perHost + j
		}
		j -= k.perHost
	}
	panic("unreachable")
}

func constantSeries(i int) []Sample {
	v := float64(seriesRand(3, i).IntN(100))
	return minutes(func(int, int64) float64 { return v })
}

// steadySeries is a counter growing at a constant rate.
func steadySeries(i int) []Sample {
	v := float64(1000 * i)
	return minutes(func(int, int64) float64 { v += 1500; return v })
}

// cpuSeries counts seconds with a resolution of 0.01, like
// node_cpu_seconds_total.
func cpuSeries(i int) []Sample {
	rng := seriesRand(4, i)
	m := rng.Int64N(1e8)
	return minutes(func(int, int64) float64 { m += rng.Int64N(6000); return float64(m) / 100 })
}

// jitterSeries is a counter scraped every 15 s, with timestamps off by up
// to 5 ms either way.
func jitterSeries(i int) []Sample {
	rng := seriesRand(5, i)
	v := math.Round(rng.Float64() * 1e6)
	out := make([]Sample, 4*genDay)
	for j := range out {
		v += float64(rng.IntN(1000))
		out[j] = Sample{genStart + int64(j)*15_000 + rng.Int64N(11) - 5, v}
	}
	return out
}

// floatSeries is a gauge of arbitrary floats, the codec's worst case.
func floatSeries(i int) []Sample {
	rng := seriesRand(6, i)
	return minutes(func(int, int64) float64 { return rng.Float64() * 100 })
}

// mix64 is SplitMix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// buckets splits a series at the tsdb's bucket boundaries, as the head
// does: each bucket is encoded by a builder of its own.
func buckets(s []Sample) [][]Sample {
	var out [][]Sample
	for len(s) > 0 {
		end := (s[0].T/bucketSize + 1) * bucketSize
		n, _ := slices.BinarySearchFunc(s, end, func(x Sample, t int64) int { return int(x.T - t) })
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

// allBuckets splits every series with buckets and counts their samples.
func allBuckets(series [][]Sample) (bs [][]Sample, samples int) {
	for _, s := range series {
		bs = append(bs, buckets(s)...)
		samples += len(s)
	}
	return bs, samples
}
