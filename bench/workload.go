// Package bench owns Immune's load generators and benchmark harness: a
// deterministic node-exporter-like workload, and a writer that sends it to
// any Prometheus remote-write receiver and counts what was acknowledged.
package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
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
	counter   kind = iota // increases by a random amount, resets when its host restarts
	gauge                 // random walk with a daily shape, two decimals
	histogram             // a classic histogram: _bucket per le (cumulative), _sum, _count
)

// histogramBounds are the le bounds of every histogram, in seconds.
var histogramBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.Inf(1)}

// histogramHandlers label the histograms: each is one histogram per host.
var histogramHandlers = []string{"/api/v1/query", "/api/v1/write", "/metrics", "/-/ready"}

// histogramSeries is the number of series of one histogram: its buckets,
// _sum and _count.
var histogramSeries = len(histogramBounds) + 2

// families approximate a node exporter's output plus one instrumented
// HTTP server: 100 series per host.
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
	{name: "node_filesystem_avail_bytes", kind: gauge, count: 3, labels: func(i int) []string {
		return []string{"device", fmt.Sprintf("/dev/sda%d", i), "fstype", "ext4", "mountpoint", fmt.Sprintf("/mnt/%d", i)}
	}},
	{name: "http_request_duration_seconds", kind: histogram, count: histogramSeries * len(histogramHandlers)},
	{name: "http_requests_total", kind: counter, count: 4, labels: func(i int) []string {
		return []string{"code", []string{"200", "500"}[i%2], "handler", fmt.Sprintf("/h%d", i/2)}
	}},
	{name: "process_resident_memory_bytes", kind: gauge, count: 1},
	{name: "go_goroutines", kind: gauge, count: 1},
}

func deviceLabels(i int) []string { return []string{"device", fmt.Sprintf("eth%d", i)} }
func diskLabels(i int) []string   { return []string{"device", fmt.Sprintf("sd%c", 'a'+i)} }

// histogramMember returns the name and labels of a histogram family's
// i-th series on a host, and which part of its histogram it is: a bucket
// index, or len(histogramBounds) for _sum and +1 for _count.
func histogramMember(f family, i int) (name string, pairs []string, part int) {
	handler := histogramHandlers[i/histogramSeries]
	part = i % histogramSeries
	switch {
	case part < len(histogramBounds):
		le := strconv.FormatFloat(histogramBounds[part], 'g', -1, 64)
		if math.IsInf(histogramBounds[part], 1) {
			le = "+Inf"
		}
		return f.name + "_bucket", []string{"handler", handler, "le", le}, part
	case part == len(histogramBounds):
		return f.name + "_sum", []string{"handler", handler}, part
	default:
		return f.name + "_count", []string{"handler", handler}, part
	}
}

// MetricNames returns the names of the workload's metrics, sorted (a
// workload of fewer than seriesPerHost series has only some of them).
func MetricNames() []string {
	var names []string
	for _, f := range families {
		if f.kind == histogram {
			names = append(names, f.name+"_bucket", f.name+"_sum", f.name+"_count")
		} else {
			names = append(names, f.name)
		}
	}
	slices.Sort(names)
	return names
}

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
	host   uint64  // seeds the host's restarts, shared by its counters
	group  uint64  // seeds a histogram's observations, shared by its series
	part   int     // which series of its histogram: see histogramMember
}

// NewWorkload returns n series spread over n/seriesPerHost hosts.
func NewWorkload(n int, seed uint64) *Workload {
	w := &Workload{series: make([]seriesState, 0, n)}
	for host := 0; len(w.series) < n; host++ {
		hostSeed := mix64(seed ^ mix64(uint64(host)+1))
		for _, f := range families {
			for i := 0; i < f.count && len(w.series) < n; i++ {
				name, extra, part := f.name, []string(nil), 0
				if f.labels != nil {
					extra = f.labels(i)
				}
				if f.kind == histogram {
					name, extra, part = histogramMember(f, i)
				}
				pairs := append([]string{"__name__", name, "instance", fmt.Sprintf("host-%d:9100", host), "job", "node"}, extra...)
				rng := rand.New(rand.NewPCG(seed, uint64(len(w.series))))
				st := seriesState{
					labels: labels.FromStrings(pairs...),
					kind:   f.kind,
					value:  math.Round(rng.Float64() * 1e6),
					rng:    rng,
					phase:  rng.Float64() * 2 * math.Pi,
					host:   hostSeed,
					group:  mix64(hostSeed ^ uint64(i/histogramSeries+1)),
					part:   part,
				}
				if f.kind == histogram {
					st.value = 0
				}
				w.series = append(w.series, st)
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
// series must come in time order. Series of one host or one histogram may
// be advanced from different goroutines: what they share (restarts, a
// histogram's observations) is a function of their seeds and t.
func (w *Workload) Next(i int, t time.Time) float64 {
	s := &w.series[i]
	ms := uint64(t.UnixMilli())
	restarted := mix64(s.host^ms)%100_000 == 0
	switch s.kind {
	case counter:
		if restarted {
			s.value = 0
		} else {
			s.value += float64(s.rng.IntN(1000))
		}
	case histogram:
		if restarted {
			s.value = 0
		} else {
			s.value += histogramIncrement(mix64(s.group^ms), s.part)
		}
	case gauge:
		day := 2 * math.Pi * float64(t.UnixMilli()%86_400_000) / 86_400_000
		s.value = math.Round((1e6+2e5*math.Sin(day+s.phase)+s.rng.NormFloat64()*1e3)*100) / 100
	}
	return s.value
}

// histogramIncrement is how much part of a histogram grows in one step
// whose observations are drawn from h: between 50 and 250 requests with
// log-normal durations (sigma 1) around a median of 30 to 90 ms. Buckets
// are cumulative, so a bucket never grows less than the one below it.
func histogramIncrement(h uint64, part int) float64 {
	requests := float64(50 + h%200)
	median := 0.03 * (1 + 2*float64(h>>32&0xffff)/0xffff)
	switch {
	case part < len(histogramBounds):
		le := histogramBounds[part]
		if math.IsInf(le, 1) {
			return requests
		}
		share := 0.5 * math.Erfc(-math.Log(le/median)/math.Sqrt2)
		return math.Round(requests * share)
	case part == len(histogramBounds): // _sum: the log-normal's mean is median*e^(sigma^2/2)
		return requests * median * math.Exp(0.5)
	default: // _count
		return requests
	}
}

// mix64 is SplitMix64's finalizer: a fast, well-spread hash of x.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
