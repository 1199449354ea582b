package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// Query is one PromQL query of the side-by-side run.
type Query struct {
	Name, Expr string
}

// Queries is the fixed set the harness times on every system, over the
// node-exporter-like workload: raw selectors of 1 and 1,000 series (10
// hosts of 100), an aggregated rate, a histogram quantile and a topk.
var Queries = []Query{
	{"raw, 1 series", `node_load1{instance="host-0:9100"}`},
	{"raw, 1000 series", `{instance=~"host-[0-9]:9100"}`},
	{"sum by (mode) (rate)", `sum by (mode) (rate(node_cpu_seconds_total[5m]))`},
	{"histogram_quantile", `histogram_quantile(0.99, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))`},
	{"topk(5, rate)", `topk(5, rate(node_network_receive_bytes_total[5m]))`},
}

// CompareOptions configure RunSystem.
type CompareOptions struct {
	// Write is the load; its URL is set per system.
	Write WriteOptions
	// Ranges are the query_range spans, each ending at the last sample.
	Ranges []time.Duration
	// QueryRuns is how many times each query runs per range.
	QueryRuns int
	// Logf, if set, reports progress.
	Logf func(format string, args ...any)
}

// Run is what one system measured in one run.
type Run struct {
	System string
	// Acked samples were acknowledged; all of them were then counted
	// through the system's query API.
	Acked   int64
	Elapsed time.Duration // from the first request sent to the last acknowledged
	CPU     time.Duration // the server's user+system CPU over the same span
	// FlushCPU is the CPU the system spent after the writes making them
	// queryable, flushing and compacting them and stopping (queries
	// excluded): work the load caused that outlasted it.
	FlushCPU time.Duration
	PeakRSS  int64 // the server's peak resident set over the whole run
	Disk     Disk
	Queries  []QueryTiming
}

// SamplesPerSecond is the acknowledged rate.
func (r Run) SamplesPerSecond() float64 { return float64(r.Acked) / r.Elapsed.Seconds() }

// CPUPerMillion is the server's CPU-seconds per million samples taken in.
func (r Run) CPUPerMillion() float64 { return r.CPU.Seconds() / (float64(r.Acked) / 1e6) }

// TotalCPUPerMillion is CPUPerMillion with FlushCPU included.
func (r Run) TotalCPUPerMillion() float64 {
	return (r.CPU + r.FlushCPU).Seconds() / (float64(r.Acked) / 1e6)
}

// BytesPerSample is the on-disk size per acknowledged sample.
func (r Run) BytesPerSample() float64 { return float64(r.Disk.Bytes) / float64(r.Acked) }

// QueryTiming is one query over one range, run several times.
type QueryTiming struct {
	Query     Query
	Range     time.Duration
	Series    int // series in the result
	Latencies []time.Duration
}

// Quantile returns the q-quantile of the latencies (nearest rank).
func (t QueryTiming) Quantile(q float64) time.Duration {
	return quantile(slices.Sorted(slices.Values(t.Latencies)), q)
}

// RunSystem starts sys fresh, writes the load, checks that every
// acknowledged sample is queryable, times the query set, measures the data
// on disk, and stops it. A run that lost samples is an error, not a figure.
func RunSystem(ctx context.Context, sys System, o CompareOptions) (Run, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	run := Run{System: sys.Name}
	in, err := sys.Start(ctx)
	if err != nil {
		return run, err
	}
	defer in.Stop()

	w := o.Write
	w.URL = in.WriteURL
	cpu0, err := in.CPU()
	if err != nil {
		return run, err
	}
	res, err := Write(ctx, w)
	if err != nil {
		return run, fmt.Errorf("write (%d samples acknowledged): %w", res.Acked, err)
	}
	cpu1, err := in.CPU()
	if err != nil {
		return run, err
	}
	run.Acked, run.Elapsed, run.CPU = res.Acked, res.Elapsed, cpu1-cpu0
	logf("%s: %d samples acknowledged in %s", sys.Name, res.Acked, res.Elapsed.Round(time.Millisecond))

	if err := sys.Settle(ctx, in); err != nil {
		return run, err
	}
	cpu2, err := in.CPU()
	if err != nil {
		return run, err
	}
	last := w.Start.Add(time.Duration(w.Steps-1) * w.Interval)
	if err := AwaitCount(ctx, in.APIURL, MetricNames(), last, time.Duration(w.Steps)*w.Interval, res.Acked); err != nil {
		return run, err
	}
	for _, r := range o.Ranges {
		for _, q := range Queries {
			t, err := timeQuery(ctx, in.APIURL, q, last.Add(-r), last, queryStep(r, w.Interval), o.QueryRuns)
			if err != nil {
				return run, fmt.Errorf("%s over %s: %w", q.Name, r, err)
			}
			t.Range = r
			run.Queries = append(run.Queries, t)
		}
	}
	logf("%s: queries timed", sys.Name)
	if run.PeakRSS, err = PeakRSS(in.Pid()); err != nil {
		return run, err
	}
	cpu3, err := in.CPU()
	if err != nil {
		return run, err
	}
	if run.Disk, err = sys.Disk(ctx, in); err != nil {
		return run, fmt.Errorf("disk: %w", err)
	}
	cpuEnd, err := in.CPU()
	if err != nil {
		return run, err
	}
	run.FlushCPU = cpu2 - cpu1 + cpuEnd - cpu3 + run.Disk.ToolCPU
	return run, nil
}

// queryStep is the step a dashboard would ask for: about 240 points over
// the range, never finer than the scrape interval.
func queryStep(r, interval time.Duration) time.Duration {
	return max(interval, (r / 240).Truncate(time.Second))
}

// AwaitCount counts, metric by metric, the samples the system holds in the
// window ending at last, until they are want (a minute at most: some
// systems make new data searchable within seconds). Metrics are counted
// one by one: count_over_time drops the name, so series of different
// metrics with the same labels would collide.
func AwaitCount(ctx context.Context, api string, names []string, last time.Time, window time.Duration, want int64) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		var got float64
		for _, name := range names {
			q := fmt.Sprintf(`sum(count_over_time({__name__=%q}[%ds]))`, name, int((window + time.Minute).Seconds()))
			v, err := instantScalar(ctx, api, q, last.Add(time.Second))
			if err != nil {
				return err
			}
			got += v
		}
		if int64(got) == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lost samples: %.0f of %d acknowledged are queryable", got, want)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// instantScalar runs an instant query at t on the Prometheus API at base
// and returns the value of its single result; no result is 0.
func instantScalar(ctx context.Context, base, query string, t time.Time) (float64, error) {
	u := base + "/api/v1/query?" + url.Values{"query": {query}, "time": {strconv.FormatInt(t.Unix(), 10)}}.Encode()
	body, err := getBody(ctx, u)
	if err != nil {
		return 0, err
	}
	var env struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return 0, fmt.Errorf("%s: %w", u, err)
	}
	if len(env.Data.Result) == 0 {
		return 0, nil
	}
	s, _ := env.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

// timeQuery runs a range query n times and records each latency, from
// sending the request to reading the last byte of the reply.
func timeQuery(ctx context.Context, base string, q Query, start, end time.Time, step time.Duration, n int) (QueryTiming, error) {
	t := QueryTiming{Query: q}
	u := base + "/api/v1/query_range?" + url.Values{
		"query": {q.Expr},
		"start": {strconv.FormatInt(start.Unix(), 10)},
		"end":   {strconv.FormatInt(end.Unix(), 10)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}.Encode()
	for range n {
		began := time.Now()
		body, err := getBody(ctx, u)
		if err != nil {
			return t, err
		}
		t.Latencies = append(t.Latencies, time.Since(began))
		var env struct {
			Data struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &env); err != nil {
			return t, err
		}
		if len(env.Data.Result) == 0 {
			return t, fmt.Errorf("no series in the result")
		}
		t.Series = len(env.Data.Result)
	}
	return t, nil
}

// getBody GETs u and returns the body of a 2xx reply.
func getBody(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("GET %s: %s: %.300s", u, resp.Status, body)
	}
	return body, nil
}
