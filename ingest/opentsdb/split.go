package opentsdb

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// SplitHTTP shares one listener between the telnet protocol and HTTP, as
// OpenTSDB's port 4242 does: a connection whose first byte is an
// upper-case letter (GET, POST, ...) is HTTP, anything else is telnet
// (whose commands are lower case). Collectors and Grafana can then both be
// pointed at the one address.
//
// A connection that sends nothing within sniff is closed; at most
// maxPending connections wait to be told apart, and more are closed at
// once. The underlying listener is closed when both returned listeners
// are.
func SplitHTTP(ln net.Listener, sniff time.Duration, maxPending int) (telnet, http net.Listener) {
	s := &splitter{ln: ln, sniff: sniff, pending: make(chan struct{}, max(maxPending, 1)), done: make(chan struct{})}
	s.telnet = &splitListener{s: s, conns: make(chan net.Conn), quit: make(chan struct{})}
	s.http = &splitListener{s: s, conns: make(chan net.Conn), quit: make(chan struct{})}
	go s.accept()
	return s.telnet, s.http
}

type splitter struct {
	ln           net.Listener
	sniff        time.Duration
	pending      chan struct{} // a slot per connection being told apart
	telnet, http *splitListener

	mu          sync.Mutex
	closedSides int           // returned listeners closed
	err         error         // why accepting stopped
	done        chan struct{} // closed when accepting stops
}

func (s *splitter) accept() {
	var err error
	defer func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
	}()
	var backoff time.Duration
	for {
		var conn net.Conn
		if conn, err = s.ln.Accept(); err != nil {
			if !retryable(err) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		select {
		case s.pending <- struct{}{}:
			go s.route(conn)
		default:
			conn.Close()
		}
	}
}

// route reads the connection's first byte and hands it to its listener.
func (s *splitter) route(conn net.Conn) {
	defer func() { <-s.pending }()
	r := bufio.NewReaderSize(conn, 16)
	conn.SetReadDeadline(time.Now().Add(s.sniff))
	first, err := r.Peek(1)
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return
	}
	to := s.telnet
	if 'A' <= first[0] && first[0] <= 'Z' {
		to = s.http
	}
	select {
	case to.conns <- &peekedConn{Conn: conn, r: r}:
	case <-s.done:
		conn.Close()
	case <-to.quit:
		conn.Close()
	}
}

// splitListener is one side of a SplitHTTP.
type splitListener struct {
	s     *splitter
	conns chan net.Conn
	quit  chan struct{} // closed by Close
	once  sync.Once
}

// Accept waits for the next connection of this side.
func (l *splitListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.quit:
		return nil, net.ErrClosed
	case <-l.s.done:
		l.s.mu.Lock()
		err := l.s.err
		l.s.mu.Unlock()
		return nil, err
	}
}

// Close stops this side; the shared listener closes with the second side.
func (l *splitListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.quit)
		s := l.s
		s.mu.Lock()
		s.closedSides++
		last := s.closedSides == 2
		s.mu.Unlock()
		if last {
			err = s.ln.Close()
		}
	})
	return err
}

// Addr is the shared listener's address.
func (l *splitListener) Addr() net.Addr { return l.s.ln.Addr() }

// peekedConn reads the sniffed byte before the rest of the connection.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
