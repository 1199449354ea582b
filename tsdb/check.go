package tsdb

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/immune-dev/immune/internal/pebblecheck"
	"github.com/immune-dev/immune/tsdb/chunk"
	"github.com/immune-dev/immune/tsdb/internal/keys"
)

// CheckStats say what Check read.
type CheckStats struct {
	Tables     int   // sstables whose every block checksum was verified
	Keys       int64 // live Pebble keys read
	Series     int   // series with a label set
	Chunks     int   // stored chunk values decoded
	Samples    int   // samples in them
	WALRecords int   // WAL records a restart would replay
	WALSamples int   // samples in them
}

// Check verifies the store in dir, which no process may have open, without
// changing it: it does not replay the WAL into chunks, so a check after a
// crash sees what the restart will. Pebble is opened read-only and checked
// (its levels, every block checksum of every table, every key and value
// read), then the store's own layout: the format matches this build and
// the bucket duration is set; every series' label set decodes; every
// stored chunk decodes, of a stored series, with its samples in its
// bucket; every WAL record decodes and names stored series, as the
// restart's replay needs. The error names the first problem.
func Check(dir string) (CheckStats, error) {
	var (
		st       CheckStats
		format   bool
		bucketMs int64
		series   = map[uint64]struct{}{}
		sb       labels.ScratchBuilder
		samples  []chunk.Sample
		wal      []walSample
	)
	// Keys sort by prefix: meta, series, postings, chunks, then the WAL,
	// so what a key refers to has been seen before it.
	pst, err := pebblecheck.Check(dir, func(k, v []byte) error {
		if len(k) == 0 {
			return fmt.Errorf("an empty key")
		}
		switch k[0] {
		case keys.PrefixMeta:
			switch name := string(k[1:]); name {
			case metaFormat:
				if err := checkMeta(name, v, formatVersion); err != nil {
					return err
				}
				format = true
			case metaBucketDuration:
				if len(v) != 8 || binary.BigEndian.Uint64(v) == 0 || binary.BigEndian.Uint64(v) > math.MaxInt64 {
					return fmt.Errorf("%w: %s is %x", ErrFormat, name, v)
				}
				bucketMs = int64(binary.BigEndian.Uint64(v))
			}
		case keys.PrefixSeriesID:
			id, err := keys.ParseSeriesID(k)
			if err != nil {
				return fmt.Errorf("series key %x: %w", k, err)
			}
			if _, err := decodeLabels(v, &sb); err != nil {
				return fmt.Errorf("series %d: label set: %w", id, err)
			}
			series[id] = struct{}{}
		case keys.PrefixChunk:
			bucket, id, err := keys.ParseChunk(k)
			if err != nil {
				return fmt.Errorf("chunk key %x: %w", k, err)
			}
			if _, ok := series[id]; !ok {
				return fmt.Errorf("chunk %d of series %d: the series has no label set", bucket, id)
			}
			if bucketMs == 0 {
				return fmt.Errorf("%w: chunks but no %s", ErrFormat, metaBucketDuration)
			}
			if samples, err = chunk.Decode(samples[:0], v); err != nil {
				return fmt.Errorf("chunk %d of series %d: %w", bucket, id, err)
			}
			lo := int64(bucket) * bucketMs
			for _, smp := range samples {
				if smp.T < lo || smp.T >= lo+bucketMs {
					return fmt.Errorf("chunk %d of series %d: sample at %d ms outside its bucket [%d, %d)", bucket, id, smp.T, lo, lo+bucketMs)
				}
			}
			st.Chunks++
			st.Samples += len(samples)
		case keys.PrefixWAL:
			seq, err := keys.ParseWAL(k)
			if err != nil {
				return fmt.Errorf("WAL key %x: %w", k, err)
			}
			if wal, err = decodeWALRecord(wal[:0], v); err != nil {
				return fmt.Errorf("WAL record %d: %w", seq, err)
			}
			for _, s := range wal {
				if _, ok := series[s.id]; !ok {
					return fmt.Errorf("WAL record %d: series %d has no label set", seq, s.id)
				}
			}
			st.WALRecords++
			st.WALSamples += len(wal)
		}
		return nil
	})
	st.Tables, st.Keys, st.Series = pst.Tables, pst.Keys, len(series)
	if err != nil {
		return st, fmt.Errorf("check %s: %w", dir, err)
	}
	if !format {
		return st, fmt.Errorf("check %s: %w: no format version", dir, ErrFormat)
	}
	return st, nil
}
