package tsdb

import (
	"encoding/binary"
	"fmt"

	"github.com/immune-dev/immune/internal/pebblecheck"
	"github.com/immune-dev/immune/tsdb/internal/keys"
)

// CheckStats say what Check read.
type CheckStats struct {
	Tables     int   // sstables whose every block checksum was verified
	Keys       int64 // live Pebble keys read
	Series     int   // series with a label set
	WALRecords int   // WAL records a restart would replay
	WALSamples int   // samples in them
}

// Check verifies the store in dir, which no process may have open, without
// changing it: it does not replay the WAL into chunks, so a check after a
// crash sees what the restart will. Pebble is opened read-only and checked
// (its levels, every block checksum of every table, every key and value
// read), then the store's own layout: the format matches this build, every
// WAL record decodes and names series whose label sets are stored, as the
// restart's replay needs. The error names the first problem.
func Check(dir string) (CheckStats, error) {
	var (
		st     CheckStats
		format bool
		series = map[uint64]struct{}{}
		buf    []walSample
	)
	pst, err := pebblecheck.Check(dir, func(k, v []byte) error {
		if len(k) == 0 {
			return fmt.Errorf("an empty key")
		}
		switch k[0] {
		case keys.PrefixMeta:
			if string(k[1:]) == metaFormat {
				if len(v) != 8 || binary.BigEndian.Uint64(v) != formatVersion {
					return fmt.Errorf("%w: format %x, this build reads %d", ErrFormat, v, formatVersion)
				}
				format = true
			}
		case keys.PrefixSeriesID:
			id, err := keys.ParseSeriesID(k)
			if err != nil {
				return fmt.Errorf("series key %x: %w", k, err)
			}
			series[id] = struct{}{}
		case keys.PrefixWAL:
			seq, err := keys.ParseWAL(k)
			if err != nil {
				return fmt.Errorf("WAL key %x: %w", k, err)
			}
			if buf, err = decodeWALRecord(buf[:0], v); err != nil {
				return fmt.Errorf("WAL record %d: %w", seq, err)
			}
			for _, s := range buf {
				// Series keys sort before WAL keys: all have been seen.
				if _, ok := series[s.id]; !ok {
					return fmt.Errorf("WAL record %d: series %d has no label set", seq, s.id)
				}
			}
			st.WALRecords++
			st.WALSamples += len(buf)
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
