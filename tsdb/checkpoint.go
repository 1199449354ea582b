package tsdb

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/immune-dev/immune/tsdb/internal/keys"
)

// checkpointBatchBytes is the size at which a checkpoint commits a batch
// of chunk writes and starts another, bounding its memory.
const checkpointBatchBytes = 4 << 20

// Checkpoint writes every changed head bucket to Pebble, deletes the WAL
// records they cover, and drops from the head the buckets that can no
// longer receive samples. It runs periodically and at Close; calling it
// directly is safe.
//
// Correctness rests on one order: (1) note the highest WAL sequence number
// whose samples are all in the head, (2) write the head buckets, which hold
// at least those samples, (3) delete the WAL up to that number in a synced
// batch, (4) only then drop written buckets from the head. A crash between
// any two steps leaves every acknowledged sample in Pebble chunks or in the
// WAL, and replaying a sample that is already in a chunk is idempotent.
func (db *DB) Checkpoint() error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.lifeMu.RUnlock()
	return db.checkpoint()
}

func (db *DB) checkpoint() error {
	db.checkpointMu.Lock()
	defer db.checkpointMu.Unlock()
	if err := db.fatalErr(); err != nil {
		return fmt.Errorf("checkpoint skipped, WAL kept: %w", err)
	}
	start := time.Now()

	db.applyMu.Lock()
	covered := db.seq.Load()
	db.newBuckets.Store(0)
	db.applyMu.Unlock()

	now := db.opts.Now().UnixMilli()
	oooMs := db.opts.OutOfOrderWindow.Milliseconds()
	type done struct {
		s *memSeries
		b *headBucket
	}
	var (
		closed  []done
		idle    []*memSeries // no buckets: added by an appender that wrote nothing
		written int
		batch   = db.pdb.NewBatch()
	)
	defer func() { batch.Close() }()
	for _, s := range db.head.all() {
		s.mu.Lock()
		if len(s.mu.buckets) == 0 {
			idle = append(idle, s)
		}
		for _, b := range s.mu.buckets {
			end := int64(b.idx+1) * db.bucketMs
			// A bucket is complete once no acceptable sample can fall in it:
			// the series has moved past it by the out-of-order window, or,
			// for a series that stopped, the clock has.
			complete := end+oooMs <= s.mu.maxT || end+oooMs <= now
			if b.dirty {
				val, err := b.bytes()
				if err != nil {
					s.mu.Unlock()
					return fmt.Errorf("encode bucket %d of series %d: %w", b.idx, s.id, err)
				}
				if err := batch.Set(keys.Chunk(b.idx, s.id), val, nil); err != nil {
					s.mu.Unlock()
					return err
				}
				b.dirty = false
				written++
			}
			if complete {
				closed = append(closed, done{s, b})
			}
		}
		s.mu.Unlock()
		if batch.Len() >= checkpointBatchBytes {
			if err := batch.Commit(pebble.NoSync); err != nil {
				return fmt.Errorf("checkpoint chunks: %w", err)
			}
			batch.Close()
			batch = db.pdb.NewBatch()
		}
	}
	// The synced commit also makes the unsynced chunk batches before it
	// durable: Pebble's WAL is one ordered log.
	if err := batch.DeleteRange(keys.WAL(0), keys.WAL(covered+1), nil); err != nil {
		return err
	}
	if err := batch.Set(keys.Meta(metaWALCheckpoint), binary.BigEndian.AppendUint64(nil, covered), nil); err != nil {
		return err
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("checkpoint commit: %w", err)
	}

	dropped := 0
	for _, d := range closed {
		d.s.mu.Lock()
		// A sample that arrived since the write keeps the bucket in the
		// head until the next checkpoint writes it.
		if !d.b.dirty {
			d.s.removeBucketLocked(d.b)
		}
		d.s.mu.Unlock()
	}
	// A series' closed buckets are adjacent in closed: offer it to the
	// garbage collector once. A series that had no bucket (its appender
	// rolled back or failed to commit) is offered too, or it would hold a
	// place under MaxActiveSeries for good; it cannot be in closed.
	for i, d := range closed {
		if (i == 0 || closed[i-1].s != d.s) && db.head.gc(d.s) {
			dropped++
		}
	}
	for _, s := range idle {
		if db.head.gc(s) {
			dropped++
		}
	}
	db.log.Debug("checkpoint", "walSeq", covered, "bucketsWritten", written, "bucketsClosed", len(closed),
		"seriesDropped", dropped, "duration", time.Since(start))
	return nil
}

// applyRetention deletes the chunk buckets and index days that lie wholly
// before now minus the retention, with range deletions.
func (db *DB) applyRetention() {
	if err := db.enter(); err != nil {
		return
	}
	defer db.lifeMu.RUnlock()
	cutoff := db.opts.Now().Add(-db.opts.Retention).UnixMilli()
	if cutoff <= 0 {
		return
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	lastBucket := uint32(cutoff / db.bucketMs) // buckets before it end at or before cutoff
	lastDay := uint32(cutoff / dayMillis)
	err := b.DeleteRange(keys.ChunkBucketPrefix(0), keys.ChunkBucketPrefix(lastBucket), nil)
	if err == nil {
		err = b.DeleteRange(keys.PostingsDayPrefix(0), keys.PostingsDayPrefix(lastDay), nil)
	}
	if err == nil {
		err = b.Commit(pebble.Sync)
	}
	if err != nil {
		db.log.Error("retention", "err", err)
		return
	}
	db.log.Debug("retention applied", "before", time.UnixMilli(cutoff).UTC())
}

// Compact checkpoints the head and then has Pebble flush its memtables and
// compact the whole key space, so that the data directory holds only live
// data: chunks, index and metadata, without the WAL records and older
// chunk versions that checkpoints superseded. The store compacts on its own
// as it runs; Compact is for maintenance and for measuring what the data
// itself takes on disk. It can take a while on a large store.
func (db *DB) Compact(ctx context.Context) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.lifeMu.RUnlock()
	if err := db.checkpoint(); err != nil {
		return err
	}
	if err := db.pdb.Flush(); err != nil {
		return fmt.Errorf("flush memtables: %w", err)
	}
	// Every key starts with one of the prefix bytes, all below 0xff.
	if err := db.pdb.Compact(ctx, []byte{0}, []byte{0xff}, true); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	return nil
}

// Backup writes a consistent copy of the store into dir, which must not
// exist, while it keeps serving: a Pebble checkpoint, hard links to the
// immutable tables where the file system allows and a copy of the logs.
// Every sample acknowledged before Backup was called is in the copy (WAL
// records are Pebble keys); opening dir replays it like a restart.
func (db *DB) Backup(dir string) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.lifeMu.RUnlock()
	if err := db.pdb.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("backup to %s: %w", dir, err)
	}
	return nil
}
