package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/tsdb"
)

// TestCheckCommand: "immune check" passes a clean data directory, printing
// a line per store, and fails one with a corrupt sstable, naming it.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	db, err := tsdb.Open(tsdbDir(dir), tsdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	app := db.Appender(t.Context())
	now := time.Now().UnixMilli()
	for i := range 1000 {
		if _, err := app.Append(0, labels.FromStrings("__name__", "up", "i", strings.Repeat("x", i%50)), now-int64(i)*1000, float64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	// Compacted, the samples are in an sstable for the corruption to hit.
	if err := db.Compact(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	store, err := detect.OpenStore(deploymentsDir(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"check", "--data-dir", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("check of a clean data directory: %v\n%s", err, stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "metrics: ok: ") || !strings.Contains(out, "deployments: ok: ") {
		t.Fatalf("output:\n%s", out)
	}

	tables, err := filepath.Glob(filepath.Join(tsdbDir(dir), "*.sst"))
	if err != nil || len(tables) == 0 {
		t.Fatalf("sstables %v, %v", tables, err)
	}
	b, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(tables[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	err = run(t.Context(), []string{"check", "--data-dir", dir}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), filepath.Base(tables[0])) {
		t.Fatalf("check of a corrupt sstable: %v, want an error naming %s", err, tables[0])
	}
	if out := stdout.String(); strings.Contains(out, "metrics: ok") || !strings.Contains(out, "deployments: ok: ") {
		t.Fatalf("output:\n%s", out)
	}
}
