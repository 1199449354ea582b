package tsdb

import (
	"encoding/binary"
	"errors"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
)

// errCorruptLabels is returned when stored label bytes cannot be decoded.
var errCorruptLabels = errors.New("corrupt stored label set")

// encodeLabels appends the canonical encoding of ls to dst: the label count,
// then each name and value with its length, in label order. Series identity
// is this encoding: two label sets are the same series iff their encodings
// are equal.
func encodeLabels(dst []byte, ls labels.Labels) []byte {
	dst = binary.AppendUvarint(dst, uint64(ls.Len()))
	ls.Range(func(l labels.Label) {
		dst = binary.AppendUvarint(dst, uint64(len(l.Name)))
		dst = append(dst, l.Name...)
		dst = binary.AppendUvarint(dst, uint64(len(l.Value)))
		dst = append(dst, l.Value...)
	})
	return dst
}

// decodeLabels decodes an encoding made by encodeLabels.
func decodeLabels(b []byte, sb *labels.ScratchBuilder) (labels.Labels, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return labels.EmptyLabels(), errCorruptLabels
	}
	b = b[k:]
	sb.Reset()
	for range n {
		var name, value string
		var err error
		if name, b, err = readLabelString(b); err != nil {
			return labels.EmptyLabels(), err
		}
		if value, b, err = readLabelString(b); err != nil {
			return labels.EmptyLabels(), err
		}
		sb.Add(name, value)
	}
	if len(b) != 0 {
		return labels.EmptyLabels(), errCorruptLabels
	}
	return sb.Labels(), nil
}

func readLabelString(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, errCorruptLabels
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}

// stableHash is the persisted hash of a label set. It must never change:
// it is part of the series-key layout.
func stableHash(encoded []byte) uint64 {
	return xxhash.Sum64(encoded)
}
