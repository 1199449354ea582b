package detect

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/immune-dev/immune/internal/pebblelog"
)

// ErrNotFound is returned for an unknown deployment.
var ErrNotFound = errors.New("deployment not found")

// Store keeps deployments, their verdict history and API-registered
// profiles in a Pebble database of their own, synced on every write, so a
// registration or verdict that was acknowledged survives a crash.
//
// Keys: "d" id → deployment JSON (with its latest verdict);
// "o" seq(8) → webhook delivery JSON (outbox.go);
// "h" id 0x00 seq(8) → verdict JSON; "p" name → profile JSON.
//
// Every write of a "d" key goes through putLocked or Record, under mu,
// which keep the snapshot cache true (Store.Snapshot).
type Store struct {
	db *pebble.DB
	// mu serialises writes of deployments, read-modify-write updates
	// included.
	mu sync.Mutex
	// cache keeps the snapshots of the deployments read lately.
	cache *snapshotCache
	// backups holds Close back while a Backup copies the store.
	backups sync.RWMutex
	closed  bool // guarded by backups
}

// OpenStore opens or creates the store in dir. log receives Pebble's
// errors; nil discards them.
func OpenStore(dir string, log *slog.Logger) (*Store, error) {
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: pebblelog.Logger{L: log}})
	if err != nil {
		return nil, fmt.Errorf("open deployment store: %w", err)
	}
	return &Store{db: db, cache: newSnapshotCache()}, nil
}

// Close closes the store, after any Backup in progress.
func (s *Store) Close() error {
	s.backups.Lock()
	defer s.backups.Unlock()
	s.closed = true
	return s.db.Close()
}

// Backup writes a consistent copy of the store into dir, which must not
// exist, while it keeps serving (a Pebble checkpoint).
func (s *Store) Backup(dir string) error {
	s.backups.RLock()
	defer s.backups.RUnlock()
	if s.closed {
		return errors.New("backup deployments: the store is closed")
	}
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("backup deployments to %s: %w", dir, err)
	}
	return nil
}

func deploymentKey(id string) []byte { return append([]byte("d"), id...) }
func historyPrefix(id string) []byte { return append(append([]byte("h"), id...), 0) }
func profileKey(name string) []byte  { return append([]byte("p"), name...) }

var idUnsafe = regexp.MustCompile(`[^a-z0-9.-]+`)

// newID returns a readable unique ID: service-version-random.
func newID(service, version string) string {
	var b [4]byte
	rand.Read(b[:])
	prefix := idUnsafe.ReplaceAllString(strings.ToLower(service+"-"+version), "-")
	if len(prefix) > 48 {
		prefix = prefix[:48]
	}
	return strings.Trim(prefix, "-") + "-" + hex.EncodeToString(b[:])
}

// Create stores a new deployment, assigning its ID.
func (s *Store) Create(d *Deployment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.ID = newID(d.Service, d.Version)
	return s.putLocked(d)
}

func (s *Store) putLocked(d *Deployment) error {
	val, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if err := s.db.Set(deploymentKey(d.ID), val, pebble.Sync); err != nil {
		s.wroteLocked(d.ID, nil)
		return err
	}
	s.wroteLocked(d.ID, val)
	return nil
}

// Get returns the deployment with this ID, read from disk: the caller may
// modify it. Snapshot serves readers that poll.
func (s *Store) Get(id string) (*Deployment, error) {
	val, err := s.getRaw(id)
	if err != nil {
		return nil, err
	}
	return decodeDeployment(id, val)
}

// getRaw returns the stored JSON of the deployment with this ID, a copy
// the caller may keep.
func (s *Store) getRaw(id string) ([]byte, error) {
	val, closer, err := s.db.Get(deploymentKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return bytes.Clone(val), nil
}

// decodeDeployment decodes the stored JSON of the deployment with this ID.
func decodeDeployment(id string, val []byte) (*Deployment, error) {
	var d Deployment
	if err := json.Unmarshal(val, &d); err != nil {
		return nil, fmt.Errorf("deployment %q: %w", id, err)
	}
	return &d, nil
}

// Update applies f to the stored deployment and stores the result, unless
// f returns an error.
func (s *Store) Update(id string, f func(*Deployment) error) (*Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	if err := f(d); err != nil {
		return nil, err
	}
	return d, s.putLocked(d)
}

// Record stores a verdict: it becomes the deployment's latest and is added
// to its history, in one synced batch. A deployment that reached a
// terminal state meanwhile (an abort) keeps it.
func (s *Store) Record(id string, v Verdict) (*Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	if d.State.Terminal() {
		return d, nil
	}
	return d, s.recordLocked(d, v)
}

// Finish records the terminal verdict made from the stored deployment, as
// Record does, unless the deployment is terminal already (ErrTerminal).
func (s *Store) Finish(id string, verdict func(*Deployment) Verdict) (*Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	if d.State.Terminal() {
		return nil, fmt.Errorf("%w: %s is %s", ErrTerminal, id, d.State)
	}
	return d, s.recordLocked(d, verdict(d))
}

// recordLocked makes v d's latest verdict and adds it to d's history.
func (s *Store) recordLocked(d *Deployment, v Verdict) error {
	d.State, d.Verdict = v.Verdict, &v
	dv, err := json.Marshal(d)
	if err != nil {
		return err
	}
	vv, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	key := binary.BigEndian.AppendUint64(historyPrefix(d.ID), uint64(v.At.UnixNano()))
	if err := b.Set(key, vv, nil); err != nil {
		return err
	}
	if err := b.Set(deploymentKey(d.ID), dv, nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		s.wroteLocked(d.ID, nil)
		return err
	}
	s.wroteLocked(d.ID, dv)
	return nil
}

// List returns the deployments keep accepts, in ID order.
func (s *Store) List(keep func(*Deployment) bool) ([]*Deployment, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("d"), UpperBound: []byte("e")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*Deployment
	for it.First(); it.Valid(); it.Next() {
		var d Deployment
		if err := json.Unmarshal(it.Value(), &d); err != nil {
			return nil, fmt.Errorf("deployment %q: %w", it.Key()[1:], err)
		}
		if keep == nil || keep(&d) {
			out = append(out, &d)
		}
	}
	return out, it.Error()
}

// History returns the deployment's verdicts, oldest first, at most limit
// of the newest (all if limit <= 0).
func (s *Store) History(id string, limit int) ([]Verdict, error) {
	prefix := historyPrefix(id)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: append(bytes.Clone(prefix[:len(prefix)-1]), 1)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []Verdict
	for ok := it.Last(); ok && (limit <= 0 || len(out) < limit); ok = it.Prev() {
		var v Verdict
		if err := json.Unmarshal(it.Value(), &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	slices.Reverse(out)
	return out, it.Error()
}

// PutProfile stores a profile registered through the API.
func (s *Store) PutProfile(p Profile) error {
	val, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return s.db.Set(profileKey(p.Name), val, pebble.Sync)
}

// Profiles returns the profiles registered through the API.
func (s *Store) Profiles() ([]Profile, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("p"), UpperBound: []byte("q")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []Profile
	for it.First(); it.Valid(); it.Next() {
		var p Profile
		if err := json.Unmarshal(it.Value(), &p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, it.Error()
}
