// Package bench owns Immune's load generators and benchmark harness: a
// deterministic node-exporter-like workload, and a writer that sends it to
// any Prometheus remote-write receiver and counts what was acknowledged.
package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// family is one node-exporter-like metric family: how many series it has
// per host, their extra labels, and how values evolve.
type family struct {
	name   string
	kind   kind
	labels func(i int) []string // extra label pairs of the family's i-th series on a host
	count  int
}

type kind int

const (
	counter   kind = iota // increases by a random amount, resets rarely
	gauge                 // random walk with a daily shape, two decimals
	histogram             // one _bucket series per le, cumulative
)

var histogramBounds = []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}

// families approximate a node exporter's output, about 100 series per host.
var families = []family{
	{name: "node_cpu_seconds_total", kind: counter, count: 16, labels: func(i int) []string {
		modes := []string{"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"}
		return []string{"cpu", fmt.Sprint(i / len(modes)), "mode", modes[i%len(modes)]}
	}},
	{name: "node_memory_MemFree_bytes", kind: gauge, count: 1},
	{name: "node_memory_Cached_bytes", kind: gauge, count: 1},
	{name: "node_load1", kind: gauge, count: 1},
	{name: "node_network_receive_bytes_total", kind: counter, count: 4, labels: deviceLabels},
	{name: "node_network_transmit_bytes_total", kind: counter, count: 4, labels: deviceLabels},
	{name: "node_disk_io_time_seconds_total", kind: counter, count: 4, labels: diskLabels},
	{name: "node_disk_read_bytes_total", kind: counter, count: 4, labels: diskLabels},
	{name: "node_filesystem_avail_bytes", kind: gauge, count: 4, labels: func(i int) []string {
		return []string{"device", fmt.Sprintf("/dev/sda%d", i), "fstype", "ext4", "mountpoint", fmt.Sprintf("/mnt/%d", i)}
	}},
	{name: "http_request_duration_seconds_bucket", kind: histogram, count: len(histogramBounds) * 4, labels: func(i int) []string {
		handlers := []string{"/api/v1/query", "/api/v1/write", "/metrics", "/-/ready"}
		return []string{"handler", handlers[i/len(histogramBounds)], "le", histogramBounds[i%len(histogramBounds)]}
	}},
	{name: "http_requests_total", kind: counter, count: 8, labels: func(i int) []string {
		return []string{"code", []string{"200", "500"}[i%2], "handler", fmt.Sprintf("/h%d", i/2)}
	}},
	{name: "process_resident_memory_bytes", kind: gauge, count: 1},
	{name: "go_goroutines", kind: gauge, count: 1},
}

func deviceLabels(i int) []string { return []string{"device", fmt.Sprintf("eth%d", i)} }
func diskLabels(i int) []string   { return []string{"device", fmt.Sprintf("sd%c", 'a'+i)} }

// seriesPerHost is the number of series one simulated host exposes.
var seriesPerHost = func() int {
	n := 0
	for _, f := range families {
		n += f.count
	}
	return n
}()

// Workload is a deterministic set of series and their values over time:
// the same seed gives the same labels and samples.
type Workload struct {
	series []seriesState
}

type seriesState struct {
	labels labels.Labels
	kind   kind
	value  float64
	rng    *rand.Rand
	phase  float64 // daily shape offset for gauges
}

// NewWorkload returns n series spread over n/seriesPerHost hosts.
func NewWorkload(n int, seed uint64) *Workload {
	w := &Workload{series: make([]seriesState, 0, n)}
	for host := 0; len(w.series) < n; host++ {
		for _, f := range families {
			for i := 0; i < f.count && len(w.series) < n; i++ {
				pairs := []string{"__name__", f.name, "instance", fmt.Sprintf("host-%d:9100", host), "job", "node"}
				if f.labels != nil {
					pairs = append(pairs, f.labels(i)...)
				}
				rng := rand.New(rand.NewPCG(seed, uint64(len(w.series))))
				w.series = append(w.series, seriesState{
					labels: labels.FromStrings(pairs...),
					kind:   f.kind,
					value:  math.Round(rng.Float64() * 1e6),
					rng:    rng,
					phase:  rng.Float64() * 2 * math.Pi,
				})
			}
		}
	}
	return w
}

// Len returns the number of series.
func (w *Workload) Len() int { return len(w.series) }

// Labels returns the labels of series i.
func (w *Workload) Labels(i int) labels.Labels { return w.series[i].labels }

// Next advances series i to time t and returns its value. Calls for one
// series must come in time order.
func (w *Workload) Next(i int, t time.Time) float64 {
	s := &w.series[i]
	switch s.kind {
	case counter, histogram:
		if s.rng.IntN(100_000) == 0 {
			s.value = 0 // a process restart
		} else {
			s.value += float64(s.rng.IntN(1000))
		}
	case gauge:
		day := 2 * math.Pi * float64(t.UnixMilli()%86_400_000) / 86_400_000
		s.value = math.Round((1e6+2e5*math.Sin(day+s.phase)+s.rng.NormFloat64()*1e3)*100) / 100
	}
	return s.value
}
