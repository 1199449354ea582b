package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPrometheusRemoteWriteAgreement has a real Prometheus scrape a real
// node exporter (and itself) every second and remote-write to Immune, then
// checks that PromQL evaluated by Prometheus and by Immune agrees.
func TestPrometheusRemoteWriteAgreement(t *testing.T) {
	promBin := requireBinary(t, "prometheus")
	nodeBin := requireBinary(t, "prometheus-node-exporter")
	_, immune := startImmune(t, t.TempDir())

	nodeAddr := freeAddr(t)
	node := start(t, "node-exporter", nodeBin, "--web.listen-address="+nodeAddr)
	waitProcessReady(t, node, "http://"+nodeAddr+"/metrics")

	promAddr := freeAddr(t)
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: node
    static_configs: [{targets: [%q]}]
  - job_name: prometheus
    static_configs: [{targets: [%q]}]
remote_write:
  - url: %s/api/v1/write
    queue_config: {batch_send_deadline: 500ms, min_backoff: 100ms, max_backoff: 1s}
`, nodeAddr, promAddr, immune)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := start(t, "prometheus", promBin, "--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr)
	waitProcessReady(t, prom, "http://"+promAddr+"/-/ready")
	promURL := "http://" + promAddr

	// Enough history that no window below (range 10s + selector 30s, or
	// 10s + subquery 20s + 5s) reaches back to before the first scrape,
	// where Prometheus 2 and 3 extrapolate differently.
	eventually(t, 3*time.Minute, "60s of node and prometheus data in Immune", func() error {
		for _, job := range []string{"node", "prometheus"} {
			r, err := instant(immune, fmt.Sprintf(`count_over_time(up{job=%q}[60s])`, job), time.Now())
			if err != nil {
				return err
			}
			if len(r.Result) != 1 || r.Result[0].Value.v < 58 {
				return fmt.Errorf("job %s: %+v", job, r.Result)
			}
		}
		return nil
	})
	// Evaluate a few scrapes back from the newest sample Immune has, so
	// both sides hold the same samples, and half a scrape off the scrape
	// times: Prometheus 3's engine (Immune's) selects left-open ranges,
	// while the packaged Prometheus 2 includes a sample exactly on the
	// left edge.
	latest, err := instant(immune, `timestamp(up{job="node"})`, time.Now())
	if err != nil || len(latest.Result) != 1 {
		t.Fatalf("latest sample: %v %+v", err, latest)
	}
	at := time.UnixMilli(int64(latest.Result[0].Value.v*1000) - 3500)

	exprs := []string{
		`up`,
		`rate(node_cpu_seconds_total[10s])`,
		`sum by (mode) (rate(node_cpu_seconds_total[15s]))`,
		`histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[30s])))`,
		`topk(2, sum by (mode) (node_cpu_seconds_total))`,
		`label_replace(up, "host", "$1", "instance", "(.*):.*")`,
		`node_memory_MemFree_bytes offset 7s`,
		`max_over_time(rate(node_network_receive_bytes_total[5s])[20s:2s])`,
		`sum(node_memory_MemFree_bytes) / sum(node_memory_MemTotal_bytes)`,
		`count by (job) ({__name__=~"go_.*"})`,
		`increase(prometheus_http_requests_total[30s])`,
		`scrape_samples_scraped - scrape_samples_scraped offset 5s`,
	}
	eventually(t, time.Minute, "Immune and Prometheus agree", func() error {
		for _, expr := range exprs {
			want, err := instant(promURL, expr, at)
			if err != nil {
				return fmt.Errorf("prometheus: %w", err)
			}
			got, err := instant(immune, expr, at)
			if err != nil {
				return fmt.Errorf("immune: %w", err)
			}
			if len(want.Result) == 0 {
				return fmt.Errorf("%s: Prometheus returned nothing; the test would prove nothing", expr)
			}
			if err := sameResult(got, want); err != nil {
				return fmt.Errorf("instant %s at %s: %w", expr, at.Format(time.RFC3339Nano), err)
			}
			wantR, err := rangeQuery(promURL, expr, at.Add(-10*time.Second), at, 2*time.Second)
			if err != nil {
				return fmt.Errorf("prometheus: %w", err)
			}
			gotR, err := rangeQuery(immune, expr, at.Add(-10*time.Second), at, 2*time.Second)
			if err != nil {
				return fmt.Errorf("immune: %w", err)
			}
			if err := sameResult(gotR, wantR); err != nil {
				return fmt.Errorf("range %s: %w", expr, err)
			}
		}
		return nil
	})
}

// point is a [timestamp, "value"] pair as the Prometheus API writes it.
type point struct {
	t float64
	v float64
}

func (p *point) UnmarshalJSON(b []byte) error {
	var raw [2]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	t, ok := raw[0].(float64)
	s, ok2 := raw[1].(string)
	if !ok || !ok2 {
		return fmt.Errorf("bad point %s", b)
	}
	v, err := strconv.ParseFloat(s, 64)
	p.t, p.v = t, v
	return err
}

type queryData struct {
	ResultType string `json:"resultType"`
	Result     []struct {
		Metric map[string]string `json:"metric"`
		Value  point             `json:"value"`
		Values []point           `json:"values"`
	} `json:"result"`
}

func instant(base, expr string, at time.Time) (queryData, error) {
	return apiQuery(base+"/api/v1/query", url.Values{"query": {expr}, "time": {formatTime(at)}})
}

func rangeQuery(base, expr string, start, end time.Time, step time.Duration) (queryData, error) {
	return apiQuery(base+"/api/v1/query_range", url.Values{"query": {expr}, "start": {formatTime(start)},
		"end": {formatTime(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}})
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

func apiQuery(u string, form url.Values) (queryData, error) {
	resp, err := http.PostForm(u, form)
	if err != nil {
		return queryData{}, err
	}
	defer resp.Body.Close()
	var env struct {
		Status string    `json:"status"`
		Error  string    `json:"error"`
		Data   queryData `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return queryData{}, fmt.Errorf("%s: %s: %w", u, resp.Status, err)
	}
	if env.Status != "success" {
		return queryData{}, fmt.Errorf("%s %q: %s", u, form.Get("query"), env.Error)
	}
	return env.Data, nil
}

// sameResult compares two query results series by series, values within a
// relative 1e-9.
func sameResult(got, want queryData) error {
	if got.ResultType != want.ResultType {
		return fmt.Errorf("result type %s, want %s", got.ResultType, want.ResultType)
	}
	index := func(d queryData) map[string][]point {
		m := map[string][]point{}
		for _, r := range d.Result {
			pts := r.Values
			if pts == nil {
				pts = []point{r.Value}
			}
			m[labelKey(r.Metric)] = pts
		}
		return m
	}
	g, w := index(got), index(want)
	for key, wp := range w {
		gp, ok := g[key]
		if !ok {
			return fmt.Errorf("series %s missing (got %d series, want %d)", key, len(g), len(w))
		}
		if len(gp) != len(wp) {
			return fmt.Errorf("series %s: %d points, want %d", key, len(gp), len(wp))
		}
		for i := range wp {
			if gp[i].t != wp[i].t || !closeEnough(gp[i].v, wp[i].v) {
				return fmt.Errorf("series %s point %d: got %v, want %v", key, i, gp[i], wp[i])
			}
		}
	}
	if len(g) != len(w) {
		return fmt.Errorf("got %d series, want %d", len(g), len(w))
	}
	return nil
}

func labelKey(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+strconv.Quote(v))
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

func closeEnough(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	if a == b {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}
