package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"gonum.org/v1/gonum/stat/distuv"
)

// Fleet simulates the hosts of one service as Prometheus would scrape them:
// request and error counters, a latency histogram, CPU, memory, restarts
// and up. Hosts co-move (daily traffic shape, fleet-wide incidents) and
// differ by noise; canary hosts run a new version that may carry a
// regression. The same seed gives the same samples.
type Fleet struct {
	// Service and the two versions label the series.
	Service, Version, CanaryVersion string
	// Hosts is the fleet size; the first Canary hosts run CanaryVersion.
	Hosts, Canary int
	// RPS is each host's mean request rate at the daily average.
	RPS float64
	// ErrorRate is the fraction of requests answered 5xx.
	ErrorRate float64
	// LatencyMedian is the median request latency in seconds.
	LatencyMedian float64
	// Regression applies to canary hosts from RegressionAt on.
	Regression   Regression
	RegressionAt time.Time
	// RestartOnDeploy restarts the canary hosts' processes at the first
	// scrape from RegressionAt on, as deploying onto existing hosts does.
	RestartOnDeploy bool
	// Incidents apply to every host.
	Incidents []Incident
	// MissingScrapes is the probability that a host's scrape is lost.
	MissingScrapes float64
	Seed           uint64

	rng   *rand.Rand
	hosts []*host
}

// Regression is what a bad canary does differently.
type Regression struct {
	ErrorFactor   float64 // multiplies the error rate (0 = unchanged)
	ErrorAdd      float64 // adds to the error rate, so errors appear from zero
	LatencyFactor float64 // multiplies latency (0 = unchanged)
	LatencySpread float64 // multiplies the latency's log-spread: variance only
	LeakPerHour   float64 // memory grows by this fraction per hour
	CPUFactor     float64 // multiplies CPU (0 = unchanged)
	TrafficFactor float64 // multiplies the canary's traffic (0 = unchanged)
	CrashEvery    time.Duration
}

// Incident is a fleet-wide change between Start and End.
type Incident struct {
	Start, End    time.Time
	ErrorFactor   float64
	LatencyFactor float64
}

type host struct {
	labels   []string // instance, version, service pairs
	canary   bool
	requests map[string]float64 // code -> counter
	buckets  []float64
	sum      float64
	cpu      float64
	memory   float64
	started  time.Time
	speed    float64 // this host's persistent latency factor
	lastDown time.Time
}

var latencyBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func (f *Fleet) init(start time.Time) {
	f.rng = rand.New(rand.NewPCG(f.Seed, 0x5eed))
	for i := range f.Hosts {
		version := f.Version
		if i < f.Canary {
			version = f.CanaryVersion
		}
		f.hosts = append(f.hosts, &host{
			labels:   []string{"instance", fmt.Sprintf("%s-%d:8080", f.Service, i), "service", f.Service, "version", version, "job", f.Service},
			canary:   i < f.Canary,
			requests: map[string]float64{"200": 0, "500": 0},
			buckets:  make([]float64, len(latencyBounds)+1),
			memory:   200e6 * (1 + 0.05*f.rng.NormFloat64()),
			started:  start.Add(-time.Duration(f.rng.IntN(86400)) * time.Second),
			speed:    math.Exp(0.03 * f.rng.NormFloat64()),
		})
	}
}

// Emit is called for every sample the fleet produces.
type Emit func(ls labels.Labels, t int64, v float64)

// Scrape advances every host by dt to time t and emits its samples, as one
// scrape of each host.
func (f *Fleet) Scrape(t time.Time, dt time.Duration, emit Emit) {
	if f.hosts == nil {
		f.init(t)
	}
	day := 2 * math.Pi * float64(t.UnixMilli()%86_400_000) / 86_400_000
	shape := 1 + 0.3*math.Sin(day)
	errFactor, latFactor := 1.0, 1.0
	for _, inc := range f.Incidents {
		if !t.Before(inc.Start) && t.Before(inc.End) {
			errFactor *= nonZero(inc.ErrorFactor)
			latFactor *= nonZero(inc.LatencyFactor)
		}
	}
	ms := t.UnixMilli()
	for _, h := range f.hosts {
		reg := Regression{}
		if h.canary && !t.Before(f.RegressionAt) {
			reg = f.Regression
		}
		deployed := f.RestartOnDeploy && h.canary && !t.Before(f.RegressionAt) && h.started.Before(f.RegressionAt)
		if deployed || (reg.CrashEvery > 0 && t.Sub(h.started) >= reg.CrashEvery) {
			// A crash loop: the process restarts and its counters reset.
			h.started = t
			for k := range h.requests {
				h.requests[k] = 0
			}
			for i := range h.buckets {
				h.buckets[i] = 0
			}
			h.sum, h.cpu = 0, 0
		}
		rps := f.RPS * shape * nonZero(reg.TrafficFactor)
		n := poissonDraw(f.rng, rps*dt.Seconds())
		errRate := math.Min(1, f.ErrorRate*errFactor*nonZero(reg.ErrorFactor)+reg.ErrorAdd)
		errs := binomialDraw(f.rng, n, errRate)
		h.requests["500"] += errs
		h.requests["200"] += n - errs
		median := f.LatencyMedian * latFactor * h.speed * nonZero(reg.LatencyFactor)
		spread := 0.5 * nonZero(reg.LatencySpread)
		ln := distuv.LogNormal{Mu: math.Log(median), Sigma: spread}
		prev := 0.0
		for i, b := range latencyBounds {
			p := ln.CDF(b)
			h.buckets[i] += poissonDraw(f.rng, n*(p-prev))
			prev = p
		}
		h.buckets[len(latencyBounds)] += poissonDraw(f.rng, n*(1-prev))
		h.sum += n * ln.Mean()
		h.cpu += dt.Seconds() * (0.05 + rps*0.001) * nonZero(reg.CPUFactor) * math.Exp(0.05*f.rng.NormFloat64())
		h.memory *= 1 + reg.LeakPerHour*dt.Hours()
		if f.MissingScrapes > 0 && f.rng.Float64() < f.MissingScrapes {
			continue
		}
		f.emitHost(h, ms, emit)
	}
}

func (f *Fleet) emitHost(h *host, ms int64, emit Emit) {
	series := func(name string, v float64, extra ...string) {
		pairs := append(append([]string{"__name__", name}, h.labels...), extra...)
		emit(labels.FromStrings(pairs...), ms, v)
	}
	for code, v := range h.requests {
		series("http_requests_total", v, "code", code)
	}
	cum := 0.0
	for i, c := range h.buckets {
		cum += c
		le := "+Inf"
		if i < len(latencyBounds) {
			le = strconv.FormatFloat(latencyBounds[i], 'g', -1, 64)
		}
		series("http_request_duration_seconds_bucket", cum, "le", le)
	}
	series("http_request_duration_seconds_count", cum)
	series("http_request_duration_seconds_sum", h.sum)
	series("process_cpu_seconds_total", h.cpu)
	series("process_resident_memory_bytes", math.Round(h.memory))
	series("process_start_time_seconds", float64(h.started.Unix()))
	series("up", 1)
}

func nonZero(f float64) float64 {
	if f == 0 {
		return 1
	}
	return f
}

func poissonDraw(rng *rand.Rand, lambda float64) float64 {
	if lambda <= 0 {
		return 0
	}
	if lambda > 1000 { // normal approximation, cheaper and close enough
		return math.Max(0, math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64()))
	}
	return distuv.Poisson{Lambda: lambda, Src: rng}.Rand()
}

func binomialDraw(rng *rand.Rand, n, p float64) float64 {
	if n <= 0 || p <= 0 {
		return 0
	}
	return math.Min(n, poissonDraw(rng, n*p))
}
