package tsdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// A WAL record holds the samples of one committed appender. It is stored in
// Pebble under keys.WAL(seq) in the same synced batch as any new series and
// postings, so a sample is durable exactly when its record is.
//
//	record := version(1) uvarint(n) sample*n
//	sample := uvarint(series id) varint(t - previous t) value(8, little-endian bits)
const walRecordVersion = 1

var errCorruptWAL = errors.New("corrupt WAL record")

type walSample struct {
	id uint64
	t  int64
	v  float64
}

func appendWALRecord(dst []byte, samples []walSample) []byte {
	dst = append(dst, walRecordVersion)
	dst = binary.AppendUvarint(dst, uint64(len(samples)))
	var prevT int64
	for _, s := range samples {
		dst = binary.AppendUvarint(dst, s.id)
		dst = binary.AppendVarint(dst, s.t-prevT)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.v))
		prevT = s.t
	}
	return dst
}

func decodeWALRecord(dst []walSample, b []byte) ([]walSample, error) {
	if len(b) < 2 || b[0] != walRecordVersion {
		return dst, fmt.Errorf("%w: version", errCorruptWAL)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	// Each sample takes at least 10 bytes, which bounds n before allocating.
	if k <= 0 || n > uint64(len(b))/10 {
		return dst, fmt.Errorf("%w: count", errCorruptWAL)
	}
	b = b[k:]
	var prevT int64
	for range n {
		id, k := binary.Uvarint(b)
		if k <= 0 {
			return dst, errCorruptWAL
		}
		b = b[k:]
		dt, k := binary.Varint(b)
		if k <= 0 || len(b)-k < 8 {
			return dst, errCorruptWAL
		}
		b = b[k:]
		prevT += dt
		dst = append(dst, walSample{id: id, t: prevT, v: math.Float64frombits(binary.LittleEndian.Uint64(b))})
		b = b[8:]
	}
	if len(b) != 0 {
		return dst, fmt.Errorf("%w: trailing bytes", errCorruptWAL)
	}
	return dst, nil
}
