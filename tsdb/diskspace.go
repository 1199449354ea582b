package tsdb

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// DiskFullError refuses a write because the file system holding the store
// has less free space than Options.MinFreeBytes. It is temporary: writes
// resume by themselves once space returns. Front ends answer it 503 with
// Retry-After.
type DiskFullError struct {
	Dir       string
	Free, Min uint64
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("tsdb: disk full: %d MiB free on the file system of %s, writes resume above %d MiB", e.Free>>20, e.Dir, e.Min>>20)
}

// RetryAfter is how long a client should wait before retrying.
func (e *DiskFullError) RetryAfter() time.Duration { return 30 * time.Second }

// diskCheckInterval bounds how often the free space is read; what is
// committed between two reads eats into the minimum, which is sized for it.
const diskCheckInterval = 100 * time.Millisecond

// diskGuard refuses writes while free space is below a minimum, keeping
// room for the checkpoints and compactions that turn what was accepted
// into its final form, and for Pebble's WAL, whose write errors are fatal.
type diskGuard struct {
	dir string
	min uint64
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	checked time.Time
	full    *DiskFullError // nil while there is room
}

// check returns a *DiskFullError while free space is below the minimum.
func (g *diskGuard) check() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.min == 0 {
		return nil
	}
	if now := g.now(); now.Sub(g.checked) >= diskCheckInterval {
		g.checked = now
		g.update()
	}
	if g.full != nil {
		return g.full
	}
	return nil
}

func (g *diskGuard) update() {
	free, err := freeSpace(g.dir)
	if errors.Is(err, errors.ErrUnsupported) {
		g.min = 0
		g.log.Info("free disk space cannot be read on this system: writes are never refused for lack of it", "dir", g.dir)
		return
	}
	if err != nil {
		g.log.Warn("cannot read free disk space; writes go on", "dir", g.dir, "err", err)
		return
	}
	switch wasFull := g.full != nil; {
	case free < g.min && !wasFull:
		g.full = &DiskFullError{Dir: g.dir, Free: free, Min: g.min}
		g.log.Error("disk full: refusing writes until space returns", "dir", g.dir, "free_bytes", free, "min_free_bytes", g.min)
	case free < g.min:
		g.full = &DiskFullError{Dir: g.dir, Free: free, Min: g.min}
	case wasFull:
		g.full = nil
		g.log.Info("disk space back: accepting writes", "dir", g.dir, "free_bytes", free)
	}
}
