package tsdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/immune-dev/immune/internal/pebblelog"
	"github.com/immune-dev/immune/tsdb/internal/keys"
)

// Errors returned by the DB. Sample-level rejections use the storage
// package's sentinels (storage.ErrTooOldSample, storage.ErrOutOfBounds), so
// Prometheus' own handlers classify them.
var (
	// ErrClosed is returned by operations on a closed DB.
	ErrClosed = errors.New("tsdb: closed")
	// ErrFormat is returned by Open when the directory holds data written
	// with an incompatible format or bucket duration.
	ErrFormat = errors.New("tsdb: incompatible data format")
	// ErrInvalidLabels is returned for an empty label set, an empty label
	// name or duplicate label names.
	ErrInvalidLabels = errors.New("tsdb: invalid label set")
	// ErrHistogramsUnsupported is returned for native histogram samples.
	ErrHistogramsUnsupported = errors.New("tsdb: native histograms are not supported")
)

const (
	formatVersion = 1
	dayMillis     = 24 * 60 * 60 * 1000

	metaFormat         = "format"
	metaBucketDuration = "bucket_duration_ms"
	metaWALCheckpoint  = "wal_checkpoint"
)

// DB is a time series store on one Pebble directory. It implements
// storage.Appendable and storage.Queryable. All methods are safe for
// concurrent use.
type DB struct {
	opts     Options
	log      *slog.Logger
	pdb      *pebble.DB
	bucketMs int64

	head   head
	disk   diskGuard
	seq    atomic.Uint64 // last WAL sequence number handed out
	nextID atomic.Uint64 // last series ID handed out

	// applyMu is held shared from taking a WAL sequence number until its
	// samples are in the head, and exclusively by a checkpoint to find a
	// sequence number that every head bucket already covers.
	applyMu sync.RWMutex

	// fatal is set when the head could not apply a durable record; the DB
	// then refuses writes and keeps its WAL, so a restart recovers.
	fatal atomic.Pointer[error]

	meta metadataStore

	cancel context.CancelFunc
	wg     sync.WaitGroup
	// lifeMu is held shared by every call that uses Pebble from outside
	// (commits, selects, label lookups) and exclusively by Close, so Close
	// waits for them and none starts on a closed Pebble.
	lifeMu sync.RWMutex
	closed atomic.Bool
	// checkpointMu serialises checkpoints (background loop and Close).
	checkpointMu sync.Mutex
	// newBuckets counts head buckets opened since the last checkpoint;
	// checkpointSoon asks the background loop for an early one.
	newBuckets     atomic.Int64
	checkpointSoon chan struct{}
}

// Open opens or creates the store in dir, replays its WAL into the head and
// starts the background checkpoint and retention loops.
func Open(dir string, opts Options) (*DB, error) {
	opts = opts.withDefaults()
	if opts.BucketDuration%time.Minute != 0 || opts.BucketDuration > 24*time.Hour {
		return nil, fmt.Errorf("tsdb: bucket duration %s must be whole minutes and at most 24h", opts.BucketDuration)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	// Pebble reserves every live memtable's size from its block cache, so
	// the cache is sized for them too: with the cache alone, two 64 MiB
	// memtables left a 128 MiB cache no room and every query read its
	// blocks from the files.
	const memTables = 4
	cache := pebble.NewCache(opts.CacheSize + memTables*int64(opts.MemTableSize))
	defer cache.Unref()
	popts := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                opts.MemTableSize,
		MemTableStopWritesThreshold: memTables,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebblelog.Logger{L: opts.Logger},
	}
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	popts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionBalanced })
	pdb, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("open pebble: %w", err)
	}
	db := &DB{opts: opts, log: opts.Logger, pdb: pdb, bucketMs: opts.BucketDuration.Milliseconds(), checkpointSoon: make(chan struct{}, 1)}
	db.disk = diskGuard{dir: dir, min: uint64(max(opts.MinFreeBytes, 0)), log: opts.Logger, now: time.Now}
	db.head.init()
	if err := db.recover(); err != nil {
		pdb.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	db.cancel = cancel
	db.wg.Add(1)
	go db.backgroundLoop(ctx)
	return db, nil
}

// recover checks the format, restores counters and metadata, and replays
// the WAL records left since the last checkpoint.
func (db *DB) recover() error {
	if err := db.checkFormat(); err != nil {
		return err
	}
	last, err := db.lastKey(keys.PrefixSeriesID)
	if err != nil {
		return err
	}
	if last != nil {
		id, err := keys.ParseSeriesID(last)
		if err != nil {
			return fmt.Errorf("last series key: %w", err)
		}
		db.nextID.Store(id)
	}
	ckpt, err := db.getUint64Meta(metaWALCheckpoint)
	if err != nil {
		return err
	}
	db.seq.Store(ckpt)
	if err := db.meta.load(db.pdb); err != nil {
		return err
	}
	return db.replayWAL()
}

func (db *DB) checkFormat() error {
	want := map[string]uint64{metaFormat: formatVersion, metaBucketDuration: uint64(db.bucketMs)}
	b := db.pdb.NewBatch()
	defer b.Close()
	for name, v := range want {
		val, closer, err := db.pdb.Get(keys.Meta(name))
		switch {
		case errors.Is(err, pebble.ErrNotFound):
			b.Set(keys.Meta(name), binary.BigEndian.AppendUint64(nil, v), nil)
		case err != nil:
			return fmt.Errorf("read meta %s: %w", name, err)
		default:
			err := checkMeta(name, val, v)
			closer.Close()
			if err != nil {
				return err
			}
		}
	}
	return b.Commit(pebble.Sync)
}

// checkMeta verifies that the meta entry name holds want.
func checkMeta(name string, val []byte, want uint64) error {
	if len(val) != 8 || binary.BigEndian.Uint64(val) != want {
		return fmt.Errorf("%w: %s is %x, this build wants %d", ErrFormat, name, val, want)
	}
	return nil
}

func (db *DB) getUint64Meta(name string) (uint64, error) {
	val, closer, err := db.pdb.Get(keys.Meta(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read meta %s: %w", name, err)
	}
	defer closer.Close()
	if len(val) != 8 {
		return 0, fmt.Errorf("%w: meta %s", ErrFormat, name)
	}
	return binary.BigEndian.Uint64(val), nil
}

// lastKey returns a copy of the greatest key with the one-byte prefix, or nil.
func (db *DB) lastKey(prefix byte) ([]byte, error) {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	if !it.Last() {
		return nil, it.Error()
	}
	return bytes.Clone(it.Key()), nil
}

// replayWAL applies every WAL record still in Pebble to the head. Records
// are applied without the out-of-order window: they were acknowledged.
func (db *DB) replayWAL() error {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{keys.PrefixWAL}, UpperBound: []byte{keys.PrefixWAL + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	var (
		samples []walSample
		records int
		sb      labels.ScratchBuilder
		start   = time.Now()
	)
	for it.First(); it.Valid(); it.Next() {
		seq, err := keys.ParseWAL(it.Key())
		if err != nil {
			return fmt.Errorf("replay WAL: %w", err)
		}
		val, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("replay WAL record %d: %w", seq, err)
		}
		if samples, err = decodeWALRecord(samples[:0], val); err != nil {
			return fmt.Errorf("replay WAL record %d: %w", seq, err)
		}
		for _, smp := range samples {
			s, err := db.head.getOrLoad(smp.id, func() (labels.Labels, error) { return db.seriesLabels(smp.id, &sb) })
			if err != nil {
				return fmt.Errorf("replay WAL record %d: series %d: %w", seq, smp.id, err)
			}
			if err := db.applySample(s, smp.t, smp.v); err != nil {
				return fmt.Errorf("replay WAL record %d: %w", seq, err)
			}
		}
		db.seq.Store(max(db.seq.Load(), seq))
		records++
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("replay WAL: %w", err)
	}
	if records > 0 {
		db.log.Info("replayed WAL", "records", records, "series", db.head.count.Load(), "duration", time.Since(start))
	}
	return nil
}

// seriesLabels reads the labels of series id from Pebble.
func (db *DB) seriesLabels(id uint64, sb *labels.ScratchBuilder) (labels.Labels, error) {
	val, closer, err := db.pdb.Get(keys.SeriesID(id))
	if err != nil {
		return labels.EmptyLabels(), fmt.Errorf("read series %d: %w", id, err)
	}
	defer closer.Close()
	return decodeLabels(val, sb)
}

// labelReader reads the labels of many series, in ascending ID order,
// through one Pebble iterator: its forward seeks cost a fraction of a point
// lookup each, which opens iterators over every level.
type labelReader struct {
	it  *pebble.Iterator
	key []byte
	sb  labels.ScratchBuilder
}

func (db *DB) newLabelReader(ctx context.Context) (*labelReader, error) {
	it, err := db.pdb.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: []byte{keys.PrefixSeriesID},
		UpperBound: []byte{keys.PrefixSeriesID + 1},
	})
	if err != nil {
		return nil, err
	}
	return &labelReader{it: it}, nil
}

// labels returns the stored labels of series id.
func (r *labelReader) labels(id uint64) (labels.Labels, error) {
	r.key = keys.AppendSeriesID(r.key[:0], id)
	if !r.it.SeekGE(r.key) || !bytes.Equal(r.it.Key(), r.key) {
		err := r.it.Error()
		if err == nil {
			err = pebble.ErrNotFound
		}
		return labels.EmptyLabels(), fmt.Errorf("read series %d: %w", id, err)
	}
	val, err := r.it.ValueAndErr()
	if err != nil {
		return labels.EmptyLabels(), fmt.Errorf("read series %d: %w", id, err)
	}
	return decodeLabels(val, &r.sb)
}

func (r *labelReader) close() error { return r.it.Close() }

// lookupSeriesID finds the stored ID of the series with this canonical
// encoding, comparing label bytes so hash collisions are told apart.
func (db *DB) lookupSeriesID(hash uint64, encoded []byte) (uint64, bool, error) {
	prefix := keys.SeriesKeyPrefix(hash)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: keys.PrefixEnd(prefix)})
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			return 0, false, err
		}
		if bytes.Equal(val, encoded) {
			id, err := keys.SeriesKeyID(it.Key())
			return id, err == nil, err
		}
	}
	return 0, false, it.Error()
}

// applySample inserts a durable sample into the head.
func (db *DB) applySample(s *memSeries, t int64, v float64) error {
	idx := uint32(t / db.bucketMs)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bucketLocked(idx)
	if b == nil {
		var err error
		if b, err = db.loadBucket(s.id, idx); err != nil {
			return err
		}
		s.addBucketLocked(b)
		db.noteNewBucket()
	}
	b.insert(t, v)
	s.mu.maxT = max(s.mu.maxT, t)
	return nil
}

// noteNewBucket counts an opened head bucket and asks for an early
// checkpoint once twice as many have opened as the head has series: the
// series have moved on by two buckets on average, so the older ones can be
// written and dropped. Under a steady load the timer checkpoints long
// before; a backfill opens buckets as fast as it writes, and without this
// the head would hold everything it wrote between two timed checkpoints.
func (db *DB) noteNewBucket() {
	// At or past, not at: the head's series count moves, so the threshold
	// can drop below a count that already passed it.
	if db.newBuckets.Add(1) >= max(2*db.head.count.Load(), minBucketsForCheckpoint) {
		select {
		case db.checkpointSoon <- struct{}{}:
		default:
		}
	}
}

// minBucketsForCheckpoint keeps small stores from checkpointing early for
// every few buckets.
const minBucketsForCheckpoint = 4096

// loadBucket makes a head bucket holding what Pebble has for it.
func (db *DB) loadBucket(id uint64, idx uint32) (*headBucket, error) {
	b, err := newHeadBucket(idx)
	if err != nil {
		return nil, err
	}
	val, closer, err := db.pdb.Get(keys.Chunk(idx, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load chunk %d/%d: %w", idx, id, err)
	}
	defer closer.Close()
	if err := b.load(val); err != nil {
		return nil, fmt.Errorf("load chunk %d/%d: %w", idx, id, err)
	}
	return b, nil
}

func (db *DB) setFatal(err error) {
	db.fatal.CompareAndSwap(nil, &err)
	db.log.Error("tsdb: head could not apply a durable write; refusing writes until restart", "err", err)
}

func (db *DB) fatalErr() error {
	if p := db.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// backgroundLoop runs checkpoints and retention until ctx is cancelled.
func (db *DB) backgroundLoop(ctx context.Context) {
	defer db.wg.Done()
	db.applyRetention()
	ckpt := time.NewTicker(db.opts.CheckpointInterval)
	defer ckpt.Stop()
	ret := time.NewTicker(db.opts.RetentionInterval)
	defer ret.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ckpt.C:
			if err := db.Checkpoint(); err != nil {
				db.log.Error("checkpoint", "err", err)
			}
		case <-db.checkpointSoon:
			if err := db.Checkpoint(); err != nil {
				db.log.Error("checkpoint", "err", err)
			}
			ckpt.Reset(db.opts.CheckpointInterval)
		case <-ret.C:
			db.applyRetention()
		}
	}
}

// Close stops the background loops, checkpoints the head and closes Pebble.
func (db *DB) Close() error {
	if !db.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	db.cancel()
	db.wg.Wait()
	db.lifeMu.Lock()
	defer db.lifeMu.Unlock()
	err := db.checkpoint()
	return errors.Join(err, db.pdb.Close())
}

// enter marks the start of a call that uses Pebble; it fails once Close
// has begun. The caller must call db.lifeMu.RUnlock when done.
func (db *DB) enter() error {
	db.lifeMu.RLock()
	if db.closed.Load() {
		db.lifeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Stats are counters describing the store.
type Stats struct {
	HeadSeries int64 // series in the head
}

// Stats returns current counters.
func (db *DB) Stats() Stats {
	return Stats{HeadSeries: db.head.count.Load()}
}

func dayOf(t int64) uint32 { return uint32(t / dayMillis) }

// maxTime is the largest timestamp the key layout can address: bucket
// indexes are 32 bits, which with whole-minute buckets is beyond year 9000.
func (db *DB) maxTime() int64 { return math.MaxUint32*db.bucketMs - 1 }

// minTime marks a series without samples.
const minTime = math.MinInt64
