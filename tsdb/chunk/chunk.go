// Package chunk owns the encoding of a series' samples inside one time
// bucket: a bucket's value is a sequence of frames, each holding one
// compressed chunk with its time range, so readers can skip frames without
// decoding them.
//
// Every frame names its sample codec with a one-byte encoding, so a better
// codec can be added without rewriting stored data: new frames use this
// package's decimal codec (EncDecimal); frames of Prometheus' chunkenc XOR
// codecs, the earlier default, are still read.
//
// Frame layout (see tsdb/docs/format.md):
//
//	frame    := encoding(1) uvarint(mint) uvarint(maxt-mint) uvarint(len) data
//	data     := the chunk's bytes, as the encoding's codec produces them
package chunk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// DefaultEncoding is the codec used for new frames: EncDecimal, which takes
// about half the bytes of XOR on typical metrics (0.51 on the benchmark
// workload's mix: go test -run TestCompressionReport -v) and decodes faster
// (go test -run xxx -bench DecodeVsXOR).
const DefaultEncoding = EncDecimal

// MaxSamplesPerFrame is how many samples a frame holds before a new one is
// cut. Larger frames amortise the per-chunk header; smaller ones make seeks
// cheaper. 480 is two hours at a 15 s scrape interval.
const MaxSamplesPerFrame = 480

// floatEncodings are the chunkenc encodings a frame may hold, with the size
// of their header.
var floatEncodings = map[chunkenc.Encoding]int{
	chunkenc.EncXOR:  2,
	chunkenc.EncXOR2: 3,
}

// ErrCorrupt is returned when frame bytes cannot be parsed.
var ErrCorrupt = errors.New("corrupt chunk frame")

// Frame is one encoded chunk and the time range it covers.
type Frame struct {
	Encoding   chunkenc.Encoding
	MinT, MaxT int64
	Data       []byte
}

// AppendFrame appends the encoding of f to dst.
func AppendFrame(dst []byte, f Frame) []byte {
	dst = appendHeader(dst, f.Encoding, f.MinT, f.MaxT, len(f.Data))
	return append(dst, f.Data...)
}

// appendHeader appends the fields of a frame that precede its chunk, size
// bytes long.
func appendHeader(dst []byte, enc chunkenc.Encoding, mint, maxt int64, size int) []byte {
	dst = append(dst, byte(enc))
	dst = binary.AppendUvarint(dst, uint64(mint))
	dst = binary.AppendUvarint(dst, uint64(maxt-mint))
	return binary.AppendUvarint(dst, uint64(size))
}

// ReadFrame decodes the first frame of b and returns it with the rest of b.
// The frame's Data aliases b.
func ReadFrame(b []byte) (Frame, []byte, error) {
	if len(b) < 4 {
		return Frame{}, nil, ErrCorrupt
	}
	f := Frame{Encoding: chunkenc.Encoding(b[0])}
	b = b[1:]
	mint, n := binary.Uvarint(b)
	if n <= 0 || mint > math.MaxInt64 {
		return Frame{}, nil, ErrCorrupt
	}
	b = b[n:]
	span, n := binary.Uvarint(b)
	if n <= 0 || span > math.MaxInt64-mint {
		return Frame{}, nil, ErrCorrupt
	}
	b = b[n:]
	size, n := binary.Uvarint(b)
	if n <= 0 || size > uint64(len(b)-n) {
		return Frame{}, nil, ErrCorrupt
	}
	b = b[n:]
	f.MinT, f.MaxT = int64(mint), int64(mint+span)
	f.Data = b[:size:size]
	return f, b[size:], nil
}

// Builder encodes samples appended in strictly increasing time order into
// frames. The zero value is not usable; call NewBuilder.
type Builder struct {
	enc chunkenc.Encoding
	// The open frame: a chunkenc chunk, or dec for EncDecimal.
	chunk      chunkenc.Chunk
	app        chunkenc.Appender
	dec        decimalEncoder
	mint, maxt int64
	last       float64
	n          int
	frames     []byte
}

// NewBuilder returns a Builder producing frames with encoding enc:
// EncDecimal or a chunkenc float encoding.
func NewBuilder(enc chunkenc.Encoding) (*Builder, error) {
	if _, ok := floatEncodings[enc]; !ok && enc != EncDecimal {
		return nil, fmt.Errorf("chunk encoding %d (%s): not supported", enc, enc)
	}
	return &Builder{enc: enc}, nil
}

// Append adds one sample. t must be greater than the last appended t.
func (b *Builder) Append(t int64, v float64) {
	if b.n == 0 || b.n >= MaxSamplesPerFrame {
		b.cut()
		b.mint = t
		if b.enc == EncDecimal {
			b.dec.reset()
		} else {
			c, _ := chunkenc.NewEmptyChunk(b.enc) // encoding checked in NewBuilder
			app, err := c.Appender()
			if err != nil {
				panic(fmt.Sprintf("new appender for empty %s chunk: %v", b.enc, err))
			}
			b.chunk, b.app = c, app
		}
	}
	if b.enc == EncDecimal {
		b.dec.append(t, v)
	} else {
		b.app.Append(0, t, v)
	}
	b.maxt, b.last = t, v
	b.n++
}

// LastValue returns the newest appended value; meaningless before an Append.
func (b *Builder) LastValue() float64 { return b.last }

// Encoding returns the encoding of the frames the builder makes.
func (b *Builder) Encoding() chunkenc.Encoding { return b.enc }

// MaxT returns the newest appended timestamp; meaningless before an Append.
func (b *Builder) MaxT() int64 { return b.maxt }

// cut seals the open frame, if any.
func (b *Builder) cut() {
	if b.n == 0 {
		return
	}
	b.frames = b.appendOpen(b.frames)
	b.chunk, b.app, b.n = nil, nil, 0
}

// appendOpen appends the open frame to dst.
func (b *Builder) appendOpen(dst []byte) []byte {
	if b.enc == EncDecimal {
		return b.dec.appendFrame(dst, b.mint, b.maxt)
	}
	return AppendFrame(dst, Frame{Encoding: b.enc, MinT: b.mint, MaxT: b.maxt, Data: b.chunk.Bytes()})
}

// AppendTo appends all frames, including the open one, to dst without
// sealing the open frame, so the builder can keep appending.
func (b *Builder) AppendTo(dst []byte) []byte {
	dst = append(dst, b.frames...)
	if b.n > 0 {
		dst = b.appendOpen(dst)
	}
	return dst
}

// Bytes seals the open frame and returns all frames. The builder keeps
// working after it, starting a new frame on the next Append.
func (b *Builder) Bytes() []byte {
	b.cut()
	return b.frames
}

// Iterator iterates over the samples of a sequence of frames. It implements
// chunkenc.Iterator for float samples.
type Iterator struct {
	rest []byte
	cur  chunkenc.Iterator
	err  error
	// decoders kept so Reset reuses them: chunkenc's by encoding, and
	// EncDecimal's.
	its map[chunkenc.Encoding]chunkenc.Iterator
	dec *decimalIterator
}

// NewIterator returns an iterator over the frames in b.
func NewIterator(b []byte) *Iterator {
	it := &Iterator{}
	it.Reset(b)
	return it
}

// Reset makes the iterator start over on b.
func (it *Iterator) Reset(b []byte) {
	it.rest, it.cur, it.err = b, nil, nil
}

// nextFrame loads the next frame whose MaxT >= mint.
func (it *Iterator) nextFrame(mint int64) bool {
	for len(it.rest) > 0 {
		f, rest, err := ReadFrame(it.rest)
		if err != nil {
			it.err = err
			return false
		}
		it.rest = rest
		if f.MaxT < mint {
			continue
		}
		if f.Encoding == EncDecimal {
			if it.dec == nil {
				it.dec = &decimalIterator{}
			}
			if it.err = it.dec.reset(f); it.err != nil {
				return false
			}
			it.cur = it.dec
			return true
		}
		if it.its == nil {
			it.its = map[chunkenc.Encoding]chunkenc.Iterator{}
		}
		// chunkenc trusts its input; check what it would index blindly.
		if minLen, ok := floatEncodings[f.Encoding]; !ok || len(f.Data) < minLen {
			it.err = fmt.Errorf("%w: encoding %d with %d bytes", ErrCorrupt, f.Encoding, len(f.Data))
			return false
		}
		c, err := chunkenc.FromData(f.Encoding, f.Data)
		if err != nil {
			it.err = fmt.Errorf("%w: %v", ErrCorrupt, err)
			return false
		}
		it.cur = c.Iterator(it.its[f.Encoding])
		it.its[f.Encoding] = it.cur
		return true
	}
	return false
}

// Next advances to the next sample.
func (it *Iterator) Next() chunkenc.ValueType {
	for it.err == nil {
		if it.cur != nil {
			if vt := it.cur.Next(); vt != chunkenc.ValNone {
				return vt
			}
			if err := it.cur.Err(); err != nil {
				it.err = err
				return chunkenc.ValNone
			}
		}
		if !it.nextFrame(math.MinInt64) {
			it.cur = nil
			return chunkenc.ValNone
		}
	}
	return chunkenc.ValNone
}

// Seek advances to the first sample with a timestamp at or after t.
func (it *Iterator) Seek(t int64) chunkenc.ValueType {
	if it.err != nil {
		return chunkenc.ValNone
	}
	for {
		if it.cur != nil {
			if vt := it.cur.Seek(t); vt != chunkenc.ValNone {
				return vt
			}
			if err := it.cur.Err(); err != nil {
				it.err = err
				return chunkenc.ValNone
			}
		}
		if !it.nextFrame(t) {
			it.cur = nil
			return chunkenc.ValNone
		}
	}
}

// At returns the current sample.
func (it *Iterator) At() (int64, float64) { return it.cur.At() }

// AtHistogram panics: frames hold float samples only.
func (it *Iterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	panic("chunk: AtHistogram on a float iterator")
}

// AtFloatHistogram panics: frames hold float samples only.
func (it *Iterator) AtFloatHistogram(*histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	panic("chunk: AtFloatHistogram on a float iterator")
}

// AtT returns the current timestamp.
func (it *Iterator) AtT() int64 { return it.cur.AtT() }

// AtST returns 0: start timestamps are not stored.
func (it *Iterator) AtST() int64 { return 0 }

// Err returns the first error met.
func (it *Iterator) Err() error { return it.err }

// Sample is one float sample.
type Sample struct {
	T int64
	V float64
}

// Decode appends the samples of frames b to dst.
func Decode(dst []Sample, b []byte) ([]Sample, error) {
	it := NewIterator(b)
	for it.Next() != chunkenc.ValNone {
		t, v := it.At()
		dst = append(dst, Sample{t, v})
	}
	return dst, it.Err()
}
