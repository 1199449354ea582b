// Package detecttest holds the test doubles shared by the tests of the
// gate API and the gate CLI: a clock the test moves, a metrics source
// with fixed, controllable data, and a real store filled with a simulated
// fleet's history. Only tests import it.
package detecttest

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/immune-dev/immune/detect"
)

// T0 is where test clocks start.
var T0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Clock is a service clock moved by the test.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at T0.
func NewClock() *Clock { return &Clock{now: T0} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock forward.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Fleet is a detect.Source with fixed data: the canary is whatever a query
// selects with version="v2", the baseline anything else. Each step carries
// the traffic in requests_total per cohort, errors_total at the cohort's
// error ratio, and latency_seconds at the cohort's latency. A selector with
// app="ghost" matches nothing; count(...) probes always find a series.
type Fleet struct {
	mu                     sync.Mutex
	traffic                float64
	canaryErr, baselineErr float64
	canaryLat, baselineLat float64
}

// NewFleet returns a fleet with 1000 requests per step, no canary errors,
// a 0.1% baseline error ratio and equal latencies of 100ms.
func NewFleet() *Fleet {
	return &Fleet{traffic: 1000, baselineErr: 0.001, canaryLat: 0.1, baselineLat: 0.1}
}

// Set changes the traffic per step and the cohorts' error ratios.
func (f *Fleet) Set(traffic, canaryErr, baselineErr float64) {
	f.mu.Lock()
	f.traffic, f.canaryErr, f.baselineErr = traffic, canaryErr, baselineErr
	f.mu.Unlock()
}

// SetLatency changes the cohorts' latencies.
func (f *Fleet) SetLatency(canary, baseline float64) {
	f.mu.Lock()
	f.canaryLat, f.baselineLat = canary, baseline
	f.mu.Unlock()
}

// QueryRange implements detect.Source.
func (f *Fleet) QueryRange(_ context.Context, q string, start, end time.Time, step time.Duration) ([]detect.Series, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Contains(q, `app="ghost"`) {
		return nil, nil
	}
	canary := strings.Contains(q, `version="v2"`)
	var v float64
	switch {
	case strings.HasPrefix(q, "count("):
		v = 1
	case strings.Contains(q, "errors_total"):
		v = f.traffic * f.baselineErr
		if canary {
			v = f.traffic * f.canaryErr
		}
	case strings.Contains(q, "requests_total"):
		v = f.traffic
	case strings.Contains(q, "latency_seconds"):
		v = f.baselineLat
		if canary {
			v = f.canaryLat
		}
	default:
		return nil, nil
	}
	s := detect.Series{Labels: labels.EmptyLabels()}
	for t := start; !t.After(end); t = t.Add(step) {
		s.Points = append(s.Points, detect.Point{T: t.UnixMilli(), V: v})
	}
	return []detect.Series{s}, nil
}
