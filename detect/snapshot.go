package detect

import (
	"container/list"
	"encoding/json"
	"sync"
	"sync/atomic"
)

// Snapshot is a deployment as one write to the store left it, kept in
// memory for the readers that poll it (the gate's status endpoint). It
// never changes: the next write of the deployment makes a new one.
type Snapshot struct {
	d *Deployment
	// enc is the last encoding asked of the snapshot, with its bytes.
	enc atomic.Pointer[encoded]
}

type encoded struct {
	by *Encoding
	b  []byte
}

// Deployment returns the deployment. It is shared by every reader of the
// snapshot: it must not be modified.
func (s *Snapshot) Deployment() *Deployment { return s.d }

// Encoding is a way of encoding a deployment for readers, such as the
// gate's status JSON.
type Encoding struct {
	encode func(*Deployment) ([]byte, error)
}

// NewEncoding returns the encoding computed by f. f must not modify the
// deployment, and its answer must depend on nothing else: snapshots keep
// it until the deployment is written again.
func NewEncoding(f func(*Deployment) ([]byte, error)) *Encoding { return &Encoding{encode: f} }

// Encode returns the deployment encoded by e. The bytes are kept with the
// snapshot, so a deployment polled many times between two writes is
// encoded once; they are shared and must not be modified.
func (s *Snapshot) Encode(e *Encoding) ([]byte, error) {
	if m := s.enc.Load(); m != nil && m.by == e {
		return m.b, nil
	}
	b, err := e.encode(s.d)
	if err != nil {
		return nil, err
	}
	// Two readers racing here store the same bytes.
	s.enc.Store(&encoded{by: e, b: b})
	return b, nil
}

// snapshotCacheSize bounds the snapshots kept. The cache is an LRU filled
// by reads, so it holds the deployments being polled, which are the
// active ones, whatever their number ever registered. A snapshot of the
// default profile's verdict with its status JSON is about 10 KB, so the
// bound is about 10 MB; deployments polled beyond it are read from disk,
// as they were before the cache.
const snapshotCacheSize = 1024

// snapshotCache keeps the snapshots of the deployments read lately, least
// recently read first out. Its methods are safe for concurrent use; the
// Store keeps it true to the disk (see Snapshot).
type snapshotCache struct {
	mu   sync.Mutex
	byID map[string]*list.Element // of *cacheEntry
	lru  *list.List               // front: most recently read
}

type cacheEntry struct {
	id   string
	snap *Snapshot
}

func newSnapshotCache() *snapshotCache {
	return &snapshotCache{byID: map[string]*list.Element{}, lru: list.New()}
}

// get returns the cached snapshot of id, or nil.
func (c *snapshotCache) get(id string) *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cacheEntry).snap
}

// put caches snap as id's snapshot, in place of any other, and evicts the
// least recently read beyond the bound.
func (c *snapshotCache) put(id string, snap *Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok {
		e.Value.(*cacheEntry).snap = snap
		c.lru.MoveToFront(e)
		return
	}
	c.byID[id] = c.lru.PushFront(&cacheEntry{id: id, snap: snap})
	if c.lru.Len() > snapshotCacheSize {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.byID, oldest.Value.(*cacheEntry).id)
	}
}

// has reports whether id has a cached snapshot.
func (c *snapshotCache) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.byID[id]
	return ok
}

// drop forgets id's snapshot.
func (c *snapshotCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok {
		c.lru.Remove(e)
		delete(c.byID, id)
	}
}

// Snapshot returns the deployment as last written, from memory when it was
// read lately.
//
// The cache stays true to the disk because it is only filled, refreshed
// and dropped under s.mu, which every write of a deployment holds: a
// read that misses reads the disk and fills the cache under it, and a
// write refreshes the entry (or drops it, if the write failed) before it
// lets go. So while s.mu is free every cached snapshot is what the disk
// holds, and no read from before a write can be cached after it. A read
// that hits never waits for a write; one that misses may wait for one
// write's sync.
func (s *Store) Snapshot(id string) (*Snapshot, error) {
	if snap := s.cache.get(id); snap != nil {
		return snap, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Pollers that missed together wait here; the first fills for all.
	if snap := s.cache.get(id); snap != nil {
		return snap, nil
	}
	d, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{d: d}
	s.cache.put(id, snap)
	return snap, nil
}

// wroteLocked keeps id's cached snapshot true after a write under s.mu
// that stored val, or failed (val nil, the disk in doubt): a cached
// snapshot is replaced by val's, so the pollers of an active deployment
// never go to disk, or dropped.
func (s *Store) wroteLocked(id string, val []byte) {
	if !s.cache.has(id) {
		return
	}
	// Decoded from what was stored, so the snapshot is exactly what a
	// read from disk returns and shares nothing with the writer's value.
	var d Deployment
	if val == nil || json.Unmarshal(val, &d) != nil {
		s.cache.drop(id)
		return
	}
	s.cache.put(id, &Snapshot{d: &d})
}
