package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Protocol names a remote-write protocol version.
type Protocol string

// Remote-write protocols the writer speaks.
const (
	RemoteWriteV1 Protocol = "v1"
	RemoteWriteV2 Protocol = "v2"
)

// WriteOptions configures Write. Zero fields take the documented defaults.
type WriteOptions struct {
	// URL is the receiver's remote-write endpoint. Required.
	URL string
	// Protocol is RemoteWriteV1 (default) or RemoteWriteV2.
	Protocol Protocol
	// Series is the number of series. Zero means 1000.
	Series int
	// Steps is how many samples each series gets. Zero means 10.
	Steps int
	// Interval is the time between a series' samples. Zero means 15s.
	Interval time.Duration
	// Start is the timestamp of the first step. Zero means now minus
	// Steps*Interval, so the data ends about now (a backfill).
	Start time.Time
	// RealTime paces steps at Interval instead of sending as fast as the
	// receiver acknowledges.
	RealTime bool
	// BatchSize is the number of samples per request. Zero means 2000, as
	// Prometheus' max_samples_per_send.
	BatchSize int
	// Concurrency is the number of concurrent senders; each owns a shard of
	// the series, so a series' samples arrive in order. Zero means 4.
	Concurrency int
	// Seed makes the workload deterministic. Zero is a valid seed.
	Seed uint64
	// Client sends the requests. Nil means a client with a 30s timeout.
	Client *http.Client
	// OnAck, if set, is called after each acknowledged request with its
	// samples. It is called from several goroutines at once.
	OnAck func([]Sample)
}

// Sample is one sent sample, naming its series by workload index.
type Sample struct {
	Series int
	T      int64
	V      float64
}

// Result counts what Write sent.
type Result struct {
	Acked    int64 // samples in requests answered 2xx
	Rejected int64 // samples in requests answered otherwise
	Requests int64
	Elapsed  time.Duration
}

// SamplesPerSecond is the acknowledged sample rate.
func (r Result) SamplesPerSecond() float64 { return float64(r.Acked) / r.Elapsed.Seconds() }

func (o WriteOptions) withDefaults() WriteOptions {
	if o.Protocol == "" {
		o.Protocol = RemoteWriteV1
	}
	if o.Series <= 0 {
		o.Series = 1000
	}
	if o.Steps <= 0 {
		o.Steps = 10
	}
	if o.Interval <= 0 {
		o.Interval = 15 * time.Second
	}
	if o.Start.IsZero() {
		o.Start = time.Now().Add(-time.Duration(o.Steps) * o.Interval)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 2000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return o
}

// lockstepSteps is how many steps the senders take between two meetings:
// none runs further ahead of the slowest.
const lockstepSteps = 10

// Write sends the workload to a remote-write receiver and counts the
// acknowledged samples. It stops at the first transport error or non-2xx
// reply, or when ctx ends, and returns what was counted with the error.
func Write(parent context.Context, opts WriteOptions) (Result, error) {
	o := opts.withDefaults()
	if o.Protocol != RemoteWriteV1 && o.Protocol != RemoteWriteV2 {
		return Result{}, fmt.Errorf("unknown protocol %q", o.Protocol)
	}
	w := NewWorkload(o.Series, o.Seed)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var (
		res      Result
		acked    atomic.Int64
		rejected atomic.Int64
		requests atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	senders := make([]*sender, o.Concurrency)
	for shard := range senders {
		senders[shard] = &sender{opts: o, w: w, symbols: writev2.NewSymbolTable()}
	}
	// send posts a sender's batch and counts it; false means stop.
	send := func(s *sender) bool {
		n := int64(len(s.batch))
		if n == 0 {
			return true
		}
		requests.Add(1)
		if err := s.flush(ctx); err != nil {
			rejected.Add(n)
			fail(err)
			return false
		}
		acked.Add(n)
		return true
	}
	start := time.Now()
	// Senders advance together, lockstepSteps steps at a time, so that no
	// shard runs hours ahead of another in data time during a backfill: a
	// receiver with a bounded out-of-order window (Prometheus' head) would
	// refuse the laggard's samples.
	for first := 0; first < o.Steps && ctx.Err() == nil; first += lockstepSteps {
		last := min(first+lockstepSteps, o.Steps)
		for shard, s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for step := first; step < last; step++ {
					ts := o.Start.Add(time.Duration(step) * o.Interval)
					if o.RealTime {
						if err := sleepUntil(ctx, start.Add(time.Duration(step)*o.Interval)); err != nil {
							return
						}
					}
					for i := shard; i < w.Len(); i += o.Concurrency {
						s.add(Sample{Series: i, T: ts.UnixMilli(), V: w.Next(i, ts)})
						if len(s.batch) >= o.BatchSize && !send(s) {
							return
						}
					}
					// In real time a scrape's samples go out before the next one.
					if o.RealTime && !send(s) {
						return
					}
				}
				if last == o.Steps {
					send(s)
				}
			}()
		}
		wg.Wait()
	}
	res.Acked, res.Rejected, res.Requests, res.Elapsed = acked.Load(), rejected.Load(), requests.Load(), time.Since(start)
	if firstErr == nil {
		firstErr = parent.Err()
	}
	return res, firstErr
}

func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// sender builds and posts the requests of one shard.
type sender struct {
	opts    WriteOptions
	w       *Workload
	batch   []Sample
	raw     []byte
	encoded []byte
	symbols writev2.SymbolsTable
	refs    []uint32
}

func (s *sender) add(smp Sample) { s.batch = append(s.batch, smp) }

// flush sends the batch; a non-2xx reply is an error.
func (s *sender) flush(ctx context.Context) error {
	if len(s.batch) == 0 {
		return nil
	}
	body, err := s.encode()
	if err != nil {
		return err
	}
	if err := postRemoteWrite(ctx, s.opts.Client, s.opts.URL, s.opts.Protocol, body); err != nil {
		return err
	}
	if s.opts.OnAck != nil {
		s.opts.OnAck(s.batch)
	}
	s.batch = s.batch[:0]
	return nil
}

// postRemoteWrite POSTs a snappy-compressed remote-write message with the
// headers of its protocol version; a non-2xx reply is an error.
func postRemoteWrite(ctx context.Context, client *http.Client, url string, proto Protocol, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("User-Agent", "immune-bench")
	if proto == RemoteWriteV2 {
		req.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	} else {
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("remote write: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

func (s *sender) encode() ([]byte, error) {
	var err error
	switch s.opts.Protocol {
	case RemoteWriteV2:
		s.symbols.Reset()
		req := writev2.Request{Timeseries: make([]writev2.TimeSeries, len(s.batch))}
		for i, smp := range s.batch {
			s.refs = s.symbols.SymbolizeLabels(s.w.Labels(smp.Series), s.refs[:0])
			req.Timeseries[i] = writev2.TimeSeries{
				LabelsRefs: append([]uint32(nil), s.refs...),
				Samples:    []writev2.Sample{{Value: smp.V, Timestamp: smp.T}},
				Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE},
			}
		}
		req.Symbols = s.symbols.Symbols()
		s.raw, err = req.Marshal()
	default:
		req := prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, len(s.batch))}
		for i, smp := range s.batch {
			ls := s.w.Labels(smp.Series)
			pl := make([]prompb.Label, 0, ls.Len())
			ls.Range(func(l labels.Label) { pl = append(pl, prompb.Label{Name: l.Name, Value: l.Value}) })
			req.Timeseries[i] = prompb.TimeSeries{Labels: pl, Samples: []prompb.Sample{{Value: smp.V, Timestamp: smp.T}}}
		}
		s.raw, err = req.Marshal()
	}
	if err != nil {
		return nil, err
	}
	s.encoded = snappy.Encode(s.encoded[:cap(s.encoded)], s.raw)
	return s.encoded, nil
}
