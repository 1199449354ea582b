package opentsdb

import (
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/immune-dev/immune/internal/jsonquote"
)

// encodeResults writes a /api/query response:
//
//	[{"metric":..., "tags":{...}, "aggregateTags":[...], ["query":{...},] "dps":{"<ts>":v, ...}}, ...]
//
// by hand, because dps must keep time order (a Go map would sort its keys
// as strings) and is most of the bytes. Timestamps are seconds unless ms;
// with arrays dps is [[ts, v], ...]. Without ms, points falling in the same
// second keep only the last one (OpenTSDB would write duplicate keys).
// NaN and infinities are written as Jackson does, "NaN", "Infinity" and
// "-Infinity", except that NaN is null with the null fill policy.
func encodeResults(rs []result, ms, arrays bool) []byte {
	b := make([]byte, 0, 256)
	b = append(b, '[')
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"metric":`...)
		b = jsonquote.Append(b, r.metric)
		b = append(b, `,"tags":{`...)
		for j, k := range slices.Sorted(maps.Keys(r.tags)) {
			if j > 0 {
				b = append(b, ',')
			}
			b = jsonquote.Append(b, k)
			b = append(b, ':')
			b = jsonquote.Append(b, r.tags[k])
		}
		b = append(b, `},"aggregateTags":[`...)
		for j, k := range r.aggTags {
			if j > 0 {
				b = append(b, ',')
			}
			b = jsonquote.Append(b, k)
		}
		b = append(b, ']')
		if r.echo != nil {
			b = append(b, `,"query":`...)
			b = append(b, r.echo...)
		}
		b = append(b, `,"dps":`...)
		b = appendPoints(b, r.points, ms, arrays, r.nullNaN)
		b = append(b, '}')
	}
	return append(b, ']')
}

func appendPoints(b []byte, pts []point, ms, arrays, nullNaN bool) []byte {
	open, close := byte('{'), byte('}')
	if arrays {
		open, close = '[', ']'
	}
	b = append(b, open)
	for i, n := 0, 0; i < len(pts); i, n = i+1, n+1 {
		ts := pts[i].t
		if !ms {
			ts /= 1000 // never negative: query times are not
			for i+1 < len(pts) && pts[i+1].t/1000 == ts {
				i++
			}
		}
		if n > 0 {
			b = append(b, ',')
		}
		if arrays {
			b = append(b, '[')
			b = strconv.AppendInt(b, ts, 10)
			b = append(b, ',')
			b = appendValue(b, pts[i].v, nullNaN)
			b = append(b, ']')
		} else {
			b = append(b, '"')
			b = strconv.AppendInt(b, ts, 10)
			b = append(b, `":`...)
			b = appendValue(b, pts[i].v, nullNaN)
		}
	}
	return append(b, close)
}

// appendValue writes v as encoding/json does, and non-finite values as
// Jackson does.
func appendValue(b []byte, v float64, nullNaN bool) []byte {
	switch {
	case math.IsNaN(v):
		if nullNaN {
			return append(b, "null"...)
		}
		return append(b, `"NaN"`...)
	case math.IsInf(v, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(v, -1):
		return append(b, `"-Infinity"`...)
	}
	abs := math.Abs(v)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, v, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
