package chunk

import (
	"encoding/binary"
	"math/bits"
)

// bitWriter appends bits most significant first. Zero bits are held back
// until a one follows them, so a stream never ends in zero bits: readers
// treat the bits past the end of a stream as zeros, which makes runs of
// zero residuals at the end of a frame (a constant series, a regular
// scrape interval) cost nothing.
type bitWriter struct {
	b     []byte // whole bytes written
	acc   uint64 // the low n bits are written but not yet in b
	n     uint
	zeros uint64 // zero bits held back
}

func (w *bitWriter) reset() { *w = bitWriter{b: w.b[:0]} }

// write appends the low nb bits of v; v must be below 1<<nb.
func (w *bitWriter) write(v uint64, nb uint) {
	if v == 0 {
		w.zeros += uint64(nb)
		return
	}
	for w.zeros > 0 {
		z := min(w.zeros, 32)
		w.put(0, uint(z))
		w.zeros -= z
	}
	if nb > 32 {
		w.put(v>>32, nb-32)
		v, nb = v&(1<<32-1), 32
	}
	w.put(v, nb)
}

// put appends nb <= 32 bits.
func (w *bitWriter) put(v uint64, nb uint) {
	w.acc = w.acc<<nb | v
	w.n += nb
	for w.n >= 8 {
		w.n -= 8
		w.b = append(w.b, byte(w.acc>>w.n))
	}
}

// writeLen writes z as a 6-bit bit length n and the n-1 bits below its
// leading one; n = 63 stands for 64 raw bits.
func (w *bitWriter) writeLen(z uint64) {
	n := uint(bits.Len64(z))
	if n >= 63 {
		w.write(63, 6)
		w.write(z, 64)
		return
	}
	w.write(uint64(n), 6)
	if n > 1 {
		w.write(z&(1<<(n-1)-1), n-1)
	}
}

// trimmedLen is the size of the stream in bytes without its trailing zero
// bytes, which readers supply anyway.
func (w *bitWriter) trimmedLen() int {
	if w.n > 0 && byte(w.acc<<(8-w.n)) != 0 {
		return len(w.b) + 1
	}
	n := len(w.b)
	for n > 0 && w.b[n-1] == 0 {
		n--
	}
	return n
}

// appendTrimmed appends the first n bytes of the stream, its last byte
// padded with zero bits; n comes from trimmedLen.
func (w *bitWriter) appendTrimmed(dst []byte, n int) []byte {
	if n <= len(w.b) {
		return append(dst, w.b[:n]...)
	}
	return append(append(dst, w.b...), byte(w.acc<<(8-w.n)))
}

// lenBits is the size of writeLen's code for z.
func lenBits(z uint64) uint {
	n := uint(bits.Len64(z))
	if n >= 63 {
		return 70
	}
	return 6 + max(n, 1) - 1
}

// bitReader reads a stream written by bitWriter. Past the end of its bytes
// it reads zero bits, never failing: callers check what they decode.
type bitReader struct {
	b   []byte // bytes not yet loaded into acc
	acc uint64 // the next n bits, most significant first; the rest is zero
	n   uint
}

func (r *bitReader) reset(b []byte) { *r = bitReader{b: b} }

// refill loads bytes until at least 56 bits are available. Requires
// r.n < 64.
func (r *bitReader) refill() {
	if len(r.b) >= 8 {
		r.acc |= binary.BigEndian.Uint64(r.b) >> r.n
		c := (63 - r.n) >> 3
		r.b = r.b[c:]
		r.n += c << 3
		return
	}
	for r.n <= 56 {
		if len(r.b) > 0 {
			r.acc |= uint64(r.b[0]) << (56 - r.n)
			r.b = r.b[1:]
		}
		r.n += 8
	}
}

// read returns the next nb <= 56 bits.
func (r *bitReader) read(nb uint) uint64 {
	if r.n < nb {
		r.refill()
	}
	v := r.acc >> (64 - nb) // 0 for nb = 0: Go shifts by 64 yield 0
	r.acc <<= nb
	r.n -= nb
	return v
}

// readLong returns the next nb <= 64 bits.
func (r *bitReader) readLong(nb uint) uint64 {
	if nb <= 56 {
		return r.read(nb)
	}
	hi := r.read(nb - 32)
	return hi<<32 | r.read(32)
}

// readLen reads a number written by writeLen.
func (r *bitReader) readLen() uint64 {
	n := uint(r.read(6))
	switch {
	case n == 63:
		return r.readLong(64)
	case n <= 1:
		return uint64(n)
	}
	return 1<<(n-1) | r.readLong(n-1)
}
