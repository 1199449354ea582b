package pebblecheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// writeStore creates a Pebble database in a temp dir with n keys flushed to
// an sstable, and returns the dir and the table's path.
func writeStore(t *testing.T, n int) (string, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{Logger: &logger{}})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	for i := range n {
		if err := b.Set(fmt.Appendf(nil, "key-%06d", i), fmt.Appendf(nil, "value-%d-%s", i, strings.Repeat("x", 50)), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(tables) != 1 {
		t.Fatalf("sstables %v, %v: want one", tables, err)
	}
	return dir, tables[0]
}

func TestCheckClean(t *testing.T) {
	dir, _ := writeStore(t, 10_000)
	files := listFiles(t, dir)
	var visited int
	st, err := Check(dir, func(key, value []byte) error {
		visited++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Tables != 1 || st.Keys != 10_000 || visited != 10_000 {
		t.Fatalf("stats %+v, visited %d: want 1 table, 10000 keys", st, visited)
	}
	// Read-only: the check changed no file (but the lock's).
	if after := listFiles(t, dir); after != files {
		t.Fatalf("the check changed the files:\n%s\nto\n%s", files, after)
	}
}

// listFiles names dir's files with their sizes and modification times,
// but for the lock file, which each open takes.
func listFiles(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		if e.Name() == "LOCK" {
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %d %s\n", e.Name(), info.Size(), info.ModTime())
	}
	return b.String()
}

// TestCheckCorruptTable flips one byte inside each of a few places of the
// sstable's data; every one is a failed check naming the table.
func TestCheckCorruptTable(t *testing.T) {
	for _, at := range []float64{0.1, 0.5, 0.9} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			dir, table := writeStore(t, 10_000)
			b, err := os.ReadFile(table)
			if err != nil {
				t.Fatal(err)
			}
			b[int(float64(len(b))*at)] ^= 0x55
			if err := os.WriteFile(table, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Check(dir, nil)
			if err == nil {
				t.Fatal("check passed a corrupt sstable")
			}
			if !strings.Contains(err.Error(), filepath.Base(table)) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line naming the table", err)
			}
			if !pebble.IsCorruptionError(err) {
				t.Errorf("error %q is not a Pebble corruption error", err)
			}
			t.Log(err)
		})
	}
}

func TestCheckVisitError(t *testing.T) {
	dir, _ := writeStore(t, 10)
	want := errors.New("bad key")
	if _, err := Check(dir, func(key, value []byte) error { return want }); err != want {
		t.Fatalf("error %v, want the visitor's", err)
	}
}

func TestCheckMissing(t *testing.T) {
	if _, err := Check(filepath.Join(t.TempDir(), "none"), nil); !os.IsNotExist(err) {
		t.Fatalf("error %v, want not-exist", err)
	}
	if _, err := Check(t.TempDir(), nil); err == nil {
		t.Fatal("check passed an empty directory")
	}
}
