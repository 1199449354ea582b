package remotewrite

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"testing"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
)

// benchSamples is the size of the benchmark request: Prometheus' default
// max_samples_per_send, one sample per series as a scrape-driven sender
// produces.
const benchSamples = 2000

// nodeExporterSeries returns n node-exporter-like series from a fleet of
// hosts, with one sample each.
func nodeExporterSeries(n int) []tseries {
	modes := []string{"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"}
	devices := []string{"eth0", "eth1", "lo", "docker0"}
	mounts := []string{"/", "/boot", "/var/lib/docker", "/home"}
	out := make([]tseries, 0, n)
	for i := 0; len(out) < n; i++ {
		host := fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal:9100", i/250, i%250)
		add := func(m map[string]string, v float64) {
			if len(out) == n {
				return
			}
			m["instance"], m["job"] = host, "node-exporter"
			var pairs []string
			labels.FromMap(m).Range(func(l labels.Label) { pairs = append(pairs, l.Name, l.Value) })
			out = append(out, ser(pairs...).at(testNowMs, v))
		}
		for cpu := range 8 {
			for _, mode := range modes {
				add(map[string]string{"__name__": "node_cpu_seconds_total", "cpu": fmt.Sprint(cpu), "mode": mode}, 123456.78+float64(cpu))
			}
		}
		for _, d := range devices {
			add(map[string]string{"__name__": "node_network_receive_bytes_total", "device": d}, 9.87654321e12)
			add(map[string]string{"__name__": "node_network_transmit_bytes_total", "device": d}, 1.23456789e12)
		}
		for _, mnt := range mounts {
			add(map[string]string{"__name__": "node_filesystem_avail_bytes", "device": "/dev/nvme0n1p1", "fstype": "ext4", "mountpoint": mnt}, 4.2e10)
		}
		add(map[string]string{"__name__": "node_memory_MemAvailable_bytes"}, 1.6e10)
		add(map[string]string{"__name__": "node_load1"}, 0.42)
		add(map[string]string{"__name__": "up"}, 1)
	}
	return out
}

// benchResponseWriter is a reusable, discarding http.ResponseWriter, so
// the benchmark measures the handler rather than httptest.
type benchResponseWriter struct {
	h    http.Header
	code int
}

func (w *benchResponseWriter) Header() http.Header         { return w.h }
func (w *benchResponseWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchResponseWriter) WriteHeader(code int)        { w.code = code }

type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

func benchHandle(b *testing.B, app storage.Appendable, contentType string, raw []byte) {
	compressed := snappy.Encode(nil, raw)
	h := NewHandler(app, testOptions())
	w := &benchResponseWriter{h: http.Header{}}
	req, err := http.NewRequest(http.MethodPost, "/api/v1/write", nil)
	if err != nil {
		b.Fatal(err)
	}
	body := &benchBody{}
	b.SetBytes(int64(len(compressed)))
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(compressed)
		req.Body = body
		req.ContentLength = int64(len(compressed))
		req.Header = http.Header{"Content-Type": {contentType}, "Content-Encoding": {"snappy"}}
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, req)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	}
	b.ReportMetric(float64(benchSamples)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkHandleV1 measures a 2000-sample remote write 1.0 request
// through the whole handler (snappy, decoding, validation, appending) into
// an appender that discards. In "discard" the appender cannot look series
// up, so the labels of every series are copied for storage to keep (one
// allocation per series); in "getref" it implements storage.GetRef and
// knows every series already, the steady state with a storage that does.
func BenchmarkHandleV1(b *testing.B) {
	raw := marshal(b, v1Request(nodeExporterSeries(benchSamples)...))
	b.Run("discard", func(b *testing.B) { benchHandle(b, discardAppendable{}, contentTypeV1, raw) })
	b.Run("getref", func(b *testing.B) { benchHandle(b, newKnownSeriesAppendable(), contentTypeV1, raw) })
}

// BenchmarkHandleV2 is BenchmarkHandleV1 for remote write 2.0.
func BenchmarkHandleV2(b *testing.B) {
	raw := marshal(b, v2Request(nodeExporterSeries(benchSamples)...))
	b.Run("discard", func(b *testing.B) { benchHandle(b, discardAppendable{}, contentTypeV2, raw) })
	b.Run("getref", func(b *testing.B) { benchHandle(b, newKnownSeriesAppendable(), contentTypeV2, raw) })
}

// knownSeriesAppendable discards samples but remembers series, and offers
// storage.GetRef like Prometheus' TSDB does.
type knownSeriesAppendable struct {
	byHash map[uint64]knownSeries
}

type knownSeries struct {
	ref storage.SeriesRef
	ls  labels.Labels
}

func newKnownSeriesAppendable() *knownSeriesAppendable {
	return &knownSeriesAppendable{byHash: map[uint64]knownSeries{}}
}

func (k *knownSeriesAppendable) Appender(context.Context) storage.Appender {
	return &knownSeriesAppender{k: k}
}

type knownSeriesAppender struct {
	discardAppender
	k *knownSeriesAppendable
}

func (a *knownSeriesAppender) GetRef(ls labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	if s, ok := a.k.byHash[hash]; ok && labels.Equal(s.ls, ls) {
		return s.ref, s.ls
	}
	return 0, labels.EmptyLabels()
}

func (a *knownSeriesAppender) Append(ref storage.SeriesRef, ls labels.Labels, _ int64, _ float64) (storage.SeriesRef, error) {
	if ref != 0 {
		return ref, nil
	}
	h := ls.Hash()
	if s, ok := a.k.byHash[h]; ok {
		return s.ref, nil
	}
	ref = storage.SeriesRef(len(a.k.byHash) + 1)
	a.k.byHash[h] = knownSeries{ref: ref, ls: ls}
	return ref, nil
}

// BenchmarkDecode compares this package's decoder with gogo's generated
// Unmarshal on the benchmark request, the reason the package does its own
// decoding.
func BenchmarkDecode(b *testing.B) {
	series := nodeExporterSeries(benchSamples)
	v1 := marshal(b, v1Request(series...))
	v2 := marshal(b, v2Request(series...))
	b.Run("v1/immune", func(b *testing.B) {
		var bt batch
		b.SetBytes(int64(len(v1)))
		b.ReportAllocs()
		for b.Loop() {
			bt.reset()
			if err := bt.decodeV1(v1, math.MaxInt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("v1/gogo", func(b *testing.B) {
		b.SetBytes(int64(len(v1)))
		b.ReportAllocs()
		for b.Loop() {
			var req prompb.WriteRequest
			if err := req.Unmarshal(v1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("v2/immune", func(b *testing.B) {
		var bt batch
		b.SetBytes(int64(len(v2)))
		b.ReportAllocs()
		for b.Loop() {
			bt.reset()
			if err := bt.decodeV2(v2, math.MaxInt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("v2/gogo", func(b *testing.B) {
		b.SetBytes(int64(len(v2)))
		b.ReportAllocs()
		for b.Loop() {
			var req writev2.Request
			if err := req.Unmarshal(v2); err != nil {
				b.Fatal(err)
			}
		}
	})
}
