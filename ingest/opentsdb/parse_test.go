package opentsdb

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// tagList renders tags as "k=v k=v" for comparisons.
func tagList(tags []Tag) string {
	var b strings.Builder
	for i, t := range tags {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", t.Key, t.Value)
	}
	return b.String()
}

func TestParsePutAccepts(t *testing.T) {
	for _, tc := range []struct {
		line   string
		metric string
		ts     int64
		value  float64
		tags   string
	}{
		{"put sys.cpu.user 1356998400 42.5 host=webserver01 cpu=0", "sys.cpu.user", 1356998400000, 42.5, "host=webserver01 cpu=0"},
		{"put m 1356998400123 1 host=a", "m", 1356998400123, 1, "host=a"},
		{"put m 4294967295 1 host=a", "m", 4294967295000, 1, "host=a"},
		{"put m 1 1 host=a", "m", 1000, 1, "host=a"},
		{"put m 1000000000000 1 host=a", "m", 1000000000000, 1, "host=a"},
		{"put m 9999999999999 1 host=a", "m", 9999999999999, 1, "host=a"},
		{"put m +1356998400 1 host=a", "m", 1356998400000, 1, "host=a"},
		// Seconds with a fraction keep their milliseconds.
		{"put m 1364410924.250 1 host=a", "m", 1364410924250, 1, "host=a"},
		{"put m 1364410924.5 1 host=a", "m", 1364410924500, 1, "host=a"},
		{"put m 1364410924.123456 1 host=a", "m", 1364410924123, 1, "host=a"},
		{"put m 1364410924. 1 host=a", "m", 1364410924000, 1, "host=a"},
		// Values: Java longs, decimals, scientific notation.
		{"put m 1 -7 host=a", "m", 1000, -7, "host=a"},
		{"put m 1 +7 host=a", "m", 1000, 7, "host=a"},
		{"put m 1 -9223372036854775808 host=a", "m", 1000, math.MinInt64, "host=a"},
		{"put m 1 9223372036854775807 host=a", "m", 1000, math.MaxInt64, "host=a"},
		{"put m 1 1.5e3 host=a", "m", 1000, 1500, "host=a"},
		{"put m 1 -2E-3 host=a", "m", 1000, -0.002, "host=a"},
		{"put m 1 .5 host=a", "m", 1000, 0.5, "host=a"},
		{"put m 1 5. host=a", "m", 1000, 5, "host=a"},
		{"put m 1 1e-400 host=a", "m", 1000, 0, "host=a"},
		// Names: a-z A-Z 0-9 - _ . / and Unicode letters.
		{"put a-b_c.d/E9 1 1 k/x=v-y_z.w", "a-b_c.d/E9", 1000, 1, "k/x=v-y_z.w"},
		{"put métrique.日本 1 1 hôte=é", "métrique.日本", 1000, 1, "hôte=é"},
		// A repeated identical tag is one tag; empty words between tags,
		// a trailing space and CRLF are ignored.
		{"put m 1 1 a=b a=b", "m", 1000, 1, "a=b"},
		{"put m 1 1 a=b  c=d ", "m", 1000, 1, "a=b c=d"},
		{"put m 1 1 a=b\r\n", "m", 1000, 1, "a=b"},
		{"put m 1 1 t1=v t2=v t3=v t4=v t5=v t6=v t7=v t8=v", "m", 1000, 1, "t1=v t2=v t3=v t4=v t5=v t6=v t7=v t8=v"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			var p Point
			if err := ParsePut(&p, []byte(tc.line), 0); err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if string(p.Metric) != tc.metric || p.Timestamp != tc.ts || p.Value != tc.value || tagList(p.Tags) != tc.tags {
				t.Fatalf("got %s %d %v %s, want %s %d %v %s", p.Metric, p.Timestamp, p.Value, tagList(p.Tags),
					tc.metric, tc.ts, tc.value, tc.tags)
			}
		})
	}
}

// TestParsePutRejects pins the exact reply for each rejected line. The
// first group are OpenTSDB's own documented replies.
func TestParsePutRejects(t *testing.T) {
	nineTags := "put m 1 1 t1=v t2=v t3=v t4=v t5=v t6=v t7=v t8=v t9=v"
	for _, tc := range []struct {
		line, reply  string
		invalidValue bool
	}{
		{"put", "put: illegal argument: not enough arguments (need least 4, got 0)", false},
		{"put ", "put: illegal argument: not enough arguments (need least 4, got 1)", false},
		{"put metric.foo notatime 42 host=web01", "put: invalid value: Invalid character 'n' in notatime", true},

		{"put m 1 2", "put: illegal argument: not enough arguments (need least 4, got 3)", false},
		{"put  1 2 a=b", "put: illegal argument: empty metric name", false},
		{"put m  2 a=b", "put: invalid value: Empty string", true},
		{"put m 0 1 a=b", "put: illegal argument: invalid timestamp: 0", false},
		{"put m -5 1 a=b", "put: illegal argument: invalid timestamp: -5", false},
		{"put m 12345678901 1 a=b", "put: illegal argument: bad timestamp=12345678901: not seconds (at most 4294967295) nor milliseconds (13 digits)", false},
		{"put m 99999999999999 1 a=b", "put: illegal argument: bad timestamp=99999999999999: not seconds (at most 4294967295) nor milliseconds (13 digits)", false},
		{"put m 99999999999999999999 1 a=b", "put: invalid value: Value too long: 99999999999999999999", true},
		{"put m 1364410924.2x 1 a=b", "put: invalid value: Invalid character 'x' in 1364410924.2x", true},
		{"put m 1.2.3 1 a=b", "put: invalid value: Invalid character '.' in 1.2.3", true},
		{"put m .5 1 a=b", "put: illegal argument: invalid timestamp: .5", false},
		{"put m 0.000 1 a=b", "put: illegal argument: invalid timestamp: 0.000", false},
		{"put m 1364410924250.5 1 a=b", "put: illegal argument: bad timestamp=1364410924250.5: only seconds may have a fraction", false},
		{"put m 9999999999.5 1 a=b", "put: illegal argument: bad timestamp=9999999999.5: not seconds (at most 4294967295)", false},
		{"put m 1  a=b", "put: illegal argument: empty value", false},
		{"put m 1 abc a=b", "put: invalid value: Invalid character 'a' in abc", true},
		{"put m 1 NaN a=b", "put: invalid value: Invalid character 'N' in NaN", true},
		{"put m 1 Infinity a=b", "put: invalid value: Invalid character 'I' in Infinity", true},
		{"put m 1 0x1p3 a=b", "put: invalid value: Invalid character 'x' in 0x1p3", true},
		{"put m 1 1e999 a=b", "put: illegal argument: value is NaN or Infinite: Infinity for metric=m timestamp=1", false},
		{"put m 1 -1e999 a=b", "put: illegal argument: value is NaN or Infinite: -Infinity for metric=m timestamp=1", false},
		{"put m 1 1.2.3 a=b", `put: invalid value: For input string: "1.2.3"`, true},
		{"put m 1 inf.0 a=b", `put: invalid value: For input string: "inf.0"`, true},
		{"put m 1 1_0.5 a=b", `put: invalid value: For input string: "1_0.5"`, true},
		{"put m 1 9223372036854775808 a=b", "put: invalid value: Overflow in 9223372036854775808", true},
		{"put m 1 -9223372036854775809 a=b", "put: invalid value: Overflow in -9223372036854775809", true},
		{"put m 1 12345678901234567890 a=b", "put: invalid value: Value too long: 12345678901234567890", true},
		{"put m 1 - a=b", "put: invalid value: Just a sign, no value: -", true},
		{"put m 1 1 host", "put: illegal argument: invalid tag: host", false},
		{"put m 1 1 host=", "put: illegal argument: invalid tag: host=", false},
		{"put m 1 1 =a", "put: illegal argument: invalid tag: =a", false},
		{"put m 1 1 a=b=c", "put: illegal argument: invalid tag: a=b=c", false},
		{"put m 1 1 a=b c=d a=c", "put: illegal argument: duplicate tag: a=c, tags={a=b, c=d}", false},
		{"put m 1 1 ", "put: illegal argument: Need at least one tag (metric=m, tags={})", false},
		{nineTags, "put: illegal argument: Too many tags: 9 maximum allowed: 8, tags: {t1=v, t2=v, t3=v, t4=v, t5=v, t6=v, t7=v, t8=v, t9=v}", false},
		{nineTags + " t10=v", "put: illegal argument: Too many tags: 10 maximum allowed: 8, tags: {t1=v, t2=v, t3=v, t4=v, t5=v, t6=v, t7=v, t8=v, t9=v, ...}", false},
		{"put sys#cpu 1 1 a=b", `put: illegal argument: Invalid metric name ("sys#cpu"): illegal character: #`, false},
		{"put m 1 1 a:b=c", `put: illegal argument: Invalid tag name ("a:b"): illegal character: :`, false},
		{"put m 1 1 a=b!c", `put: illegal argument: Invalid tag value ("b!c"): illegal character: !`, false},
		{"put m 1 1 a=€", `put: illegal argument: Invalid tag value ("€"): illegal character: €`, false},
		{"put m\x01x 1 1 a=b", `put: illegal argument: Invalid metric name ("m\x01x"): illegal character: \x01`, false},
		{"put m\xffx 1 1 a=b", `put: illegal argument: Invalid metric name ("m\xffx"): illegal character: \xff`, false},
		{"put m 1 1 __name__=x", "put: illegal argument: invalid tag: __name__=x: the tag key __name__ is reserved for the metric name", false},
		{"putx m 1 1 a=b", "put: illegal argument: not a put line: putx", false},
		// OpenTSDB's order: the timestamp before the value, tag syntax
		// before the value, the value before tag contents.
		{"put m notatime 1e999 host", "put: invalid value: Invalid character 'n' in notatime", true},
		{"put m 1 abc host", "put: illegal argument: invalid tag: host", false},
		{"put m 1 abc a=b!", "put: invalid value: Invalid character 'a' in abc", true},
		{"put m 12345678901 1e999 a=b", "put: illegal argument: value is NaN or Infinite: Infinity for metric=m timestamp=12345678901", false},
		{"put m! 12345678901 1 a=b", "put: illegal argument: bad timestamp=12345678901: not seconds (at most 4294967295) nor milliseconds (13 digits)", false},
	} {
		t.Run(tc.line, func(t *testing.T) {
			var p Point
			err := ParsePut(&p, []byte(tc.line), 0)
			if err == nil {
				t.Fatalf("accepted: %s %d %v %s", p.Metric, p.Timestamp, p.Value, tagList(p.Tags))
			}
			if err.Error() != tc.reply {
				t.Fatalf("reply\n got %s\nwant %s", err, tc.reply)
			}
			if perr := err.(*ParseError); perr.InvalidValue != tc.invalidValue {
				t.Fatalf("InvalidValue = %v, want %v", perr.InvalidValue, tc.invalidValue)
			}
		})
	}
}

func TestParsePutMaxTags(t *testing.T) {
	var p Point
	line := []byte("put m 1 1 a=1 b=2 c=3")
	if err := ParsePut(&p, line, 3); err != nil {
		t.Fatal(err)
	}
	want := "put: illegal argument: Too many tags: 3 maximum allowed: 2, tags: {a=1, b=2, c=3}"
	if err := ParsePut(&p, line, 2); err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// TestParsePutEchoIsBounded checks that a reply repeats at most maxEcho
// bytes of the input.
func TestParsePutEchoIsBounded(t *testing.T) {
	var p Point
	long := strings.Repeat("x", 10000) + "#"
	err := ParsePut(&p, []byte("put "+long+" 1 1 a=b"), 0)
	if err == nil {
		t.Fatal("accepted")
	}
	if len(err.Error()) > 2*maxEcho+200 {
		t.Fatalf("reply is %d bytes", len(err.Error()))
	}
}

func TestParsePutDoesNotAllocate(t *testing.T) {
	line := []byte("put sys.cpu.user 1356998400 42.5 host=webserver01 cpu=0 dc=lga")
	var p Point
	allocs := testing.AllocsPerRun(100, func() {
		if err := ParsePut(&p, line, 0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per line", allocs)
	}
}

func TestSeriesLabels(t *testing.T) {
	ls := SeriesLabels("sys.cpu.user", map[string]string{"host": "a", "cpu": "0", "__name__": "ignored"})
	if got, want := ls.String(), `{__name__="sys.cpu.user", cpu="0", host="a"}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	m, tags := MetricAndTags(ls)
	if m != "sys.cpu.user" || len(tags) != 2 || tags["host"] != "a" || tags["cpu"] != "0" {
		t.Fatalf("MetricAndTags = %q %v", m, tags)
	}
}
