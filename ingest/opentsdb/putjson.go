package opentsdb

import (
	"bytes"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The /api/put body is decoded by hand: encoding/json would need a map or
// reflection per data point, and its values are strings or numbers as the
// client chose, which OpenTSDB (Jackson) coerces. The decoder accepts
// exactly the documents encoding/json's Valid accepts (RFC 8259, bytes
// that are not UTF-8 allowed inside strings, nesting up to 10000), of the
// shape {point} or [{point}, ...]; FuzzPut holds it to that.

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

// errNoContent is an empty body (OpenTSDB: "Missing request content").
var errNoContent = errors.New("the request body is empty")

type jsonKind uint8

const (
	jsonMissing jsonKind = iota
	jsonNull
	jsonString
	jsonNumber
	jsonBool
	jsonObject
	jsonArray
)

// jsonScalar is a field's value: the content of a string (unescaped), the
// text of a number or of true/false, or just the kind of anything else.
type jsonScalar struct {
	kind jsonKind
	text []byte
}

// jsonPoint is one decoded, not yet validated data point. Byte slices
// alias the body or the decoder's arena.
type jsonPoint struct {
	metric, ts, value jsonScalar
	tags              jsonKind // jsonObject when tags is an object
	tagStart, tagEnd  int      // its tags: jsonDecoder.tags[tagStart:tagEnd]
	// extraTags counts distinct-looking tags beyond maxTags+1, which are
	// not kept: the point is rejected for too many tags anyway.
	extraTags int
	// badTag is the key of the first tag whose value is not a string,
	// number or boolean; badTagKind is that value's kind.
	badTag     []byte
	badTagKind jsonKind
}

// jsonDecoder decodes /api/put bodies, reusing its memory between them.
type jsonDecoder struct {
	b       []byte
	i       int
	depth   int
	maxTags int
	arena   []byte // unescaped strings
	points  []jsonPoint
	tags    []Tag
}

// syntaxError is a body that is not JSON of the expected shape.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at offset %d", e.msg, e.off) }

func (d *jsonDecoder) errorf(format string, args ...any) error {
	return &syntaxError{off: d.i, msg: fmt.Sprintf(format, args...)}
}

// decode decodes body into d.points and d.tags.
func (d *jsonDecoder) decode(body []byte) error {
	d.b, d.i, d.depth = body, 0, 0
	d.arena, d.points, d.tags = d.arena[:0], d.points[:0], d.tags[:0]
	d.ws()
	switch d.peek() {
	case 0:
		if d.i == len(d.b) {
			return errNoContent
		}
		return d.errorf("expected a data point object or an array of them")
	case '{':
		if err := d.point(); err != nil {
			return err
		}
	case '[':
		more, err := d.begin(']')
		for ; more && err == nil; more, err = d.next(']') {
			if d.peek() != '{' {
				return d.errorf("expected a data point object")
			}
			if err = d.point(); err != nil {
				return err
			}
		}
		if err != nil {
			return err
		}
	default:
		return d.errorf("expected a data point object or an array of them")
	}
	d.ws()
	if d.i != len(d.b) {
		return d.errorf("unexpected data after the top-level value")
	}
	return nil
}

func (d *jsonDecoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *jsonDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// begin consumes the opening byte of an object or an array and the
// whitespace after it. It reports whether a member or element follows, or
// false when the container is empty: then it is consumed whole.
func (d *jsonDecoder) begin(closing byte) (bool, error) {
	d.i++
	d.depth++
	if d.depth > maxJSONDepth {
		return false, d.errorf("nested too deeply")
	}
	d.ws()
	if d.peek() == closing {
		d.i++
		d.depth--
		return false, nil
	}
	return true, nil
}

// next consumes what follows a member or element: a ',' and the
// whitespace after it, reporting that another one follows, or the closing
// byte, reporting false. With begin, it makes the loop over a container:
//
//	more, err := d.begin(closing)
//	for ; more && err == nil; more, err = d.next(closing) {
//		// consume one member or element
//	}
func (d *jsonDecoder) next(closing byte) (bool, error) {
	d.ws()
	switch d.peek() {
	case ',':
		d.i++
		d.ws()
		return true, nil
	case closing:
		d.i++
		d.depth--
		return false, nil
	}
	return false, d.errorf("expected ',' or '%c'", closing)
}

// key consumes a member name and its colon.
func (d *jsonDecoder) key() ([]byte, error) {
	d.ws()
	k, err := d.str()
	if err != nil {
		return nil, err
	}
	d.ws()
	if d.peek() != ':' {
		return nil, d.errorf("expected ':'")
	}
	d.i++
	d.ws()
	return k, nil
}

// point decodes one data point object.
func (d *jsonDecoder) point() error {
	p := jsonPoint{tagStart: len(d.tags), tagEnd: len(d.tags)}
	more, err := d.begin('}')
	for ; more && err == nil; more, err = d.next('}') {
		var k []byte
		if k, err = d.key(); err != nil {
			return err
		}
		// Member names are case-sensitive, as Jackson's; a repeated
		// member replaces the earlier one.
		switch string(k) {
		case "metric":
			p.metric, err = d.scalar()
		case "timestamp":
			p.ts, err = d.scalar()
		case "value":
			p.value, err = d.scalar()
		case "tags":
			err = d.tagsMember(&p)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	d.points = append(d.points, p)
	return nil
}

// tagsMember decodes the value of "tags".
func (d *jsonDecoder) tagsMember(p *jsonPoint) error {
	if d.peek() != '{' {
		s, err := d.scalar()
		p.tags = s.kind
		return err
	}
	p.tags = jsonObject
	p.tagStart, p.extraTags, p.badTag = len(d.tags), 0, nil
	more, err := d.begin('}')
	for ; more && err == nil; more, err = d.next('}') {
		var k []byte
		if k, err = d.key(); err != nil {
			return err
		}
		var v jsonScalar
		if v, err = d.scalar(); err != nil {
			return err
		}
		switch v.kind {
		case jsonString, jsonNumber, jsonBool:
			d.addTag(p, k, v.text)
		default:
			if p.badTag == nil {
				p.badTag, p.badTagKind = k, v.kind
			}
		}
	}
	p.tagEnd = len(d.tags)
	return err
}

// addTag adds a tag to the point being decoded, the last value of a
// repeated key winning as in a JSON object. At most maxTags+1 tags are
// kept, which bounds the work per tag.
func (d *jsonDecoder) addTag(p *jsonPoint, k, v []byte) {
	tags := d.tags[p.tagStart:]
	for j := range tags {
		if bytes.Equal(tags[j].Key, k) {
			tags[j].Value = v
			return
		}
	}
	if len(tags) > d.maxTags {
		p.extraTags++
		return
	}
	d.tags = append(d.tags, Tag{Key: k, Value: v})
}

// scalar decodes any value, keeping the text of strings, numbers and
// booleans.
func (d *jsonDecoder) scalar() (jsonScalar, error) {
	switch c := d.peek(); {
	case c == '"':
		s, err := d.str()
		return jsonScalar{kind: jsonString, text: s}, err
	case c == '-' || '0' <= c && c <= '9':
		n, err := d.number()
		return jsonScalar{kind: jsonNumber, text: n}, err
	case c == 't':
		t, err := d.literal("true")
		return jsonScalar{kind: jsonBool, text: t}, err
	case c == 'f':
		f, err := d.literal("false")
		return jsonScalar{kind: jsonBool, text: f}, err
	case c == 'n':
		_, err := d.literal("null")
		return jsonScalar{kind: jsonNull}, err
	case c == '{':
		return jsonScalar{kind: jsonObject}, d.skip()
	case c == '[':
		return jsonScalar{kind: jsonArray}, d.skip()
	}
	return jsonScalar{}, d.errorf("expected a value")
}

// skip validates and skips any value.
func (d *jsonDecoder) skip() error {
	var closing byte
	switch d.peek() {
	case '{':
		closing = '}'
	case '[':
		closing = ']'
	default:
		_, err := d.scalar()
		return err
	}
	more, err := d.begin(closing)
	for ; more && err == nil; more, err = d.next(closing) {
		if closing == '}' {
			if _, err = d.key(); err != nil {
				return err
			}
		}
		if err = d.skip(); err != nil {
			return err
		}
	}
	return err
}

func (d *jsonDecoder) literal(lit string) ([]byte, error) {
	if !bytes.HasPrefix(d.b[d.i:], []byte(lit)) {
		return nil, d.errorf("expected %s", lit)
	}
	s := d.b[d.i : d.i+len(lit)]
	d.i += len(lit)
	return s, nil
}

// number consumes a JSON number and returns its text.
func (d *jsonDecoder) number() ([]byte, error) {
	start := d.i
	if d.peek() == '-' {
		d.i++
	}
	switch c := d.peek(); {
	case c == '0':
		d.i++
	case '1' <= c && c <= '9':
		d.digits()
	default:
		return nil, d.errorf("expected a digit")
	}
	if d.peek() == '.' {
		d.i++
		if !d.digits() {
			return nil, d.errorf("expected a digit after the decimal point")
		}
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		d.i++
		if c := d.peek(); c == '+' || c == '-' {
			d.i++
		}
		if !d.digits() {
			return nil, d.errorf("expected a digit in the exponent")
		}
	}
	return d.b[start:d.i], nil
}

// digits consumes a run of digits and reports whether there was any.
func (d *jsonDecoder) digits() bool {
	start := d.i
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}

// str consumes a string and returns its content: a slice of the body when
// it has no escapes, else an unescaped copy in the arena.
func (d *jsonDecoder) str() ([]byte, error) {
	if d.peek() != '"' {
		return nil, d.errorf("expected a string")
	}
	d.i++
	start := d.i
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			s := d.b[start:d.i:d.i]
			d.i++
			return s, nil
		case c == '\\':
			return d.unescape(start)
		case c < 0x20:
			return nil, d.errorf("control character in a string")
		}
		d.i++
	}
	return nil, d.errorf("unterminated string")
}

// unescape continues str from the first backslash, as encoding/json's
// unquote does: an invalid surrogate becomes U+FFFD.
func (d *jsonDecoder) unescape(start int) ([]byte, error) {
	aStart := len(d.arena)
	d.arena = append(d.arena, d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return d.arena[aStart:len(d.arena):len(d.arena)], nil
		case c < 0x20:
			return nil, d.errorf("control character in a string")
		case c != '\\':
			d.arena = append(d.arena, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			break
		}
		e := d.b[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			d.arena = append(d.arena, e)
		case 'b':
			d.arena = append(d.arena, '\b')
		case 'f':
			d.arena = append(d.arena, '\f')
		case 'n':
			d.arena = append(d.arena, '\n')
		case 'r':
			d.arena = append(d.arena, '\r')
		case 't':
			d.arena = append(d.arena, '\t')
		case 'u':
			r := hex4(d.b[d.i:])
			if r < 0 {
				return nil, d.errorf("invalid \\u escape")
			}
			d.i += 4
			if utf16.IsSurrogate(r) {
				if len(d.b)-d.i >= 6 && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
					if r2 := hex4(d.b[d.i+2:]); r2 >= 0 {
						if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
							d.i += 6
							d.arena = utf8.AppendRune(d.arena, dec)
							continue
						}
					}
				}
				r = unicode.ReplacementChar
			}
			d.arena = utf8.AppendRune(d.arena, r)
		default:
			return nil, d.errorf("invalid escape")
		}
	}
	return nil, d.errorf("unterminated string")
}

// hex4 decodes 4 hex digits, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
