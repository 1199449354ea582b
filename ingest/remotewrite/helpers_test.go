package remotewrite

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"
)

const (
	contentTypeV1 = "application/x-protobuf"
	contentTypeV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
)

// testNow is the fixed clock of the tests; sample timestamps are around it.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var testNowMs = testNow.UnixMilli()

// staleNaN is Prometheus' stale marker (model/value.StaleNaN).
var staleNaN = math.Float64frombits(0x7ff0000000000002)

// tseries is a test series: raw label pairs (not validated, not sorted, so
// that bad input can be expressed), float samples, and how many native
// histogram samples and exemplars to attach.
type tseries struct {
	lbls       []string
	samples    []sample
	histograms int
	exemplars  int
	meta       writev2.Metadata // 2.0 only, refs are filled from help/unit
	help, unit string
}

func ser(lbls ...string) tseries { return tseries{lbls: lbls} }

func (s tseries) at(t int64, v float64) tseries {
	s.samples = append(append([]sample(nil), s.samples...), sample{t: t, v: v})
	return s
}

func (s tseries) withHistograms(n int) tseries { s.histograms = n; return s }

func (s tseries) withExemplars(n int) tseries { s.exemplars = n; return s }

func testHistogram() *histogram.Histogram {
	return &histogram.Histogram{
		Count: 3, Sum: 4.5, Schema: 0, ZeroThreshold: 0.001, ZeroCount: 1,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
		PositiveBuckets: []int64{1, 0},
	}
}

func v1Request(ss ...tseries) *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	for _, s := range ss {
		var ts prompb.TimeSeries
		for i := 0; i+1 < len(s.lbls); i += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: s.lbls[i], Value: s.lbls[i+1]})
		}
		for _, smp := range s.samples {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: smp.t, Value: smp.v})
		}
		for i := range s.histograms {
			ts.Histograms = append(ts.Histograms, prompb.FromIntHistogram(testNowMs+int64(i), testHistogram()))
		}
		for i := range s.exemplars {
			ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{
				Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}}, Value: 1, Timestamp: testNowMs + int64(i),
			})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	return req
}

func v2Request(ss ...tseries) *writev2.Request {
	req := &writev2.Request{Symbols: []string{""}}
	refs := map[string]uint32{"": 0}
	sym := func(s string) uint32 {
		if r, ok := refs[s]; ok {
			return r
		}
		r := uint32(len(req.Symbols))
		req.Symbols = append(req.Symbols, s)
		refs[s] = r
		return r
	}
	for _, s := range ss {
		var ts writev2.TimeSeries
		for _, l := range s.lbls {
			ts.LabelsRefs = append(ts.LabelsRefs, sym(l))
		}
		for _, smp := range s.samples {
			ts.Samples = append(ts.Samples, writev2.Sample{Timestamp: smp.t, Value: smp.v})
		}
		for i := range s.histograms {
			ts.Histograms = append(ts.Histograms, writev2.FromIntHistogram(0, testNowMs+int64(i), testHistogram()))
		}
		for i := range s.exemplars {
			ts.Exemplars = append(ts.Exemplars, writev2.Exemplar{
				LabelsRefs: []uint32{sym("trace_id"), sym("abc")}, Value: 1, Timestamp: testNowMs + int64(i),
			})
		}
		ts.Metadata = s.meta
		if s.help != "" {
			ts.Metadata.HelpRef = sym(s.help)
		}
		if s.unit != "" {
			ts.Metadata.UnitRef = sym(s.unit)
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	return req
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func snappyEncode(b []byte) []byte { return snappy.Encode(nil, b) }

// newRawHandler serves h's Store without decompression, so bodies are
// plain protobuf: the path the fuzz targets exercise.
func newRawHandler(app storage.Appendable) http.Handler {
	return remoteapi.NewWriteHandler(newHandler(app, testOptions()),
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType},
		remoteapi.WithWriteHandlerMiddlewares())
}

// post sends body (snappy-compressed here) to h and returns the response.
func post(t testing.TB, h http.Handler, contentType string, raw []byte) *http.Response {
	t.Helper()
	return postRaw(t, h, contentType, "snappy", snappy.Encode(nil, raw))
}

func postRaw(t testing.TB, h http.Handler, contentType, encoding string, body []byte) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func bodyString(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantStatus(t testing.TB, resp *http.Response, code int) string {
	t.Helper()
	body := bodyString(t, resp)
	if resp.StatusCode != code {
		t.Fatalf("status = %d, want %d; body: %s", resp.StatusCode, code, body)
	}
	return body
}

func wantBodyContains(t testing.TB, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			t.Errorf("body does not contain %q; body:\n%s", s, body)
		}
	}
}

func newTestStorage(t testing.TB) *teststorage.TestStorage {
	return teststorage.New(t)
}

func testOptions() Options {
	return Options{Now: func() time.Time { return testNow }}
}

// stored reads everything in s back, keyed by the series' labels string.
func stored(t testing.TB, s storage.Queryable) map[string][]sample {
	t.Helper()
	q, err := s.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"))
	out := map[string][]sample{}
	for ss.Next() {
		series := ss.At()
		it := series.Iterator(nil)
		var smps []sample
		for it.Next() != 0 {
			ts, v := it.At()
			smps = append(smps, sample{t: ts, v: v})
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		out[series.Labels().String()] = smps
	}
	if err := ss.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantStored checks that exactly want is stored, comparing values
// bit-for-bit so NaNs, including stale markers, must round-trip exactly.
func wantStored(t testing.TB, s storage.Queryable, want map[string][]sample) {
	t.Helper()
	got := stored(t, s)
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("series %s not stored", k)
			continue
		}
		if len(g) != len(w) {
			t.Errorf("series %s: got %d samples %v, want %d %v", k, len(g), g, len(w), w)
			continue
		}
		for i := range w {
			if g[i].t != w[i].t || math.Float64bits(g[i].v) != math.Float64bits(w[i].v) {
				t.Errorf("series %s sample %d: got (%d, %x), want (%d, %x)", k, i,
					g[i].t, math.Float64bits(g[i].v), w[i].t, math.Float64bits(w[i].v))
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series stored: %s %v", k, got[k])
		}
	}
}

// metaCall is one recorded UpdateMetadata call.
type metaCall struct {
	ref    storage.SeriesRef
	labels string
	meta   metadata.Metadata
}

// recordingAppendable wraps a real storage, recording UpdateMetadata calls
// and optionally injecting errors.
type recordingAppendable struct {
	storage.Appendable

	mu         sync.Mutex
	meta       []metaCall
	commitErr  error
	appendErr  error // returned by Append for series named "fail"
	rollbacks  int
	commits    int
	appenders  int
	appendedTo []string
}

func (r *recordingAppendable) Appender(ctx context.Context) storage.Appender {
	r.mu.Lock()
	r.appenders++
	r.mu.Unlock()
	return &recordingAppender{Appender: r.Appendable.Appender(ctx), r: r}
}

type recordingAppender struct {
	storage.Appender
	r *recordingAppendable
}

func (a *recordingAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	if a.r.appendErr != nil && l.Get(labels.MetricName) == "fail" {
		return 0, a.r.appendErr
	}
	return a.Appender.Append(ref, l, t, v)
}

func (a *recordingAppender) UpdateMetadata(ref storage.SeriesRef, l labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	a.r.mu.Lock()
	a.r.meta = append(a.r.meta, metaCall{ref: ref, labels: l.String(), meta: m})
	a.r.mu.Unlock()
	return a.Appender.UpdateMetadata(ref, l, m)
}

func (a *recordingAppender) Commit() error {
	a.r.mu.Lock()
	a.r.commits++
	a.r.mu.Unlock()
	if a.r.commitErr != nil {
		_ = a.Appender.Rollback()
		return a.r.commitErr
	}
	return a.Appender.Commit()
}

func (a *recordingAppender) Rollback() error {
	a.r.mu.Lock()
	a.r.rollbacks++
	a.r.mu.Unlock()
	return a.Appender.Rollback()
}

// discardAppendable accepts everything and keeps nothing. For benchmarks
// and fuzzing only; it checks nothing either, see checkingAppendable.
type discardAppendable struct{}

func (discardAppendable) Appender(context.Context) storage.Appender { return discardAppender{} }

type discardAppender struct{}

func (discardAppender) Append(ref storage.SeriesRef, _ labels.Labels, _ int64, _ float64) (storage.SeriesRef, error) {
	if ref == 0 {
		ref = 1
	}
	return ref, nil
}
func (discardAppender) SetOptions(*storage.AppendOptions) {}
func (discardAppender) AppendExemplar(ref storage.SeriesRef, _ labels.Labels, _ exemplar.Exemplar) (storage.SeriesRef, error) {
	return ref, nil
}
func (discardAppender) AppendHistogram(ref storage.SeriesRef, _ labels.Labels, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, nil
}
func (discardAppender) AppendHistogramSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, nil
}
func (discardAppender) UpdateMetadata(ref storage.SeriesRef, _ labels.Labels, _ metadata.Metadata) (storage.SeriesRef, error) {
	return ref, nil
}
func (discardAppender) AppendSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64) (storage.SeriesRef, error) {
	return ref, nil
}
func (discardAppender) Commit() error   { return nil }
func (discardAppender) Rollback() error { return nil }
