package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// OpenTSDBLoad is a deterministic tcollector-like OpenTSDB workload: Hosts
// hosts, each reporting 20 series (CPU and network counters; memory, load
// and disk gauges) every Interval for Steps steps ending at End, with
// timestamps in seconds as collectors send them.
type OpenTSDBLoad struct {
	Hosts    int
	Steps    int
	Interval time.Duration
	End      time.Time
	Seed     uint64
}

// openTSDBSeries are one host's series: metric, tags after host, and
// whether the value is a counter.
var openTSDBSeries = func() []tsdbSeries {
	var out []tsdbSeries
	for cpu := range 2 {
		for _, typ := range []string{"user", "system", "idle", "iowait"} {
			out = append(out, tsdbSeries{"proc.stat.cpu", fmt.Sprintf("cpu=%d type=%s", cpu, typ), true})
		}
	}
	for _, m := range []string{"memfree", "cached", "buffers"} {
		out = append(out, tsdbSeries{"proc.meminfo." + m, "", false})
	}
	for _, m := range []string{"1min", "5min", "15min"} {
		out = append(out, tsdbSeries{"proc.loadavg." + m, "", false})
	}
	for _, iface := range []string{"eth0", "lo"} {
		for _, dir := range []string{"in", "out"} {
			out = append(out, tsdbSeries{"proc.net.bytes", "iface=" + iface + " direction=" + dir, true})
		}
	}
	for _, mount := range []string{"/", "/var"} {
		out = append(out, tsdbSeries{"df.bytes.free", "mount=" + mount, false})
	}
	return out
}()

type tsdbSeries struct {
	metric, tags string
	counter      bool
}

// Metrics returns the load's distinct metric names.
func (l OpenTSDBLoad) Metrics() []string {
	var names []string
	for _, s := range openTSDBSeries {
		if len(names) == 0 || names[len(names)-1] != s.metric {
			names = append(names, s.metric)
		}
	}
	return names
}

// Series is the number of series.
func (l OpenTSDBLoad) Series() int { return l.Hosts * len(openTSDBSeries) }

// Points is the number of data points in the load.
func (l OpenTSDBLoad) Points() int { return l.Series() * l.Steps }

// tsdbPoint is one data point of the load.
type tsdbPoint struct {
	host   int
	series *tsdbSeries
	ts     int64 // seconds
	value  float64
}

// each calls f for every point, step by step, hosts in order.
func (l OpenTSDBLoad) each(f func(p tsdbPoint)) {
	rng := rand.New(rand.NewPCG(l.Seed, 0x7e5db))
	state := make([]float64, l.Series())
	for i := range state {
		state[i] = float64(rng.IntN(1_000_000))
	}
	first := l.End.Add(-time.Duration(l.Steps-1) * l.Interval).Unix()
	for step := range l.Steps {
		ts := first + int64(step)*int64(l.Interval/time.Second)
		for h := range l.Hosts {
			for j := range openTSDBSeries {
				s := &openTSDBSeries[j]
				k := h*len(openTSDBSeries) + j
				if s.counter {
					state[k] += float64(rng.IntN(5000))
				} else {
					state[k] = float64(int64((state[k]*0.9+float64(rng.IntN(100_000)))*100)) / 100
				}
				f(tsdbPoint{host: h, series: s, ts: ts, value: state[k]})
			}
		}
	}
}

// TelnetLines renders the load as put lines, split over conns
// connections by host so each series' points stay in order on one
// connection.
func (l OpenTSDBLoad) TelnetLines(conns int) [][]byte {
	out := make([][]byte, max(conns, 1))
	l.each(func(p tsdbPoint) {
		c := p.host % len(out)
		b := append(out[c], "put "...)
		b = append(b, p.series.metric...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.ts, 10)
		b = append(b, ' ')
		b = strconv.AppendFloat(b, p.value, 'f', -1, 64)
		b = append(b, " host=web"...)
		b = strconv.AppendInt(b, int64(p.host), 10)
		if p.series.tags != "" {
			b = append(b, ' ')
			b = append(b, p.series.tags...)
		}
		out[c] = append(b, '\n')
	})
	return out
}

// PutBodies renders the load as /api/put JSON arrays of batch points.
func (l OpenTSDBLoad) PutBodies(batch int) (bodies [][]byte, points []int) {
	batch = max(batch, 1)
	var b []byte
	n := 0
	flush := func() {
		if n > 0 {
			bodies = append(bodies, append(b, ']'))
			points = append(points, n)
		}
		b, n = nil, 0
	}
	l.each(func(p tsdbPoint) {
		if n == 0 {
			b = append(b, '[')
		} else {
			b = append(b, ',')
		}
		b = append(b, `{"metric":"`...)
		b = append(b, p.series.metric...)
		b = append(b, `","timestamp":`...)
		b = strconv.AppendInt(b, p.ts, 10)
		b = append(b, `,"value":`...)
		b = strconv.AppendFloat(b, p.value, 'f', -1, 64)
		b = append(b, `,"tags":{"host":"web`...)
		b = strconv.AppendInt(b, int64(p.host), 10)
		b = append(b, '"')
		for _, kv := range bytes.Fields([]byte(p.series.tags)) {
			k, v, _ := bytes.Cut(kv, []byte("="))
			b = append(b, `,"`...)
			b = append(b, k...)
			b = append(b, `":"`...)
			b = append(b, v...)
			b = append(b, '"')
		}
		b = append(b, "}}"...)
		n++
		if n == batch {
			flush()
		}
	})
	flush()
	return bodies, points
}

// TelnetResult is what SendTelnet saw.
type TelnetResult struct {
	// Replies counts the lines the server answered: every reply to a put
	// is an error.
	Replies int64
	// FirstReply is the first of them.
	FirstReply string
}

// SendTelnet writes each payload over its own connection to addr, closes
// each connection's write side, and reads the server's replies until it
// closes too.
func SendTelnet(ctx context.Context, addr string, payloads [][]byte) (TelnetResult, error) {
	// Every connection is open before any sends, so a failed dial leaves
	// nothing running.
	conns := make([]net.Conn, len(payloads))
	for i := range payloads {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return TelnetResult{}, err
		}
		conns[i] = conn
	}
	var (
		res      TelnetResult
		replies  atomic.Int64
		once     sync.Once
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for i, conn := range conns {
		wg.Go(func() {
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			read := make(chan struct{})
			go func() {
				defer close(read)
				sc := bufio.NewScanner(conn)
				for sc.Scan() {
					replies.Add(1)
					once.Do(func() { res.FirstReply = sc.Text() })
				}
			}()
			_, err := io.Copy(conn, bytes.NewReader(payloads[i]))
			if err == nil {
				err = conn.(*net.TCPConn).CloseWrite()
			}
			if err != nil {
				errOnce.Do(func() { firstErr = err })
			}
			<-read
		})
	}
	wg.Wait()
	res.Replies = replies.Load()
	return res, firstErr
}

// PostPut posts the bodies to an /api/put URL from concurrency senders and
// returns how many points were in requests answered 2xx. A non-2xx answer
// stops it with an error.
func PostPut(ctx context.Context, url string, bodies [][]byte, points []int, concurrency int) (acked int64, err error) {
	client := &http.Client{Timeout: time.Minute}
	var (
		ackedN   atomic.Int64
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range max(concurrency, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) || ctx.Err() != nil {
					return
				}
				if err := postOne(ctx, client, url, bodies[i]); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				ackedN.Add(int64(points[i]))
			}
		}()
	}
	wg.Wait()
	return ackedN.Load(), firstErr
}

func postOne(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, msg)
	}
	return nil
}
