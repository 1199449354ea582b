package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// FleetWriter sends a fleet's scrapes to a remote-write receiver, one
// remote write 1.0 request per scrape of the whole fleet, as a Prometheus
// scraping it would.
type FleetWriter struct {
	URL    string
	Client *http.Client // nil means http.DefaultClient
}

// Backfill sends the scrapes from start to end, every interval, as fast as
// they are acknowledged.
func (w FleetWriter) Backfill(ctx context.Context, f *Fleet, start, end time.Time, interval time.Duration) error {
	for t := start; !t.After(end); t = t.Add(interval) {
		if err := w.Scrape(ctx, f, t, interval); err != nil {
			return err
		}
	}
	return nil
}

// Scrape sends one scrape of the fleet at t, dt after the previous one.
func (w FleetWriter) Scrape(ctx context.Context, f *Fleet, t time.Time, dt time.Duration) error {
	var req prompb.WriteRequest
	f.Scrape(t, dt, func(ls labels.Labels, ms int64, v float64) {
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: v, Timestamp: ms}}}
		ls.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
		req.Timeseries = append(req.Timeseries, ts)
	})
	raw, err := req.Marshal()
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/x-protobuf")
	hr.Header.Set("Content-Encoding", "snappy")
	hr.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	client := w.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("remote write: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
