package detect

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// ErrBacktestNotFound is returned for an unknown backtest or calibration.
// It also matches ErrNotFound, so callers that answer 404 for an unknown
// deployment do the same for these.
var ErrBacktestNotFound error = notFoundError("backtest not found")

type notFoundError string

func (e notFoundError) Error() string        { return string(e) }
func (e notFoundError) Is(target error) bool { return target == ErrNotFound }

// Backtests and calibrations are kept beside the deployments, under keys of
// their own:
//
//	"b" id 0x00         → backtest JSON without its timeline
//	"b" id 0x01 seq(4)  → the timeline's verdict JSON, seq from 0
//	"c" id              → calibration JSON
//
// IDs hold only [a-z0-9.-], so 0x00 and 0x01 end them: a backtest's keys
// are contiguous and its summary comes first.
func backtestKey(id string) []byte        { return append(append([]byte("b"), id...), 0) }
func backtestPollPrefix(id string) []byte { return append(append([]byte("b"), id...), 1) }
func calibrationKey(id string) []byte     { return append([]byte("c"), id...) }

// CreateBacktest stores a backtest and its timeline in one synced batch,
// assigning its ID.
func (s *Store) CreateBacktest(bt *Backtest) error {
	bt.ID = "bt-" + newID(bt.Deployment.Service, bt.Deployment.Version)
	summary := *bt
	summary.Timeline = nil
	val, err := json.Marshal(summary)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(backtestKey(bt.ID), val, nil); err != nil {
		return err
	}
	for i, v := range bt.Timeline {
		vv, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if err := b.Set(binary.BigEndian.AppendUint32(backtestPollPrefix(bt.ID), uint32(i)), vv, nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}

// GetBacktest returns the backtest with this ID and its timeline.
func (s *Store) GetBacktest(id string) (*Backtest, error) {
	var bt Backtest
	if err := s.getJSON(backtestKey(id), &bt); err != nil {
		return nil, fmt.Errorf("%w: %q", err, id)
	}
	prefix := backtestPollPrefix(id)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: append(bytes.Clone(prefix[:len(prefix)-1]), 2)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		var v Verdict
		if err := json.Unmarshal(it.Value(), &v); err != nil {
			return nil, fmt.Errorf("backtest %q: %w", id, err)
		}
		bt.Timeline = append(bt.Timeline, v)
	}
	return &bt, it.Error()
}

// ListBacktests returns the backtests keep accepts, without their
// timelines, in ID order.
func (s *Store) ListBacktests(keep func(*Backtest) bool) ([]*Backtest, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("b"), UpperBound: []byte("c")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*Backtest
	for ok := it.First(); ok; {
		key := it.Key()
		end := bytes.IndexByte(key, 0)
		if end < 0 || end != len(key)-1 {
			return nil, fmt.Errorf("backtest store: unexpected key %q", key)
		}
		var bt Backtest
		if err := json.Unmarshal(it.Value(), &bt); err != nil {
			return nil, fmt.Errorf("backtest %q: %w", key[1:end], err)
		}
		if keep == nil || keep(&bt) {
			out = append(out, &bt)
		}
		// Skip the timeline: the next key is the next backtest's summary.
		next := append(bytes.Clone(key[:end]), 2)
		ok = it.SeekGE(next)
	}
	return out, it.Error()
}

// PutCalibration stores a calibration, assigning its ID.
func (s *Store) PutCalibration(c *Calibration) error {
	c.ID = "aa-" + newID(c.Request.Service, c.Request.Profile)
	val, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.db.Set(calibrationKey(c.ID), val, pebble.Sync)
}

// GetCalibration returns the calibration with this ID.
func (s *Store) GetCalibration(id string) (*Calibration, error) {
	var c Calibration
	if err := s.getJSON(calibrationKey(id), &c); err != nil {
		return nil, fmt.Errorf("%w: %q", err, id)
	}
	return &c, nil
}

// ListCalibrations returns the calibrations keep accepts, in ID order.
func (s *Store) ListCalibrations(keep func(*Calibration) bool) ([]*Calibration, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("c"), UpperBound: []byte("d")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*Calibration
	for it.First(); it.Valid(); it.Next() {
		var c Calibration
		if err := json.Unmarshal(it.Value(), &c); err != nil {
			return nil, fmt.Errorf("calibration %q: %w", it.Key()[1:], err)
		}
		if keep == nil || keep(&c) {
			out = append(out, &c)
		}
	}
	return out, it.Error()
}

// getJSON decodes the value at key into v; a missing key is
// ErrBacktestNotFound.
func (s *Store) getJSON(key []byte, v any) error {
	val, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrBacktestNotFound
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	return json.Unmarshal(val, v)
}
