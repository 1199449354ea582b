package bench

import (
	"context"
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
	return postRemoteWrite(ctx, w.Client, w.URL, RemoteWriteV1, snappy.Encode(nil, raw))
}
