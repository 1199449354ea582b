package opentsdb

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"go.uber.org/goleak"

	"github.com/immune-dev/immune/tsdb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testNow is the fixed clock of the tests: the store and the front ends
// agree on it, so data points around base are neither too old nor in the
// future.
var (
	base    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	testNow = base.Add(time.Hour)
	baseSec = base.Unix()
)

func nowFunc() time.Time { return testNow }

// openDB opens a real store in a temporary directory, closed at the end
// of the test.
func openDB(t testing.TB) *tsdb.DB {
	t.Helper()
	db, err := tsdb.Open(t.TempDir(), tsdb.Options{Now: nowFunc})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return db
}

func testOptions() Options {
	return Options{Now: nowFunc}
}

type sample struct {
	t int64
	v float64
}

// queryAll returns every stored series, by its labels' String, with its
// samples.
func queryAll(t testing.TB, db *tsdb.DB) map[string][]sample {
	t.Helper()
	q, err := db.Querier(0, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"))
	out := map[string][]sample{}
	var it chunkenc.Iterator
	for set.Next() {
		s := set.At()
		it = s.Iterator(it)
		var got []sample
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			got = append(got, sample{ts, v})
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		out[s.Labels().String()] = got
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantSeries compares the store's content with want, series by series.
func wantSeries(t testing.TB, db *tsdb.DB, want map[string][]sample) {
	t.Helper()
	got := queryAll(t, db)
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("series %s not stored", k)
			continue
		}
		if !slices.EqualFunc(g, w, func(a, b sample) bool {
			return a.t == b.t && math.Float64bits(a.v) == math.Float64bits(b.v)
		}) {
			t.Errorf("series %s: got %v, want %v", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s: %v", k, got[k])
		}
	}
}

// startServer serves a new Server on a loopback listener until the end of
// the test, and checks that Serve then returns nil.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, served := serveLoopback(ctx, t, s)
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// serveLoopback runs s.Serve on a new loopback listener in a goroutine. It
// returns the listener and the channel that receives Serve's result.
func serveLoopback(ctx context.Context, t testing.TB, s *Server) (net.Listener, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	return ln, served
}

// client is a telnet client. Every read has a generous deadline, so a
// broken server fails the test instead of hanging it.
type client struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *client) send(lines ...string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, strings.Join(lines, "\n")+"\n"); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// readLine returns the next reply line, without its newline.
func (c *client) readLine() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read reply: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

// sync sends version and waits for its reply: every line sent before is
// then committed and answered.
func (c *client) sync() {
	c.t.Helper()
	c.send("version")
	if l := c.readLine(); !strings.HasPrefix(l, "net.opentsdb.tools Immune ") {
		c.t.Fatalf("expected the version reply, got %q", l)
	}
	if l := c.readLine(); !strings.HasPrefix(l, "Built on ") {
		c.t.Fatalf("expected the second version line, got %q", l)
	}
}

// waitClosed reads until the server closes the connection and returns
// everything read.
func (c *client) waitClosed() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c.r)
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		c.t.Fatalf("waiting for the server to close: %v (read %q)", err, b)
	}
	return string(b)
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
