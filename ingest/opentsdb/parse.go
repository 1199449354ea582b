package opentsdb

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// Tag is one tag of a data point. Key and Value alias the parsed input.
type Tag struct {
	Key, Value []byte
}

// Point is one parsed data point. Metric and the tags alias the parsed
// line: they are valid until the line's buffer is reused.
type Point struct {
	// Metric is the metric name, validated.
	Metric []byte
	// Timestamp is in milliseconds since the Unix epoch.
	Timestamp int64
	// Value is finite.
	Value float64
	// Tags are the tags in the order written, each key once, validated.
	Tags []Tag

	// extraTags counts tags beyond MaxTags+1, which are not kept: the line
	// is rejected for too many tags anyway, and the duplicate check stays
	// bounded.
	extraTags int
}

// ParseError is why a data point was rejected. Error returns the one-line
// reply OpenTSDB's telnet interface sends for it, without the newline:
// "put: invalid value: <Msg>" or "put: illegal argument: <Msg>".
type ParseError struct {
	// InvalidValue is true when a number did not parse (OpenTSDB's
	// NumberFormatException, counted as invalid_values), false for every
	// other problem (an IllegalArgumentException, illegal_arguments).
	InvalidValue bool
	// Msg describes the problem in OpenTSDB's words where it has some.
	Msg string
}

func (e *ParseError) Error() string {
	if e.InvalidValue {
		return "put: invalid value: " + e.Msg
	}
	return "put: illegal argument: " + e.Msg
}

func illegal(format string, args ...any) *ParseError {
	return &ParseError{Msg: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) *ParseError {
	return &ParseError{InvalidValue: true, Msg: fmt.Sprintf(format, args...)}
}

// Timestamp bounds, OpenTSDB's: seconds fit in 32 bits unsigned,
// milliseconds have exactly 13 digits.
const (
	maxSeconds = math.MaxUint32
	minMillis  = 1_000_000_000_000
	maxMillis  = 9_999_999_999_999
)

// ParsePut parses one telnet line "put <metric> <timestamp> <value>
// <tagk1=tagv1> [<tagk2=tagv2> ...]" into p, reusing p.Tags' memory. A
// trailing "\n" or "\r\n" is ignored. maxTags <= 0 means DefaultMaxTags.
// The error, if any, is a *ParseError. ParsePut does not allocate for a
// valid line once p.Tags has grown to the line's tag count.
//
// The rules are OpenTSDB's (PutDataPointRpc, Tags, TSDB.addPoint), checked
// in its order so a line with several problems gets OpenTSDB's reply:
//
//   - Words are separated by single spaces; at least 4 must follow "put".
//     Empty words between tags are ignored.
//   - The timestamp is positive: seconds up to 4294967295 (OpenTSDB's
//     32-bit limit, so 10-digit values above it are rejected) or
//     milliseconds of exactly 13 digits. Seconds may have a fraction,
//     "1364410924.250", truncated to the millisecond. (OpenTSDB drops the
//     dot and reads the digits as milliseconds, which agrees when the
//     fraction has 3 digits.)
//   - The value is an integer (a Java long: digits, optional sign) unless
//     it contains '.', 'e' or 'E'; then a decimal float, scientific
//     notation included. NaN and infinities are rejected.
//   - Tags are key=value, both non-empty; a repeated key must repeat its
//     value. At least one tag, at most maxTags.
//   - Metric names, tag keys and values hold only a-z A-Z 0-9 - _ . / and
//     Unicode letters.
//   - Immune's own rule: the tag key "__name__" is reserved for the metric
//     name (see SeriesLabels).
func ParsePut(p *Point, line []byte, maxTags int) error {
	if maxTags <= 0 {
		maxTags = DefaultMaxTags
	}
	line = trimNewline(line)
	cmd, _, _ := bytes.Cut(line, spaceSep)
	if string(cmd) != "put" {
		return illegal("not a put line: %s", safe(cmd))
	}
	if err := parsePutWords(p, line, maxTags); err != nil {
		return err
	}
	return nil
}

var spaceSep = []byte{' '}

// trimNewline drops a trailing "\n", "\r\n" or "\r".
func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// parsePutWords parses a put line whose first word is "put" and which has
// no newline. Each word is scanned once: the scan that finds its end also
// finds the '=' of a tag and notes whether every byte is a plain ASCII
// name byte, so only names with other bytes take the slow check.
func parsePutWords(p *Point, line []byte, maxTags int) *ParseError {
	// OpenTSDB splits on every single space, so "a  b" has an empty word
	// between a and b; the argument count includes such words.
	notEnough := func() *ParseError {
		return illegal("not enough arguments (need least 4, got %d)", bytes.Count(line, spaceSep))
	}
	if len(line) < len("put ") {
		return notEnough()
	}
	rest := line[len("put "):]
	plain := true // every name byte so far is in nameByte
	i := 0
	for ; i < len(rest) && rest[i] != ' '; i++ {
		if !nameByte[rest[i]] {
			plain = false
		}
	}
	if i == len(rest) {
		return notEnough()
	}
	metric := rest[:i]
	rest = rest[i+1:]
	j := bytes.IndexByte(rest, ' ')
	if j < 0 {
		return notEnough()
	}
	tsWord := rest[:j]
	rest = rest[j+1:]
	// The value must be followed by a space: a tag word, even empty, is
	// the fourth argument.
	if j = bytes.IndexByte(rest, ' '); j < 0 {
		return notEnough()
	}
	valWord := rest[:j]
	rest = rest[j+1:]

	if len(metric) == 0 {
		return illegal("empty metric name")
	}
	ts, rangeErr, perr := parseTimestamp(tsWord)
	if perr != nil {
		return perr
	}
	if len(valWord) == 0 {
		return illegal("empty value")
	}

	p.Metric, p.Tags, p.extraTags = metric, p.Tags[:0], 0
	for len(rest) > 0 {
		i, eq, eqs := 0, -1, 0
	scan:
		for ; i < len(rest); i++ {
			switch c := rest[i]; {
			case c == ' ':
				break scan
			case c == '=':
				if eq < 0 {
					eq = i
				}
				eqs++
			case !nameByte[c]:
				plain = false
			}
		}
		w := rest[:i]
		rest = rest[min(i+1, len(rest)):]
		if len(w) == 0 {
			continue
		}
		if eq <= 0 || eq == len(w)-1 || eqs > 1 {
			return illegal("invalid tag: %s", safe(w))
		}
		if perr := p.addTag(w, eq, maxTags); perr != nil {
			return perr
		}
	}

	v, perr := parseValue(valWord)
	if perr != nil {
		return perr
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return illegal("value is NaN or Infinite: %s for metric=%s timestamp=%s", javaFloat(v), safe(metric), safe(tsWord))
	}
	if rangeErr != nil {
		return rangeErr
	}
	if perr := checkSeries(metric, p.Tags, p.extraTags, maxTags, !plain); perr != nil {
		return perr
	}
	p.Timestamp, p.Value = ts, v
	return nil
}

// addTag adds the tag word w, "key=value" with its '=' at eq, to p.Tags
// (OpenTSDB's Tags.parse).
func (p *Point) addTag(w []byte, eq, maxTags int) *ParseError {
	k, v := w[:eq], w[eq+1:]
	if string(k) == metricLabel {
		return illegal("invalid tag: %s: the tag key %s is reserved for the metric name", safe(w), metricLabel)
	}
	for _, t := range p.Tags {
		if bytes.Equal(t.Key, k) {
			if bytes.Equal(t.Value, v) {
				return nil // OpenTSDB accepts a repeated identical tag
			}
			return illegal("duplicate tag: %s, tags=%s", safe(w), formatTags(p.Tags))
		}
	}
	if len(p.Tags) > maxTags {
		p.extraTags++
		return nil
	}
	p.Tags = append(p.Tags, Tag{Key: k, Value: v})
	return nil
}

// checkSeries applies OpenTSDB's IncomingDataPoints.checkMetricAndTags,
// and reserves the tag key __name__. extra counts tags given beyond those
// in tags. checkNames false skips the character checks, for names already
// known to hold only plain ASCII name bytes.
func checkSeries(metric []byte, tags []Tag, extra, maxTags int, checkNames bool) *ParseError {
	switch n := len(tags) + extra; {
	case n == 0:
		return illegal("Need at least one tag (metric=%s, tags={})", safe(metric))
	case n > maxTags:
		shown := formatTags(tags)
		if extra > 0 {
			shown = shown[:len(shown)-1] + ", ...}"
		}
		return illegal("Too many tags: %d maximum allowed: %d, tags: %s", n, maxTags, shown)
	}
	if !checkNames {
		return nil
	}
	if perr := checkName("metric name", metric); perr != nil {
		return perr
	}
	for _, t := range tags {
		if string(t.Key) == metricLabel {
			return illegal("invalid tag: %s=%s: the tag key %s is reserved for the metric name", metricLabel, safe(t.Value), metricLabel)
		}
		if perr := checkName("tag name", t.Key); perr != nil {
			return perr
		}
		if perr := checkName("tag value", t.Value); perr != nil {
			return perr
		}
	}
	return nil
}

// nameByte marks the ASCII bytes allowed in names. Bytes of multi-byte
// UTF-8 sequences are false: they need checkName.
var nameByte = func() (t [256]bool) {
	for c := range utf8.RuneSelf {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '/'
	}
	return t
}()

// checkName applies OpenTSDB's Tags.validateString: a-z A-Z 0-9 - _ . /
// and Unicode letters. Bytes that are not UTF-8 are illegal.
func checkName(what string, s []byte) *ParseError {
	if len(s) == 0 {
		return illegal("Invalid %s: empty string", what)
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !nameByte[c] {
				return illegal("Invalid %s (\"%s\"): illegal character: %s", what, safe(s), safe(s[i:i+1]))
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 || !unicode.IsLetter(r) {
			return illegal("Invalid %s (\"%s\"): illegal character: %s", what, safe(s), safe(s[i:i+size]))
		}
		i += size
	}
	return nil
}

// validName reports whether s passes checkName.
func validName(s []byte) bool { return checkName("", s) == nil }

// parseTimestamp parses a put timestamp and returns it in milliseconds.
// perr is a syntax error or a non-positive timestamp, which OpenTSDB
// reports before it looks at the value; rangeErr is a timestamp that is
// neither seconds nor milliseconds, which it reports after.
func parseTimestamp(b []byte) (ms int64, rangeErr, perr *ParseError) {
	if n, ok := smallUint(b); ok && n > 0 {
		// The common case: plain digits, seconds or milliseconds.
		switch {
		case n <= maxSeconds:
			return n * 1000, nil, nil
		case n >= minMillis && n <= maxMillis:
			return n, nil, nil
		}
	}
	if dot := bytes.IndexByte(b, '.'); dot >= 0 {
		return parseFractionalTimestamp(b, dot)
	}
	n, perr := parseLong(b)
	if perr != nil {
		return 0, nil, perr
	}
	switch {
	case n <= 0:
		return 0, nil, illegal("invalid timestamp: %d", n)
	case n <= maxSeconds:
		return n * 1000, nil, nil
	case n >= minMillis && n <= maxMillis:
		return n, nil, nil
	}
	return 0, illegal("bad timestamp=%d: not seconds (at most %d) nor milliseconds (13 digits)", n, int64(maxSeconds)), nil
}

// parseFractionalTimestamp parses seconds with a fraction,
// "1364410924.250", truncated to the millisecond.
func parseFractionalTimestamp(b []byte, dot int) (ms int64, rangeErr, perr *ParseError) {
	intPart, frac := b[:dot], b[dot+1:]
	for i, c := range b {
		if (c < '0' || c > '9') && i != dot {
			return 0, nil, invalid("Invalid character %s in %s", quoteRuneAt(b, i), safe(b))
		}
	}
	if len(intPart) == 0 {
		return 0, nil, illegal("invalid timestamp: %s", safe(b))
	}
	if len(intPart) > 10 {
		return 0, illegal("bad timestamp=%s: only seconds may have a fraction", safe(b)), nil
	}
	var s int64
	for _, c := range intPart {
		s = s*10 + int64(c-'0')
	}
	var fracMs int64
	for i := range 3 {
		fracMs *= 10
		if i < len(frac) {
			fracMs += int64(frac[i] - '0')
		}
	}
	ms = s*1000 + fracMs
	switch {
	case ms <= 0:
		return 0, nil, illegal("invalid timestamp: %s", safe(b))
	case s > maxSeconds:
		return 0, illegal("bad timestamp=%s: not seconds (at most %d)", safe(b), int64(maxSeconds)), nil
	}
	return ms, nil, nil
}

// parseValue parses a data point value as OpenTSDB does: a Java long
// unless the text looks like a float (contains '.', 'e' or 'E'). An
// out-of-range float parses to an infinity, which the caller rejects.
func parseValue(b []byte) (float64, *ParseError) {
	if len(b) > 0 && b[0] == '-' {
		if n, ok := smallUint(b[1:]); ok {
			return -float64(n), nil
		}
	} else if n, ok := smallUint(b); ok {
		return float64(n), nil
	}
	looksLikeInteger := true
	for _, c := range b {
		if c == '.' || c == 'e' || c == 'E' {
			looksLikeInteger = false
			break
		}
	}
	if looksLikeInteger {
		n, perr := parseLong(b)
		return float64(n), perr
	}
	// strconv.ParseFloat also takes "inf", "nan", hex floats and
	// underscores; Java's parseDouble takes none of those here.
	for _, c := range b {
		if (c < '0' || c > '9') && c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-' {
			return 0, invalid("For input string: \"%s\"", safe(b))
		}
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, invalid("For input string: \"%s\"", safe(b))
	}
	return f, nil
}

// smallUint parses 1 to 18 decimal digits, which cannot overflow. It
// reports false for anything else, left to the general parsers.
func smallUint(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseLong is Java's Long.parseLong as OpenTSDB's Tags.parseLong has it,
// with its error messages.
func parseLong(b []byte) (int64, *ParseError) {
	n := len(b)
	if n == 0 {
		return 0, invalid("Empty string")
	}
	i := 0
	neg := false
	if b[0] == '+' || b[0] == '-' {
		if n == 1 {
			return 0, invalid("Just a sign, no value: %s", safe(b))
		}
		if n > 20 {
			return 0, invalid("Value too long: %s", safe(b))
		}
		neg = b[0] == '-'
		i = 1
	} else if n > 19 {
		return 0, invalid("Value too long: %s", safe(b))
	}
	// Accumulate negatively, as Java does, so MinInt64 fits.
	var v int64
	for ; i < n; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, invalid("Invalid character %s in %s", quoteRuneAt(b, i), safe(b))
		}
		if v < math.MinInt64/10 {
			return 0, invalid("Overflow in %s", safe(b))
		}
		v *= 10
		d := int64(c - '0')
		if v < math.MinInt64+d {
			return 0, invalid("Overflow in %s", safe(b))
		}
		v -= d
	}
	if neg {
		return v, nil
	}
	if v == math.MinInt64 {
		return 0, invalid("Overflow in %s", safe(b))
	}
	return -v, nil
}

// javaFloat formats v as Java's Double.toString does for the values that
// reach it in error messages: infinities and NaN.
func javaFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "Infinity"
	case math.IsInf(v, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// formatTags renders tags as Java's Map.toString does, "{k1=v1, k2=v2}",
// in the order written.
func formatTags(tags []Tag) string {
	var b []byte
	b = append(b, '{')
	for i, t := range tags {
		if i > 0 {
			b = append(b, ", "...)
		}
		// Each tag's echo is bounded; so is the list's.
		if len(b) > maxEcho {
			b = append(b, "..."...)
			break
		}
		b = append(b, safe(t.Key)...)
		b = append(b, '=')
		b = append(b, safe(t.Value)...)
	}
	return string(append(b, '}'))
}

// quoteRuneAt renders the character at b[i] as Java's "'c'", escaping
// what safe escapes.
func quoteRuneAt(b []byte, i int) string {
	_, size := utf8.DecodeRune(b[i:])
	return "'" + safe(b[i:i+size]) + "'"
}

// maxEcho is how many bytes of client input an error message repeats.
const maxEcho = 256

// safe returns b for an error message: control characters and bytes that
// are not UTF-8 are escaped, so a reply stays one printable line, and the
// echo is cut ("...") once it is maxEcho bytes long: escaping can make it
// four times the input.
func safe(b []byte) string {
	clean := len(b) <= maxEcho
	for i := 0; clean && i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 || !unicode.IsPrint(r) {
			clean = false
		}
		i += size
	}
	if clean {
		return string(b)
	}
	var out []byte
	for i := 0; i < len(b); {
		if len(out) >= maxEcho {
			out = append(out, "..."...)
			break
		}
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			out = fmt.Appendf(out, `\x%02x`, b[i])
		case !unicode.IsPrint(r):
			quoted := strconv.QuoteRune(r)
			out = append(out, quoted[1:len(quoted)-1]...)
		default:
			out = append(out, b[i:i+size]...)
		}
		i += size
	}
	return string(out)
}
