package query

// Result encoding follows Prometheus v0.316.0 web/api/v1/json_codec.go and
// util/jsonutil/marshal.go (Copyright The Prometheus Authors, Apache License
// 2.0). Prometheus hand-writes these because matrices are the bulk of every
// dashboard's traffic; promql's own MarshalJSON methods go through reflection
// and an []any per point, and format small floats differently.

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// promqlValue renders a query result exactly as Prometheus does.
type promqlValue struct {
	v parser.Value
}

// MarshalJSON implements json.Marshaler.
func (p promqlValue) MarshalJSON() ([]byte, error) {
	switch v := p.v.(type) {
	case promql.Matrix:
		return appendMatrix(nil, v)
	case promql.Vector:
		return appendVector(nil, v)
	default:
		// Scalar and String carry their own MarshalJSON, which Prometheus
		// also uses.
		return json.Marshal(v)
	}
}

// appendMatrix writes [{"metric":{...},"values":[[t,"v"],...],"histograms":[...]},...].
func appendMatrix(b []byte, m promql.Matrix) ([]byte, error) {
	b = append(b, '[')
	for i, s := range m {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendMetric(b, s.Metric); err != nil {
			return nil, err
		}
		if len(s.Floats) > 0 {
			b = append(b, `,"values":[`...)
			for j, p := range s.Floats {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, '[')
				b = appendTimestamp(b, p.T)
				b = append(b, ',')
				b = appendFloat(b, p.F)
				b = append(b, ']')
			}
			b = append(b, ']')
		}
		if len(s.Histograms) > 0 {
			b = append(b, `,"histograms":[`...)
			for j, p := range s.Histograms {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, '[')
				b = appendTimestamp(b, p.T)
				b = append(b, ',')
				b = appendHistogram(b, p.H)
				b = append(b, ']')
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// appendVector writes [{"metric":{...},"value":[t,"v"]} or "histogram":[t,{...}],...].
func appendVector(b []byte, v promql.Vector) ([]byte, error) {
	b = append(b, '[')
	for i, s := range v {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendMetric(b, s.Metric); err != nil {
			return nil, err
		}
		if s.H == nil {
			b = append(b, `,"value":[`...)
			b = appendTimestamp(b, s.T)
			b = append(b, ',')
			b = appendFloat(b, s.F)
		} else {
			b = append(b, `,"histogram":[`...)
			b = appendTimestamp(b, s.T)
			b = append(b, ',')
			b = appendHistogram(b, s.H)
		}
		b = append(b, "]}"...)
	}
	return append(b, ']'), nil
}

// appendMetric opens a series object with its "metric" field; label sets
// are per series, not per point, so the standard encoder is fine here.
func appendMetric(b []byte, ls labels.Labels) ([]byte, error) {
	m, err := ls.MarshalJSON()
	if err != nil {
		return nil, err
	}
	b = append(b, `{"metric":`...)
	return append(b, m...), nil
}

// appendTimestamp writes milliseconds as decimal seconds without going
// through float64: "4", "1.500", "1.005", "-0.250".
func appendTimestamp(b []byte, t int64) []byte {
	if t < 0 {
		b = append(b, '-')
		t = -t
	}
	b = strconv.AppendInt(b, t/1000, 10)
	if frac := t % 1000; frac != 0 {
		b = append(b, '.')
		if frac < 100 {
			b = append(b, '0')
		}
		if frac < 10 {
			b = append(b, '0')
		}
		b = strconv.AppendInt(b, frac, 10)
	}
	return b
}

// appendFloat writes a sample value as a JSON string, which is how the API
// carries NaN and ±Inf.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = append(b, '"')
	b = strconv.AppendFloat(b, f, format, -1, 64)
	return append(b, '"')
}

// appendHistogram writes {"count":"..","sum":"..","buckets":[[boundaries,"lower","upper","count"],...]},
// omitting empty buckets. boundaries: 0 upper inclusive, 1 lower inclusive,
// 2 both exclusive, 3 both inclusive.
func appendHistogram(b []byte, h *histogram.FloatHistogram) []byte {
	b = append(b, `{"count":`...)
	b = appendFloat(b, h.Count)
	b = append(b, `,"sum":`...)
	b = appendFloat(b, h.Sum)
	found := false
	for it := h.AllBucketIterator(); it.Next(); {
		bucket := it.At()
		if bucket.Count == 0 {
			continue
		}
		if found {
			b = append(b, ',')
		} else {
			b = append(b, `,"buckets":[`...)
			found = true
		}
		boundaries := 2
		switch {
		case bucket.LowerInclusive && bucket.UpperInclusive:
			boundaries = 3
		case bucket.LowerInclusive:
			boundaries = 1
		case bucket.UpperInclusive:
			boundaries = 0
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(boundaries), 10)
		b = append(b, ',')
		b = appendFloat(b, bucket.Lower)
		b = append(b, ',')
		b = appendFloat(b, bucket.Upper)
		b = append(b, ',')
		b = appendFloat(b, bucket.Count)
		b = append(b, ']')
	}
	if found {
		b = append(b, ']')
	}
	return append(b, '}')
}
