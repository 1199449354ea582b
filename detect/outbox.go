package detect

import (
	"encoding/binary"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// The outbox holds webhook deliveries not yet accepted, under "o" and an
// 8-byte sequence that orders them by enqueue time.
var outboxSeq atomic.Uint64

func outboxKey() []byte {
	// Nanoseconds keep keys ordered across restarts; the counter keeps
	// them unique within one.
	seq := uint64(time.Now().UnixNano()) + outboxSeq.Add(1)
	return binary.BigEndian.AppendUint64([]byte("o"), seq)
}

func (s *Store) addDeliveries(ds []delivery) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, d := range ds {
		val, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if err := b.Set(outboxKey(), val, nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}

func (s *Store) putDelivery(key []byte, d delivery) error {
	val, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return s.db.Set(key, val, pebble.Sync)
}

func (s *Store) deleteDelivery(key []byte) error { return s.db.Delete(key, pebble.Sync) }

// eachDelivery calls f with every delivery in the outbox, oldest first,
// until f returns an error. f may put or delete the delivery's key.
func (s *Store) eachDelivery(f func(key []byte, d delivery) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("o"), UpperBound: []byte("p")})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		var d delivery
		if err := json.Unmarshal(it.Value(), &d); err != nil {
			return err
		}
		if err := f(append([]byte(nil), it.Key()...), d); err != nil {
			return err
		}
	}
	return it.Error()
}
