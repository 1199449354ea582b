package tsdb

import (
	"log/slog"
	"time"
)

// DefaultMaxActiveSeries is the default of Options.MaxActiveSeries: about
// 5 GiB of process memory at the 2.7 KB of RSS a series that a
// million-series run measured for the whole server (BENCHMARKS.md).
const DefaultMaxActiveSeries = 2_000_000

// Options configures a DB. The zero value is valid: every zero field means
// the default documented on it.
type Options struct {
	// Logger receives operational logs. Nil discards them.
	Logger *slog.Logger

	// Retention is how long samples are kept, measured back from now.
	// Zero means 15 days.
	Retention time.Duration

	// OutOfOrderWindow is how far behind a series' newest sample a new
	// sample may be and still be accepted. Older samples are rejected with
	// storage.ErrTooOldSample. Zero means 1 hour.
	OutOfOrderWindow time.Duration

	// BucketDuration is the span of time one stored chunk value covers.
	// It is fixed when the data directory is created; opening an existing
	// directory with another value is an error. Zero means 2 hours.
	BucketDuration time.Duration

	// CheckpointInterval is how often the head's open chunks are written to
	// Pebble and the WAL records they cover are deleted. It bounds the WAL
	// replayed after a crash. Zero means 5 minutes.
	CheckpointInterval time.Duration

	// RetentionInterval is how often expired data is deleted. Zero means
	// 1 hour.
	RetentionInterval time.Duration

	// CacheSize is the memory for Pebble's block cache, in bytes, on top
	// of the memtables. Zero means 128 MiB.
	CacheSize int64

	// MemTableSize is Pebble's memtable size in bytes. Zero means 16 MiB:
	// WAL records pass through the memtables, and up to four of them are
	// resident while they flush; at 64 MiB a 10k-series backfill peaked at
	// 306 MiB RSS, at 16 MiB at 215 MiB with the same ingest CPU
	// (`immune bench compare --systems immune --series 10000 --duration 24h
	// --interval 1m --rounds 1`).
	MemTableSize uint64

	// MinFreeBytes is the free space below which writes are refused with
	// a *DiskFullError (until space returns), leaving room for checkpoints
	// and compactions. Zero means 256 MiB; negative disables the check.
	MinFreeBytes int64

	// MaxActiveSeries bounds the series in the head: a series stays there
	// until the checkpoint after its newest bucket completes, up to
	// BucketDuration + OutOfOrderWindow + CheckpointInterval after its
	// last sample (about 3 h with the defaults). A sample that would bring
	// a series into the head past the limit is refused with a
	// *SeriesLimitError, while samples of series already in it are taken,
	// so the head's memory is bounded. Zero means DefaultMaxActiveSeries;
	// negative means no limit.
	MaxActiveSeries int64

	// Now returns the current time; it decides retention and which head
	// chunks are complete. Nil means time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Retention <= 0 {
		o.Retention = 15 * 24 * time.Hour
	}
	if o.OutOfOrderWindow <= 0 {
		o.OutOfOrderWindow = time.Hour
	}
	if o.BucketDuration <= 0 {
		o.BucketDuration = 2 * time.Hour
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 5 * time.Minute
	}
	if o.RetentionInterval <= 0 {
		o.RetentionInterval = time.Hour
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 128 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 16 << 20
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = 256 << 20
	}
	if o.MaxActiveSeries == 0 {
		o.MaxActiveSeries = DefaultMaxActiveSeries
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}
