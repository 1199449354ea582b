package chunk

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// entropy estimates the bits per sample a codec coding each sample from
// the previous ones could not beat, for series of one kind: the Shannon
// entropy of the values' deltas plus that of the timestamps'
// delta-of-deltas (or deltas, if smaller). A series' values are taken as
// integers m / 10^e at the smallest e that holds all of them, or as their
// float64 bits if none does. group names the distribution a series'
// deltas are drawn from, so that series of one distribution are pooled
// and estimated together.
//
// Each distribution is estimated by binnedShannon, so that wide ones
// (gauges' noise, floats' bits) are not bounded by log2 of the sample
// count as the plain plug-in estimate is.
func entropy(series [][]Sample, group func(i int) string) float64 {
	values := map[string][]int64{}
	var deltas, dods []int64
	for i, s := range series {
		g := group(i)
		ints := seriesInts(s)
		for j := 1; j < len(s); j++ {
			values[g] = append(values[g], ints[j]-ints[j-1])
			deltas = append(deltas, s[j].T-s[j-1].T)
			if j > 1 {
				dods = append(dods, s[j].T-2*s[j-1].T+s[j-2].T)
			}
		}
	}
	bits, n := 0.0, 0
	for _, v := range values {
		bits += binnedShannon(v) * float64(len(v))
		n += len(v)
	}
	// Jittered timestamps have more entropy in their delta-of-deltas than
	// in their deltas: take the smaller.
	return bits/float64(n) + min(binnedShannon(deltas), binnedShannon(dods))
}

// seriesInts returns the series' values as integers: see entropy.
func seriesInts(s []Sample) []int64 {
	out := make([]int64, len(s))
	for e := uint8(0); e <= maxExp; e++ {
		ok := true
		for i, x := range s {
			if out[i], ok = toDecimal(x.V, e); !ok {
				break
			}
		}
		if ok {
			return out
		}
	}
	for i, x := range s {
		out[i] = int64(math.Float64bits(x.V))
	}
	return out
}

// binnedShannon estimates in bits the entropy of the distribution that
// drew xs: the plug-in entropy of xs in bins of width w, plus log2 w, with
// w the smallest power of two that leaves at least 16 values a bin on
// average. That is exact for a narrow distribution, where w is 1, and the
// usual estimate for a wide smooth one, whose plug-in entropy would be
// close to log2 len(xs). It sorts xs.
func binnedShannon(xs []int64) float64 {
	slices.Sort(xs)
	for shift := uint(0); ; shift++ {
		// xs stays sorted by x>>shift, so bins are runs.
		var runs []int
		for i := 0; i < len(xs); {
			j := i + 1
			for j < len(xs) && xs[j]>>shift == xs[i]>>shift {
				j++
			}
			runs = append(runs, j-i)
			i = j
		}
		if len(runs)*16 <= len(xs) || len(runs) <= 1 {
			bits := 0.0
			for _, c := range runs {
				p := float64(c) / float64(len(xs))
				bits -= p * math.Log2(p)
			}
			return bits + float64(shift)
		}
	}
}

// kindSeries returns n series of kind k and the grouping entropy pools
// them by: a workload series by its kind and histogram part.
func kindSeries(k kind, n int) ([][]Sample, func(i int) string) {
	series := make([][]Sample, n)
	for i := range series {
		series[i] = k.gen(i)
	}
	group := func(i int) string {
		g := k
		if g.name == "workload" {
			g, i = workloadKind(i)
		}
		if g.name == "bucket" {
			return fmt.Sprint("bucket", i%12) // its histogram part
		}
		return g.name
	}
	return series, group
}

// encodedSize returns the bytes encoding buckets with enc takes, a frame
// builder for each.
func encodedSize(t testing.TB, enc chunkenc.Encoding, buckets [][]Sample) int {
	size := 0
	for _, b := range buckets {
		size += len(buildWith(t, enc, b))
	}
	return size
}

// TestCompressionReport compares, for each kind, the bytes per sample of
// XOR and EncDecimal frames with the entropy bound; go test -v prints the
// table. It fails if EncDecimal loses to XOR on any kind.
func TestCompressionReport(t *testing.T) {
	var report strings.Builder
	fmt.Fprintf(&report, "%-10s %8s %8s %8s %9s\n", "kind", "XOR", "decimal", "entropy", "dec/XOR")
	for _, k := range kinds {
		series, group := kindSeries(k, 100)
		bs, n := allBuckets(series)
		xor, dec := encodedSize(t, chunkenc.EncXOR, bs), encodedSize(t, EncDecimal, bs)
		h := entropy(series, group) / 8
		perSample := func(b int) float64 { return float64(b) / float64(n) }
		fmt.Fprintf(&report, "%-10s %8.3f %8.3f %8.3f %9.2f\n", k.name, perSample(xor), perSample(dec), h, float64(dec)/float64(xor))
		if dec > xor {
			t.Errorf("%s: decimal %d bytes, XOR %d", k.name, dec, xor)
		}
	}
	t.Logf("bytes per sample, frames of 2 h buckets:\n%s", report.String())
}
