package chunk

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

func build(t testing.TB, samples []Sample) []byte {
	t.Helper()
	return buildWith(t, DefaultEncoding, samples)
}

func buildWith(t testing.TB, enc chunkenc.Encoding, samples []Sample) []byte {
	t.Helper()
	b, err := NewBuilder(enc)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range samples {
		b.Append(s.T, s.V)
	}
	return b.Bytes()
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
	if firstDifference(in, out) >= 0 {
		t.Fatalf("round trip changed samples")
	}
	var sizes []int
	for rest := b; len(rest) > 0; {
		var f Frame
		if f, rest, err = ReadFrame(rest); err != nil {
			t.Fatal(err)
		}
		samples, err := Decode(nil, AppendFrame(nil, f))
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(samples))
	}
	if want := []int{MaxSamplesPerFrame, MaxSamplesPerFrame, MaxSamplesPerFrame, 7}; !slices.Equal(sizes, want) {
		t.Fatalf("got frames of %v samples, want %v", sizes, want)
	}
}

func TestSeek(t *testing.T) {
	// Samples from t = 1000, so that a fresh iterator's zero state is not
	// mistaken for the first sample.
	var in []Sample
	for i := range 2 * MaxSamplesPerFrame {
		in = append(in, Sample{1000 + int64(i)*10, float64(i + 1)})
	}
	it := NewIterator(build(t, in))
	for _, target := range []int64{-5, 1000, 1005, 5790, 5800, 10590} {
		want := (target + 9) / 10 * 10
		if target < 1000 {
			want = 1000
		}
		if it.Seek(target) != chunkenc.ValFloat || it.AtT() != want {
			t.Fatalf("seek %d: at %d, want %d", target, it.AtT(), want)
		}
		if _, v := it.At(); v != float64((want-1000)/10+1) {
			t.Fatalf("seek %d: value %v", target, v)
		}
	}
	if it.Seek(10591) != chunkenc.ValNone {
		t.Fatalf("seek past the end found a sample")
	}
}

// TestSeekSkipsFrames checks that Seek passes over frames ending before
// its target without decoding them, as format.md promises readers.
func TestSeekSkipsFrames(t *testing.T) {
	b := AppendFrame(nil, Frame{Encoding: EncDecimal, MinT: 0, MaxT: 10, Data: []byte{0}})
	b = append(b, build(t, []Sample{{20, 1}, {30, 2}})...)
	if _, err := Decode(nil, b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("the first frame decodes: %v", err)
	}
	it := NewIterator(b)
	if it.Seek(11) != chunkenc.ValFloat || it.AtT() != 20 || it.Err() != nil {
		t.Fatalf("seek past the corrupt frame: at %d, %v", it.AtT(), it.Err())
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
	if err != nil || firstDifference(got, []Sample{{1, 1}}) >= 0 {
		t.Fatalf("snapshot changed by a later append: %v %v", got, err)
	}
	all := b.Bytes()
	got, err = Decode(nil, all)
	if err != nil || firstDifference(got, []Sample{{1, 1}, {2, 2}}) >= 0 {
		t.Fatalf("got %v %v", got, err)
	}
	if _, rest, err := ReadFrame(all); err != nil || len(rest) > 0 {
		t.Fatalf("AppendTo sealed the open frame: %d bytes after the first frame, %v", len(rest), err)
	}
}

func TestCorruptFramesAreErrors(t *testing.T) {
	good := build(t, []Sample{{1000, 1}, {2000, 2}})
	// withRange is good with its time range replaced.
	withRange := func(mint, span uint64) []byte {
		f, _, err := ReadFrame(good)
		if err != nil {
			t.Fatal(err)
		}
		b := binary.AppendUvarint([]byte{byte(f.Encoding)}, mint)
		b = binary.AppendUvarint(b, span)
		b = binary.AppendUvarint(b, uint64(len(f.Data)))
		return append(b, f.Data...)
	}
	for _, b := range [][]byte{nil, {1}, good[:len(good)-3], append([]byte{99}, good[1:]...),
		withRange(1<<63, 1000), withRange(1, math.MaxInt64)} {
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
		// Re-encode what was decoded, if it is in order from t = 0 on,
		// and compare.
		if len(samples) > 0 && samples[0].T < 0 {
			return
		}
		for i := 1; i < len(samples); i++ {
			if samples[i].T <= samples[i-1].T {
				return
			}
		}
		again, err := Decode(nil, build(t, samples))
		if err != nil || firstDifference(samples, again) >= 0 {
			t.Fatalf("re-encoding changed samples: %v", err)
		}
	})
}

// sink keeps benchmarks' results alive.
var sink float64

// BenchmarkEncodeDecode measures XOR and EncDecimal on each kind of series,
// a day of each series bucketed as the tsdb stores it. encode reports
// bytes/sample, ns/sample and the kind's entropy bound (see entropy) in
// entropy-bytes/sample; decode reports ns/sample, iterating each bucket's
// frames with Next and At as a query does.
func BenchmarkEncodeDecode(b *testing.B) {
	for _, k := range kinds {
		n := 24
		if k.name == "workload" {
			n = 100
		}
		series, group := kindSeries(k, n)
		h := entropy(series, group) / 8
		bucketed, samples := allBuckets(series)
		perSample := func(b *testing.B) float64 {
			return float64(b.Elapsed().Nanoseconds()) / float64(b.N*samples)
		}
		for _, codec := range codecs {
			b.Run(k.name+"/"+codec.name+"/encode", func(b *testing.B) {
				var size int
				for b.Loop() {
					size = encodedSize(b, codec.enc, bucketed)
				}
				b.ReportMetric(float64(size)/float64(samples), "bytes/sample")
				b.ReportMetric(h, "entropy-bytes/sample")
				b.ReportMetric(perSample(b), "ns/sample")
			})
			var encoded [][]byte
			for _, s := range bucketed {
				encoded = append(encoded, buildWith(b, codec.enc, s))
			}
			b.Run(k.name+"/"+codec.name+"/decode", func(b *testing.B) {
				it := NewIterator(nil)
				sum := 0.0
				for b.Loop() {
					for _, e := range encoded {
						it.Reset(e)
						for it.Next() != chunkenc.ValNone {
							_, v := it.At()
							sum += v
						}
					}
				}
				sink = sum
				b.ReportMetric(perSample(b), "ns/sample")
			})
		}
	}
}

// BenchmarkDecodeVsXOR decodes each kind's frames in XOR and EncDecimal
// alternately, so that both see the same machine load, and reports each
// codec's ns/sample and their ratio.
func BenchmarkDecodeVsXOR(b *testing.B) {
	for _, k := range kinds {
		series, _ := kindSeries(k, 24)
		bucketed, samples := allBuckets(series)
		var encoded [2][][]byte
		for _, bucket := range bucketed {
			encoded[0] = append(encoded[0], buildWith(b, chunkenc.EncXOR, bucket))
			encoded[1] = append(encoded[1], buildWith(b, EncDecimal, bucket))
		}
		b.Run(k.name, func(b *testing.B) {
			it := NewIterator(nil)
			var took [2]time.Duration
			sum := 0.0
			for b.Loop() {
				for c, frames := range encoded {
					start := time.Now()
					for _, e := range frames {
						it.Reset(e)
						for it.Next() != chunkenc.ValNone {
							_, v := it.At()
							sum += v
						}
					}
					took[c] += time.Since(start)
				}
			}
			sink = sum
			perSample := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*samples) }
			b.ReportMetric(perSample(took[0]), "xor-ns/sample")
			b.ReportMetric(perSample(took[1]), "decimal-ns/sample")
			b.ReportMetric(float64(took[1])/float64(took[0]), "decimal/xor")
			b.ReportMetric(0, "ns/op")
		})
	}
}
