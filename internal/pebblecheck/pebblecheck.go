// Package pebblecheck verifies a Pebble database offline, for every store
// that keeps one: what `immune check` and the crash harness run on a data
// directory after a kill, before a restart could repair or hide anything.
package pebblecheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Stats say what a check read.
type Stats struct {
	Tables int   // sstables whose every block checksum was verified
	Keys   int64 // live keys iterated, values read
}

// Check opens the Pebble database in dir read-only and verifies it: the
// manifest and the write-ahead log load (read-only, the log is replayed
// into memory and nothing is flushed, compacted or deleted), the levels
// hold their invariants ((*pebble.DB).CheckLevels), every block of every
// live sstable matches its checksum (filter blocks included, which
// iteration does not read), and every live key and value can be read.
// visit, when not nil, is called with each key and value in order (both
// valid only during the call) so a store can check its own encoding; its
// error ends the check. No process may have the database open: Pebble's
// lock refuses it.
func Check(dir string, visit func(key, value []byte) error) (st Stats, err error) {
	// Pebble would report a missing directory only as a missing database.
	if _, err := os.Stat(dir); err != nil {
		return st, err
	}
	var log logger
	defer func() {
		// Pebble calls Fatalf when it cannot go on; a check reports that
		// rather than exiting the process.
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = errors.New(string(f))
		}
		first, corrupt := log.report()
		switch {
		case err != nil && len(corrupt) > 0:
			// Pebble joins a placeholder line to the error; the paths say it.
			msg, _, _ := strings.Cut(err.Error(), "\n")
			err = &corruptError{msg: msg + " (corrupt: " + strings.Join(corrupt, ", ") + ")", err: err}
		case err == nil && len(corrupt) > 0:
			err = fmt.Errorf("corrupt: %s", strings.Join(corrupt, ", "))
		case err == nil && first != "":
			err = fmt.Errorf("pebble logged an error: %s", first)
		}
	}()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: &log,
		// Pebble's default for a corruption is Fatalf; here it is the
		// finding, and the read that met it fails.
		EventListener: &pebble.EventListener{DataCorruption: log.corruption}})
	if err != nil {
		return st, fmt.Errorf("open: %w", err)
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	if err := db.CheckLevels(nil); err != nil {
		return st, fmt.Errorf("check levels: %w", err)
	}
	if st.Tables, err = checkTables(db, dir); err != nil {
		return st, err
	}
	st.Keys, err = iterate(db, visit)
	return st, err
}

// checkTables verifies the checksum of every block of every live sstable.
func checkTables(db *pebble.DB, dir string) (int, error) {
	levels, err := db.SSTables()
	if err != nil {
		return 0, fmt.Errorf("list sstables: %w", err)
	}
	seen := map[uint64]bool{} // virtual tables share a backing file
	for _, tables := range levels {
		for _, t := range tables {
			num := uint64(t.BackingSSTNum)
			if seen[num] {
				continue
			}
			seen[num] = true
			if err := checkTable(filepath.Join(dir, fmt.Sprintf("%06d.sst", num))); err != nil {
				return len(seen), err
			}
		}
	}
	return len(seen), nil
}

func checkTable(path string) error {
	f, err := vfs.Default.Open(path)
	if err != nil {
		return fmt.Errorf("open sstable: %w", err)
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("sstable %s: %w", path, err)
	}
	// The reader owns readable from here and closes it.
	r, err := sstable.NewReader(context.Background(), readable, sstable.ReaderOptions{})
	if err != nil {
		readable.Close()
		return fmt.Errorf("sstable %s: %w", path, err)
	}
	err = r.ValidateBlockChecksums()
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sstable %s: %w", path, err)
	}
	return nil
}

// iterate reads every live key and value, passing each to visit.
func iterate(db *pebble.DB, visit func(key, value []byte) error) (int64, error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, fmt.Errorf("iterate: %w", err)
	}
	var n int64
	for it.First(); it.Valid(); it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return n, fmt.Errorf("read value of key %x: %w", it.Key(), err)
		}
		n++
		if visit != nil {
			if err := visit(it.Key(), val); err != nil {
				it.Close()
				return n, err
			}
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return n, fmt.Errorf("iterate: %w", err)
	}
	return n, nil
}

// corruptError is an error of Pebble's about a corrupt file, worded on
// one line.
type corruptError struct {
	msg string
	err error
}

func (e *corruptError) Error() string { return e.msg }
func (e *corruptError) Unwrap() error { return e.err }

// logger keeps Pebble's first error line and the files it found corrupt
// for the check's verdict, and turns its Fatalf into a panic of fatal,
// which Check recovers.
type logger struct {
	mu      sync.Mutex
	first   string   // guarded by mu
	corrupt []string // guarded by mu
}

type fatal string

func (l *logger) Infof(format string, args ...any) {}

func (l *logger) Errorf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.first == "" {
		l.first = fmt.Sprintf(format, args...)
	}
}

func (l *logger) corruption(info pebble.DataCorruptionInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Contains(l.corrupt, info.Path) {
		l.corrupt = append(l.corrupt, info.Path)
	}
}

func (l *logger) report() (first string, corrupt []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first, l.corrupt
}

func (l *logger) Fatalf(format string, args ...any) { panic(fatal(fmt.Sprintf(format, args...))) }
