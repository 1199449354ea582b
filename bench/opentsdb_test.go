package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestOpenTSDBLoad(t *testing.T) {
	l := OpenTSDBLoad{Hosts: 3, Steps: 4, Interval: 10 * time.Second, End: time.Unix(1_700_000_000, 0), Seed: 1}
	conns := l.TelnetLines(2)
	var lines []string
	for _, c := range conns {
		lines = append(lines, strings.Split(strings.TrimSuffix(string(c), "\n"), "\n")...)
	}
	if len(lines) != l.Points() || l.Points() != 3*20*4 {
		t.Fatalf("%d lines, want %d points", len(lines), l.Points())
	}
	series := map[string]int{}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "put" || !strings.HasPrefix(f[4], "host=web") {
			t.Fatalf("bad line %q", line)
		}
		key := f[1] + " " + strings.Join(f[4:], " ")
		series[key]++
	}
	if len(series) != l.Series() {
		t.Errorf("%d distinct series, want %d", len(series), l.Series())
	}
	if !bytes.Equal(l.TelnetLines(2)[1], conns[1]) {
		t.Error("the same load rendered twice differs")
	}

	bodies, points := l.PutBodies(7)
	total := 0
	for i, b := range bodies {
		var dps []struct {
			Metric    string            `json:"metric"`
			Timestamp int64             `json:"timestamp"`
			Value     float64           `json:"value"`
			Tags      map[string]string `json:"tags"`
		}
		if err := json.Unmarshal(b, &dps); err != nil {
			t.Fatalf("body %d: %v: %s", i, err, b)
		}
		if len(dps) != points[i] || dps[0].Tags["host"] == "" || dps[0].Timestamp < 1_699_999_000 {
			t.Fatalf("body %d: %d points, counted %d: %+v", i, len(dps), points[i], dps[0])
		}
		total += len(dps)
	}
	if total != l.Points() {
		t.Errorf("/api/put bodies hold %d points, want %d", total, l.Points())
	}
}
