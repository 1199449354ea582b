package tsdb

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/immune-dev/immune/internal/pebblelog"
	"github.com/immune-dev/immune/tsdb/chunk"
	"github.com/immune-dev/immune/tsdb/internal/keys"
)

// checkedStore writes a store with its data flushed into sstables, closed,
// and returns its dir.
func checkedStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	db := openTestDB(t, dir, Options{})
	for i := range 50 {
		var samples []sample
		for j := range 100 {
			samples = append(samples, sample{baseMs(time.Duration(j) * 15 * time.Second), float64(i*j) + math.Pi})
		}
		appendSamples(t, db, labels.FromStrings("__name__", "up", "host", strconv.Itoa(i)), samples...)
	}
	if err := db.Compact(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// setRaw writes one key straight into the store's Pebble database, as a
// crash or a bug might have left it.
func setRaw(t *testing.T, dir string, k, v []byte) {
	t.Helper()
	pdb, err := pebble.Open(dir, &pebble.Options{Logger: pebblelog.Logger{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := pdb.Set(k, v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCheckClean(t *testing.T) {
	dir := checkedStore(t)
	// A WAL record newer than the checkpoint, as a kill leaves one.
	setRaw(t, dir, keys.WAL(1<<40), appendWALRecord(nil, []walSample{{id: 1, t: baseMs(time.Hour), v: 1}, {id: 2, t: baseMs(time.Hour), v: 2}}))
	st, err := Check(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tables == 0 || st.Series != 50 || st.Chunks != 50 || st.Samples != 5000 || st.WALRecords != 1 || st.WALSamples != 2 || st.Keys == 0 {
		t.Fatalf("stats %+v: want tables, 50 series with a chunk each of 5000 samples in all, 1 WAL record of 2 samples", st)
	}
	// The check changed nothing: the store opens and replays the record.
	db := openTestDB(t, dir, Options{})
	defer db.Close()
	got := query(t, db, baseMs(time.Hour), baseMs(time.Hour), labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"))
	replayed := 0
	for _, samples := range got {
		if len(samples) == 1 {
			replayed++
		}
	}
	if replayed != 2 {
		t.Fatalf("after the check, the WAL replayed samples of %d series, want 2", replayed)
	}
}

func TestCheckCorruptTable(t *testing.T) {
	dir := checkedStore(t)
	tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(tables) == 0 {
		t.Fatalf("sstables %v, %v", tables, err)
	}
	b, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0xff
	if err := os.WriteFile(tables[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(dir); err == nil || !strings.Contains(err.Error(), filepath.Base(tables[0])) {
		t.Fatalf("check of a corrupt sstable: %v, want an error naming it", err)
	}
}

// TestCheckBadRecords writes records that pass Pebble's checksums but not
// the store's layout.
func TestCheckBadRecords(t *testing.T) {
	bucket := uint32(baseMs(0) / (2 * time.Hour).Milliseconds())
	chunkOf := func(ts ...int64) []byte {
		b, err := chunk.NewBuilder(chunk.EncDecimal)
		if err != nil {
			t.Fatal(err)
		}
		for _, ts := range ts {
			b.Append(ts, 1)
		}
		return b.AppendTo(nil)
	}
	for name, tc := range map[string]struct {
		key, value []byte
		want       string
	}{
		"WAL garbage":         {keys.WAL(7), []byte{walRecordVersion, 9, 1}, "WAL record 7: corrupt WAL record"},
		"WAL unknown version": {keys.WAL(7), []byte{9, 0}, "WAL record 7: corrupt WAL record: version"},
		"WAL unknown series":  {keys.WAL(7), appendWALRecord(nil, []walSample{{id: 999, t: 1, v: 1}}), "WAL record 7: series 999 has no label set"},
		"label set garbage":   {keys.SeriesID(3), []byte{0xff, 0xff}, "series 3: label set"},
		"chunk garbage":       {keys.Chunk(bucket, 3), []byte{0xff, 0, 1}, fmt.Sprintf("chunk %d of series 3", bucket)},
		"chunk of no series":  {keys.Chunk(bucket, 999), chunkOf(baseMs(0)), "series 999: the series has no label set"},
		"sample out of its bucket": {keys.Chunk(bucket, 3), chunkOf(baseMs(0), baseMs(3*time.Hour)),
			"outside its bucket"},
		"format": {keys.Meta(metaFormat), []byte{0, 0, 0, 0, 0, 0, 0, 9}, "format is"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := checkedStore(t)
			setRaw(t, dir, tc.key, tc.value)
			if _, err := Check(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("check: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCheckNoStore(t *testing.T) {
	if _, err := Check(filepath.Join(t.TempDir(), "tsdb")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("check of a missing store: %v", err)
	}
}
