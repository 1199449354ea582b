package remotewrite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// This file is a hand-written protobuf decoder for prometheus.WriteRequest
// (remote write 1.0) and io.prometheus.write.v2.Request (2.0). It replaces
// gogo's generated Unmarshal on the ingest hot path: gogo allocates a string
// per label name and value and a slice per series, while this decoder fills
// flat, pooled slices and leaves label strings pointing into the request
// buffer (see wireString), so a warm decode allocates nothing.
//
// It accepts every message gogo's generated code accepts and yields the same
// content (the differential fuzz test checks both), with two deliberate
// differences: exemplars and native histograms are only checked to be
// well-formed protobuf, not decoded, because they are not stored; and a
// varint that runs past the end of a packed field is an error here while
// gogo reads on into the next field.
//
// Every index is bounds-checked against the slice it reads, so arbitrary
// input yields an error, never a panic.

// Field numbers and wire types, from prompb/types.proto, prompb/remote.proto
// and prompb/io/prometheus/write/v2/types.proto.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireStart   = 3
	wireEnd     = 4
	wireFixed32 = 5
)

var (
	// errPackedOverrun is kept distinct so the differential fuzz test can
	// tell this intentional strictness from a real disagreement with gogo.
	errPackedOverrun = errors.New("packed varint runs past the end of its field")
	errTooManySeries = errors.New("too many series")
)

// wireLabel is one label as it appears on the wire. In the default
// (stringlabels) build both strings alias the request buffer.
type wireLabel struct {
	name, value string
}

// sample is one float sample.
type sample struct {
	t int64
	v float64
}

// span is a half-open range [start, end) into one of batch's flat slices.
type span struct {
	start, end int
}

// v2Meta is the per-series metadata of a 2.0 TimeSeries, still as symbol
// references.
type v2Meta struct {
	typ        int32
	help, unit uint32
}

// v1Meta is one entry of a 1.0 WriteRequest's metadata list.
type v1Meta struct {
	typ                int32
	family, help, unit string
}

// wireSeries is one decoded TimeSeries. Its labels index batch.labels (1.0)
// or batch.refs (2.0); its samples index batch.samples.
type wireSeries struct {
	labels     span
	samples    span
	histograms int
	exemplars  int
	meta       v2Meta
}

// The primitives below return the index after what they read, or a
// negative error code in its place (as protowire does): without an error
// interface in their results the fast paths are cheap enough to inline,
// which matters because they run for every field of every request.
const (
	codeEOF          = -1 - iota // truncated message
	codeOverflow                 // varint longer than ten bytes
	codeEndGroup                 // end-group key outside a group
	codeFieldZero                // field number <= 0
	codeWireType                 // wire type 6 or 7
	codeUnmatchedEnd             // end-group key without a start-group
)

var errUnexpectedEOF = errors.New("unexpected end of message")

// codeErr turns a negative index from a primitive into an error.
func codeErr(code int) error {
	switch code {
	case codeEOF:
		return errUnexpectedEOF
	case codeOverflow:
		return errors.New("varint longer than ten bytes")
	case codeEndGroup:
		return errors.New("end-group key outside a group")
	case codeFieldZero:
		return errors.New("illegal field number 0 or less")
	case codeWireType:
		return errors.New("illegal wire type")
	case codeUnmatchedEnd:
		return errors.New("unexpected end of group")
	}
	return fmt.Errorf("decoding error %d", code)
}

// uvarint reads a base-128 varint at d[i:] and returns it and the index
// after it. Like gogo it accepts up to ten bytes and lets bits beyond 64
// fall away.
func uvarint(d []byte, i int) (uint64, int) {
	if uint(i) < uint(len(d)) && d[i] < 0x80 {
		return uint64(d[i]), i + 1
	}
	return uvarintSlow(d, i)
}

//go:noinline
func uvarintSlow(d []byte, i int) (uint64, int) {
	if i < 0 {
		return 0, i
	}
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if i >= len(d) {
			return 0, codeEOF
		}
		b := d[i]
		i++
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, i
		}
	}
	return 0, codeOverflow
}

// readTag reads a field key at d[i:]. Field numbers are truncated to int32
// exactly as gogo does, so both agree on which field a huge key denotes.
//
// A call to a function that is not inlined uses most of the inliner's
// budget, so readTag itself cannot be inlined; the hot loops call its fast
// path tag1, which can, and fall back to readTag.
func readTag(d []byte, i int) (field int32, wt int, next int) {
	if field, wt, ok := tag1(d, i); ok {
		return field, wt, i + 1
	}
	return readTagSlow(d, i)
}

// tag1 decodes the common case of a key: one byte, valid field number and
// wire type. ok is false for anything else.
func tag1(d []byte, i int) (field int32, wt int, ok bool) {
	if uint(i) < uint(len(d)) {
		c := d[i]
		return int32(c >> 3), int(c & 7), c < 0x80 && c&7 != wireEnd && c >= 8
	}
	return 0, 0, false
}

//go:noinline
func readTagSlow(d []byte, i int) (field int32, wt int, next int) {
	v, next := uvarint(d, i)
	if next < 0 {
		return 0, 0, next
	}
	field, wt = int32(v>>3), int(v&7)
	if wt == wireEnd {
		return 0, 0, codeEndGroup
	}
	if field <= 0 {
		return 0, 0, codeFieldZero
	}
	return field, wt, next
}

// readBytes reads a length prefix at d[i:] and returns the bounds of the
// payload that follows it; start is negative on error. Like readTag, it has
// an inlinable fast path, bytes1, for the hot loops.
func readBytes(d []byte, i int) (start, end int) {
	if start, end, ok := bytes1(d, i); ok {
		return start, end
	}
	return readBytesSlow(d, i)
}

// bytes1 decodes the common case of a length prefix: one byte, payload
// within d. ok is false for anything else.
func bytes1(d []byte, i int) (start, end int, ok bool) {
	if uint(i) < uint(len(d)) {
		n := int(d[i])
		return i + 1, i + 1 + n, n < 0x80 && n < len(d)-i
	}
	return 0, 0, false
}

//go:noinline
func readBytesSlow(d []byte, i int) (start, end int) {
	n, i := uvarint(d, i)
	if i < 0 {
		return i, i
	}
	if n > uint64(len(d)-i) {
		return codeEOF, codeEOF
	}
	return i, i + int(n)
}

// readFixed64 reads a little-endian 64-bit value at d[i:].
func readFixed64(d []byte, i int) (uint64, int) {
	if i < 0 || len(d)-i < 8 {
		return 0, codeEOF
	}
	return binary.LittleEndian.Uint64(d[i:]), i + 8
}

// skipField skips the value of a field of wire type wt starting at d[i:],
// including whole (deprecated) groups, the way gogo's skipTypes does.
func skipField(d []byte, i int, wt int) int {
	depth := 0
	for {
		switch wt {
		case wireVarint:
			_, i = uvarint(d, i)
		case wireFixed64:
			if len(d)-i < 8 {
				return codeEOF
			}
			i += 8
		case wireBytes:
			_, i = readBytes(d, i)
		case wireStart:
			depth++
		case wireEnd:
			if depth == 0 {
				return codeUnmatchedEnd
			}
			depth--
		case wireFixed32:
			if len(d)-i < 4 {
				return codeEOF
			}
			i += 4
		default:
			return codeWireType
		}
		if i < 0 || depth == 0 {
			return i
		}
		// Inside a group: read the next key. gogo does not check field
		// numbers here, only wire types.
		var v uint64
		if v, i = uvarint(d, i); i < 0 {
			return i
		}
		wt = int(v & 7)
	}
}

func wrongWireType(msg string, field int32, wt int) error {
	return fmt.Errorf("%s: wrong wire type %d for field %d", msg, wt, field)
}

// checkMessage verifies that m is a well-formed sequence of protobuf fields
// without interpreting them. Used for exemplars and native histograms,
// which are counted but not stored.
func checkMessage(m []byte) error {
	for i := 0; i < len(m); {
		_, wt, next := readTag(m, i)
		if next < 0 {
			return codeErr(next)
		}
		if i = skipField(m, next, wt); i < 0 {
			return codeErr(i)
		}
	}
	return nil
}

// decodeV1 decodes a prometheus.WriteRequest into b. It stops with
// errTooManySeries as soon as the request holds more than maxSeries series.
func (b *batch) decodeV1(d []byte, maxSeries int) error {
	for i := 0; i < len(d); {
		field, wt, next := readTag(d, i)
		if next < 0 {
			return codeErr(next)
		}
		if field != 1 && field != 3 {
			if i = skipField(d, next, wt); i < 0 {
				return codeErr(i)
			}
			continue
		}
		if wt != wireBytes {
			return wrongWireType("WriteRequest", field, wt)
		}
		start, end := readBytes(d, next)
		if start < 0 {
			return codeErr(start)
		}
		if field == 1 { // timeseries
			if len(b.series) >= maxSeries {
				return errTooManySeries
			}
			if err := b.decodeV1Series(d[start:end]); err != nil {
				return fmt.Errorf("timeseries %d: %w", len(b.series), err)
			}
		} else if err := b.decodeV1Meta(d[start:end]); err != nil { // metadata
			return fmt.Errorf("metadata %d: %w", len(b.meta), err)
		}
		i = end
	}
	return nil
}

// decodeV1Series decodes a prometheus.TimeSeries and appends it to b.
func (b *batch) decodeV1Series(d []byte) error {
	s := wireSeries{
		labels:  span{start: len(b.labels)},
		samples: span{start: len(b.samples)},
	}
	for i := 0; i < len(d); {
		field, wt, ok := tag1(d, i)
		next := i + 1
		if !ok {
			field, wt, next = readTag(d, i)
		}
		if next < 0 {
			return codeErr(next)
		}
		if field < 1 || field > 4 {
			if i = skipField(d, next, wt); i < 0 {
				return codeErr(i)
			}
			continue
		}
		if wt != wireBytes {
			return wrongWireType("TimeSeries", field, wt)
		}
		start, end, ok := bytes1(d, next)
		if !ok {
			start, end = readBytes(d, next)
		}
		if start < 0 {
			return codeErr(start)
		}
		m := d[start:end]
		var err error
		switch field {
		case 1: // labels
			var l wireLabel
			if l, err = decodeV1Label(m); err == nil {
				b.labels = append(b.labels, l)
			}
		case 2: // samples
			var smp sample
			if smp, err = decodeSample(m, false); err == nil {
				b.samples = append(b.samples, smp)
			}
		case 3: // exemplars
			s.exemplars++
			err = checkMessage(m)
		case 4: // histograms
			s.histograms++
			err = checkMessage(m)
		}
		if err != nil {
			return err
		}
		i = end
	}
	s.labels.end = len(b.labels)
	s.samples.end = len(b.samples)
	b.series = append(b.series, s)
	return nil
}

// decodeV1Label decodes a prometheus.Label.
func decodeV1Label(d []byte) (wireLabel, error) {
	var l wireLabel
	for i := 0; i < len(d); {
		field, wt, ok := tag1(d, i)
		next := i + 1
		if !ok {
			field, wt, next = readTag(d, i)
		}
		if next < 0 {
			return l, codeErr(next)
		}
		if field != 1 && field != 2 {
			if i = skipField(d, next, wt); i < 0 {
				return l, codeErr(i)
			}
			continue
		}
		if wt != wireBytes {
			return l, wrongWireType("Label", field, wt)
		}
		start, end, ok := bytes1(d, next)
		if !ok {
			start, end = readBytes(d, next)
		}
		if start < 0 {
			return l, codeErr(start)
		}
		if field == 1 {
			l.name = wireString(d[start:end])
		} else {
			l.value = wireString(d[start:end])
		}
		i = end
	}
	return l, nil
}

// decodeSample decodes a prometheus.Sample or an io.prometheus.write.v2.Sample:
// both have value = 1 (double) and timestamp = 2 (int64); 2.0 adds
// start_timestamp = 3 (int64), which is read only to validate it.
func decodeSample(d []byte, v2 bool) (sample, error) {
	var s sample
	for i := 0; i < len(d); {
		field, wt, ok := tag1(d, i)
		next := i + 1
		if !ok {
			field, wt, next = readTag(d, i)
		}
		if next < 0 {
			return s, codeErr(next)
		}
		switch {
		case field == 1:
			if wt != wireFixed64 {
				return s, wrongWireType("Sample", field, wt)
			}
			var bits uint64
			if bits, i = readFixed64(d, next); i < 0 {
				return s, codeErr(i)
			}
			s.v = math.Float64frombits(bits)
		case field == 2, field == 3 && v2:
			if wt != wireVarint {
				return s, wrongWireType("Sample", field, wt)
			}
			var v uint64
			if v, i = uvarint(d, next); i < 0 {
				return s, codeErr(i)
			}
			if field == 2 {
				s.t = int64(v)
			}
		default:
			if i = skipField(d, next, wt); i < 0 {
				return s, codeErr(i)
			}
		}
	}
	return s, nil
}

// decodeV1Meta decodes a prometheus.MetricMetadata and appends it to b.
func (b *batch) decodeV1Meta(d []byte) error {
	var m v1Meta
	for i := 0; i < len(d); {
		field, wt, next := readTag(d, i)
		if next < 0 {
			return codeErr(next)
		}
		switch field {
		case 1: // type
			if wt != wireVarint {
				return wrongWireType("MetricMetadata", field, wt)
			}
			var v uint64
			if v, i = uvarint(d, next); i < 0 {
				return codeErr(i)
			}
			m.typ = int32(v)
		case 2, 4, 5: // metric_family_name, help, unit
			if wt != wireBytes {
				return wrongWireType("MetricMetadata", field, wt)
			}
			start, end := readBytes(d, next)
			if start < 0 {
				return codeErr(start)
			}
			switch str := wireString(d[start:end]); field {
			case 2:
				m.family = str
			case 4:
				m.help = str
			default:
				m.unit = str
			}
			i = end
		default:
			if i = skipField(d, next, wt); i < 0 {
				return codeErr(i)
			}
		}
	}
	b.meta = append(b.meta, m)
	return nil
}

// decodeV2 decodes an io.prometheus.write.v2.Request into b. It stops with
// errTooManySeries as soon as the request holds more than maxSeries series.
// It does not interpret symbols; label references are resolved later.
func (b *batch) decodeV2(d []byte, maxSeries int) error {
	for i := 0; i < len(d); {
		field, wt, ok := tag1(d, i)
		next := i + 1
		if !ok {
			field, wt, next = readTag(d, i)
		}
		if next < 0 {
			return codeErr(next)
		}
		if field != 4 && field != 5 {
			if i = skipField(d, next, wt); i < 0 {
				return codeErr(i)
			}
			continue
		}
		if wt != wireBytes {
			return wrongWireType("Request", field, wt)
		}
		start, end, ok := bytes1(d, next)
		if !ok {
			start, end = readBytes(d, next)
		}
		if start < 0 {
			return codeErr(start)
		}
		if field == 4 { // symbols
			b.symbols = append(b.symbols, wireString(d[start:end]))
		} else { // timeseries
			if len(b.series) >= maxSeries {
				return errTooManySeries
			}
			if err := b.decodeV2Series(d[start:end]); err != nil {
				return fmt.Errorf("timeseries %d: %w", len(b.series), err)
			}
		}
		i = end
	}
	return nil
}

// decodeV2Series decodes an io.prometheus.write.v2.TimeSeries and appends
// it to b.
func (b *batch) decodeV2Series(d []byte) error {
	s := wireSeries{
		labels:  span{start: len(b.refs)},
		samples: span{start: len(b.samples)},
	}
	for i := 0; i < len(d); {
		field, wt, ok := tag1(d, i)
		next := i + 1
		if !ok {
			field, wt, next = readTag(d, i)
		}
		if next < 0 {
			return codeErr(next)
		}
		switch {
		case field == 1 && wt == wireVarint: // labels_refs, unpacked
			var v uint64
			if v, i = uvarint(d, next); i < 0 {
				return codeErr(i)
			}
			b.refs = append(b.refs, uint32(v))
		case field == 1 && wt == wireBytes: // labels_refs, packed
			start, end, ok := bytes1(d, next)
			if !ok {
				start, end = readBytes(d, next)
			}
			if start < 0 {
				return codeErr(start)
			}
			packed := d[:end]
			for j := start; j < end; {
				var v uint64
				if v, j = uvarint(packed, j); j < 0 {
					if j == codeEOF {
						return errPackedOverrun
					}
					return codeErr(j)
				}
				b.refs = append(b.refs, uint32(v))
			}
			i = end
		case field == 1:
			return wrongWireType("v2.TimeSeries", field, wt)
		case field >= 2 && field <= 5:
			if wt != wireBytes {
				return wrongWireType("v2.TimeSeries", field, wt)
			}
			start, end, ok := bytes1(d, next)
			if !ok {
				start, end = readBytes(d, next)
			}
			if start < 0 {
				return codeErr(start)
			}
			m := d[start:end]
			var err error
			switch field {
			case 2: // samples
				var smp sample
				if smp, err = decodeSample(m, true); err == nil {
					b.samples = append(b.samples, smp)
				}
			case 3: // histograms
				s.histograms++
				err = checkMessage(m)
			case 4: // exemplars
				s.exemplars++
				err = checkMessage(m)
			case 5: // metadata; repeated occurrences merge field by field
				err = decodeV2Meta(m, &s.meta)
			}
			if err != nil {
				return err
			}
			i = end
		default:
			if i = skipField(d, next, wt); i < 0 {
				return codeErr(i)
			}
		}
	}
	s.labels.end = len(b.refs)
	s.samples.end = len(b.samples)
	b.series = append(b.series, s)
	return nil
}

// decodeV2Meta decodes an io.prometheus.write.v2.Metadata into m.
func decodeV2Meta(d []byte, m *v2Meta) error {
	for i := 0; i < len(d); {
		field, wt, next := readTag(d, i)
		if next < 0 {
			return codeErr(next)
		}
		if field != 1 && field != 3 && field != 4 {
			if i = skipField(d, next, wt); i < 0 {
				return codeErr(i)
			}
			continue
		}
		if wt != wireVarint { // type, help_ref, unit_ref
			return wrongWireType("v2.Metadata", field, wt)
		}
		var v uint64
		if v, i = uvarint(d, next); i < 0 {
			return codeErr(i)
		}
		switch field {
		case 1:
			m.typ = int32(v)
		case 3:
			m.help = uint32(v)
		default:
			m.unit = uint32(v)
		}
	}
	return nil
}
