package opentsdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/immune-dev/immune/tsdb"
)

// benchLines are telnet lines as tcollector and the like send them.
var benchLines = [][]byte{
	[]byte("put sys.cpu.user 1356998400 42.5 host=webserver01 cpu=0\n"),
	[]byte("put sys.if.bytes.out 1356998400 1359876543 host=webserver01 iface=eth0 dc=lga\n"),
	[]byte("put proc.meminfo.memfree 1356998400123 3.1415926e9 host=webserver01\n"),
	[]byte("put net.stat.tcp.retransmit 1356998400 -17 host=webserver01 type=fast dc=lga rack=r12 env=prod\n"),
}

func BenchmarkParseLine(b *testing.B) {
	var p Point
	var bytesPerLoop int
	for _, l := range benchLines {
		bytesPerLoop += len(l)
	}
	b.ReportAllocs()
	b.SetBytes(int64(bytesPerLoop))
	for b.Loop() {
		for _, l := range benchLines {
			if err := ParsePut(&p, l, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(benchLines)), "ns/line")
}

// benchClock is the clock of the storage benchmarks: data points start 10
// days before it, well inside the retention, and move forward a second per
// round of series, so a long run never reaches the future.
var benchClock = base.Add(10 * 24 * time.Hour)

func openBenchDB(b *testing.B) *tsdb.DB {
	b.Helper()
	db, err := tsdb.Open(b.TempDir(), tsdb.Options{Now: func() time.Time { return benchClock }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

const benchSeries = 1000

// appendBenchLine appends the line of series i at t without allocating,
// so the benchmark's allocations are the server's.
func appendBenchLine(buf []byte, t int64, i int) []byte {
	buf = append(buf, "put sys.cpu.user "...)
	buf = strconv.AppendInt(buf, t, 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, int64(i), 10)
	buf = append(buf, ".5 host=web"...)
	buf = strconv.AppendInt(buf, int64(100+i/8), 10)
	buf = append(buf, ".lga.example.com cpu="...)
	buf = strconv.AppendInt(buf, int64(i%8), 10)
	return append(buf, " dc=lga\n"...)
}

// BenchmarkTelnet writes node-exporter-like lines over one loopback
// connection into a real store, 10000 lines per op (10 rounds of 1000
// series), waiting for them to be committed.
func BenchmarkTelnet(b *testing.B) {
	db := openBenchDB(b)
	s := NewServer(db, Options{Now: func() time.Time { return benchClock }})
	addr := startServer(b, s)
	c := dial(b, addr)

	const rounds = 10
	var buf []byte
	round := 0
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for range rounds {
			t := baseSec + int64(round)
			round++
			for i := range benchSeries {
				buf = appendBenchLine(buf, t, i)
			}
		}
		b.SetBytes(int64(len(buf)))
		c.sendRaw(buf)
		c.sync()
	}
	lines := float64(b.N) * rounds * benchSeries
	b.ReportMetric(lines/b.Elapsed().Seconds(), "lines/s")
	if st := s.Stats(); st.DataPointsStored != int64(lines) {
		b.Fatalf("stored %d of %v lines", st.DataPointsStored, lines)
	}
}

// BenchmarkTelnetParallel is BenchmarkTelnet over 4 connections at once,
// each writing its own 250 series.
func BenchmarkTelnetParallel(b *testing.B) {
	db := openBenchDB(b)
	s := NewServer(db, Options{Now: func() time.Time { return benchClock }})
	addr := startServer(b, s)
	const conns, rounds = 4, 10
	clients := make([]*client, conns)
	for i := range clients {
		clients[i] = dial(b, addr)
	}
	bufs := make([][]byte, conns)
	round := 0
	b.ReportAllocs()
	for b.Loop() {
		done := make(chan struct{}, conns)
		for ci, c := range clients {
			buf := bufs[ci][:0]
			for r := range rounds {
				t := baseSec + int64(round+r)
				for i := ci * benchSeries / conns; i < (ci+1)*benchSeries/conns; i++ {
					buf = appendBenchLine(buf, t, i)
				}
			}
			bufs[ci] = buf
			go func() {
				c.sendRaw(buf)
				c.sync()
				done <- struct{}{}
			}()
		}
		for range conns {
			<-done
		}
		round += rounds
	}
	b.ReportMetric(float64(b.N)*rounds*benchSeries/b.Elapsed().Seconds(), "lines/s")
}

// benchBody is an /api/put array of benchSeries points whose timestamps
// can be rewritten in place between requests.
type benchBody struct {
	body    []byte
	tsAt    []int // offsets of the 10-digit timestamps
	payload int
}

func newBenchBody() *benchBody {
	bb := &benchBody{}
	bb.body = append(bb.body, '[')
	for i := range benchSeries {
		if i > 0 {
			bb.body = append(bb.body, ',')
		}
		bb.body = fmt.Appendf(bb.body, `{"metric":"sys.cpu.user","timestamp":`)
		bb.tsAt = append(bb.tsAt, len(bb.body))
		bb.body = fmt.Appendf(bb.body, `%d,"value":%d.5,"tags":{"host":"web%03d.lga.example.com","cpu":"%d","dc":"lga"}}`,
			baseSec, i, i/8, i%8)
	}
	bb.body = append(bb.body, ']')
	return bb
}

func (bb *benchBody) setTimestamp(t int64) {
	s := strconv.AppendInt(nil, t, 10)
	for _, at := range bb.tsAt {
		copy(bb.body[at:at+10], s)
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// discardWriter is a reusable http.ResponseWriter, so the benchmark
// measures the handler rather than httptest.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkPut posts arrays of 1000 points to the handler, into a real
// store.
func BenchmarkPut(b *testing.B) {
	db := openBenchDB(b)
	h := NewPutHandler(db, Options{Now: func() time.Time { return benchClock }})
	bb := newBenchBody()
	req, err := http.NewRequest(http.MethodPost, "/api/put", nil)
	if err != nil {
		b.Fatal(err)
	}
	w := &discardWriter{h: http.Header{}}
	round := int64(0)
	b.SetBytes(int64(len(bb.body)))
	b.ReportAllocs()
	for b.Loop() {
		bb.setTimestamp(baseSec + round)
		round++
		req.Body = nopCloser{bytes.NewReader(bb.body)}
		req.ContentLength = int64(len(bb.body))
		h.ServeHTTP(w, req)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	}
	b.ReportMetric(float64(b.N)*benchSeries/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkPutDecode compares the /api/put decoder with encoding/json
// decoding the same body into structs, the straightforward alternative.
func BenchmarkPutDecode(b *testing.B) {
	bb := newBenchBody()
	b.Run("handrolled", func(b *testing.B) {
		var d jsonDecoder
		d.maxTags = DefaultMaxTags
		b.SetBytes(int64(len(bb.body)))
		b.ReportAllocs()
		for b.Loop() {
			if err := d.decode(bb.body); err != nil || len(d.points) != benchSeries {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)*benchSeries/b.Elapsed().Seconds(), "points/s")
	})
	b.Run("encoding_json", func(b *testing.B) {
		type point struct {
			Metric    string            `json:"metric"`
			Timestamp json.Number       `json:"timestamp"`
			Value     json.RawMessage   `json:"value"`
			Tags      map[string]string `json:"tags"`
		}
		b.SetBytes(int64(len(bb.body)))
		b.ReportAllocs()
		for b.Loop() {
			var pts []point
			if err := json.NewDecoder(bytes.NewReader(bb.body)).Decode(&pts); err != nil || len(pts) != benchSeries {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)*benchSeries/b.Elapsed().Seconds(), "points/s")
	})
}
