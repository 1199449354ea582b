package opentsdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/prometheus/storage"
)

// ErrServerClosed is returned by Serve when it is called after Shutdown.
var ErrServerClosed = errors.New("opentsdb: server closed")

// Server is the OpenTSDB telnet-style front end: it reads newline-separated
// commands from TCP connections and writes put data points to storage. All
// methods are safe for concurrent use; one Server may serve several
// listeners.
//
// Commands (case-sensitive, as OpenTSDB's):
//
//   - put <metric> <timestamp> <value> <tagk=tagv> [...]: stores one data
//     point (rules in ParsePut). Success is silent; a rejected line gets one
//     reply line, "put: illegal argument: ...", "put: invalid value: ..."
//     or "put: storage error: ...", and the connection stays usable: a bad
//     line never affects the lines around it.
//   - version: two lines naming Immune's version, in the place of
//     OpenTSDB's build lines.
//   - help: "available commands: exit help put stats version ".
//   - stats: the Server's counters (Stats) in OpenTSDB's format, one per
//     line: "tsd.<name> <unix seconds> <value> <tag=value> host=<host>".
//   - exit: closes the connection after committing what it sent.
//   - anything else: "unknown command: <cmd>.  Try `help'." Blank lines are
//     ignored.
//
// Durability: a connection appends its points to one storage transaction
// and commits it whenever its buffered input is drained, before waiting
// for more, or every Options.MaxBatchLines points. No reply is written
// before every line preceding it is committed, so the reply to, say,
// version tells a client that everything it sent before is durable. A
// failed commit loses that transaction's points and is reported as "put:
// storage error: N data points were not stored: ...".
//
// Bounds: Options.MaxLineBytes per line (a longer line is discarded up to
// its newline and answered with an error), Options.MaxConnections
// connections (one more gets an error line and is closed),
// Options.IdleTimeout without a complete line, Options.WriteTimeout per
// write of replies.
type Server struct {
	app     storage.Appendable
	opts    Options
	log     *slog.Logger
	host    string // host tag of the stats reply
	version []byte // reply to the version command
	stats   counters

	mu struct {
		sync.Mutex
		shutdown bool
		serves   map[*serveState]struct{}
	}
}

// serveState is one Serve call: its listener and the connections it
// accepted, which it owns.
type serveState struct {
	ln   net.Listener
	wg   sync.WaitGroup // one per connection goroutine
	done chan struct{}  // closed when Serve returns

	mu struct {
		sync.Mutex
		stopping bool
		conns    map[*conn]struct{}
	}
}

// NewServer returns a Server writing to app. Zero Options fields take their
// defaults.
func NewServer(app storage.Appendable, opts Options) *Server {
	s := &Server{app: app, opts: opts.withDefaults(), host: statsHost()}
	s.log = s.opts.Logger
	s.version = versionReply(s.opts.Version)
	s.mu.serves = make(map[*serveState]struct{})
	return s
}

// Stats returns the Server's counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// PutHandler returns the HTTP /api/put handler (see NewPutHandler) writing
// to the Server's storage with its Options and counting in its Stats, so
// the stats command covers both front ends.
func (s *Server) PutHandler() http.Handler {
	return newPutHandler(s.app, s.opts, &s.stats)
}

// Serve accepts connections on ln and serves each in its own goroutine
// until ctx is done, Shutdown is called or ln is closed; then it closes
// ln, lets every connection it accepted commit what it has read and
// closes them, and returns. So when Serve returns, nothing it started is
// still running. It returns nil in those cases, ErrServerClosed if Shutdown
// was called before, and otherwise the error that stopped it accepting.
//
// Storage transactions are given a context carrying ctx's values but not
// its cancellation, so that a last commit can still succeed after ctx is
// done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	st := &serveState{ln: ln, done: make(chan struct{})}
	st.mu.conns = make(map[*conn]struct{})
	s.mu.Lock()
	if s.mu.shutdown {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.mu.serves[st] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.serves, st)
		s.mu.Unlock()
		close(st.done)
	}()

	stopAccepting := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stopAccepting()

	err := s.accept(ctx, st)
	_ = ln.Close()
	st.stop()
	st.wg.Wait()
	return err
}

// accept runs the accept loop of one Serve call.
func (s *Server) accept(ctx context.Context, st *serveState) error {
	connCtx := context.WithoutCancel(ctx)
	var backoff time.Duration
	for {
		nc, err := st.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || s.isShutdown() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !retryable(err) {
				return fmt.Errorf("accept: %w", err)
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("opentsdb telnet accept failed; retrying", "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		backoff = 0
		if s.stats.connsOpen.Add(1) > int64(s.opts.MaxConnections) {
			s.stats.connsOpen.Add(-1)
			s.stats.connsRejected.Add(1)
			s.refuse(nc)
			continue
		}
		c := newConn(connCtx, s, nc)
		if !st.add(c) {
			// Serve is stopping; the connection was never served.
			s.stats.connsOpen.Add(-1)
			_ = nc.Close()
			continue
		}
		s.stats.connsTotal.Add(1)
		go func() {
			defer st.wg.Done()
			defer st.remove(c)
			c.serve()
		}()
	}
}

// retryable reports whether an Accept error is worth retrying.
func retryable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.EINTR)
}

// refuse answers a connection beyond MaxConnections and closes it. The
// write goes to a fresh socket's empty send buffer, so it does not block
// the accept loop; the deadline is a safeguard.
func (s *Server) refuse(nc net.Conn) {
	s.log.Debug("opentsdb telnet connection refused: limit reached", "remote", nc.RemoteAddr().String(), "limit", s.opts.MaxConnections)
	_ = nc.SetWriteDeadline(time.Now().Add(min(s.opts.WriteTimeout, time.Second)))
	_, _ = fmt.Fprintf(nc, "connection refused: %d connections are open, the limit; try again later\n", s.opts.MaxConnections)
	_ = nc.Close()
}

func (s *Server) isShutdown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.shutdown
}

// Shutdown stops the Server gracefully: it closes every listener, lets
// each connection commit what it has already read, answer it, and close,
// and waits for every Serve call to return. If ctx is done first, it closes
// the remaining connections at once and returns ctx's error; their Serve
// calls still wait for their goroutines, which a storage call in progress
// may hold. Serve called after Shutdown returns ErrServerClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.mu.shutdown = true
	serves := make([]*serveState, 0, len(s.mu.serves))
	for st := range s.mu.serves {
		serves = append(serves, st)
	}
	s.mu.Unlock()

	for _, st := range serves {
		_ = st.ln.Close()
		st.stop()
	}
	for _, st := range serves {
		select {
		case <-st.done:
		case <-ctx.Done():
			for _, st := range serves {
				st.kill()
			}
			return ctx.Err()
		}
	}
	return nil
}

// add registers a connection, unless the Serve call is stopping.
func (st *serveState) add(c *conn) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.mu.stopping {
		return false
	}
	st.mu.conns[c] = struct{}{}
	st.wg.Add(1)
	return true
}

func (st *serveState) remove(c *conn) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.mu.conns, c)
}

// stop asks every connection to finish (see conn.stop) and refuses new
// ones.
func (st *serveState) stop() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.mu.stopping = true
	for c := range st.mu.conns {
		c.stop()
	}
}

// kill closes every connection's socket.
func (st *serveState) kill() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for c := range st.mu.conns {
		_ = c.nc.Close()
	}
}

// versionReply builds the reply to the version command: Immune's version
// and build, in the shape of OpenTSDB's two BuildData lines.
func versionReply(version string) []byte {
	rev, state, built := "unknown", "MINT", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "" {
			version = bi.Main.Version
		}
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.modified":
				if kv.Value == "true" {
					state = "MODIFIED"
				}
			case "vcs.time":
				built = kv.Value
			}
		}
	}
	if version == "" {
		version = "(devel)"
	}
	return fmt.Appendf(nil, "net.opentsdb.tools Immune %s (OpenTSDB-compatible put) built at revision %s (%s)\nBuilt on %s with %s\n",
		version, rev, state, built, runtime.Version())
}
