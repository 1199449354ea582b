// Package keys owns the Pebble key layout of the tsdb: every key the store
// writes is built and parsed here, so the layout documented in
// tsdb/docs/format.md has exactly one implementation.
//
// All integers are big-endian so that byte order is numeric order, and label
// strings are escaped so that no string is a prefix of another's encoding.
package keys

import (
	"encoding/binary"
	"errors"
)

// Key prefixes. One byte each; the values are part of the on-disk format.
const (
	PrefixMeta      byte = 0x01 // meta name -> value
	PrefixSeriesKey byte = 0x02 // hash | id -> canonical labels (label set -> id)
	PrefixSeriesID  byte = 0x03 // id -> canonical labels (id -> label set)
	PrefixPostings  byte = 0x04 // day | name | value | id -> empty
	PrefixChunk     byte = 0x05 // bucket | id -> chunk frames
	PrefixWAL       byte = 0x06 // seq -> WAL record
	PrefixMetadata  byte = 0x07 // metric family -> metadata
)

// ErrMalformed is returned when a key does not have the expected layout.
var ErrMalformed = errors.New("malformed key")

// Meta returns the key of the meta entry name.
func Meta(name string) []byte {
	return append([]byte{PrefixMeta}, name...)
}

// SeriesKey returns the key mapping a label-set hash and series ID to the
// label set. Several IDs may share a hash; readers compare the labels.
func SeriesKey(hash, id uint64) []byte {
	k := make([]byte, 17)
	k[0] = PrefixSeriesKey
	binary.BigEndian.PutUint64(k[1:], hash)
	binary.BigEndian.PutUint64(k[9:], id)
	return k
}

// SeriesKeyPrefix returns the prefix shared by all series with this hash.
func SeriesKeyPrefix(hash uint64) []byte {
	k := make([]byte, 9)
	k[0] = PrefixSeriesKey
	binary.BigEndian.PutUint64(k[1:], hash)
	return k
}

// SeriesKeyID returns the series ID of a key built by SeriesKey.
func SeriesKeyID(k []byte) (uint64, error) {
	if len(k) != 17 || k[0] != PrefixSeriesKey {
		return 0, ErrMalformed
	}
	return binary.BigEndian.Uint64(k[9:]), nil
}

// SeriesID returns the key holding the labels of series id.
func SeriesID(id uint64) []byte { return AppendSeriesID(make([]byte, 0, 9), id) }

// AppendSeriesID appends the key of series id's labels to dst.
func AppendSeriesID(dst []byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, PrefixSeriesID), id)
}

// ParseSeriesID returns the series ID of a key built by SeriesID.
func ParseSeriesID(k []byte) (uint64, error) {
	if len(k) != 9 || k[0] != PrefixSeriesID {
		return 0, ErrMalformed
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

// Postings returns the postings key of series id for label name=value on day.
func Postings(dst []byte, day uint32, name, value string, id uint64) []byte {
	dst = PostingsValuePrefix(dst, day, name, value)
	return binary.BigEndian.AppendUint64(dst, id)
}

// PostingsDayPrefix returns the prefix of all postings of day.
func PostingsDayPrefix(day uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{PrefixPostings}, day)
}

// PostingsNamePrefix returns the prefix of all postings of label name on day.
func PostingsNamePrefix(dst []byte, day uint32, name string) []byte {
	dst = append(dst, PrefixPostings)
	dst = binary.BigEndian.AppendUint32(dst, day)
	return appendString(dst, name)
}

// PostingsValuePrefix returns the prefix of the postings of name=value on day.
func PostingsValuePrefix(dst []byte, day uint32, name, value string) []byte {
	dst = PostingsNamePrefix(dst, day, name)
	return appendString(dst, value)
}

// ParsePostings splits a postings key into its parts. The returned strings
// are copies.
func ParsePostings(k []byte) (day uint32, name, value string, id uint64, err error) {
	if len(k) < 1+4+2+2+8 || k[0] != PrefixPostings {
		return 0, "", "", 0, ErrMalformed
	}
	day = binary.BigEndian.Uint32(k[1:5])
	rest := k[5 : len(k)-8]
	name, rest, err = readString(rest)
	if err != nil {
		return 0, "", "", 0, err
	}
	value, rest, err = readString(rest)
	if err != nil || len(rest) != 0 {
		return 0, "", "", 0, ErrMalformed
	}
	return day, name, value, binary.BigEndian.Uint64(k[len(k)-8:]), nil
}

// PostingsID returns the series ID at the end of a postings key.
func PostingsID(k []byte) uint64 {
	return binary.BigEndian.Uint64(k[len(k)-8:])
}

// Chunk returns the key of the chunk frames of series id in time bucket.
func Chunk(bucket uint32, id uint64) []byte {
	k := make([]byte, 13)
	k[0] = PrefixChunk
	binary.BigEndian.PutUint32(k[1:], bucket)
	binary.BigEndian.PutUint64(k[5:], id)
	return k
}

// ChunkBucketPrefix returns the prefix of every chunk of bucket.
func ChunkBucketPrefix(bucket uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{PrefixChunk}, bucket)
}

// ParseChunk splits a chunk key into its bucket and series ID.
func ParseChunk(k []byte) (bucket uint32, id uint64, err error) {
	if len(k) != 13 || k[0] != PrefixChunk {
		return 0, 0, ErrMalformed
	}
	return binary.BigEndian.Uint32(k[1:]), binary.BigEndian.Uint64(k[5:]), nil
}

// WAL returns the key of the WAL record with sequence number seq.
func WAL(seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = PrefixWAL
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// ParseWAL returns the sequence number of a WAL key.
func ParseWAL(k []byte) (uint64, error) {
	if len(k) != 9 || k[0] != PrefixWAL {
		return 0, ErrMalformed
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

// Metadata returns the key of the metadata of a metric family.
func Metadata(family string) []byte {
	return append([]byte{PrefixMetadata}, family...)
}

// PrefixEnd returns the smallest key greater than every key with prefix p,
// for use as an exclusive upper bound.
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// A string is written with 0x00 escaped as 0x00 0xff and terminated by
// 0x00 0x01, so the encoding is prefix-free and preserves byte order.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			dst = append(dst, 0, 0xff)
			continue
		}
		dst = append(dst, s[i])
	}
	return append(dst, 0, 1)
}

func readString(b []byte) (string, []byte, error) {
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] != 0 {
			continue
		}
		if i+1 >= len(b) {
			return "", nil, ErrMalformed
		}
		switch b[i+1] {
		case 1:
			if out == nil {
				return string(b[:i]), b[i+2:], nil
			}
			out = append(out, b[:i]...)
			return string(out), b[i+2:], nil
		case 0xff:
			out = append(out, b[:i]...)
			out = append(out, 0)
			b = b[i+2:]
			i = -1
		default:
			return "", nil, ErrMalformed
		}
	}
	return "", nil, ErrMalformed
}
