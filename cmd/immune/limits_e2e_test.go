package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// TestServeActiveSeriesLimit runs the real server with a small
// --max-active-series: a remote-write request bringing more new series
// than the limit allows gets 400 naming the limit, with the series that
// fit stored; a series already in the store still takes samples.
func TestServeActiveSeriesLimit(t *testing.T) {
	_, base := startImmune(t, t.TempDir(), "--max-active-series", "3")
	now := time.Now().UnixMilli()
	req := &prompb.WriteRequest{}
	for i := range 5 {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "limited"}, {Name: "i", Value: fmt.Sprint(i)}},
			Samples: []prompb.Sample{{Timestamp: now, Value: float64(i)}},
		})
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	httpReq, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		t.Fatal(err)
	}
	httpReq.Header.Set("Content-Type", "application/x-protobuf")
	httpReq.Header.Set("Content-Encoding", "snappy")
	httpReq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(httpReq)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "3 samples stored, 2 rejected") ||
		!strings.Contains(string(body), "active series limit of 3 reached") {
		t.Fatalf("5 new series under a limit of 3: got %s %s", resp.Status, body)
	}
	count := fmt.Sprintf("%s/api/v1/query?%s", base, url.Values{"query": {`count(limited)`}, "time": {formatTime(time.Now())}}.Encode())
	if got := vectorValues(t, count); len(got) != 1 || got[0] != "3" {
		t.Fatalf("count(limited) = %v, want 3", got)
	}
	// A series in the store takes samples; a new one is refused in
	// OpenTSDB's form.
	put := fmt.Sprintf(`[{"metric":"limited","timestamp":%d,"value":9,"tags":{"i":"0"}},{"metric":"limited","timestamp":%d,"value":9,"tags":{"i":"9"}}]`, now+1000, now+1000)
	resp, err = http.Post(base+"/api/put?summary", "application/json", strings.NewReader(put))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `{"success":1,"failed":1}`) {
		t.Fatalf("/api/put of a known and a new series: got %s %s", resp.Status, body)
	}
}
