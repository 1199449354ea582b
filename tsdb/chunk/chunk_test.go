package chunk

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

func build(t testing.TB, samples []Sample) []byte {
	t.Helper()
	b, err := NewBuilder(DefaultEncoding)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range samples {
		b.Append(s.T, s.V)
	}
	return b.Bytes()
}

func sameSamples(a, b []Sample) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].T != b[i].T || math.Float64bits(a[i].V) != math.Float64bits(b[i].V) {
			return false
		}
	}
	return true
}

func TestRoundTripAcrossFrames(t *testing.T) {
	var in []Sample
	for i := range 3*MaxSamplesPerFrame + 7 {
		in = append(in, Sample{int64(i) * 15000, float64(i) * 1.5})
	}
	in[10].V = math.Float64frombits(value.StaleNaN)
	in[11].V = math.Inf(-1)
	b := build(t, in)
	out, err := Decode(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if !sameSamples(in, out) {
		t.Fatalf("round trip changed samples")
	}
	frames := 0
	for rest := b; len(rest) > 0; frames++ {
		if _, rest, err = ReadFrame(rest); err != nil {
			t.Fatal(err)
		}
	}
	if frames != 4 {
		t.Fatalf("got %d frames, want 4", frames)
	}
}

func TestSeek(t *testing.T) {
	var in []Sample
	for i := range 2 * MaxSamplesPerFrame {
		in = append(in, Sample{int64(i) * 10, float64(i)})
	}
	it := NewIterator(build(t, in))
	for _, target := range []int64{-5, 0, 5, 4790, 4800, 9590} {
		want := (target + 9) / 10 * 10
		if target < 0 {
			want = 0
		}
		if it.Seek(target) != chunkenc.ValFloat || it.AtT() != want {
			t.Fatalf("seek %d: at %d, want %d", target, it.AtT(), want)
		}
	}
	if it.Seek(9591) != chunkenc.ValNone {
		t.Fatalf("seek past the end found a sample")
	}
}

func TestAppendToKeepsBuilderUsable(t *testing.T) {
	b, err := NewBuilder(DefaultEncoding)
	if err != nil {
		t.Fatal(err)
	}
	b.Append(1, 1)
	snap := b.AppendTo(nil)
	b.Append(2, 2)
	got, err := Decode(nil, snap)
	if err != nil || !sameSamples(got, []Sample{{1, 1}}) {
		t.Fatalf("snapshot changed by a later append: %v %v", got, err)
	}
	got, err = Decode(nil, b.Bytes())
	if err != nil || !sameSamples(got, []Sample{{1, 1}, {2, 2}}) {
		t.Fatalf("got %v %v", got, err)
	}
}

func TestCorruptFramesAreErrors(t *testing.T) {
	good := build(t, []Sample{{1000, 1}, {2000, 2}})
	for _, b := range [][]byte{nil, {1}, good[:len(good)-3], append([]byte{99}, good[1:]...)} {
		if _, err := Decode(nil, b); err == nil && len(b) > 0 {
			t.Errorf("decoding %x: no error", b)
		}
	}
}

// FuzzDecode checks that arbitrary bytes never panic the decoder and that
// whatever the builder encodes decodes to the same samples.
func FuzzDecode(f *testing.F) {
	f.Add(build(f, []Sample{{0, 0}, {1, math.NaN()}, {1 << 40, -1}}))
	f.Add([]byte{byte(chunkenc.EncXOR), 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		samples, err := Decode(nil, b)
		if err != nil {
			return
		}
		// Re-encode what was decoded, if it is in order, and compare.
		for i := 1; i < len(samples); i++ {
			if samples[i].T <= samples[i-1].T || samples[i].T < 0 {
				return
			}
		}
		if len(samples) > 0 && samples[0].T < 0 {
			return
		}
		again, err := Decode(nil, build(t, samples))
		if err != nil || !sameSamples(samples, again) {
			t.Fatalf("re-encoding changed samples: %v", err)
		}
	})
}

func benchSamples(n int, gen func(i int, prev float64) float64) []Sample {
	out := make([]Sample, n)
	v := 0.0
	for i := range out {
		v = gen(i, v)
		out[i] = Sample{1_700_000_000_000 + int64(i)*15000, v}
	}
	return out
}

func BenchmarkEncodeDecode(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, bc := range []struct {
		name string
		gen  func(int, float64) float64
	}{
		{"constant", func(int, float64) float64 { return 1 }},
		{"counter", func(_ int, p float64) float64 { return p + float64(rng.IntN(1000)) }},
		{"gauge", func(_ int, p float64) float64 { return math.Round((p+rng.NormFloat64())*100) / 100 }},
	} {
		samples := benchSamples(MaxSamplesPerFrame*100, bc.gen)
		b.Run("encode/"+bc.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				size = len(build(b, samples))
			}
			b.ReportMetric(float64(size)/float64(len(samples)), "bytes/sample")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(samples)), "ns/sample")
		})
		enc := build(b, samples)
		b.Run("decode/"+bc.name, func(b *testing.B) {
			it := NewIterator(nil)
			for b.Loop() {
				it.Reset(enc)
				for it.Next() != chunkenc.ValNone {
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(samples)), "ns/sample")
		})
	}
}
