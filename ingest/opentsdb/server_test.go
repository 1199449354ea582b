package opentsdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-dev/immune/tsdb"
)

func ts(offset int) int64 { return baseSec + int64(offset) }

func TestTelnetBadLinesDoNotDropGoodOnes(t *testing.T) {
	db := openDB(t)
	s := NewServer(db, testOptions())
	c := dial(t, startServer(t, s))

	c.send(
		fmt.Sprintf("put sys.cpu.user %d 42.5 host=web01 cpu=0", ts(0)),
		"put sys.cpu.user notatime 1 host=web01 cpu=0",
		fmt.Sprintf("put sys.cpu.user %d 43 host=web01 cpu=0", ts(10)),
		fmt.Sprintf("put sys.cpu.user %d 1 host", ts(20)),
		"",
		fmt.Sprintf("put sys.cpu.user %d.250 44 host=web01 cpu=0\r", ts(20)),
		"put",
		fmt.Sprintf("put sys.cpu.user %d000 45 host=web02 cpu=0", ts(30)),
		fmt.Sprintf("put sys.cpu.user %d 1e999 host=web01", ts(40)),
		"diediedie",
		fmt.Sprintf("put sys-mem/free_bytes %d -7 host=web01", ts(0)),
	)
	for _, want := range []string{
		"put: invalid value: Invalid character 'n' in notatime",
		"put: illegal argument: invalid tag: host",
		"put: illegal argument: not enough arguments (need least 4, got 0)",
		fmt.Sprintf("put: illegal argument: value is NaN or Infinite: Infinity for metric=sys.cpu.user timestamp=%d", ts(40)),
		"unknown command: diediedie.  Try `help'.",
	} {
		if got := c.readLine(); got != want {
			t.Fatalf("reply\n got %q\nwant %q", got, want)
		}
	}
	c.sync()

	ms := func(off int) int64 { return ts(off) * 1000 }
	wantSeries(t, db, map[string][]sample{
		`{__name__="sys.cpu.user", cpu="0", host="web01"}`: {{ms(0), 42.5}, {ms(10), 43}, {ms(20) + 250, 44}},
		`{__name__="sys.cpu.user", cpu="0", host="web02"}`: {{ms(30), 45}},
		`{__name__="sys-mem/free_bytes", host="web01"}`:    {{ms(0), -7}},
	})
	st := s.Stats()
	if st.TelnetPuts != 9 || st.InvalidValues != 1 || st.IllegalArguments != 3 || st.UnknownCommands != 1 || st.DataPointsStored != 5 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestTelnetSameSeriesAsPromQL checks the mapping end to end: a point
// written over telnet is found by a UTF-8 metric name matcher, as PromQL's
// {"sys.cpu.user", host="a"} selects it.
func TestTelnetSameSeriesAsPromQL(t *testing.T) {
	db := openDB(t)
	c := dial(t, startServer(t, NewServer(db, testOptions())))
	c.send(fmt.Sprintf("put sys.cpu.user %d 1 host=a", ts(0)))
	c.sync()

	q, err := db.Querier(0, ts(1)*1000)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(context.Background(), false, nil,
		labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "sys.cpu.user"),
		labels.MustNewMatcher(labels.MatchEqual, "host", "a"))
	if !set.Next() {
		t.Fatalf("series not found: %v", set.Err())
	}
	if got, want := set.At().Labels(), SeriesLabels("sys.cpu.user", map[string]string{"host": "a"}); !labels.Equal(got, want) {
		t.Fatalf("labels %s, want %s", got, want)
	}
}

func TestTelnetCommands(t *testing.T) {
	db := openDB(t)
	s := NewServer(db, Options{Now: nowFunc, Version: "v1.2.3"})
	c := dial(t, startServer(t, s))

	c.send("version")
	if got := c.readLine(); !strings.HasPrefix(got, "net.opentsdb.tools Immune v1.2.3 (OpenTSDB-compatible put) built at revision ") {
		t.Fatalf("version line 1: %q", got)
	}
	if got := c.readLine(); !strings.HasPrefix(got, "Built on ") {
		t.Fatalf("version line 2: %q", got)
	}

	c.send("help")
	if got, want := c.readLine(), "available commands: exit help put stats version "; got != want {
		t.Fatalf("help: %q, want %q", got, want)
	}

	c.send("", "foo bar", "Put m 1 1 a=b", "\x00\x01\xff")
	for _, want := range []string{
		"unknown command: foo.  Try `help'.",
		"unknown command: Put.  Try `help'.",
		`unknown command: \x00\x01\xff.  Try ` + "`help'.",
	} {
		if got := c.readLine(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}

	c.send(fmt.Sprintf("put m %d 1 a=b", ts(0)), "put m x 1 a=b", "stats")
	if got := c.readLine(); got != "put: invalid value: Invalid character 'x' in x" {
		t.Fatalf("got %q", got)
	}
	lineRE := regexp.MustCompile(`^tsd\.[a-z_.]+ (\d+) (\d+) type=[a-z_]+ host=\S+$`)
	stats := map[string]string{}
	for range 17 {
		l := c.readLine()
		m := lineRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("stats line %q", l)
		}
		if m[1] != fmt.Sprint(testNow.Unix()) {
			t.Fatalf("stats line %q: timestamp is not the clock's", l)
		}
		name, _, _ := strings.Cut(l, " ")
		_, tag, _ := strings.Cut(strings.SplitN(l, " ", 4)[3], "type=")
		tag, _, _ = strings.Cut(tag, " ")
		stats[name+" "+tag] = m[2]
	}
	for k, want := range map[string]string{
		"tsd.connectionmgr.connections open":  "1",
		"tsd.connectionmgr.connections total": "1",
		"tsd.rpc.received telnet":             "8", // version, help, 3 unknown, 2 puts, stats
		"tsd.rpc.received put":                "2",
		"tsd.rpc.errors invalid_values":       "1",
		"tsd.rpc.errors unknown_commands":     "3",
		"tsd.datapoints.added all":            "1",
		"tsd.storage.commits all":             "1",
	} {
		if stats[k] != want {
			t.Errorf("%s = %q, want %q (all: %v)", k, stats[k], want, stats)
		}
	}

	c.send("exit", "version")
	if rest := c.waitClosed(); rest != "" {
		t.Fatalf("after exit: %q", rest)
	}
}

func TestTelnetLineTooLong(t *testing.T) {
	db := openDB(t)
	s := NewServer(db, Options{Now: nowFunc, MaxLineBytes: 1024})
	c := dial(t, startServer(t, s))

	good := func(off int) string { return fmt.Sprintf("put m %d %d a=b", ts(off), off) }
	prefix := fmt.Sprintf("put m %d 1 a=", ts(3))
	exactValue := strings.Repeat("v", 1024-len(prefix))
	exact := prefix + exactValue
	c.send(
		good(0),
		"put m 1 1 a="+strings.Repeat("x", 1100), // longer than the limit, shorter than the buffer
		good(1),
		"put "+strings.Repeat("y", 100_000), // far longer than the buffer
		good(2),
		strings.Repeat("\x00garbage", 20_000),
		exact, // exactly the limit
	)
	for _, want := range []string{
		"put: illegal argument: line too long: more than 1024 bytes; discarded up to its newline",
		"put: illegal argument: line too long: more than 1024 bytes; discarded up to its newline",
		"line too long: more than 1024 bytes; discarded up to its newline",
	} {
		if got := c.readLine(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	c.sync()
	wantSeries(t, db, map[string][]sample{
		`{__name__="m", a="b"}`:                  {{ts(0) * 1000, 0}, {ts(1) * 1000, 1}, {ts(2) * 1000, 2}},
		`{__name__="m", a="` + exactValue + `"}`: {{ts(3) * 1000, 1}},
	})
	if st := s.Stats(); st.LinesTooLong != 3 {
		t.Fatalf("LinesTooLong = %d", st.LinesTooLong)
	}
}

func TestTelnetIdleTimeout(t *testing.T) {
	s := NewServer(openDB(t), Options{Now: nowFunc, IdleTimeout: 50 * time.Millisecond})
	addr := startServer(t, s)

	silent := dial(t, addr)
	if rest := silent.waitClosed(); rest != "" {
		t.Fatalf("silent client got %q", rest)
	}
	// A client that keeps a line open without its newline times out too.
	trickler := dial(t, addr)
	trickler.sendRaw([]byte("put m 1 1"))
	if rest := trickler.waitClosed(); rest != "" {
		t.Fatalf("trickling client got %q", rest)
	}
	if st := s.Stats(); st.IdleTimeouts != 2 || st.ConnectionsOpen != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestTelnetLastLineWithoutNewline(t *testing.T) {
	db := openDB(t)
	c := dial(t, startServer(t, NewServer(db, testOptions())))
	c.sendRaw(fmt.Appendf(nil, "put m %d 1 a=b\nput m %d 2 a=b", ts(0), ts(1)))
	if err := c.nc.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest := c.waitClosed(); rest != "" {
		t.Fatalf("got %q", rest)
	}
	wantSeries(t, db, map[string][]sample{`{__name__="m", a="b"}`: {{ts(0) * 1000, 1}, {ts(1) * 1000, 2}}})
}

func TestTelnetManyConnections(t *testing.T) {
	db := openDB(t)
	s := NewServer(db, testOptions())
	addr := startServer(t, s)

	const conns, lines = 32, 500
	var wg sync.WaitGroup
	for i := range conns {
		c := dial(t, addr)
		wg.Go(func() {
			var b strings.Builder
			for j := range lines {
				fmt.Fprintf(&b, "put load.test %d %d host=h%d\n", ts(j), j, i)
			}
			b.WriteString("exit\n")
			if _, err := c.nc.Write([]byte(b.String())); err != nil {
				t.Errorf("send: %v", err)
				return
			}
			if rest := c.waitClosed(); rest != "" {
				t.Errorf("got %q", rest)
			}
		})
	}
	wg.Wait()

	got := queryAll(t, db)
	if len(got) != conns {
		t.Fatalf("%d series, want %d", len(got), conns)
	}
	for k, smps := range got {
		if len(smps) != lines {
			t.Errorf("%s: %d samples, want %d", k, len(smps), lines)
		}
	}
	if st := s.Stats(); st.DataPointsStored != conns*lines || st.ConnectionsTotal != conns {
		t.Fatalf("stats: %+v", st)
	}
}

func TestTelnetMaxConnections(t *testing.T) {
	s := NewServer(openDB(t), Options{Now: nowFunc, MaxConnections: 2})
	addr := startServer(t, s)

	c1, c2 := dial(t, addr), dial(t, addr)
	c1.sync()
	c2.sync()
	c3 := dial(t, addr)
	if got, want := c3.waitClosed(), "connection refused: 2 connections are open, the limit; try again later\n"; got != want {
		t.Fatalf("third connection got %q, want %q", got, want)
	}
	// Closing one frees its slot.
	c1.send("exit")
	c1.waitClosed()
	c4 := dial(t, addr)
	c4.sync()
	if st := s.Stats(); st.ConnectionsRejected != 1 || st.ConnectionsOpen != 2 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestTelnetBatchesCommits(t *testing.T) {
	db := openDB(t)
	s := NewServer(db, Options{Now: nowFunc, MaxBatchLines: 10})
	c := dial(t, startServer(t, s))

	var lines []string
	for i := range 35 {
		lines = append(lines, fmt.Sprintf("put m %d %d a=b", ts(i), i))
	}
	c.send(lines...)
	c.sync()
	st := s.Stats()
	if st.DataPointsStored != 35 || st.Commits < 4 {
		t.Fatalf("stats: %+v", st)
	}
	if n := len(queryAll(t, db)[`{__name__="m", a="b"}`]); n != 35 {
		t.Fatalf("%d samples stored", n)
	}
}

func TestTelnetStorageRejections(t *testing.T) {
	db := openDB(t)
	s := NewServer(db, testOptions())
	c := dial(t, startServer(t, s))

	old := base.Add(-30 * 24 * time.Hour).Unix()
	future := testNow.Add(11 * time.Minute).Unix()
	c.send(
		fmt.Sprintf("put m %d 1 a=b", old),
		fmt.Sprintf("put m %d 1 a=b", future),
		fmt.Sprintf("put m %d 1 a=b", ts(0)),
	)
	for _, want := range []string{
		"put: illegal argument: sample rejected by storage: out of bounds (before the retention period, or too far in the future)",
		fmt.Sprintf("put: illegal argument: timestamp %d is more than 10m0s in the future", future*1000),
	} {
		if got := c.readLine(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	c.sync()
	wantSeries(t, db, map[string][]sample{`{__name__="m", a="b"}`: {{ts(0) * 1000, 1}}})
	if st := s.Stats(); st.StorageRejected != 2 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestSeriesLimitRefusesOnlyNewSeries: with the store's active-series
// limit reached, telnet and /api/put refuse the points of a new series in
// the protocol's form and store the others of the same batch or request.
func TestSeriesLimitRefusesOnlyNewSeries(t *testing.T) {
	db, err := tsdb.Open(t.TempDir(), tsdb.Options{Now: nowFunc, MaxActiveSeries: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := NewServer(db, testOptions())
	c := dial(t, startServer(t, s))
	c.send(
		fmt.Sprintf("put m %d 1 a=1", ts(0)),
		fmt.Sprintf("put m %d 1 a=2", ts(0)),
		fmt.Sprintf("put m %d 1 a=3", ts(0)),
		fmt.Sprintf("put m %d 2 a=1", ts(1)),
	)
	want := "put: illegal argument: new series rejected by storage: active series limit of 2 reached"
	if got := c.readLine(); !strings.HasPrefix(got, want) {
		t.Fatalf("got %q, want it to start with %q", got, want)
	}
	c.sync()

	code, resp := put(t, NewPutHandler(db, testOptions()), "/api/put?details",
		"["+jp("m", 2, "3", `{"a":"2"}`)+","+jp("m", 2, "1", `{"a":"4"}`)+"]")
	if code != http.StatusBadRequest || !strings.Contains(resp, `"success":1,"failed":1`) || !strings.Contains(resp, "active series limit of 2 reached") {
		t.Fatalf("/api/put: got %d %s", code, resp)
	}
	wantSeries(t, db, map[string][]sample{
		`{__name__="m", a="1"}`: {{ts(0) * 1000, 1}, {ts(1) * 1000, 2}},
		`{__name__="m", a="2"}`: {{ts(0) * 1000, 1}, {ts(2) * 1000, 3}},
	})
}

// faultyAppendable wraps a store to fail appends of the metric "fail" and,
// while commitErr is set, every commit.
type faultyAppendable struct {
	db        *tsdb.DB
	commitErr atomic.Pointer[error]
}

func (f *faultyAppendable) Appender(ctx context.Context) storage.Appender {
	return &faultyAppender{Appender: f.db.Appender(ctx), f: f}
}

type faultyAppender struct {
	storage.Appender
	f *faultyAppendable
}

var errInjected = errors.New("injected failure")

func (a *faultyAppender) Append(ref storage.SeriesRef, ls labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	if ls.Get(labels.MetricName) == "fail" {
		return 0, errInjected
	}
	return a.Appender.Append(ref, ls, t, v)
}

func (a *faultyAppender) Commit() error {
	if err := a.f.commitErr.Load(); err != nil {
		_ = a.Appender.Rollback()
		return *err
	}
	return a.Appender.Commit()
}

func TestTelnetStorageErrors(t *testing.T) {
	db := openDB(t)
	app := &faultyAppendable{db: db}
	s := NewServer(app, testOptions())
	c := dial(t, startServer(t, s))

	c.send(fmt.Sprintf("put fail %d 1 a=b", ts(0)), fmt.Sprintf("put m %d 1 a=b", ts(0)))
	if got, want := c.readLine(), "put: storage error: injected failure"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	c.sync()

	app.commitErr.Store(&errInjected)
	c.send(fmt.Sprintf("put m %d 2 a=b", ts(1)), fmt.Sprintf("put m %d 3 a=b", ts(2)), "version")
	if got, want := c.readLine(), "put: storage error: 2 data points were not stored: injected failure"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	c.readLine() // the version reply
	c.readLine()
	app.commitErr.Store(nil)

	wantSeries(t, db, map[string][]sample{`{__name__="m", a="b"}`: {{ts(0) * 1000, 1}}})
	if st := s.Stats(); st.StorageErrors != 2 || st.DataPointsStored != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestTelnetBinaryGarbage(t *testing.T) {
	db := openDB(t)
	s := NewServer(db, Options{Now: nowFunc, MaxLineBytes: 4096})
	c := dial(t, startServer(t, s))

	garbage := make([]byte, 1<<20)
	x := uint32(2463534242)
	for i := range garbage {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		garbage[i] = byte(x)
	}
	// Read replies concurrently: a client that does not read them would be
	// disconnected at WriteTimeout, which is not what is tested here.
	replies := make(chan int)
	go func() {
		n := 0
		for {
			_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			l, err := c.r.ReadString('\n')
			if err != nil || strings.HasPrefix(l, "Built on ") {
				replies <- n
				return
			}
			n++
		}
	}()
	c.sendRaw(garbage)
	c.send("", fmt.Sprintf("put m %d 1 a=b", ts(0)), "version")
	if n := <-replies; n == 0 {
		t.Fatal("no replies to garbage")
	}
	wantSeries(t, db, map[string][]sample{`{__name__="m", a="b"}`: {{ts(0) * 1000, 1}}})
}

func TestTelnetShutdown(t *testing.T) {
	db := openDB(t)
	s := NewServer(db, testOptions())
	ln, served := serveLoopback(context.Background(), t, s)

	c := dial(t, ln.Addr().String())
	c.sync() // the connection is being served
	c.send(fmt.Sprintf("put m %d 1 a=b", ts(0)))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c.waitClosed()
	st := s.Stats()
	if st.ConnectionsOpen != 0 || st.DataPointsStored != st.TelnetPuts {
		t.Fatalf("stats: %+v", st)
	}
	// The put races Shutdown, which stops reads at once: either the
	// connection read it, and then committed it before closing, or it
	// never read it. TelnetPuts tells which.
	want := map[string][]sample{}
	if st.TelnetPuts == 1 {
		want[`{__name__="m", a="b"}`] = []sample{{ts(0) * 1000, 1}}
	}
	wantSeries(t, db, want)
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), ln2); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

// gateAppendable blocks appends of the metric "gate" until released.
type gateAppendable struct {
	db      *tsdb.DB
	reached chan struct{}
	release chan struct{}
}

func (g *gateAppendable) Appender(ctx context.Context) storage.Appender {
	return &gateAppender{Appender: g.db.Appender(ctx), g: g}
}

type gateAppender struct {
	storage.Appender
	g *gateAppendable
}

func (a *gateAppender) Append(ref storage.SeriesRef, ls labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	if ls.Get(labels.MetricName) == "gate" {
		close(a.g.reached)
		<-a.g.release
	}
	return a.Appender.Append(ref, ls, t, v)
}

// TestTelnetShutdownCommitsTheOpenBatch shuts down while a connection
// holds an uncommitted batch: the batch is committed before the
// connection closes.
func TestTelnetShutdownCommitsTheOpenBatch(t *testing.T) {
	db := openDB(t)
	g := &gateAppendable{db: db, reached: make(chan struct{}), release: make(chan struct{})}
	s := NewServer(g, testOptions())
	ln, served := serveLoopback(context.Background(), t, s)

	c := dial(t, ln.Addr().String())
	c.send(fmt.Sprintf("put m %d 1 a=b", ts(0)), fmt.Sprintf("put gate %d 1 a=b", ts(0)))
	<-g.reached
	shutdown := make(chan error, 1)
	go func() { shutdown <- s.Shutdown(context.Background()) }()
	close(g.release)
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c.waitClosed()
	wantSeries(t, db, map[string][]sample{
		`{__name__="m", a="b"}`:    {{ts(0) * 1000, 1}},
		`{__name__="gate", a="b"}`: {{ts(0) * 1000, 1}},
	})
}

// TestTelnetShutdownDeadline: a connection stuck in storage past the
// Shutdown deadline is closed, and Shutdown returns the context's error.
func TestTelnetShutdownDeadline(t *testing.T) {
	db := openDB(t)
	g := &gateAppendable{db: db, reached: make(chan struct{}), release: make(chan struct{})}
	s := NewServer(g, testOptions())
	ln, served := serveLoopback(context.Background(), t, s)

	c := dial(t, ln.Addr().String())
	c.send(fmt.Sprintf("put gate %d 1 a=b", ts(0)))
	<-g.reached
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v", err)
	}
	c.waitClosed() // closed by Shutdown, though its goroutine is stuck
	close(g.release)
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestServeReturnsWhenListenerCloses(t *testing.T) {
	s := NewServer(openDB(t), testOptions())
	ln, served := serveLoopback(context.Background(), t, s)
	c := dial(t, ln.Addr().String())
	c.sync()
	ln.Close()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c.waitClosed() // Serve closed the connections it owned
}
