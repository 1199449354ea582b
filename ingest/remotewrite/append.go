package remotewrite

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
)

// txn is the ingestion of one decoded request through one appender.
type txn struct {
	h    *handler
	ctx  context.Context
	b    *batch
	maxT int64 // latest accepted timestamp, ms

	app     storage.Appender // created on first use
	getRef  storage.GetRef   // app, if it implements GetRef
	written int              // samples appended
}

func (t *txn) appender() storage.Appender {
	if t.app == nil {
		t.app = t.h.app.Appender(t.ctx)
		t.getRef, _ = t.app.(storage.GetRef)
	}
	return t.app
}

// finish commits, or rolls back after fatal, the non-nil error from Append.
// A failed Commit is not followed by Rollback: the Appender contract says an
// appender must not be used after Commit.
func (t *txn) finish(fatal error) error {
	if t.app == nil {
		return fatal
	}
	if fatal != nil {
		if err := t.app.Rollback(); err != nil {
			t.h.logger.Error("rolling back remote write appender", "err", err)
		}
		t.written = 0
		return fatal
	}
	if err := t.app.Commit(); err != nil {
		t.written = 0
		return err
	}
	return nil
}

func (t *txn) ingestV1() error {
	b := t.b
	for i := range b.series {
		s := &b.series[i]
		_, _, _, err := t.appendSeries(i, b.labels[s.labels.start:s.labels.end], b.samples[s.samples.start:s.samples.end], s.histograms)
		if err != nil {
			return t.finish(err)
		}
	}
	for _, m := range b.meta {
		t.updateV1Meta(m)
	}
	return t.finish(nil)
}

func (t *txn) ingestV2() error {
	b := t.b
	for i := range b.series {
		s := &b.series[i]
		lbls, problem := b.resolve(b.refs[s.labels.start:s.labels.end])
		if problem != "" {
			if b.rep.reject(reasonBadLabelRefs, i, s.samples.end-s.samples.start+s.histograms) {
				b.rep.setExample(reasonBadLabelRefs, i, "", problem)
			}
			continue
		}
		if s.samples.start == s.samples.end && s.histograms == 0 {
			// The 2.0 spec requires at least one sample or histogram;
			// Prometheus rejects such series too.
			if r, _ := t.h.lim.check(lbls); r == reasonNone {
				if b.rep.reject(reasonNoSamples, i, 0) {
					b.rep.setExample(reasonNoSamples, i, formatSeries(lbls), "series has no samples")
				}
				continue
			}
		}
		ref, ls, n, err := t.appendSeries(i, lbls, b.samples[s.samples.start:s.samples.end], s.histograms)
		if err != nil {
			return t.finish(err)
		}
		if n > 0 && s.meta != (v2Meta{}) {
			t.updateV2Meta(ref, ls, s.meta)
		}
	}
	return t.finish(nil)
}

// appendSeries validates one series and appends its valid samples. It
// returns the series ref and labels for metadata, the number of samples
// appended, and a non-nil error only for a storage failure that must fail
// the request.
func (t *txn) appendSeries(idx int, lbls []wireLabel, smps []sample, histograms int) (storage.SeriesRef, labels.Labels, int, error) {
	rep := &t.b.rep
	if r, at := t.h.lim.check(lbls); r != reasonNone {
		if rep.reject(r, idx, len(smps)+histograms) {
			rep.setExample(r, idx, formatSeries(lbls), t.h.lim.describe(r, lbls, at))
		}
		return 0, labels.EmptyLabels(), 0, nil
	}
	if histograms > 0 {
		rep.histSamples += histograms
		rep.histSeries++
	}

	var (
		ref   storage.SeriesRef
		ls    labels.Labels
		built bool
		n     int
	)
	for i, s := range smps {
		r := reasonNone
		switch {
		case s.t < 0:
			r = reasonNegativeTimestamp
		case s.t > t.maxT:
			r = reasonFutureTimestamp
		}
		var err error
		if r == reasonNone {
			if !built {
				ref, ls = t.seriesLabels(lbls)
				built = true
			}
			var newRef storage.SeriesRef
			if newRef, err = t.app.Append(ref, ls, s.t, s.v); err == nil {
				ref = newRef
				n++
				continue
			}
			if r = storageReason(err); r == reasonNone {
				return ref, ls, n, err
			}
		}
		rejected := 1
		if r == reasonSeriesLimit {
			// Every later sample of the series would be refused alike.
			rejected = len(smps) - i
		}
		if rep.reject(r, idx, rejected) {
			rep.setExample(r, idx, formatSeries(lbls), sampleProblem(r, s.t, t.h.skew, err))
		}
		if r == reasonSeriesLimit {
			break
		}
	}
	t.written += n
	return ref, ls, n, nil
}

// seriesLabels builds the labels.Labels to append. If the appender can
// look a series up (storage.GetRef), an existing series is found through a
// reused scratch buffer and its stored labels are used, so the steady
// state allocates nothing per series; otherwise the labels are copied into
// a new allocation that storage may keep.
func (t *txn) seriesLabels(lbls []wireLabel) (storage.SeriesRef, labels.Labels) {
	t.appender()
	sb := &t.b.sb
	sb.Reset()
	for _, l := range lbls {
		sb.Add(l.name, l.value)
	}
	if t.getRef != nil {
		sb.Overwrite(&t.b.scratchLabels)
		if ref, ls := t.getRef.GetRef(t.b.scratchLabels, t.b.scratchLabels.Hash()); ref != 0 {
			return ref, ls
		}
	}
	return 0, sb.Labels()
}

// updateV1Meta forwards one 1.0 metadata entry, keyed by metric family
// name only, as remote write 1.0 defines it. Errors are logged, never
// returned: metadata must not fail a request.
func (t *txn) updateV1Meta(m v1Meta) {
	if m.family == "" || !utf8.ValidString(m.family) {
		return
	}
	md := metadata.Metadata{
		Type: metricType(m.typ),
		Unit: strings.Clone(m.unit),
		Help: strings.Clone(m.help),
	}
	// labels.FromStrings copies the family name out of the request buffer.
	ls := labels.FromStrings(labels.MetricName, m.family)
	if _, err := t.appender().UpdateMetadata(0, ls, md); err != nil {
		t.h.logger.Debug("remote write metadata not stored", "metric_family", ls.Get(labels.MetricName), "err", err)
	}
}

// updateV2Meta forwards a 2.0 series' metadata. Like 1.0 metadata it never
// fails the request; metadata with references outside the symbols table is
// dropped.
func (t *txn) updateV2Meta(ref storage.SeriesRef, ls labels.Labels, m v2Meta) {
	help, okHelp := t.b.symbol(m.help)
	unit, okUnit := t.b.symbol(m.unit)
	if !okHelp || !okUnit {
		t.h.logger.Debug("remote write metadata dropped: reference outside the symbols table", "series", ls.String())
		return
	}
	md := metadata.Metadata{Type: metricType(m.typ), Unit: unit, Help: help}
	if _, err := t.appender().UpdateMetadata(ref, ls, md); err != nil {
		t.h.logger.Debug("remote write metadata not stored", "series", ls.String(), "err", err)
	}
}

// metricType maps prometheus.MetricMetadata.MetricType and
// io.prometheus.write.v2.Metadata.MetricType, which number the types alike
// (TestMetricTypeBothProtocols holds them to it).
func metricType(typ int32) model.MetricType {
	switch prompb.MetricMetadata_MetricType(typ) {
	case prompb.MetricMetadata_COUNTER:
		return model.MetricTypeCounter
	case prompb.MetricMetadata_GAUGE:
		return model.MetricTypeGauge
	case prompb.MetricMetadata_HISTOGRAM:
		return model.MetricTypeHistogram
	case prompb.MetricMetadata_GAUGEHISTOGRAM:
		return model.MetricTypeGaugeHistogram
	case prompb.MetricMetadata_SUMMARY:
		return model.MetricTypeSummary
	case prompb.MetricMetadata_INFO:
		return model.MetricTypeInfo
	case prompb.MetricMetadata_STATESET:
		return model.MetricTypeStateset
	}
	return model.MetricTypeUnknown
}
