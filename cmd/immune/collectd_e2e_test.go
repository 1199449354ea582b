package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// collectdConf reports CPU, memory, load and interfaces every second to an
// OpenTSDB telnet listener through write_tsdb.
const collectdConf = `Hostname "immune-e2e"
FQDNLookup false
BaseDir %q
PIDFile %q
TypesDB "/usr/share/collectd/types.db"
Interval 1
LoadPlugin cpu
LoadPlugin memory
LoadPlugin load
LoadPlugin interface
LoadPlugin write_tsdb
<Plugin write_tsdb>
  <Node "immune">
    Host %q
    Port %q
  </Node>
</Plugin>
`

// TestCollectdWriteTSDB: a real collectd writes into Immune's OpenTSDB
// listener; every plugin's values arrive, and PromQL (with the UTF-8 name
// syntax) and OpenTSDB's /api/query return the same samples.
func TestCollectdWriteTSDB(t *testing.T) {
	collectd := requireBinary(t, "collectd")
	tsdbAddr := freeAddr(t)
	_, base := startImmune(t, t.TempDir(), "--opentsdb-listen", tsdbAddr)

	dir := t.TempDir()
	host, port, err := net.SplitHostPort(tsdbAddr)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "collectd.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, collectdConf, dir, filepath.Join(dir, "collectd.pid"), host, port), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, "collectd", collectd, "-C", conf, "-f")

	for _, sel := range []string{
		`{"load.load.shortterm", fqdn="immune-e2e"}`,
		`{"memory.used.memory", fqdn="immune-e2e"}`,
		`{__name__=~"cpu[.].+[.]cpu[.]user", fqdn="immune-e2e"}`,
		`{"interface.lo.if_octets.rx", fqdn="immune-e2e"}`,
	} {
		eventually(t, 60*time.Second, sel+" in PromQL", func() error {
			d, err := instant(base, sel, time.Now())
			if err != nil {
				return err
			}
			if len(d.Result) == 0 {
				return fmt.Errorf("no series yet")
			}
			return nil
		})
	}

	// Three samples of memory.used.memory, then the same window both ways.
	const memory = `{"memory.used.memory", fqdn="immune-e2e"}`
	var at time.Time
	var promSamples map[int64]float64
	eventually(t, 60*time.Second, "three samples of memory.used.memory", func() error {
		at = time.Now()
		d, err := instant(base, memory+"[5m]", at)
		if err != nil {
			return err
		}
		if len(d.Result) != 1 || len(d.Result[0].Values) < 3 {
			return fmt.Errorf("%d series, want 1 with 3 samples: %+v", len(d.Result), d.Result)
		}
		promSamples = map[int64]float64{}
		for _, p := range d.Result[0].Values {
			promSamples[int64(p.t*1000+0.5)] = p.v
		}
		return nil
	})
	for ts, v := range promSamples {
		if !(v > 0) {
			t.Errorf("memory.used.memory at %d is %v, want a positive byte count", ts, v)
		}
	}

	// PromQL's range is (at-5m, at]; OpenTSDB's [start, end] in ms.
	q := url.Values{
		"start": {strconv.FormatInt(at.Add(-5*time.Minute).UnixMilli()+1, 10)},
		"end":   {strconv.FormatInt(at.UnixMilli(), 10)},
		"m":     {"none:memory.used.memory{fqdn=immune-e2e}"},
		"ms":    {"true"},
	}
	var series []struct {
		Metric string             `json:"metric"`
		Tags   map[string]string  `json:"tags"`
		DPS    map[string]float64 `json:"dps"`
	}
	if err := getJSON(base+"/api/query?"+q.Encode(), &series); err != nil {
		t.Fatalf("/api/query: %v", err)
	}
	if len(series) != 1 || series[0].Metric != "memory.used.memory" || series[0].Tags["fqdn"] != "immune-e2e" {
		t.Fatalf("/api/query: %+v, want memory.used.memory of fqdn=immune-e2e", series)
	}
	tsdbSamples := map[int64]float64{}
	for ts, v := range series[0].DPS {
		ms, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			t.Fatalf("dps key %q: %v", ts, err)
		}
		tsdbSamples[ms] = v
	}
	if len(tsdbSamples) != len(promSamples) {
		t.Errorf("/api/query has %d samples, PromQL %d", len(tsdbSamples), len(promSamples))
	}
	for ts, v := range promSamples {
		if got, ok := tsdbSamples[ts]; !ok || got != v {
			t.Errorf("at %d: /api/query %v (present %v), PromQL %v", ts, got, ok, v)
		}
	}
}
