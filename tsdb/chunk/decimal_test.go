package chunk

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// codecs are the encodings compared in tests and benchmarks, by name:
// chunkenc's String does not know EncDecimal.
var codecs = []struct {
	name string
	enc  chunkenc.Encoding
}{{"xor", chunkenc.EncXOR}, {"decimal", EncDecimal}}

// edgeValues are float64s a codec may get wrong.
var edgeValues = []float64{
	0, math.Copysign(0, -1), 1, -1, 0.1, 0.3, 0.1 + 0.2, 1e-320, -1e-320, // subnormals
	math.SmallestNonzeroFloat64, math.MaxFloat64, -math.MaxFloat64,
	math.Inf(1), math.Inf(-1), math.NaN(), math.Float64frombits(value.StaleNaN),
	math.Float64frombits(0x7ff8dead_beef0001), math.Float64frombits(0xfff0000000000001), // NaN payloads
	1 << 53, 1<<53 + 2, -(1 << 53), 1 << 62, 1 << 63, 1e300, 1e-300, 1e22, 1e23, 1e-22, 1e-23,
	9007199254740993, 123456789.123456789, 4503599627370495.5, 0.000001, 1234.5678, -99.99,
}

// edgeSeries are series of edge cases, each run through every encoding.
var edgeSeries = map[string][]Sample{
	"one sample":  {{1000, 1}},
	"two samples": {{1000, 1}, {1001, 2}},
	"edge values": func() []Sample {
		var s []Sample
		for i, v := range edgeValues {
			s = append(s, Sample{int64(i) * 1000, v})
		}
		return s
	}(),
	"edge values after a counter": func() []Sample {
		var s []Sample
		for i, v := range edgeValues {
			s = append(s, Sample{int64(2*i) * 1000, float64(i * 100)}, Sample{int64(2*i+1) * 1000, v})
		}
		return s
	}(),
	"stale marker ends a counter": func() []Sample {
		s := counterSeries(0)[:100]
		s[99].V = math.Float64frombits(value.StaleNaN)
		return s
	}(),
	"growing exponent": func() []Sample {
		var s []Sample
		for i := range 30 {
			s = append(s, Sample{int64(i) * 1000, 1 + math.Pow(10, -float64(i%23))})
		}
		return s
	}(),
	"exponent too big to rescale": {{0, 1e15}, {1, 0.5}, {2, 1e15}, {3, 1e15 + 1}, {4, 0.25}},
	"decimals and floats interleaved": func() []Sample {
		rng := rand.New(rand.NewPCG(1, 1))
		var s []Sample
		for i := range 200 {
			v := float64(rng.IntN(100)) / 10
			if rng.IntN(3) == 0 {
				v = rng.Float64()
			}
			s = append(s, Sample{int64(i) * 1000, v})
		}
		return s
	}(),
	"random bits": func() []Sample {
		rng := rand.New(rand.NewPCG(2, 2))
		var s []Sample
		for i := range 500 {
			s = append(s, Sample{int64(i) * 1000, math.Float64frombits(rng.Uint64())})
		}
		return s
	}(),
	"wild timestamps": func() []Sample {
		rng := rand.New(rand.NewPCG(3, 3))
		var s []Sample
		t := int64(0)
		for i := range 500 {
			t += 1 + rng.Int64N(1<<uint(rng.IntN(40)))
			s = append(s, Sample{t, float64(i)})
		}
		return append(s, Sample{math.MaxInt64 - 1, 1}, Sample{math.MaxInt64, 2})
	}(),
	"negative and huge decimals": func() []Sample {
		var s []Sample
		for i := range 100 {
			s = append(s, Sample{int64(i) * 15000, float64(int64(i%7-3) * (1 << 50))}, Sample{int64(i)*15000 + 1, -float64(i) / 100})
		}
		return s
	}(),
	"big residual then steady": func() []Sample {
		var s []Sample
		for i := range 100 {
			v := float64(i)
			if i == 50 {
				v = 1e15
			}
			s = append(s, Sample{int64(i) * 1000, v})
		}
		return s
	}(),
}

func sampleSets() map[string][]Sample {
	sets := map[string][]Sample{}
	for name, s := range edgeSeries {
		sets[name] = s
	}
	for _, k := range kinds {
		sets[k.name] = k.gen(7)
	}
	return sets
}

// TestRoundTrip checks that every encoding returns every sample bit for
// bit, across frames.
func TestRoundTrip(t *testing.T) {
	for name, in := range sampleSets() {
		for _, codec := range codecs {
			t.Run(name+"/"+codec.name, func(t *testing.T) {
				out, err := Decode(nil, buildWith(t, codec.enc, in))
				if err != nil {
					t.Fatal(err)
				}
				if i := firstDifference(in, out); i >= 0 {
					t.Fatalf("sample %d of %d: got %v, want %v", i, len(in), at(out, i), at(in, i))
				}
			})
		}
	}
}

func firstDifference(a, b []Sample) int {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i].T != b[i].T || math.Float64bits(a[i].V) != math.Float64bits(b[i].V) {
			return i
		}
	}
	return -1
}

func at(s []Sample, i int) string {
	if i >= len(s) {
		return "nothing"
	}
	return fmt.Sprintf("%d %v (%#x)", s[i].T, s[i].V, math.Float64bits(s[i].V))
}

// TestToDecimal checks decimals whose m has 16 digits, from 2^52 on,
// where rounding f with f + 0.5 would round to even and miss m.
func TestToDecimal(t *testing.T) {
	for _, c := range []struct {
		m int64
		e uint8
	}{{1<<52 + 1, 0}, {1<<52 + 1, 2}, {-(1<<52 + 3), 7}, {1<<53 - 1, 0}, {12345, 2}, {-1, 0}, {0, maxExp}} {
		v := float64(c.m) / pow10[c.e]
		if m, ok := toDecimal(v, c.e); !ok || m != c.m {
			t.Errorf("toDecimal(%v, %d) = %d, %v; want %d", v, c.e, m, ok, c.m)
		}
	}
}

// TestMinDecimal checks minDecimal, which rules out most floats with one
// test, against trying every exponent.
func TestMinDecimal(t *testing.T) {
	plain := func(v float64, from uint8, limit float64) (uint8, int64, bool) {
		for e := from; e <= maxExp && math.Abs(v)*pow10[e] < limit; e++ {
			if m, ok := toDecimal(v, e); ok {
				return e, m, true
			}
		}
		return 0, 0, false
	}
	rng := rand.New(rand.NewPCG(5, 5))
	values := append([]float64(nil), edgeValues...)
	for range 200_000 {
		digits := float64(rng.Int64N(1 << rng.IntN(54)))
		values = append(values,
			digits/pow10[rng.IntN(maxExp+1)],
			math.Nextafter(digits/pow10[rng.IntN(maxExp+1)], 0), // just off a decimal
			rng.Float64()*pow10[rng.IntN(maxExp+1)],
			math.Float64frombits(rng.Uint64()))
	}
	for _, v := range values {
		from, limit := uint8(rng.IntN(maxExp+2)), math.Ldexp(1, 1+rng.IntN(53))
		e1, m1, ok1 := minDecimal(v, from, limit)
		e2, m2, ok2 := plain(v, from, limit)
		if e1 != e2 || m1 != m2 || ok1 != ok2 {
			t.Fatalf("minDecimal(%v, %d, %v) = %d, %d, %v; trying every e gives %d, %d, %v", v, from, limit, e1, m1, ok1, e2, m2, ok2)
		}
	}
}

// TestAppendToAfterEverySample checks that the open frame decodes at every
// point: the encoder holds bits back, and AppendTo must not depend on
// what comes later.
func TestAppendToAfterEverySample(t *testing.T) {
	for name, in := range sampleSets() {
		in = in[:min(len(in), MaxSamplesPerFrame+20)]
		t.Run(name, func(t *testing.T) {
			b, err := NewBuilder(EncDecimal)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range in {
				b.Append(s.T, s.V)
				out, err := Decode(nil, b.AppendTo(nil))
				if err != nil {
					t.Fatalf("after %d samples: %v", i+1, err)
				}
				if j := firstDifference(in[:i+1], out); j >= 0 {
					t.Fatalf("after %d samples: sample %d: got %v, want %v", i+1, j, at(out, j), at(in, j))
				}
			}
		})
	}
}

// goldenSeries are the series of testdata/decimal_golden.txt, made of
// constants, integer arithmetic and IEEE division only, so that every
// platform makes the same samples.
var goldenSeries = map[string][]Sample{
	"edge values":                 edgeSeries["edge values"],
	"exponent too big to rescale": edgeSeries["exponent too big to rescale"],
	"big residual then steady":    edgeSeries["big residual then steady"],
	"negative and huge decimals":  edgeSeries["negative and huge decimals"],
	"code ending in zero bytes":   {{1000, 1<<39 + 1<<19}},
	"jittered counter": func() []Sample {
		var s []Sample
		v := 1e6
		for i := range 200 {
			x := mix64(uint64(i))
			v += float64(x % 1000)
			s = append(s, Sample{genStart + int64(i)*15_000 + int64(x>>32%11) - 5, v})
		}
		return s
	}(),
	"decimals and floats": func() []Sample {
		var s []Sample
		for i := range 120 {
			x := mix64(uint64(i) + 1<<32)
			v := float64(x%100_000) / pow10[x>>32%6]
			if x>>48%4 == 0 {
				v = math.Float64frombits(0x3ff<<52 | x>>12) // in [1, 2)
			}
			s = append(s, Sample{int64(i) * 1000, v})
		}
		return s
	}(),
	"two frames of a steady counter": func() []Sample {
		var s []Sample
		for i := range MaxSamplesPerFrame + 20 {
			s = append(s, Sample{genStart + int64(i)*60_000, 1e6 + 1.5*float64(i)})
		}
		return s
	}(),
}

// TestDecimalGolden pins the format: frames in testdata/decimal_golden.txt,
// written by the codec's first version, must decode to their samples for
// as long as such frames may be stored. The writer must still write them
// byte for byte, so that its output changes only on purpose; a writer
// changed on purpose keeps these frames as decoding checks.
func TestDecimalGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/decimal_golden.txt")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(goldenSeries) {
		t.Errorf("%d golden frames for %d series", len(lines), len(goldenSeries))
	}
	for _, line := range lines {
		name, h, _ := strings.Cut(line, "\t")
		in, ok := goldenSeries[name]
		frames, err := hex.DecodeString(h)
		if !ok || err != nil {
			t.Fatalf("golden line %.40q: series %v, %v", line, ok, err)
		}
		out, err := Decode(nil, frames)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if i := firstDifference(in, out); i >= 0 {
			t.Errorf("%s: sample %d of %d: got %v, want %v", name, i, len(in), at(out, i), at(in, i))
		}
		if got := buildWith(t, EncDecimal, in); !bytes.Equal(got, frames) {
			t.Errorf("%s: the writer's frames changed to\n%s\t%x", name, name, got)
		}
	}
}

// TestDecimalFrameSizes pins sizes the codec is meant to reach.
func TestDecimalFrameSizes(t *testing.T) {
	frame := func(s []Sample) int {
		f, rest, err := ReadFrame(buildWith(t, EncDecimal, s))
		if err != nil || len(rest) != 0 {
			t.Fatalf("want one frame: %v", err)
		}
		return len(f.Data)
	}
	var constant, steady []Sample
	for i := range 120 {
		constant = append(constant, Sample{genStart + int64(i)*60_000, 42})
		steady = append(steady, Sample{genStart + int64(i)*60_000, 1e6 + float64(i)*1.5})
	}
	// Regular timestamps take no bits and a settled constant or steady
	// rate none either: what is left is n, the length of the timestamps
	// and the values' first samples.
	if n := frame(constant); n > 5 {
		t.Errorf("constant series: %d bytes of data", n)
	}
	if n := frame(steady); n > 9 {
		t.Errorf("steady counter: %d bytes of data", n)
	}
}

// TestSeekLikeXOR runs the same random calls of Next and Seek on XOR and
// EncDecimal frames of the same samples and expects the same answers.
func TestSeekLikeXOR(t *testing.T) {
	for name, in := range sampleSets() {
		rng := rand.New(rand.NewPCG(4, 4)) // per series, so map order does not matter
		if len(in) > 2000 {
			in = in[:2000]
		}
		xor, dec := NewIterator(buildWith(t, chunkenc.EncXOR, in)), NewIterator(buildWith(t, EncDecimal, in))
		for step := 0; ; step++ {
			var a, b chunkenc.ValueType
			what := "next"
			if rng.IntN(3) == 0 {
				// At, just before or just after a sample, or out of range.
				target := in[rng.IntN(len(in))].T
				switch rng.IntN(5) {
				case 0:
					target--
				case 1:
					target = min(target, math.MaxInt64-1) + 1
				case 2:
					target = []int64{math.MinInt64, in[0].T - 5, math.MaxInt64}[rng.IntN(3)]
				}
				what = fmt.Sprint("seek ", target)
				a, b = xor.Seek(target), dec.Seek(target)
			} else {
				a, b = xor.Next(), dec.Next()
			}
			if a != b {
				t.Fatalf("%s: step %d, %s: XOR %v, decimal %v", name, step, what, a, b)
			}
			if a == chunkenc.ValNone {
				if xor.Err() != nil || dec.Err() != nil {
					t.Fatalf("%s: errors %v, %v", name, xor.Err(), dec.Err())
				}
				break
			}
			ta, va := xor.At()
			tb, vb := dec.At()
			if ta != tb || math.Float64bits(va) != math.Float64bits(vb) {
				t.Fatalf("%s: step %d, %s: XOR at %d %v, decimal at %d %v", name, step, what, ta, va, tb, vb)
			}
		}
	}
}

// TestCorruptDecimalFrames checks that damaged frames give ErrCorrupt for
// the damage done, never a panic, and no sample outside the frame's range
// or out of order before the error.
func TestCorruptDecimalFrames(t *testing.T) {
	for _, c := range []struct {
		name, err  string // err: words of the error for the damage
		mint, maxt int64
		data       []byte
	}{
		{"no data", "sample count", 0, 0, nil},
		{"no samples", "sample count", 0, 0, []byte{0, 0}},
		{"more samples than ms", "sample count", 0, 1, []byte{3, 0}},
		{"too many samples", "sample count", 0, 1 << 40, []byte{0x80, 0x80, 0x08, 0}},
		{"times past the end", "timestamps length", 0, 10, []byte{2, 5, 1}},
		{"irregular without timestamps", "irregular time range", 0, 10, []byte{4, 0}},
		{"times for one sample", "timestamps for one sample", 0, 0, []byte{1, 1, 0xff}},
		{"time range of one sample", "time range of one sample", 0, 5, []byte{1, 0}},
		{"unknown mode", "mode", 0, 0, []byte{1, 0, 23 << 3}},
		{"timestamps short of maxt", "out of order or range", 0, 100, []byte{3, 2, 0x0a, 0x80, 0}},
		{"timestamp going back", "out of order or range", 0, 100, []byte{3, 2, 0x08, 0x40, 0}},
		{"timestamp past maxt", "out of order or range", 0, 100, []byte{3, 2, 0x13, 0x20, 0}},
		{"escape for a raw timestamp", "escape in timestamps", 0, 100, []byte{3, 1, 0x80, 0}},
		{"escape for a timestamp residual", "escape in timestamps", 0, 100, []byte{3, 3, 0x0a, 0x9f, 0xe0, 0}},
	} {
		out, err := Decode(nil, AppendFrame(nil, Frame{Encoding: EncDecimal, MinT: c.mint, MaxT: c.maxt, Data: c.data}))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: got %v, want ErrCorrupt for %s", c.name, err, c.err)
		}
		for i, s := range out {
			if s.T < c.mint || s.T > c.maxt || i > 0 && s.T <= out[i-1].T {
				t.Errorf("%s: sample %d at %d before the error", c.name, i, s.T)
			}
		}
	}
	// Every truncation of a value either ends at a frame boundary or is
	// an error; flipped bits give samples or an error.
	good := build(t, counterSeries(1)[:3*MaxSamplesPerFrame/2])
	_, second, _ := ReadFrame(good)
	for n := range len(good) {
		if samples, err := Decode(nil, good[:n]); err == nil && n > 0 && n != len(good)-len(second) {
			t.Errorf("truncated to %d bytes: %d samples, no error", n, len(samples))
		}
	}
	for i := range 8 * len(good) {
		b := append([]byte(nil), good...)
		b[i/8] ^= 1 << (i % 8)
		if _, err := Decode(nil, b); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("bit %d flipped: %v, want ErrCorrupt", i, err)
		}
	}
}

// fuzzSamples turns fuzz bytes into samples in time order, mixing the
// value shapes the codec treats differently.
func fuzzSamples(b []byte) []Sample {
	var out []Sample
	t, v := int64(0), 0.0
	next := func() byte {
		if len(b) == 0 {
			return 0
		}
		c := b[0]
		b = b[1:]
		return c
	}
	for len(b) > 0 && len(out) < 2*MaxSamplesPerFrame {
		op := next()
		switch op >> 5 {
		case 0: // regular step, same value
		case 1: // counter step
			v += float64(next())
		case 2: // decimal with up to 7 digits after the point
			v = float64(int64(next())<<8|int64(next())) / math.Pow10(int(op&7))
		case 3: // arbitrary bits
			var u uint64
			for range 8 {
				u = u<<8 | uint64(next())
			}
			v = math.Float64frombits(u)
		case 4:
			v = edgeValues[int(next())%len(edgeValues)]
		case 5: // negative counter step
			v -= float64(next()) / 4
		}
		if op&16 != 0 {
			t += int64(next()) << (op & 7 * 4)
		}
		t += 15_000
		out = append(out, Sample{t, v})
	}
	return out
}

// FuzzRoundTrip checks that EncDecimal returns whatever it is given, also
// from the open frame, and agrees with XOR.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0x20, 5, 0x20, 7, 0x00, 0x40 | 2, 1, 2, 0x80, 3, 0x60, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{0x80, 15, 0x80, 14, 0x20, 1, 0x10 | 0x20, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := fuzzSamples(b)
		builder, _ := NewBuilder(EncDecimal)
		for i, s := range in {
			builder.Append(s.T, s.V)
			if i == len(in)/2 {
				out, err := Decode(nil, builder.AppendTo(nil))
				if err != nil || firstDifference(in[:i+1], out) >= 0 {
					t.Fatalf("open frame after %d samples: %v", i+1, err)
				}
			}
		}
		out, err := Decode(nil, builder.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if i := firstDifference(in, out); i >= 0 {
			t.Fatalf("sample %d of %d: got %v, want %v", i, len(in), at(out, i), at(in, i))
		}
		xor, err := Decode(nil, buildWith(t, chunkenc.EncXOR, in))
		if err != nil || firstDifference(xor, out) >= 0 {
			t.Fatalf("XOR disagrees: %v", err)
		}
	})
}

// FuzzDecodeDecimal feeds arbitrary data to the decoder in a valid frame
// header: it must not panic, must fail only with ErrCorrupt, and whatever
// it decodes must survive a round trip.
func FuzzDecodeDecimal(f *testing.F) {
	for _, s := range []([]Sample){counterSeries(0)[:50], gaugeSeries(0)[:50], jitterSeries(0)[:50], edgeSeries["edge values"]} {
		fr, _, _ := ReadFrame(buildWith(f, EncDecimal, s))
		f.Add(fr.MinT, fr.MaxT-fr.MinT, fr.Data)
	}
	f.Fuzz(func(t *testing.T, mint, span int64, data []byte) {
		if mint < 0 || span < 0 || span > math.MaxInt64-mint {
			return
		}
		samples, err := Decode(nil, AppendFrame(nil, Frame{Encoding: EncDecimal, MinT: mint, MaxT: mint + span, Data: data}))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again, err := Decode(nil, buildWith(t, EncDecimal, samples))
		if err != nil || firstDifference(samples, again) >= 0 {
			t.Fatalf("re-encoding changed samples: %v", err)
		}
	})
}
