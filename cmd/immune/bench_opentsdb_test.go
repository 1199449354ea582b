package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBenchOpenTSDBAgainstVictoriaMetrics runs the OpenTSDB ingest
// comparison on a small load: both systems are started, take every point
// over both protocols, and hold them all afterwards (the harness fails a
// run that lost points).
func TestBenchOpenTSDBAgainstVictoriaMetrics(t *testing.T) {
	vm := requireBinary(t, "victoria-metrics")
	out, err := exec.Command(immuneBin, "bench", "opentsdb", "--hosts", "5", "--steps", "6", "--rounds", "1",
		"--victoria-metrics", vm).CombinedOutput()
	if err != nil {
		t.Fatalf("bench opentsdb: %v\n%s", err, out)
	}
	for _, row := range []string{"| telnet  | immune", "| telnet  | victoria-metrics", "| http  | immune", "| http  | victoria-metrics"} {
		if !strings.Contains(strings.Join(strings.Fields(string(out)), " "), strings.Join(strings.Fields(row), " ")) {
			t.Errorf("no row %q in:\n%s", row, out)
		}
	}
}
