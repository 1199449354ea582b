package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBenchCompareAgainstPeers runs the side-by-side comparison on a small
// load with the real VictoriaMetrics and Prometheus: every system is
// started, takes every sample (the harness fails a run that lost some),
// answers every query of the set, and gets a row in each table.
func TestBenchCompareAgainstPeers(t *testing.T) {
	vm := requireBinary(t, "victoria-metrics")
	prom := requireBinary(t, "prometheus")
	out, err := exec.Command(immuneBin, "bench", "compare", "--series", "1000", "--duration", "2h",
		"--rounds", "1", "--query-runs", "2", "--victoria-metrics", vm, "--prometheus", prom).CombinedOutput()
	if err != nil {
		t.Fatalf("bench compare: %v\n%s", err, out)
	}
	text := string(out)
	for _, sys := range []string{"immune", "victoria-metrics", "prometheus"} {
		if !strings.Contains(text, "| "+sys+" ") {
			t.Errorf("no ingest row for %s", sys)
		}
	}
	// The 1000-series selector selects 10 hosts of 100 series on every system.
	if !strings.Contains(strings.Join(strings.Fields(text), " "), "| raw, 1000 series | 1h | 1000 |") {
		t.Errorf("the 1000-series query did not return 1000 series everywhere")
	}
	for _, ratio := range []string{"immune / victoria-metrics:", "immune / prometheus:"} {
		if !strings.Contains(text, ratio) {
			t.Errorf("no %q line", ratio)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

// TestCompactRefusesAMissingStore checks that compact does not create an
// empty store where it was pointed by mistake.
func TestCompactRefusesAMissingStore(t *testing.T) {
	out, err := exec.Command(immuneBin, "compact", "--data-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no store in") {
		t.Fatalf("compact of an empty directory: %v\n%s", err, out)
	}
}
