package opentsdb

import (
	"strings"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	nowMs := now.UnixMilli()
	tokyo := time.FixedZone("JST", 9*3600)
	for _, tc := range []struct {
		in   string
		loc  *time.Location
		want int64
		err  string
	}{
		{in: "now", want: nowMs},
		{in: "NOW", want: nowMs},
		{in: "1h-ago", want: nowMs - 3600_000},
		{in: "30s-ago", want: nowMs - 30_000},
		{in: "500ms-ago", want: nowMs - 500},
		{in: "2m-ago", want: nowMs - 120_000},
		{in: "1d-ago", want: nowMs - 86_400_000},
		{in: "1w-ago", want: nowMs - 7*86_400_000},
		{in: "1n-ago", want: nowMs - 30*86_400_000},
		{in: "1y-ago", want: nowMs - 365*86_400_000},
		{in: "2H-AGO", want: nowMs - 7200_000},
		{in: "1364410924", want: 1364410924_000},
		{in: "1364410924000", want: 1364410924_000},
		{in: "1364410924250", want: 1364410924_250},
		{in: "1364410924.250", want: 1364410924_250},
		{in: "1364410924.25", want: 1364410924_250},
		{in: "1364410924.5", want: 1364410924_500},
		{in: "0", want: 0},
		{in: "60", want: 60_000},
		{in: "2013/01/23-12:50:42", want: time.Date(2013, 1, 23, 12, 50, 42, 0, time.UTC).UnixMilli()},
		{in: "2013/01/23 12:50:42", want: time.Date(2013, 1, 23, 12, 50, 42, 0, time.UTC).UnixMilli()},
		{in: "2013/01/23-12:50", want: time.Date(2013, 1, 23, 12, 50, 0, 0, time.UTC).UnixMilli()},
		{in: "2013/01/23 12:50", want: time.Date(2013, 1, 23, 12, 50, 0, 0, time.UTC).UnixMilli()},
		{in: "2013/01/23", want: time.Date(2013, 1, 23, 0, 0, 0, 0, time.UTC).UnixMilli()},
		{in: "2013/01/23", loc: tokyo, want: time.Date(2013, 1, 23, 0, 0, 0, 0, tokyo).UnixMilli()},
		{in: "", err: "empty"},
		{in: "yesterday", err: "not a relative time"},
		{in: "1h", err: "not a relative time"},
		{in: "-5", err: "not a relative time"},
		{in: "1.5", err: "millisecond timestamps"},
		{in: "1364410924.2500", err: "millisecond timestamps"},
		{in: "1h-ag", err: "not a relative time"},
		{in: "h-ago", err: "invalid duration (number)"},
		{in: "0h-ago", err: "zero or negative"},
		{in: "1x-ago", err: "invalid duration (suffix)"},
		{in: "100y-ago", err: "before 1970"},
		{in: "1000y-ago", err: "too long"},
		{in: "99999999999999999999y-ago", err: "too long"},
		{in: "99999999999999", err: "not a relative time"},
		{in: "9999999999999", want: 9999999999999},
		{in: "2013/13/23", err: "expected one of the formats"},
		{in: "2013-01-23", err: "not a relative time"},
		{in: "2013/01/23T12:50", err: "expected one of the formats"},
	} {
		loc := tc.loc
		if loc == nil {
			loc = time.UTC
		}
		got, err := parseTime(tc.in, now, loc)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseTime(%q) = %d, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseTime(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"1ms", 1, false},
		{"250ms", 250, false},
		{"1s", 1000, false},
		{"1m", 60_000, false},
		{"15M", 900_000, false},
		{"1h", 3_600_000, false},
		{"1d", 86_400_000, false},
		{"2w", 14 * 86_400_000, false},
		{"1n", 30 * 86_400_000, false},
		{"1y", 365 * 86_400_000, false},
		{"0s", 0, true},
		{"1", 0, true},
		{"m", 0, true},
		{"1.5s", 0, true},
		{"1mss", 0, true},
		{"-1s", 0, true},
		{"1000000y", 0, true},
	} {
		got, err := parseDuration(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseDuration(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
