package bench

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// TestSoakFigures checks the figures RunSoak's verdict rests on, which a
// short real soak can only bound: the RSS slope (least squares after the
// warm-up, MiB per hour) and each reason to fail.
func TestSoakFigures(t *testing.T) {
	const mib = 1 << 20
	passing := func() SoakResult {
		r := SoakResult{Options: SoakOptions{Duration: time.Hour, WarmUp: 30 * time.Minute}.withDefaults(),
			Backfilled: 100, Write: Result{Acked: 1000}, Stored: 1100}
		for k := 1; k <= 60; k++ {
			end := time.Duration(k) * time.Minute
			rss := int64(200 * mib)
			if end > r.Options.WarmUp {
				rss += int64(float64(end-r.Options.WarmUp) / float64(time.Hour) * 10 * mib) // 10 MiB/h
			} else {
				rss -= int64(k) * mib // warm-up noise the slope leaves out
			}
			lat := LatencyStats{Requests: 10, P50: 5 * time.Millisecond, P99: 20 * time.Millisecond}
			r.Windows = append(r.Windows, SoakWindow{End: end, Length: time.Minute, RSS: rss, HeapInuse: 50 * mib,
				Ingest: lat, Query: lat, Gate: lat})
		}
		return r
	}
	r := passing()
	if slope, n := r.RSSSlope(); math.Abs(slope-10) > 1e-6 || n != 30 {
		t.Errorf("RSSSlope() = %g MiB/h over %d windows, want 10 over 30", slope, n)
	}
	if slope, _ := r.HeapSlope(); math.Abs(slope) > 1e-9 {
		t.Errorf("HeapSlope() of a flat heap = %g, want 0", slope)
	}
	if f := r.Failures(); len(f) != 0 {
		t.Errorf("Failures() of a flat soak = %q, want none", f)
	}

	for _, c := range []struct {
		name, want string
		mend       func(*SoakResult)
	}{
		{"refused", "refused 5 samples", func(r *SoakResult) { r.Write.Rejected, r.WriteErr = 5, errors.New("503") }},
		{"lost", "lost samples: 1099 of 1100", func(r *SoakResult) { r.Stored = 1099 }},
		{"query errors", "1 of 11 query requests failed", func(r *SoakResult) { r.Query = SoakTotal{Requests: 10, Errors: 1, FirstError: errors.New("422")} }},
		{"leak", "RSS slope 70.0 MiB/h", func(r *SoakResult) {
			for i := range r.Windows {
				r.Windows[i].RSS = int64(200*mib + r.Windows[i].End.Hours()*70*mib)
			}
		}},
		{"too few windows", "RSS slope NaN", func(r *SoakResult) { r.Windows = r.Windows[:31] }},
		{"slower", "query p99 grew from 20ms in the first window to 151ms", func(r *SoakResult) {
			r.Windows[len(r.Windows)-1].Query.P99 = 151 * time.Millisecond // 3 times the 50 ms floor is 150 ms
		}},
		{"unclean exit", "server exit on SIGTERM: exit status 1", func(r *SoakResult) { r.ServerExit = "exit status 1" }},
		{"nothing", "nothing measured", func(r *SoakResult) { r.Windows, r.Write.Acked, r.Stored = nil, 0, 100 }},
	} {
		r := passing()
		c.mend(&r)
		f := r.Failures()
		if len(f) == 0 || !strings.Contains(strings.Join(f, "\n"), c.want) {
			t.Errorf("%s: Failures() = %q, want one with %q", c.name, f, c.want)
		}
	}
	// Under the floor a faster first window does not make a slower last
	// one a failure: 3 times 50 ms.
	r = passing()
	r.Windows[0].Gate.P99, r.Windows[len(r.Windows)-1].Gate.P99 = time.Millisecond, 150*time.Millisecond
	if f := r.Failures(); len(f) != 0 {
		t.Errorf("p99 from 1 ms to 150 ms, under 3 times the 50 ms floor: Failures() = %q, want none", f)
	}
}
