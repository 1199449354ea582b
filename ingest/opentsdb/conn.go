package opentsdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

const (
	// initialReadBuffer is the read buffer of a new or quiet connection.
	initialReadBuffer = 16 << 10
	// maxReadBuffer is how far the read buffer grows while a client sends
	// faster than it is served (a read fills the buffer), or more if a
	// line of MaxLineBytes needs it. Each drained buffer is a commit, so a
	// larger buffer means fewer commits, which matters most with a store
	// that syncs each commit: 256 KiB holds about 3000 typical lines, close
	// to MaxBatchLines.
	maxReadBuffer = 256 << 10
	// maxPendingReplies is how many bytes of replies a connection holds
	// before writing them even though it has more input buffered.
	maxPendingReplies = 16 << 10
)

// helpReply lists the commands as OpenTSDB does: each followed by a space.
const helpReply = "available commands: exit help put stats version \n"

// conn is one telnet connection, served by one goroutine (serve).
type conn struct {
	s      *Server
	nc     net.Conn
	remote string // nc's peer address, for logs

	// Read buffer: buf[r:w] is unread; scan is where the search for the
	// next newline resumes, so a partial line is not scanned twice.
	buf        []byte
	r, w, scan int
	bufMax     int  // the most buf may grow to
	lastRead   int  // bytes returned by the last read
	readFilled bool // the last read filled all the free space of buf
	eof        bool // the peer closed its side; buf[r:w] is the last line
	// discarding is set while the rest of a too-long line is dropped;
	// discardPut remembers whether that line was a put.
	discarding, discardPut bool

	lines             int       // complete lines read
	linesAtDeadline   int       // lines when the read deadline was last set
	deadline          time.Time // the current read deadline
	out               []byte    // replies not yet written
	broken            bool      // a write failed: the connection is done
	loggedStorageFail bool      // one storage error logged per commit

	authenticated bool // the auth line was accepted, or none is required

	p     Point
	batch batch
	local localCounts

	mu struct {
		sync.Mutex
		stopping bool // set by stop; guards the read deadline with it
	}
}

// localCounts are a connection's counts not yet added to the Server's, so
// that a busy connection does not contend on shared atomics per line.
type localCounts struct {
	commands, puts, invalid, illegal, rejected, storageErrors int64
}

func newConn(ctx context.Context, s *Server, nc net.Conn) *conn {
	c := &conn{
		s:      s,
		nc:     nc,
		remote: nc.RemoteAddr().String(),
		bufMax: max(s.opts.MaxLineBytes+2, maxReadBuffer),
		batch:  newBatch(ctx, s.app, &s.opts),
		// Without Authenticate no auth line is needed.
		authenticated: s.opts.Authenticate == nil,
	}
	c.buf = make([]byte, min(initialReadBuffer, c.bufMax))
	return c
}

// stop asks serve to finish: a read in progress returns at once, and no
// further read starts. Lines already buffered are still handled,
// committed and answered.
func (c *conn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.stopping = true
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
}

// serve handles the connection until the peer closes it, exit, an idle
// timeout, a write failure or stop.
func (c *conn) serve() {
	defer c.close()
	for {
		line, ok := c.nextLine()
		if !ok {
			// Nothing complete is buffered: commit and answer everything
			// so far before waiting for more.
			if !c.flush() || !c.fill() {
				return
			}
			continue
		}
		if !c.handle(line) {
			return
		}
		if c.batch.pending >= c.s.opts.MaxBatchLines && !c.flush() {
			return
		}
	}
}

// close commits what is left, writes the last replies and closes the
// socket.
func (c *conn) close() {
	c.flush()
	// The slot is free before the peer can see the close.
	c.s.stats.connsOpen.Add(-1)
	_ = c.nc.Close()
}

// nextLine returns the next complete line in the buffer, without its
// newline, or false if there is none. At EOF, a last line without a
// newline counts as complete. Too-long lines are answered here and
// skipped.
func (c *conn) nextLine() ([]byte, bool) {
	for {
		var line []byte
		if i := bytes.IndexByte(c.buf[c.scan:c.w], '\n'); i >= 0 {
			end := c.scan + i
			line = c.buf[c.r:end]
			c.r = end + 1
		} else if c.eof && (c.r < c.w || c.discarding) {
			line = c.buf[c.r:c.w]
			c.r = c.w
		} else {
			c.scan = c.w
			return nil, false
		}
		c.scan = c.r
		c.lines++
		if c.discarding {
			c.discarding = false
			c.lineTooLong(c.discardPut)
			continue
		}
		if len(trimNewline(line)) > c.s.opts.MaxLineBytes {
			c.lineTooLong(bytes.HasPrefix(line, []byte("put ")))
			continue
		}
		return line, true
	}
}

// fill reads more input, waiting for it. It reports false when the
// connection is done: the peer closed it, an error, an idle timeout, or
// stop.
func (c *conn) fill() bool {
	if c.eof {
		return false
	}
	if c.r > 0 {
		n := copy(c.buf, c.buf[c.r:c.w])
		c.w, c.scan, c.r = n, c.scan-c.r, 0
	}
	// buf[:w] is now the start of a line without its newline.
	switch {
	case c.discarding:
		// It is the rest of a too-long line.
		c.w, c.scan = 0, 0
	case c.w > c.s.opts.MaxLineBytes+1:
		// Too long even if "\r\n" comes next: drop it up to its newline,
		// holding no more of it than the buffer.
		c.discarding = true
		c.discardPut = bytes.HasPrefix(c.buf[:c.w], []byte("put "))
		c.w, c.scan = 0, 0
	case c.w == len(c.buf) || c.readFilled && len(c.buf) < c.bufMax:
		nb := make([]byte, min(2*len(c.buf), c.bufMax))
		copy(nb, c.buf[:c.w])
		c.buf = nb
	case c.w == 0 && len(c.buf) > initialReadBuffer && c.lastRead < initialReadBuffer/2:
		// The client slowed down: give the large buffer back.
		c.buf = make([]byte, initialReadBuffer)
	}
	if !c.armReadDeadline() {
		return false
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.lastRead, c.readFilled = n, n == len(c.buf)-c.w
	c.w += n
	switch {
	case err == nil:
		return true
	case errors.Is(err, io.EOF):
		c.eof = true
		// A last line without a newline is still handled.
		return c.r < c.w || c.discarding
	case errors.Is(err, os.ErrDeadlineExceeded):
		if c.stopping() {
			return false
		}
		c.s.stats.idleTimeouts.Add(1)
		c.s.log.Debug("opentsdb telnet connection idle, closing", "remote", c.remote, "idle_timeout", c.s.opts.IdleTimeout)
		return false
	default:
		if n > 0 {
			c.eof = true // handle what arrived, then stop
			return true
		}
		c.s.log.Debug("opentsdb telnet read failed", "remote", c.remote, "err", err)
		return false
	}
}

// armReadDeadline sets the idle deadline before a read: IdleTimeout from
// now if a line completed since it was last set, else unchanged, so a
// client that trickles bytes without newlines still times out. It reports
// false once stop was called.
func (c *conn) armReadDeadline() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.stopping {
		return false
	}
	if c.deadline.IsZero() || c.lines != c.linesAtDeadline {
		c.deadline = time.Now().Add(c.s.opts.IdleTimeout)
		c.linesAtDeadline = c.lines
		_ = c.nc.SetReadDeadline(c.deadline)
	}
	return true
}

func (c *conn) stopping() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.stopping
}

// handle runs one command line. It reports false when the connection must
// close.
func (c *conn) handle(line []byte) bool {
	line = trimNewline(line)
	if len(line) == 0 {
		return true
	}
	c.local.commands++
	cmd, rest, _ := bytes.Cut(line, spaceSep)
	if !c.authenticated {
		return c.authenticate(cmd, rest)
	}
	switch string(cmd) {
	case "put":
		c.put(line)
	case "version", "help", "stats":
		// Commit first, so the reply comes after the outcome of every
		// line before it: it tells the client they are durable, and the
		// counters include them.
		if c.batch.pending > 0 && !c.flush() {
			return false
		}
		switch string(cmd) {
		case "version":
			c.reply(c.s.version)
		case "help":
			c.reply([]byte(helpReply))
		default:
			c.publish()
			c.out = appendStats(c.out, c.s.stats.snapshot(), c.s.opts.Now().Unix(), c.s.host)
		}
	case "exit":
		return false
	default:
		c.s.stats.unknownCommands.Add(1)
		c.out = fmt.Appendf(c.out, "unknown command: %s.  Try `help'.\n", safe(cmd))
	}
	if len(c.out) > maxPendingReplies {
		return c.flush()
	}
	return !c.broken
}

// authenticate checks the first line of a connection that needs one. It
// reports false, with an error reply, when the connection must close.
func (c *conn) authenticate(cmd, token []byte) bool {
	if string(cmd) != "auth" {
		c.reply([]byte("auth: required: the first line must be auth <token>\n"))
		return false
	}
	if err := c.s.opts.Authenticate(string(bytes.TrimSpace(token))); err != nil {
		c.s.log.Warn("opentsdb telnet auth refused", "remote", c.remote, "err", err)
		c.out = fmt.Appendf(c.out, "auth: denied: %s\n", oneLine(err.Error()))
		return false
	}
	c.authenticated = true
	return true
}

// put parses and appends one put line.
func (c *conn) put(line []byte) {
	c.local.puts++
	if perr := parsePutWords(&c.p, line, c.s.opts.MaxTags); perr != nil {
		if perr.InvalidValue {
			c.local.invalid++
		} else {
			c.local.illegal++
		}
		c.s.log.Debug("opentsdb telnet put rejected", "remote", c.remote, "err", perr.Msg)
		c.out = append(c.out, perr.Error()...)
		c.out = append(c.out, '\n')
		return
	}
	p := &c.p
	err := c.batch.append(p.Metric, p.Tags, p.Timestamp, p.Value)
	if err == nil {
		return
	}
	if err.rejected {
		c.local.rejected++
		c.out = append(c.out, "put: illegal argument: "...)
	} else {
		c.local.storageErrors++
		if !c.loggedStorageFail {
			c.loggedStorageFail = true
			c.s.log.Warn("opentsdb telnet append failed", "remote", c.remote, "err", err)
		}
		c.out = append(c.out, "put: storage error: "...)
	}
	c.out = append(c.out, err.Error()...)
	c.out = append(c.out, '\n')
}

// lineTooLong answers a line longer than MaxLineBytes.
func (c *conn) lineTooLong(put bool) {
	c.local.commands++
	c.s.stats.linesTooLong.Add(1)
	if put {
		c.local.puts++
		c.out = append(c.out, "put: illegal argument: "...)
	}
	c.out = fmt.Appendf(c.out, "line too long: more than %d bytes; discarded up to its newline\n", c.s.opts.MaxLineBytes)
}

func (c *conn) reply(b []byte) { c.out = append(c.out, b...) }

// flush commits the open transaction, then writes the pending replies, so
// no reply precedes the commit of the lines before it. It reports false if
// the replies could not be written.
func (c *conn) flush() bool {
	n, err := c.batch.commit()
	c.loggedStorageFail = false
	if err != nil {
		c.local.storageErrors++
		c.s.log.Warn("opentsdb telnet commit failed", "remote", c.remote, "data_points", n, "err", err)
		c.out = fmt.Appendf(c.out, "put: storage error: %d data points were not stored: %s\n", n, oneLine(err.Error()))
	} else if n > 0 {
		c.s.stats.stored.Add(int64(n))
		c.s.stats.commits.Add(1)
	}
	c.publish()
	if len(c.out) == 0 || c.broken {
		return !c.broken
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	_, err = c.nc.Write(c.out)
	c.out = c.out[:0]
	if err != nil {
		c.broken = true
		c.s.stats.writeErrors.Add(1)
		c.s.log.Debug("opentsdb telnet reply not written, closing", "remote", c.remote, "err", err)
		return false
	}
	return true
}

// publish adds the connection's counts to the Server's.
func (c *conn) publish() {
	l, st := &c.local, &c.s.stats
	if *l == (localCounts{}) {
		return
	}
	st.telnetCommands.Add(l.commands)
	st.telnetPuts.Add(l.puts)
	st.invalidValues.Add(l.invalid)
	st.illegalArguments.Add(l.illegal)
	st.storageRejected.Add(l.rejected)
	st.storageErrors.Add(l.storageErrors)
	*l = localCounts{}
}

// oneLine replaces newlines so a message fits one reply line.
func oneLine(s string) string {
	return string(bytes.ReplaceAll(bytes.ReplaceAll([]byte(s), []byte("\r"), []byte(" ")), []byte("\n"), []byte(" ")))
}
