package bench

import (
	"context"
	"maps"
	"math"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/immune-dev/immune/ingest/remotewrite"
	"github.com/immune-dev/immune/tsdb"
)

func TestWorkloadIsDeterministic(t *testing.T) {
	a, b := NewWorkload(300, 7), NewWorkload(300, 7)
	other := NewWorkload(300, 8)
	differs := false
	ts := time.Unix(1_800_000_000, 0)
	for step := range 5 {
		at := ts.Add(time.Duration(step) * 15 * time.Second)
		for i := range a.Len() {
			if !labels.Equal(a.Labels(i), b.Labels(i)) {
				t.Fatalf("series %d: labels differ for one seed", i)
			}
			va, vb := a.Next(i, at), b.Next(i, at)
			if va != vb {
				t.Fatalf("series %d step %d: %v and %v for one seed", i, step, va, vb)
			}
			differs = differs || other.Next(i, at) != va
		}
	}
	if !differs {
		t.Fatal("another seed gave the same values")
	}
	if a.Len() != 300 || seriesPerHost < 50 {
		t.Fatalf("got %d series, %d per host", a.Len(), seriesPerHost)
	}
}

// TestWorkloadHistogramsAreCumulative checks the histogram series: per
// step, each bucket holds at least the one below it, +Inf equals _count,
// and every series only grows.
func TestWorkloadHistogramsAreCumulative(t *testing.T) {
	if seriesPerHost != 100 {
		t.Fatalf("%d series per host, want 100 (the 1000-series query selects 10 hosts)", seriesPerHost)
	}
	w := NewWorkload(seriesPerHost, 3)
	names := map[string]bool{}
	for i := range w.Len() {
		names[w.Labels(i).Get("__name__")] = true
	}
	if got := MetricNames(); !slices.Equal(got, slices.Sorted(maps.Keys(names))) {
		t.Fatalf("MetricNames() = %v, the workload's names are %v", got, slices.Sorted(maps.Keys(names)))
	}
	last := map[string]float64{}
	ts := time.Unix(1_800_000_000, 0)
	for step := range 20 {
		at := ts.Add(time.Duration(step) * 15 * time.Second)
		byHandler := map[string][]float64{}
		counts := map[string]float64{}
		for i := range w.Len() {
			ls := w.Labels(i)
			v := w.Next(i, at)
			if prev, ok := last[ls.String()]; ok && strings.HasPrefix(ls.Get("__name__"), "http_request_duration") && v < prev {
				t.Fatalf("step %d: %s fell from %v to %v", step, ls, prev, v)
			}
			last[ls.String()] = v
			switch ls.Get("__name__") {
			case "http_request_duration_seconds_bucket":
				byHandler[ls.Get("handler")] = append(byHandler[ls.Get("handler")], v)
			case "http_request_duration_seconds_count":
				counts[ls.Get("handler")] = v
			}
		}
		if len(byHandler) != len(histogramHandlers) {
			t.Fatalf("step %d: %d histograms, want %d", step, len(byHandler), len(histogramHandlers))
		}
		for h, buckets := range byHandler {
			if len(buckets) != len(histogramBounds) {
				t.Fatalf("%s: %d buckets", h, len(buckets))
			}
			for k := 1; k < len(buckets); k++ {
				if buckets[k] < buckets[k-1] {
					t.Fatalf("step %d %s: bucket %d holds %v < %v below it", step, h, k, buckets[k], buckets[k-1])
				}
			}
			if buckets[len(buckets)-1] != counts[h] {
				t.Fatalf("step %d %s: +Inf bucket %v, _count %v", step, h, buckets[len(buckets)-1], counts[h])
			}
			if buckets[0] == buckets[len(buckets)-1] {
				t.Fatalf("step %d %s: every observation in the first bucket", step, h)
			}
		}
	}
}

// TestWriteIsAcknowledgedAndStored sends the workload over both protocols
// to the real receiver and store and checks every sample arrived.
func TestWriteIsAcknowledgedAndStored(t *testing.T) {
	for _, proto := range []Protocol{RemoteWriteV1, RemoteWriteV2} {
		t.Run(string(proto), func(t *testing.T) {
			db, err := tsdb.Open(t.TempDir(), tsdb.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			srv := httptest.NewServer(remotewrite.NewHandler(db, remotewrite.Options{}))
			defer srv.Close()
			var acked atomic.Int64 // OnAck runs on the senders' goroutines
			res, err := Write(context.Background(), WriteOptions{
				URL: srv.URL, Protocol: proto, Series: 250, Steps: 7, BatchSize: 100, Concurrency: 3,
				OnAck: func(s []Sample) { acked.Add(int64(len(s))) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Acked != 250*7 || res.Rejected != 0 || acked.Load() != res.Acked {
				t.Fatalf("acked %d (callback %d), rejected %d; want %d, 0", res.Acked, acked.Load(), res.Rejected, 250*7)
			}
			q, err := db.Querier(0, time.Now().UnixMilli()+1)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "job", "node"))
			series, samples := 0, 0
			var it chunkenc.Iterator
			for set.Next() {
				series++
				it = set.At().Iterator(it)
				for it.Next() != chunkenc.ValNone {
					samples++
				}
			}
			if series != 250 || samples != 250*7 {
				t.Fatalf("stored %d series, %d samples; want 250, %d", series, samples, 250*7)
			}
		})
	}
}

func TestProcessCPUAndPeakRSS(t *testing.T) {
	// Burn CPU until /proc counts a tick (10 ms) of it: a reader that
	// always said 0 would fail here.
	deadline := time.Now().Add(5 * time.Second)
	var cpu time.Duration
	for x := 1.0; cpu == 0 && time.Now().Before(deadline); {
		for range 1_000_000 {
			x = math.Sqrt(x + 1)
		}
		var err error
		if cpu, err = ProcessCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	rss, err := PeakRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 || rss <= 0 {
		t.Fatalf("cpu %s, peak RSS %d", cpu, rss)
	}
}
