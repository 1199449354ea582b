package opentsdb

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// maxTimeMs is the largest absolute timestamp OpenTSDB accepts, in
// milliseconds (November 2286); it also caps durations so that time
// arithmetic can never overflow int64.
const maxTimeMs = 9_999_999_999_999

// absoluteLayouts are OpenTSDB's human-readable formats (user_guide/query/
// dates), interpreted in the request's time zone (UTC by default).
var absoluteLayouts = []string{
	"2006/01/02-15:04:05",
	"2006/01/02 15:04:05",
	"2006/01/02-15:04",
	"2006/01/02 15:04",
	"2006/01/02",
}

// parseTime parses a query start or end time into Unix milliseconds:
//
//   - "now";
//   - relative, "<amount><unit>-ago" with the units of parseDuration;
//   - Unix time, seconds if it has at most 10 digits, milliseconds
//     otherwise, or "<10 digits>.<1-3 digits>" seconds with a fraction;
//   - one of absoluteLayouts, in loc.
//
// Negative times and times after maxTimeMs are rejected.
func parseTime(s string, now time.Time, loc *time.Location) (int64, error) {
	switch {
	case s == "":
		return 0, fmt.Errorf("invalid time: empty")
	case strings.EqualFold(s, "now"):
		return now.UnixMilli(), nil
	case strings.HasSuffix(strings.ToLower(s), "-ago"):
		d, err := parseDuration(s[:len(s)-len("-ago")])
		if err != nil {
			return 0, fmt.Errorf("invalid time %q: %w", s, err)
		}
		t := now.UnixMilli() - d
		if t < 0 {
			return 0, fmt.Errorf("invalid time %q: before 1970", s)
		}
		return t, nil
	case strings.ContainsAny(s, "/:"):
		for _, layout := range absoluteLayouts {
			if len(s) != len(layout) {
				continue
			}
			if t, err := time.ParseInLocation(layout, s, loc); err == nil {
				ms := t.UnixMilli()
				if ms < 0 || ms > maxTimeMs {
					return 0, fmt.Errorf("invalid time %q: out of range", s)
				}
				return ms, nil
			}
		}
		return 0, fmt.Errorf("invalid time %q: expected one of the formats yyyy/MM/dd-HH:mm:ss, yyyy/MM/dd HH:mm:ss, yyyy/MM/dd-HH:mm, yyyy/MM/dd HH:mm or yyyy/MM/dd", s)
	}
	secs, frac, dotted := strings.Cut(s, ".")
	if dotted {
		// Unlike OpenTSDB, which drops the dot (so ".25" would read as 25 ms),
		// the fraction is read as a fraction of a second.
		if len(secs) != 10 || len(frac) < 1 || len(frac) > 3 || !allDigits(secs) || !allDigits(frac) {
			return 0, fmt.Errorf("invalid time %q: millisecond timestamps must be in the format <10 digit seconds>.<1 to 3 digit fraction>", s)
		}
		sec, _ := strconv.ParseInt(secs, 10, 64)
		ms, _ := strconv.ParseInt((frac + "00")[:3], 10, 64)
		return sec*1000 + ms, nil
	}
	if !allDigits(s) || len(s) > 13 {
		return 0, fmt.Errorf("invalid time %q: not a relative time (1h-ago), a Unix time in seconds or milliseconds, or yyyy/MM/dd[-HH:mm[:ss]]", s)
	}
	t, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid time %q: %w", s, err)
	}
	// OpenTSDB's rule: ten digits or fewer are seconds (until 2286).
	if len(s) <= 10 {
		t *= 1000
	}
	if t > maxTimeMs {
		return 0, fmt.Errorf("invalid time %q: after the year 2286", s)
	}
	return t, nil
}

// durationUnits are OpenTSDB's time units in milliseconds. A month ("n")
// is 30 days and a year 365 days, as in OpenTSDB's DateTime.parseDuration.
var durationUnits = map[string]int64{
	"ms": 1,
	"s":  1000,
	"m":  60 * 1000,
	"h":  3600 * 1000,
	"d":  24 * 3600 * 1000,
	"w":  7 * 24 * 3600 * 1000,
	"n":  30 * 24 * 3600 * 1000,
	"y":  365 * 24 * 3600 * 1000,
}

// parseDuration parses "<positive integer><unit>", unit one of ms, s, m,
// h, d, w, n (30 days) or y (365 days), case-insensitively, into
// milliseconds. Durations longer than maxTimeMs are rejected.
func parseDuration(s string) (int64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid duration (number): %q", s)
	}
	unit, ok := durationUnits[strings.ToLower(s[i:])]
	if !ok {
		return 0, fmt.Errorf("invalid duration (suffix): %q, expected one of ms, s, m, h, d, w, n, y", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > maxTimeMs/unit {
		return 0, fmt.Errorf("invalid duration (number): %q is too long", s)
	}
	if n <= 0 {
		return 0, fmt.Errorf("zero or negative duration: %q", s)
	}
	return n * unit, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
