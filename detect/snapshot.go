package detect

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// Snapshot is a deployment as one write to the store left it, kept in
// memory for the readers that poll it (the gate's status endpoint). It
// never changes: the next write of the deployment makes a new one.
type Snapshot struct {
	id string
	// val is the deployment's JSON as the store holds it. The first reader
	// decodes it, outside the store's lock: a write only keeps its bytes.
	val  []byte
	once sync.Once
	d    *Deployment
	err  error
	// enc is the last encoding asked of the snapshot, with its bytes.
	enc atomic.Pointer[encoded]
}

type encoded struct {
	by *Encoding
	b  []byte
}

// decode decodes the snapshot's deployment, once for all its readers.
func (s *Snapshot) decode() error {
	s.once.Do(func() { s.d, s.err = decodeDeployment(s.id, s.val) })
	return s.err
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
// active ones, whatever their number ever registered. A snapshot holds
// its deployment's JSON, the deployment decoded and one encoding of it,
// all of which grow with the profile's metrics; deployments polled beyond
// the bound are read from disk, as they were before the cache.
const snapshotCacheSize = 1024

// snapshotCache keeps the snapshots of the deployments read lately, least
// recently read first out. Its methods are safe for concurrent use; the
// Store keeps it true to the disk (see Store.Snapshot).
type snapshotCache struct {
	mu   sync.Mutex
	byID map[string]*list.Element // of *Snapshot
	lru  *list.List               // front: most recently read
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
	return e.Value.(*Snapshot)
}

// put caches snap, in place of any other of its deployment, and evicts
// the least recently read beyond the bound.
func (c *snapshotCache) put(snap *Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[snap.id]; ok {
		e.Value = snap
		c.lru.MoveToFront(e)
		return
	}
	c.byID[snap.id] = c.lru.PushFront(snap)
	if c.lru.Len() > snapshotCacheSize {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.byID, oldest.Value.(*Snapshot).id)
	}
}

// refresh replaces id's snapshot, if one is cached, by one of val.
func (c *snapshotCache) refresh(id string, val []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok {
		e.Value = &Snapshot{id: id, val: val}
		c.lru.MoveToFront(e)
	}
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
// lets go. So while s.mu is free every cached snapshot holds the bytes
// the disk holds, and no read from before a write can be cached after it.
// A read that hits never waits for a write; one that misses may wait for
// one write's sync. Decoding is the readers' work, outside s.mu.
func (s *Store) Snapshot(id string) (*Snapshot, error) {
	snap := s.cache.get(id)
	if snap == nil {
		var err error
		if snap, err = s.fillSnapshot(id); err != nil {
			return nil, err
		}
	}
	if err := snap.decode(); err != nil {
		return nil, err
	}
	return snap, nil
}

// fillSnapshot reads id's deployment from disk into the cache, under s.mu.
func (s *Store) fillSnapshot(id string) (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Pollers that missed together wait here; the first fills for all.
	if snap := s.cache.get(id); snap != nil {
		return snap, nil
	}
	val, err := s.getRaw(id)
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{id: id, val: val}
	s.cache.put(snap)
	return snap, nil
}

// wroteLocked keeps id's cached snapshot true after a write under s.mu
// that stored val, or failed (val nil, the disk in doubt): a cached
// snapshot is replaced by val's, so the pollers of an active deployment
// never go to disk, or dropped. val must not change afterwards.
func (s *Store) wroteLocked(id string, val []byte) {
	if val == nil {
		s.cache.drop(id)
		return
	}
	s.cache.refresh(id, val)
}
