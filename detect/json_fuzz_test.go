package detect

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// FuzzDurationJSON decodes what a client may send for a duration field
// (min_bake, max_bake, step, every, duration, trend_horizon): a Go
// duration string or a number of seconds. A value it accepts must be the
// one sent, in sign and size, and encode to JSON that decodes back to
// itself; anything else is an error, never a panic.
func FuzzDurationJSON(f *testing.F) {
	for _, s := range []string{`"5m"`, `"1h30m"`, `"250ms"`, `"-1s"`, `"0"`, `""`, `"5 minutes"`, `30`, `1.5`, `0`,
		`-2`, `1e3`, `null`, `true`, `{}`, `[]`, `"9223372036854775807ns"`, `"-2562047h47m16.854775808s"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Duration
		if err := d.UnmarshalJSON(b); err != nil {
			return
		}
		var secs float64
		if json.Unmarshal(b, &secs) == nil {
			want := secs * float64(time.Second)
			// float64 holds a duration to within one part in 2^52.
			if got := float64(d); math.Abs(got-want) > 1+math.Abs(want)/(1<<50) {
				t.Fatalf("%s seconds decoded as %s (%v ns, want %v)", b, time.Duration(d), got, want)
			}
		}
		enc, err := d.MarshalJSON()
		if err != nil {
			t.Fatalf("encode %s: %v", time.Duration(d), err)
		}
		var back Duration
		if err := back.UnmarshalJSON(enc); err != nil || back != d {
			t.Fatalf("%s decoded as %d, encoded as %s, decoded back as %d (%v)", b, int64(d), enc, int64(back), err)
		}
	})
}
