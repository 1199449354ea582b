package chunk

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// EncDecimal names frames written by this package's decimal codec. It is
// far above the small numbers chunkenc gives its encodings, so a future
// Prometheus encoding will not take it.
//
// The codec stores most values as decimals m / 10^e with an integer m, so
// the integer counters and fixed-point gauges that make up most metrics
// code as small integer residuals rather than as XORs of float64 bits.
// Each frame holds two bit streams, timestamps and values, each coded as
// residuals against an adaptive prediction with adaptive Rice codes; the
// exact layout is in tsdb/docs/format.md.
const EncDecimal chunkenc.Encoding = 0x80

const (
	// unaryMax is the Rice quotient from which a residual takes the
	// escape path: unaryMax ones, then 0 and a big residual, or 1 and a
	// mode change.
	unaryMax = 7
	// modeBits is the width of a mode: a decimal exponent 0..maxExp, or
	// modeFloat.
	modeBits  = 5
	modeFloat = 1<<modeBits - 1
	// maxExp is the largest decimal exponent: 1e22 is the largest power of
	// ten a float64 holds exactly.
	maxExp = 22
	// maxDecimal bounds |m|, so that float64(m) is exact.
	maxDecimal = 1 << 53
	// warmSteps is how many residuals after a reset count as warm-up:
	// they set the lane's means without the clamping meant for outliers.
	warmSteps = 4
	// maxFrameSamples bounds the sample count a decoder accepts, so a
	// corrupt count cannot make it spin.
	maxFrameSamples = 1 << 16
)

var pow10 = [maxExp + 1]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// pow10Wrapped holds 10^i modulo 2^64, for rescaling integers with the
// same wrapping arithmetic on both sides.
var pow10Wrapped = func() (p [maxExp + 1]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// toDecimal returns m with float64(m)/10^e == v bit for bit, if there is
// one with |m| < maxDecimal.
func toDecimal(v float64, e uint8) (int64, bool) {
	f := v * pow10[e]
	if !(f > -maxDecimal && f < maxDecimal) { // also rejects NaN
		return 0, false
	}
	// m is f rounded half away from zero, as by math.Round, which this
	// per-sample path cannot afford as it is not inlined. From 2^52 on f is
	// an integer, and f ± 0.5 would round to even.
	var m int64
	switch {
	case f >= 1<<52 || f <= -1<<52:
		m = int64(f)
	case f >= 0:
		m = int64(f + 0.5)
	default:
		m = int64(f - 0.5)
	}
	return m, math.Float64bits(float64(m)/pow10[e]) == math.Float64bits(v)
}

// minDecimal returns the smallest exponent e >= from at which v is a
// decimal with |v|*10^e < limit, and its m; limit is at most maxDecimal.
func minDecimal(v float64, from uint8, limit float64) (uint8, int64, bool) {
	a := math.Abs(v)
	if from > maxExp || !(a*pow10[from] < limit) { // also NaN and infinities
		return 0, 0, false
	}
	if m, ok := toDecimal(v, from); ok {
		return from, m, true
	}
	top := from // the largest exponent to try
	for top < maxExp && a*pow10[top+1] < limit {
		top++
	}
	// If v is m / 10^e for some e <= top, the integer |m|*10^(top-e) lies
	// within 10^top*ulp(a)/2 of a*10^top, and f within ulp(f)/2 of that,
	// so f lies within tol/2 of an integer; the test allows tol, a margin
	// for the rounding of tol itself. Most floats fail it and are ruled
	// out without a division per exponent. TestMinDecimal checks this
	// against trying every exponent.
	f := a * pow10[top]
	if tol := pow10[top]*ulp(a) + ulp(f); !(math.Abs(f-math.Round(f)) <= tol) {
		return 0, 0, false
	}
	for e := from + 1; e <= top; e++ {
		if m, ok := toDecimal(v, e); ok {
			return e, m, true
		}
	}
	return 0, 0, false
}

// ulp returns the distance from a >= 0 to the next float64 up.
func ulp(a float64) float64 { return math.Float64frombits(math.Float64bits(a)+1) - a }

func zigzag(r int64) uint64   { return uint64(r<<1) ^ uint64(r>>63) }
func unzigzag(z uint64) int64 { return int64(z>>1) ^ -int64(z&1) }

// lane is the model of one integer sequence: timestamps, or a frame's
// values as decimal integers or float64 bits. The encoder and the decoder
// run the same updates, so it costs no bits. It predicts each element as
// the last one plus a running mean of the deltas, which centres uniform
// counter increments, follows steady rates exactly and leaves gauges'
// noise; the residual's Rice parameter k comes from a running mean of the
// residuals' zigzag codes.
type lane struct {
	x int64 // last element
	a int64 // 16 times the running mean of the deltas
	s int64 // 16 times the running mean of the residuals' zigzag codes
	// seen counts residuals since the last reset, saturating at 16; 0
	// means the next delta is coded raw.
	seen uint8
}

func (l *lane) reset(x int64) { *l = lane{x: x} }

// pred predicts the next element.
func (l *lane) pred() int64 { return l.x + (l.a+8)>>4 }

// k is the Rice parameter for the next residual: floor(log2) of the mean
// zigzag code. The shift by 5 is tuned on the benchmark workload: with 4
// or 6, TestCompressionReport's workload takes 1.569 or 1.644 bytes a
// sample instead of 1.541.
func (l *lane) k() uint { return uint(bits.Len64(uint64(l.s >> 5))) }

// raw records the first delta after a reset, which was coded raw.
func (l *lane) raw(x int64) {
	l.a = (x - l.x) << 4
	l.x, l.seen = x, 1
}

// step records element x, whose residual's zigzag code z was coded with
// parameter k = l.k(), as a big residual if big. Callers pass the k they
// coded with: recomputing it here slows decoding floats by about 2%.
func (l *lane) step(x int64, z uint64, k uint, big bool) {
	j := l.seen
	// Early on, weights near 1/n make the means plain averages so a new
	// frame settles in a few samples; later they are running means with
	// weight 1/16. fastNext repeats the later case.
	shA, shS := uint(min(bits.Len8(j), 4)), uint(min(bits.Len8(j-1), 4))
	z = min(z, 1<<57)
	if big && j >= warmSteps {
		// An outlier, such as a counter reset: it should move the
		// means little, but a lasting change of scale still raises k by
		// about one per sample.
		z = min(z, 16<<k)
	} else {
		l.a += ((x-l.x)<<4 - l.a) >> shA
	}
	l.s += (int64(z<<4) - l.s) >> shS
	l.x = x
	if j < 16 {
		l.seen++
	}
}

// fastNext decodes the next element from r in the common case, a Rice
// code already in r's buffer for a settled lane: readResidual and step
// inlined. Otherwise it returns false and consumes nothing.
func (l *lane) fastNext(r *bitReader) (int64, bool) {
	if r.n < 32 {
		r.refill()
	}
	k := l.k()
	q := uint(bits.LeadingZeros64(^r.acc))
	c := q + 1 + k
	if l.seen < 16 || q >= unaryMax || c > r.n {
		return 0, false
	}
	z := uint64(q)<<k | r.acc<<(q+1)>>(64-k)
	r.acc <<= c
	r.n -= c
	x := l.pred() + unzigzag(z)
	l.a += ((x-l.x)<<4 - l.a) >> 4
	l.s += (int64(min(z, 1<<57)<<4) - l.s) >> 4
	l.x = x
	return x, true
}

// rescale multiplies the lane by 10^de, when the decimal exponent grows.
func (l *lane) rescale(de uint8) {
	p := pow10Wrapped[de]
	l.x = int64(uint64(l.x) * p)
	l.a = int64(uint64(l.a) * p)
	for range de {
		l.s = min(l.s, 1<<61/10) * 10
	}
}

// residualBits is the size of the code for x in lane l, an estimate of
// how well a mode fits.
func (l *lane) residualBits(x int64) uint {
	if l.seen == 0 {
		return 1 + lenBits(zigzag(x-l.x))
	}
	z, k := zigzag(x-l.pred()), l.k()
	if q := z >> k; q < unaryMax {
		return uint(q) + 1 + k
	}
	return unaryMax + 1 + lenBits(z)
}

// decimalEncoder appends samples to one frame of EncDecimal.
type decimalEncoder struct {
	n      int // samples appended
	times  bitWriter
	values bitWriter
	tl, vl lane
	// irregular is set once a time residual is not zero; until then the
	// frame leaves out times, as every interval is the first.
	irregular bool
	mode      uint8  // decimal exponent or modeFloat
	last      uint64 // bits of the last value
}

// reset empties the encoder for a new frame, keeping its buffers.
func (e *decimalEncoder) reset() {
	*e = decimalEncoder{times: e.times, values: e.values}
	e.times.reset()
	e.values.reset()
}

// append adds a sample; t must be greater than the last one.
func (e *decimalEncoder) append(t int64, v float64) {
	switch e.n {
	case 0:
		e.tl.reset(t)
		e.first(v)
	case 1:
		e.times.write(0, 1)
		e.times.writeLen(zigzag(t - e.tl.x))
		e.tl.raw(t)
		e.value(v)
	default:
		z := zigzag(t - e.tl.pred())
		e.irregular = e.irregular || z != 0
		k := e.tl.k()
		e.tl.step(t, z, k, e.times.writeResidual(z, k))
		e.value(v)
	}
	e.last = math.Float64bits(v)
	e.n++
}

// first starts the values with v: its mode and its raw code.
func (e *decimalEncoder) first(v float64) {
	if exp, m, ok := minDecimal(v, 0, maxDecimal); ok {
		e.mode = exp
		e.values.write(uint64(exp), modeBits)
		e.values.writeLen(zigzag(m))
		e.vl.reset(m)
		return
	}
	e.mode = modeFloat
	e.values.write(modeFloat, modeBits)
	e.rawFloat(v)
}

// rawFloat codes v's bits XORed with the previous value's and resets the
// lane to them.
func (e *decimalEncoder) rawFloat(v float64) {
	b := math.Float64bits(v)
	e.values.writeLen(b ^ e.last)
	e.vl.reset(int64(b))
}

// value codes v after the first sample.
func (e *decimalEncoder) value(v float64) {
	if math.Float64bits(v) == e.last {
		// A repeat, common in real series: in either mode the element
		// is the last one.
		e.code(e.vl.x)
		return
	}
	if e.mode != modeFloat {
		if m, ok := toDecimal(v, e.mode); ok {
			e.code(m)
			return
		}
		if exp, m, ok := minDecimal(v, e.mode+1, maxDecimal); ok {
			e.escape(exp)
			e.vl.rescale(exp - e.mode)
			e.mode = exp
			e.code(m)
			return
		}
		e.escape(modeFloat)
		e.mode = modeFloat
		e.rawFloat(v)
		return
	}
	x := int64(math.Float64bits(v))
	escape := uint(unaryMax + 1)
	if e.vl.seen == 0 {
		escape = 1
	}
	// Coding v as a decimal takes at least escape+modeBits+5+
	// max(len(zigzag(m)), 1) bits (see lenBits), fewer than coding x only
	// if len(zigzag(m)) < n, which needs |m| < 2^(n-1): minDecimal need
	// not look further.
	size := e.vl.residualBits(x)
	if n := int(size) - int(escape+modeBits+5); n >= 2 {
		exp, m, ok := minDecimal(v, 0, math.Ldexp(1, min(n-1, 53)))
		if ok && escape+modeBits+lenBits(zigzag(m)) < size {
			e.escape(exp)
			e.mode = exp
			e.values.writeLen(zigzag(m))
			e.vl.reset(m)
			return
		}
	}
	e.code(x)
}

// escape writes a change to mode, in the place of a residual.
func (e *decimalEncoder) escape(mode uint8) {
	if e.vl.seen == 0 {
		e.values.write(1, 1)
	} else {
		e.values.write(1<<(unaryMax+1)-1, unaryMax+1)
	}
	e.values.write(uint64(mode), modeBits)
}

// code writes x as a residual in the values lane.
func (e *decimalEncoder) code(x int64) {
	if e.vl.seen == 0 {
		e.values.write(0, 1)
		e.values.writeLen(zigzag(x - e.vl.x))
		e.vl.raw(x)
		return
	}
	z := zigzag(x - e.vl.pred())
	k := e.vl.k()
	e.vl.step(x, z, k, e.values.writeResidual(z, k))
}

// writeResidual writes z as a Rice code with parameter k: q = z>>k in
// unary (q ones and a zero) and k low bits; from q = unaryMax on,
// unaryMax ones, a zero and writeLen(z). It reports whether it took that
// big form.
func (w *bitWriter) writeResidual(z uint64, k uint) (big bool) {
	if q := z >> k; q < unaryMax {
		w.write((1<<q-1)<<1, uint(q)+1)
		w.write(z&(1<<k-1), k)
		return false
	}
	w.write(1<<(unaryMax+1)-2, unaryMax+1)
	w.writeLen(z)
	return true
}

// appendFrame appends the open frame, spanning [mint, maxt], to dst.
func (e *decimalEncoder) appendFrame(dst []byte, mint, maxt int64) []byte {
	tsLen, vLen := 0, e.values.trimmedLen()
	if e.irregular {
		tsLen = e.times.trimmedLen()
	}
	size := uvarintLen(uint64(e.n)) + uvarintLen(uint64(tsLen)) + tsLen + vLen
	dst = appendHeader(dst, EncDecimal, mint, maxt, size)
	dst = binary.AppendUvarint(dst, uint64(e.n))
	dst = binary.AppendUvarint(dst, uint64(tsLen))
	dst = e.times.appendTrimmed(dst, tsLen)
	return e.values.appendTrimmed(dst, vLen)
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// decimalIterator decodes one EncDecimal frame. It implements
// chunkenc.Iterator with the semantics of Prometheus' XOR iterator.
type decimalIterator struct {
	times, values bitReader
	tl, vl        lane
	// regular is set when the frame has no times: every interval is d1.
	regular bool
	d1      int64
	maxt    int64
	i, n    int // samples read, samples in the frame
	mode    uint8
	t       int64
	v       float64
	err     error
}

// reset starts decoding frame f.
func (it *decimalIterator) reset(f Frame) error {
	*it = decimalIterator{}
	b := f.Data
	n, k := binary.Uvarint(b)
	span := uint64(f.MaxT - f.MinT)
	if k <= 0 || n == 0 || n > maxFrameSamples || n-1 > span { // ReadFrame made MaxT >= MinT
		return it.corrupt("sample count")
	}
	b = b[k:]
	tsLen, k := binary.Uvarint(b)
	if k <= 0 || tsLen > uint64(len(b)-k) {
		return it.corrupt("timestamps length")
	}
	b = b[k:]
	it.times.reset(b[:tsLen])
	it.values.reset(b[tsLen:])
	switch {
	case tsLen > 0:
		if n == 1 {
			return it.corrupt("timestamps for one sample")
		}
	case n == 1:
		if span != 0 {
			return it.corrupt("time range of one sample")
		}
	case span%(n-1) != 0:
		return it.corrupt("irregular time range without timestamps")
	default:
		it.regular, it.d1 = true, int64(span/(n-1))
	}
	it.tl.reset(f.MinT)
	it.maxt, it.n = f.MaxT, int(n)
	return nil
}

func (it *decimalIterator) corrupt(what string) error {
	it.err = fmt.Errorf("%w: decimal frame: %s", ErrCorrupt, what)
	it.n = 0 // so Next takes its slow path, which checks err
	return it.err
}

// Next advances to the next sample.
func (it *decimalIterator) Next() chunkenc.ValueType {
	if it.i == 0 || it.i >= it.n {
		return it.first()
	}
	if it.regular {
		it.t += it.d1
	} else if !it.nextTime() {
		return chunkenc.ValNone
	}
	if l, r := &it.vl, &it.values; l.a == 0 && l.s == 0 && l.seen >= 16 && r.n > 0 && int64(r.acc) >= 0 {
		// A repeated value, as in a constant series: a zero residual with
		// k = 0 leaves the lane and the value as they are.
		r.acc <<= 1
		r.n--
	} else if x, ok := l.fastNext(r); ok {
		it.setValue(x)
	} else if !it.nextValue() {
		return chunkenc.ValNone
	}
	it.i++
	return chunkenc.ValFloat
}

// first reads the first sample, or returns ValNone at the end.
func (it *decimalIterator) first() chunkenc.ValueType {
	if it.err != nil || it.i >= it.n {
		return chunkenc.ValNone
	}
	it.t = it.tl.x
	it.mode = uint8(it.values.read(modeBits))
	if !it.rawValue() {
		return chunkenc.ValNone
	}
	it.i++
	return chunkenc.ValFloat
}

func (it *decimalIterator) nextTime() bool {
	l := &it.tl
	t, ok := l.fastNext(&it.times)
	switch {
	case ok:
	case l.seen == 0:
		if it.times.read(1) != 0 {
			it.corrupt("escape in timestamps")
			return false
		}
		t = l.x + unzigzag(it.times.readLen())
		l.raw(t)
	default:
		k := l.k()
		z, big, esc := it.times.readResidual(k)
		if esc {
			it.corrupt("escape in timestamps")
			return false
		}
		t = l.pred() + unzigzag(z)
		l.step(t, z, k, big)
	}
	if t <= it.t || t > it.maxt || (it.i == it.n-1 && t != it.maxt) {
		it.corrupt("timestamps out of order or range")
		return false
	}
	it.t = t
	return true
}

// nextValue reads the next value where fastNext could not: a raw delta,
// an escape, a lane still settling.
func (it *decimalIterator) nextValue() bool {
	l, r := &it.vl, &it.values
	for {
		if l.seen == 0 {
			if r.read(1) == 0 {
				x := l.x + unzigzag(r.readLen())
				l.raw(x)
				it.setValue(x)
				return true
			}
		} else {
			k := l.k()
			z, big, esc := r.readResidual(k)
			if !esc {
				x := l.pred() + unzigzag(z)
				l.step(x, z, k, big)
				it.setValue(x)
				return true
			}
		}
		mode := uint8(r.read(modeBits))
		if it.mode != modeFloat && mode != modeFloat && mode > it.mode && mode <= maxExp {
			l.rescale(mode - it.mode)
			it.mode = mode
			continue
		}
		it.mode = mode
		return it.rawValue()
	}
}

// rawValue reads a value coded raw in the current mode and resets the
// values' lane to it.
func (it *decimalIterator) rawValue() bool {
	switch {
	case it.mode == modeFloat:
		it.vl.reset(int64(it.values.readLen() ^ math.Float64bits(it.v)))
	case it.mode <= maxExp:
		it.vl.reset(unzigzag(it.values.readLen()))
	default:
		it.corrupt("mode")
		return false
	}
	it.setValue(it.vl.x)
	return true
}

func (it *decimalIterator) setValue(x int64) {
	switch it.mode {
	case 0:
		it.v = float64(x)
	case modeFloat:
		it.v = math.Float64frombits(uint64(x))
	default:
		it.v = float64(x) / pow10[it.mode]
	}
}

// readResidual reads a code written by writeResidual, or reports an
// escape.
func (r *bitReader) readResidual(k uint) (z uint64, big, escape bool) {
	if r.n < 32 {
		r.refill()
	}
	if q := uint(bits.LeadingZeros64(^r.acc)); q < unaryMax {
		r.acc <<= q + 1
		r.n -= q + 1
		return uint64(q)<<k | r.readLong(k), false, false
	}
	r.acc <<= unaryMax
	r.n -= unaryMax
	if r.read(1) == 0 {
		return r.readLen(), true, false
	}
	return 0, false, true
}

// Seek advances to the first sample at or after t.
func (it *decimalIterator) Seek(t int64) chunkenc.ValueType {
	if it.err != nil {
		return chunkenc.ValNone
	}
	for t > it.t || it.i == 0 {
		if it.Next() == chunkenc.ValNone {
			return chunkenc.ValNone
		}
	}
	return chunkenc.ValFloat
}

// At returns the current sample.
func (it *decimalIterator) At() (int64, float64) { return it.t, it.v }

// AtHistogram panics: frames hold float samples only.
func (it *decimalIterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	panic("chunk: AtHistogram on a decimal frame")
}

// AtFloatHistogram panics: frames hold float samples only.
func (it *decimalIterator) AtFloatHistogram(*histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	panic("chunk: AtFloatHistogram on a decimal frame")
}

// AtT returns the current timestamp.
func (it *decimalIterator) AtT() int64 { return it.t }

// AtST returns 0: start timestamps are not stored.
func (it *decimalIterator) AtST() int64 { return 0 }

// Err returns the first error met.
func (it *decimalIterator) Err() error { return it.err }
