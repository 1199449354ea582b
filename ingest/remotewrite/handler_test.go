package remotewrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-dev/immune/ingest/memlimit"
)

func TestV1HappyPath(t *testing.T) {
	db := newTestStorage(t)
	h := NewHandler(db, testOptions())

	t0 := testNowMs - 60_000
	req := v1Request(
		ser("__name__", "up", "instance", "a:9100", "job", "node").
			at(t0, 1).at(t0+15_000, 0).at(t0+30_000, staleNaN),
		ser("__name__", "weird_values", "job", "node").
			at(t0, math.Inf(1)).at(t0+1, math.Inf(-1)).at(t0+2, math.NaN()).at(t0+4, math.MaxFloat64),
		// Exemplars are dropped silently.
		ser("__name__", "with_exemplars", "job", "node").at(t0, 42).withExemplars(2),
	)
	resp := post(t, h, contentTypeV1, marshal(t, req))
	if body := wantStatus(t, resp, http.StatusNoContent); body != "" {
		t.Errorf("body = %q, want empty", body)
	}
	wantStored(t, db, map[string][]sample{
		`{__name__="up", instance="a:9100", job="node"}`: {{t0, 1}, {t0 + 15_000, 0}, {t0 + 30_000, staleNaN}},
		`{__name__="weird_values", job="node"}`: {
			{t0, math.Inf(1)}, {t0 + 1, math.Inf(-1)}, {t0 + 2, math.NaN()}, {t0 + 4, math.MaxFloat64},
		},
		`{__name__="with_exemplars", job="node"}`: {{t0, 42}},
	})

	// The content type with the explicit proto parameter is 1.0 too, and so
	// is no content type at all.
	for _, ct := range []string{"application/x-protobuf;proto=prometheus.WriteRequest", ""} {
		req := v1Request(ser("__name__", "up", "instance", "a:9100", "job", "node").at(t0+45_000, 1))
		wantStatus(t, post(t, h, ct, marshal(t, req)), http.StatusNoContent)
	}
}

func TestV2HappyPath(t *testing.T) {
	db := newTestStorage(t)
	h := NewHandler(db, testOptions())

	t0 := testNowMs - 60_000
	req := v2Request(
		ser("__name__", "up", "instance", "a:9100", "job", "node").at(t0, 1).at(t0+15_000, staleNaN),
		ser("__name__", "node_cpu_seconds_total", "cpu", "0", "mode", "idle").at(t0, 12.5),
		ser("__name__", "with_exemplars", "job", "node").at(t0, 7).withExemplars(3),
	)
	resp := post(t, h, contentTypeV2, marshal(t, req))
	wantStatus(t, resp, http.StatusNoContent)
	for header, want := range map[string]string{
		"X-Prometheus-Remote-Write-Samples-Written":    "4",
		"X-Prometheus-Remote-Write-Histograms-Written": "0",
		"X-Prometheus-Remote-Write-Exemplars-Written":  "0",
	} {
		if got := resp.Header.Get(header); got != want {
			t.Errorf("%s = %q, want %q", header, got, want)
		}
	}
	wantStored(t, db, map[string][]sample{
		`{__name__="up", instance="a:9100", job="node"}`:            {{t0, 1}, {t0 + 15_000, staleNaN}},
		`{__name__="node_cpu_seconds_total", cpu="0", mode="idle"}`: {{t0, 12.5}},
		`{__name__="with_exemplars", job="node"}`:                   {{t0, 7}},
	})
}

func TestUnsupportedMediaType(t *testing.T) {
	db := newTestStorage(t)
	h := NewHandler(db, testOptions())
	raw := marshal(t, v1Request(ser("__name__", "up").at(testNowMs, 1)))

	for _, tc := range []struct {
		name, contentType, encoding string
		body                        []byte
	}{
		{"text/plain", "text/plain", "snappy", raw},
		{"text/plain without encoding", "text/plain", "", []byte("up 1\n")},
		{"unknown proto", "application/x-protobuf;proto=io.prometheus.write.v3.Request", "snappy", raw},
		{"gzip", contentTypeV1, "gzip", raw},
		{"zstd v2", contentTypeV2, "zstd", raw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, postRaw(t, h, tc.contentType, tc.encoding, tc.body), http.StatusUnsupportedMediaType)
		})
	}
	wantStored(t, db, nil)
}

func TestMethodNotAllowed(t *testing.T) {
	h := NewHandler(newTestStorage(t), testOptions())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/write", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("status = %d, want 405", rec.Code)
	}
}

func TestMalformedBody(t *testing.T) {
	db := newTestStorage(t)
	h := NewHandler(db, testOptions())
	good := marshal(t, v1Request(ser("__name__", "up").at(testNowMs, 1), ser("__name__", "up2").at(testNowMs, 1)))

	for _, tc := range []struct {
		name, contentType string
		body              []byte // sent as is
		want              string
	}{
		{"not snappy", contentTypeV1, []byte("\xff\xff\xff\xff\xff\xffgarbage"), "snappy"},
		{"empty body", contentTypeV1, nil, "snappy"},
		{"truncated snappy", contentTypeV1, snappyEncode(good)[:10], "snappy"},
		{"truncated protobuf v1", contentTypeV1, snappyEncode(good[:len(good)-3]), "malformed prometheus.WriteRequest"},
		{"garbage protobuf v1", contentTypeV1, snappyEncode([]byte("\x0a\xff\xff\xff\xff\x0fxx")), "malformed"},
		{"wrong wire type v1", contentTypeV1, snappyEncode([]byte{0x08, 0x01}), "wrong wire type"},
		{"truncated protobuf v2", contentTypeV2, snappyEncode(marshal(t, v2Request(ser("__name__", "up").at(testNowMs, 1)))[:7]), "malformed io.prometheus.write.v2.Request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := wantStatus(t, postRaw(t, h, tc.contentType, "snappy", tc.body), http.StatusBadRequest)
			wantBodyContains(t, body, tc.want)
		})
	}
	wantStored(t, db, nil)
}

func TestBodyTooLarge(t *testing.T) {
	h := NewHandler(discardAppendable{}, testOptions())

	// A compressed body over the limit, with and without Content-Length.
	big := bytes.Repeat([]byte{0}, maxBodyBytes+1)
	wantStatus(t, postRaw(t, h, contentTypeV1, "snappy", big), http.StatusRequestEntityTooLarge)

	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", struct{ *bytes.Reader }{bytes.NewReader(big)})
	req.Header.Set("Content-Type", contentTypeV1)
	if req.ContentLength > 0 {
		t.Fatal("test needs a request without Content-Length")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("without Content-Length: status = %d, want 413", rec.Code)
	}

	// A small snappy block claiming to decompress to more than the limit.
	bomb := []byte{0x80, 0x80, 0x80, 0x20, 0x00} // varint 64 MiB, then junk
	wantStatus(t, postRaw(t, h, contentTypeV1, "snappy", bomb), http.StatusRequestEntityTooLarge)
}

// invalidSeriesCases are series that must be rejected, each with a phrase
// the 400 body must contain.
func invalidSeriesCases() []struct {
	name   string
	series tseries
	want   string
} {
	many := []string{"__name__", "many"}
	for i := range 5000 {
		many = append(many, fmt.Sprintf("l%05d", i), "v")
	}
	return []struct {
		name   string
		series tseries
		want   string
	}{
		{"no labels", ser(), "series has no labels"},
		{"empty label name", ser("", "x", "__name__", "bad"), "empty name"},
		{"empty label value", ser("__name__", "bad", "job", ""), `label "job" has an empty value`},
		{"empty metric name", ser("__name__", "", "job", "x"), `label "__name__" has an empty value`},
		{"duplicate label name", ser("__name__", "bad", "job", "a", "job", "b"), `label name "job" appears more than once`},
		{"unsorted labels", ser("__name__", "bad", "zone", "a", "job", "b"), `labels must be sorted by name, but "job" comes after "zone"`},
		{"missing __name__", ser("instance", "a", "job", "b"), "no __name__ label"},
		{"invalid UTF-8 name", ser("__name__", "bad", "jo\xffb", "x"), "not valid UTF-8"},
		{"invalid UTF-8 value", ser("__name__", "bad", "job", "\xc3\x28"), "not valid UTF-8"},
		{"5000 labels", ser(many...), "series has 5001 labels, more than the limit of 128"},
		{"label name too long", ser("__name__", "bad", strings.Repeat("n", 1025), "x"), "is 1025 bytes, more than the limit of 1024"},
		{"label value too long", ser("__name__", "bad", "job", strings.Repeat("v", 4097)), "is 4097 bytes, more than the limit of 4096"},
	}
}

func TestInvalidSeries(t *testing.T) {
	for _, proto := range []string{"v1", "v2"} {
		for _, tc := range invalidSeriesCases() {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				db := newTestStorage(t)
				h := NewHandler(db, testOptions())
				bad := tc.series.at(testNowMs, 1).at(testNowMs+1, 2)
				good1 := ser("__name__", "good", "job", "x").at(testNowMs, 3)
				good2 := ser("__name__", "good", "job", "y").at(testNowMs, 4)
				var resp *http.Response
				if proto == "v1" {
					resp = post(t, h, contentTypeV1, marshal(t, v1Request(good1, bad, good2)))
				} else {
					resp = post(t, h, contentTypeV2, marshal(t, v2Request(good1, bad, good2)))
					if got := resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"); got != "2" {
						t.Errorf("Samples-Written = %q, want 2", got)
					}
				}
				body := wantStatus(t, resp, http.StatusBadRequest)
				wantBodyContains(t, body, tc.want, "2 samples stored, 2 rejected", "2 samples in 1 series dropped", "series #1")
				if len(body) > 2048 {
					t.Errorf("body is %d bytes, want it short", len(body))
				}
				wantStored(t, db, map[string][]sample{
					`{__name__="good", job="x"}`: {{testNowMs, 3}},
					`{__name__="good", job="y"}`: {{testNowMs, 4}},
				})
			})
		}
	}
}

func TestInvalidLabelRefsV2(t *testing.T) {
	db := newTestStorage(t)
	h := NewHandler(db, testOptions())
	req := v2Request(ser("__name__", "good").at(testNowMs, 1))
	req.Timeseries = append(req.Timeseries,
		writev2.TimeSeries{LabelsRefs: []uint32{1, 2, 3}, Samples: []writev2.Sample{{Timestamp: testNowMs, Value: 1}}},
		writev2.TimeSeries{LabelsRefs: []uint32{1, 99}, Samples: []writev2.Sample{{Timestamp: testNowMs, Value: 1}}},
		// No samples at all: the 2.0 spec requires at least one.
		writev2.TimeSeries{LabelsRefs: []uint32{1, 2}},
	)
	req.Symbols = append(req.Symbols, "x") // now "", "__name__", "good", "x"
	body := wantStatus(t, post(t, h, contentTypeV2, marshal(t, req)), http.StatusBadRequest)
	wantBodyContains(t, body, "invalid label references: 2 samples in 2 series dropped", "odd number (3) of label references", "series without samples")
	wantStored(t, db, map[string][]sample{`{__name__="good"}`: {{testNowMs, 1}}})

	// symbols[0] must be "".
	req = v2Request(ser("__name__", "good").at(testNowMs+1, 1))
	req.Symbols[0] = "oops"
	body = wantStatus(t, post(t, h, contentTypeV2, marshal(t, req)), http.StatusBadRequest)
	wantBodyContains(t, body, "symbols[0] must be the empty string")
}

func TestNativeHistogramsRejected(t *testing.T) {
	for _, proto := range []string{"v1", "v2"} {
		t.Run(proto, func(t *testing.T) {
			db := newTestStorage(t)
			h := NewHandler(db, testOptions())
			series := []tseries{
				ser("__name__", "mixed").at(testNowMs, 1).withHistograms(2),
				ser("__name__", "only_histograms").withHistograms(1),
				ser("__name__", "floats").at(testNowMs, 2),
			}
			var resp *http.Response
			if proto == "v1" {
				resp = post(t, h, contentTypeV1, marshal(t, v1Request(series...)))
			} else {
				resp = post(t, h, contentTypeV2, marshal(t, v2Request(series...)))
				if got := resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"); got != "2" {
					t.Errorf("Samples-Written = %q, want 2", got)
				}
				if got := resp.Header.Get("X-Prometheus-Remote-Write-Histograms-Written"); got != "0" {
					t.Errorf("Histograms-Written = %q, want 0", got)
				}
			}
			body := wantStatus(t, resp, http.StatusBadRequest)
			wantBodyContains(t, body, "native histograms are not supported: 3 histogram samples in 2 series dropped")
			wantStored(t, db, map[string][]sample{
				`{__name__="mixed"}`:  {{testNowMs, 1}},
				`{__name__="floats"}`: {{testNowMs, 2}},
			})
		})
	}
}

func TestTimestampLimits(t *testing.T) {
	db := newTestStorage(t)
	opts := testOptions()
	opts.MaxFutureSkew = time.Minute
	h := NewHandler(db, opts)
	maxT := testNowMs + time.Minute.Milliseconds()
	req := v1Request(
		ser("__name__", "a").at(0, 1).at(-1, 2).at(maxT, 3).at(maxT+1, 4),
		ser("__name__", "b").at(-5000, 1),
		ser("__name__", "c").at(testNowMs+time.Hour.Milliseconds(), 1).at(testNowMs, 2),
	)
	body := wantStatus(t, post(t, h, contentTypeV1, marshal(t, req)), http.StatusBadRequest)
	wantBodyContains(t, body,
		"3 samples stored, 4 rejected",
		"timestamp before 1970: 2 samples in 2 series dropped",
		"sample timestamp -1 ms is before 1970",
		"timestamp too far in the future: 2 samples in 2 series dropped",
		"is more than 1m0s in the future",
	)
	wantStored(t, db, map[string][]sample{
		`{__name__="a"}`: {{0, 1}, {maxT, 3}},
		`{__name__="c"}`: {{testNowMs, 2}},
	})
}

func TestStorageRejectsSamples(t *testing.T) {
	db := newTestStorage(t)
	h := NewHandler(db, testOptions())
	wantStatus(t, post(t, h, contentTypeV1, marshal(t, v1Request(ser("__name__", "a").at(testNowMs, 1)))), http.StatusNoContent)

	// Out of order (no out-of-order window in teststorage), a duplicate
	// timestamp with another value, then a valid sample.
	req := v1Request(
		ser("__name__", "a").at(testNowMs-1000, 1).at(testNowMs, 5).at(testNowMs+1000, 2),
		ser("__name__", "b").at(testNowMs, 1),
	)
	body := wantStatus(t, post(t, h, contentTypeV1, marshal(t, req)), http.StatusBadRequest)
	wantBodyContains(t, body, "out-of-order sample: 1 samples", "duplicate timestamp with a different value: 1 samples", "2 samples stored, 2 rejected")
	wantStored(t, db, map[string][]sample{
		`{__name__="a"}`: {{testNowMs, 1}, {testNowMs + 1000, 2}},
		`{__name__="b"}`: {{testNowMs, 1}},
	})
}

// postVersion posts series as remote write 1.0 (proto "v1") or 2.0
// ("v2"); a 2.0 response must say that written samples were written.
func postVersion(t *testing.T, h http.Handler, proto string, written int, series ...tseries) *http.Response {
	t.Helper()
	if proto == "v1" {
		return post(t, h, contentTypeV1, marshal(t, v1Request(series...)))
	}
	resp := post(t, h, contentTypeV2, marshal(t, v2Request(series...)))
	if got, want := resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"), fmt.Sprint(written); got != want {
		t.Errorf("Samples-Written = %q, want %s", got, want)
	}
	return resp
}

// seriesLimitErr is how a storage refuses a new series past its
// active-series limit: any error with a SeriesLimit method.
type seriesLimitErr struct{ limit int64 }

func (e seriesLimitErr) Error() string {
	return fmt.Sprintf("active series limit of %d reached", e.limit)
}
func (e seriesLimitErr) SeriesLimit() int64 { return e.limit }

// TestStorageSeriesLimit: a series storage refuses for its active-series
// limit is rejected whole (400, not retried), and the request's other
// series are stored and committed.
func TestStorageSeriesLimit(t *testing.T) {
	for _, proto := range []string{"v1", "v2"} {
		t.Run(proto, func(t *testing.T) {
			db := newTestStorage(t)
			rec := &recordingAppendable{Appendable: db, appendErr: fmt.Errorf("tsdb: %w", seriesLimitErr{7})}
			h := NewHandler(rec, testOptions())
			series := []tseries{
				ser("__name__", "ok").at(testNowMs, 1),
				ser("__name__", "fail").at(testNowMs, 1).at(testNowMs+1000, 2).at(testNowMs+2000, 3),
				ser("__name__", "ok2").at(testNowMs, 4),
			}
			resp := postVersion(t, h, proto, 2, series...)
			body := wantStatus(t, resp, http.StatusBadRequest)
			wantBodyContains(t, body, "2 samples stored, 3 rejected", "active series limit reached: 3 samples in 1 series dropped",
				`{__name__="fail"}`, "active series limit of 7 reached")
			if rec.commits != 1 || rec.rollbacks != 0 {
				t.Errorf("commits = %d, rollbacks = %d, want one commit", rec.commits, rec.rollbacks)
			}
			wantStored(t, db, map[string][]sample{
				`{__name__="ok"}`:  {{testNowMs, 1}},
				`{__name__="ok2"}`: {{testNowMs, 4}},
			})
		})
	}
}

// overloadError is how a storage signals overload: any error with a
// RetryAfter method.
type overloadError struct{ after time.Duration }

func (e overloadError) Error() string             { return "head is full" }
func (e overloadError) RetryAfter() time.Duration { return e.after }

func TestStorageFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		commitErr  error
		appendErr  error
		wantStatus int
		retryAfter string
		rollback   bool
	}{
		{"commit error", errors.New("disk full"), nil, http.StatusInternalServerError, "", false},
		{"commit overload", fmt.Errorf("commit: %w", overloadError{1500 * time.Millisecond}), nil, http.StatusServiceUnavailable, "2", false},
		{"commit overload zero", overloadError{0}, nil, http.StatusServiceUnavailable, "1", false},
		{"append error", nil, errors.New("series limit of the storage engine broke"), http.StatusInternalServerError, "", true},
		{"append overload", nil, overloadError{30 * time.Second}, http.StatusServiceUnavailable, "30", true},
	} {
		for _, proto := range []string{"v1", "v2"} {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				db := newTestStorage(t)
				rec := &recordingAppendable{Appendable: db, commitErr: tc.commitErr, appendErr: tc.appendErr}
				h := NewHandler(rec, testOptions())
				series := []tseries{
					ser("__name__", "ok").at(testNowMs, 1),
					ser("__name__", "fail").at(testNowMs, 1),
					ser("__name__", "bad", "x", "").at(testNowMs, 1), // also invalid: 5xx still wins
				}
				resp := postVersion(t, h, proto, 0, series...)
				body := wantStatus(t, resp, tc.wantStatus)
				wantBodyContains(t, body, "nothing was stored")
				if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
				}
				if tc.rollback != (rec.rollbacks == 1) || rec.commits+rec.rollbacks != 1 {
					t.Errorf("commits = %d, rollbacks = %d", rec.commits, rec.rollbacks)
				}
				wantStored(t, db, nil)
			})
		}
	}
}

func TestMetadataV1(t *testing.T) {
	db := newTestStorage(t)
	rec := &recordingAppendable{Appendable: db}
	h := NewHandler(rec, testOptions())
	req := v1Request(ser("__name__", "http_requests_total", "job", "api").at(testNowMs, 1))
	req.Metadata = []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests served.", Unit: "requests"},
		{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "temperature", Help: "Temperature.", Unit: "celsius"},
		{Type: prompb.MetricMetadata_SUMMARY, MetricFamilyName: ""}, // skipped: no name
	}
	wantStatus(t, post(t, h, contentTypeV1, marshal(t, req)), http.StatusNoContent)

	want := []metaCall{
		{0, `{__name__="http_requests_total"}`, metadata.Metadata{Type: model.MetricTypeCounter, Unit: "requests", Help: "Requests served."}},
		{0, `{__name__="temperature"}`, metadata.Metadata{Type: model.MetricTypeGauge, Unit: "celsius", Help: "Temperature."}},
	}
	if fmt.Sprint(rec.meta) != fmt.Sprint(want) {
		t.Errorf("UpdateMetadata calls:\n got %v\nwant %v", rec.meta, want)
	}
	if rec.appenders != 1 || rec.commits != 1 {
		t.Errorf("appenders = %d, commits = %d; want one appender per request", rec.appenders, rec.commits)
	}

	// A metadata-only request, as Prometheus sends them, succeeds even
	// though storage has no series to attach it to.
	req = &prompb.WriteRequest{Metadata: req.Metadata[1:2]}
	wantStatus(t, post(t, h, contentTypeV1, marshal(t, req)), http.StatusNoContent)
}

func TestMetadataV2(t *testing.T) {
	db := newTestStorage(t)
	rec := &recordingAppendable{Appendable: db}
	h := NewHandler(rec, testOptions())

	withMeta := ser("__name__", "http_requests_total", "job", "api").at(testNowMs, 1)
	withMeta.meta.Type = writev2.Metadata_METRIC_TYPE_COUNTER
	withMeta.help, withMeta.unit = "Requests served.", "requests"
	sameFamily := ser("__name__", "http_requests_total", "job", "web").at(testNowMs, 1)
	sameFamily.meta.Type = writev2.Metadata_METRIC_TYPE_COUNTER
	sameFamily.help, sameFamily.unit = "Requests served.", "requests"
	helpOnly := ser("__name__", "temperature").at(testNowMs, 20)
	helpOnly.help = "Temperature."
	noMeta := ser("__name__", "plain").at(testNowMs, 1)
	allRejected := ser("__name__", "future").at(testNowMs+time.Hour.Milliseconds(), 1)
	allRejected.meta.Type = writev2.Metadata_METRIC_TYPE_GAUGE

	req := v2Request(withMeta, sameFamily, helpOnly, noMeta, allRejected)
	// A help reference outside the symbols table drops only the metadata.
	badRef := writev2.TimeSeries{
		LabelsRefs: req.Timeseries[3].LabelsRefs,
		Samples:    []writev2.Sample{{Timestamp: testNowMs + 1, Value: 2}},
		Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: 1000},
	}
	req.Timeseries = append(req.Timeseries, badRef)
	resp := post(t, h, contentTypeV2, marshal(t, req))
	wantStatus(t, resp, http.StatusBadRequest) // only for the future sample

	var got []string
	for _, c := range rec.meta {
		if c.ref == 0 {
			t.Errorf("UpdateMetadata for %s without the series ref from Append", c.labels)
		}
		got = append(got, fmt.Sprintf("%s %s %q %q", c.labels, c.meta.Type, c.meta.Unit, c.meta.Help))
	}
	want := []string{
		`{__name__="http_requests_total", job="api"} counter "requests" "Requests served."`,
		`{__name__="http_requests_total", job="web"} counter "requests" "Requests served."`,
		`{__name__="temperature"} unknown "" "Temperature."`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("UpdateMetadata calls:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	wantStored(t, db, map[string][]sample{
		`{__name__="http_requests_total", job="api"}`: {{testNowMs, 1}},
		`{__name__="http_requests_total", job="web"}`: {{testNowMs, 1}},
		`{__name__="temperature"}`:                    {{testNowMs, 20}},
		`{__name__="plain"}`:                          {{testNowMs, 1}, {testNowMs + 1, 2}},
	})
}

func TestMaxSeriesPerRequest(t *testing.T) {
	for _, proto := range []string{"v1", "v2"} {
		t.Run(proto, func(t *testing.T) {
			db := newTestStorage(t)
			opts := testOptions()
			opts.MaxSeriesPerRequest = 2
			h := NewHandler(db, opts)
			series := []tseries{ser("__name__", "a").at(testNowMs, 1), ser("__name__", "b").at(testNowMs, 1)}
			ct, mk := contentTypeV1, func(ss ...tseries) []byte { return marshal(t, v1Request(ss...)) }
			if proto == "v2" {
				ct, mk = contentTypeV2, func(ss ...tseries) []byte { return marshal(t, v2Request(ss...)) }
			}
			body := wantStatus(t, post(t, h, ct, mk(append(series, ser("__name__", "c").at(testNowMs, 1))...)), http.StatusBadRequest)
			wantBodyContains(t, body, "more than 2 series", "nothing was stored")
			wantStored(t, db, nil)

			wantStatus(t, post(t, h, ct, mk(series...)), http.StatusNoContent)
			wantStored(t, db, map[string][]sample{`{__name__="a"}`: {{testNowMs, 1}}, `{__name__="b"}`: {{testNowMs, 1}}})
		})
	}
}

func TestLabelLimitsOptions(t *testing.T) {
	db := newTestStorage(t)
	h := NewHandler(db, Options{
		Now:                 func() time.Time { return testNow },
		MaxLabelsPerSeries:  2,
		MaxLabelNameLength:  8,
		MaxLabelValueLength: 5,
	})
	req := v1Request(
		ser("__name__", "ok", "a", "12345").at(testNowMs, 1),
		ser("__name__", "x", "a", "1", "b", "2").at(testNowMs, 1),
		ser("__name__", "x", "abcdefghi", "1").at(testNowMs, 1),
		ser("__name__", "x", "a", "123456").at(testNowMs, 1),
	)
	body := wantStatus(t, post(t, h, contentTypeV1, marshal(t, req)), http.StatusBadRequest)
	wantBodyContains(t, body, "too many labels", "label name too long", "label value too long")
	wantStored(t, db, map[string][]sample{`{__name__="ok", a="12345"}`: {{testNowMs, 1}}})
}

// TestOneAppenderPerRequest checks that a request is one transaction, and
// that a request with nothing valid does not open an appender at all.
func TestOneAppenderPerRequest(t *testing.T) {
	rec := &recordingAppendable{Appendable: newTestStorage(t)}
	h := NewHandler(rec, testOptions())
	var ss []tseries
	for i := range 50 {
		ss = append(ss, ser("__name__", fmt.Sprintf("m%d", i)).at(testNowMs, 1).at(testNowMs+1, 2))
	}
	wantStatus(t, post(t, h, contentTypeV1, marshal(t, v1Request(ss...))), http.StatusNoContent)
	wantStatus(t, post(t, h, contentTypeV1, marshal(t, v1Request(ser("x", "y").at(testNowMs, 1)))), http.StatusBadRequest)
	if rec.appenders != 1 || rec.commits != 1 || rec.rollbacks != 0 {
		t.Errorf("appenders = %d, commits = %d, rollbacks = %d; want 1, 1, 0", rec.appenders, rec.commits, rec.rollbacks)
	}
}

// TestStoreWithoutMiddleware covers Store reading an uncompressed body
// itself, as it does when remoteapi is configured without this package's
// decompression middleware (the fuzz targets use this path).
func TestStoreWithoutMiddleware(t *testing.T) {
	db := newTestStorage(t)
	h := newRawHandler(db)
	raw := marshal(t, v1Request(ser("__name__", "up").at(testNowMs, 1)))
	wantStatus(t, postRaw(t, h, contentTypeV1, "", raw), http.StatusNoContent)
	wantStored(t, db, map[string][]sample{`{__name__="up"}`: {{testNowMs, 1}}})
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "1", -time.Second: "1", time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", time.Minute: "60",
	} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %s, want %s", d, got, want)
		}
	}
}

var _ storage.Appendable = (*recordingAppendable)(nil)

// TestConcurrentRequests runs requests in parallel through one handler, so
// its pooled buffers are shared and reused, and checks every sample
// arrives intact. Run with -race.
func TestConcurrentRequests(t *testing.T) {
	db := newTestStorage(t)
	h := NewHandler(db, testOptions())
	const workers, requests = 4, 25
	want := map[string][]sample{}
	bodies := make([][][]byte, workers)
	cts := []string{contentTypeV1, contentTypeV2}
	for w := range workers {
		for r := range requests {
			name := fmt.Sprintf("metric_w%d_r%d", w, r)
			s := ser("__name__", name, "worker", strings.Repeat("x", w+r+1)).at(testNowMs, float64(w*1000+r))
			lbls := fmt.Sprintf(`{__name__=%q, worker=%q}`, name, strings.Repeat("x", w+r+1))
			want[lbls] = []sample{{testNowMs, float64(w*1000 + r)}}
			if w%2 == 0 {
				bodies[w] = append(bodies[w], snappyEncode(marshal(t, v1Request(s))))
			} else {
				bodies[w] = append(bodies[w], snappyEncode(marshal(t, v2Request(s))))
			}
		}
	}
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for _, body := range bodies[w] {
				req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
				req.Header.Set("Content-Type", cts[w%2])
				req.Header.Set("Content-Encoding", "snappy")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusNoContent {
					errs <- fmt.Errorf("worker %d: status %d: %s", w, rec.Code, rec.Body)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	wantStored(t, db, want)
}

// blockingAppendable holds every Commit until release is closed, telling
// entered when one is waiting.
type blockingAppendable struct {
	storage.Appendable
	entered chan struct{}
	release chan struct{}
}

func (b *blockingAppendable) Appender(ctx context.Context) storage.Appender {
	return &blockingAppender{Appender: b.Appendable.Appender(ctx), b: b}
}

type blockingAppender struct {
	storage.Appender
	b *blockingAppendable
}

func (a *blockingAppender) Commit() error {
	a.b.entered <- struct{}{}
	<-a.b.release
	return a.Appender.Commit()
}

func TestOverloadAnswers503WithRetryAfter(t *testing.T) {
	db := newTestStorage(t)
	app := &blockingAppendable{Appendable: db, entered: make(chan struct{}), release: make(chan struct{})}
	opts := testOptions()
	opts.MaxConcurrentRequests = 1
	opts.QueueTimeout = 50 * time.Millisecond
	h := NewHandler(app, opts)
	body := marshal(t, v1Request(ser("__name__", "a").at(testNowMs, 1)))

	first := make(chan *http.Response)
	go func() { first <- post(t, h, contentTypeV1, body) }()
	<-app.entered // the only turn is taken and stuck in Commit

	resp := post(t, h, contentTypeV1, body)
	msg := wantStatus(t, resp, http.StatusServiceUnavailable)
	wantBodyContains(t, msg, "overloaded")
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}

	close(app.release)
	wantStatus(t, <-first, http.StatusNoContent)
	// The turn is free again.
	go func() { <-app.entered }()
	wantStatus(t, post(t, h, contentTypeV1, body), http.StatusNoContent)
}

// TestMemoryBudget: a request reserves its compressed body and
// decodedCost of its decompressed size from the shared budget. With one
// request holding the budget, another waits QueueTimeout and gets 503
// with Retry-After; a request needing more than the whole budget gets 413;
// answered requests give their bytes back.
func TestMemoryBudget(t *testing.T) {
	db := newTestStorage(t)
	app := &blockingAppendable{Appendable: db, entered: make(chan struct{}), release: make(chan struct{})}
	raw := marshal(t, v1Request(ser("__name__", "a").at(testNowMs, 1)))
	cost := int64(len(snappyEncode(raw))) + decodedCost(len(raw))
	mem := memlimit.New(cost + 1)
	opts := testOptions()
	opts.QueueTimeout = 50 * time.Millisecond
	opts.Memory = mem
	h := NewHandler(app, opts)

	first := make(chan *http.Response)
	go func() { first <- post(t, h, contentTypeV1, raw) }()
	<-app.entered // the first request holds its bytes, stuck in Commit
	if mem.Held() != cost {
		t.Fatalf("a request in progress holds %d bytes, want %d", mem.Held(), cost)
	}
	resp := post(t, h, contentTypeV1, raw)
	msg := wantStatus(t, resp, http.StatusServiceUnavailable)
	wantBodyContains(t, msg, "overloaded", "write memory")
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
	close(app.release)
	wantStatus(t, <-first, http.StatusNoContent)

	big := marshal(t, v1Request(ser("__name__", "b").at(testNowMs, 1).at(testNowMs+1, 2).at(testNowMs+2, 3)))
	wantBodyContains(t, wantStatus(t, post(t, h, contentTypeV1, big), http.StatusRequestEntityTooLarge), "more than the limit")
	if mem.Held() != 0 {
		t.Fatalf("%d bytes held after every request was answered", mem.Held())
	}
	wantStored(t, db, map[string][]sample{`{__name__="a"}`: {{testNowMs, 1}}})
}
