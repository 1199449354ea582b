package opentsdb

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
)

// FuzzParseLine checks ParsePut against refParse, a plain reading of
// OpenTSDB's rules, and that what it accepts survives a round trip through
// a line written back from the point. Seeds are in
// testdata/fuzz/FuzzParseLine.
func FuzzParseLine(f *testing.F) {
	f.Add([]byte("put sys.cpu.user 1356998400 42.5 host=webserver01 cpu=0"))
	f.Fuzz(func(t *testing.T, line []byte) {
		var p Point
		err := ParsePut(&p, line, 0)
		ref, refOK := refParse(string(line))
		if (err == nil) != refOK {
			t.Fatalf("ParsePut error %v, reference accepts: %v", err, refOK)
		}
		if err != nil {
			reply := err.Error()
			if !strings.HasPrefix(reply, "put: ") || strings.ContainsAny(reply, "\r\n") || !utf8.ValidString(reply) {
				t.Fatalf("reply is not one clean line: %q", reply)
			}
			if len(reply) > 4*maxEcho+300 {
				t.Fatalf("reply of %d bytes", len(reply))
			}
			return
		}
		got := refPoint{string(p.Metric), p.Timestamp, p.Value, tagMap(p.Tags)}
		if !got.equal(ref) {
			t.Fatalf("ParsePut %+v, reference %+v", got, ref)
		}
		// Round trip.
		var p2 Point
		if err := ParsePut(&p2, []byte(formatLine(&p)), 0); err != nil {
			t.Fatalf("written back as %q: %v", formatLine(&p), err)
		}
		if again := (refPoint{string(p2.Metric), p2.Timestamp, p2.Value, tagMap(p2.Tags)}); !again.equal(got) {
			t.Fatalf("round trip %+v, want %+v", again, got)
		}
	})
}

type refPoint struct {
	metric string
	ms     int64
	v      float64
	tags   map[string]string
}

func (a refPoint) equal(b refPoint) bool {
	if a.metric != b.metric || a.ms != b.ms || a.v != b.v || len(a.tags) != len(b.tags) {
		return false
	}
	for k, v := range a.tags {
		if b.tags[k] != v {
			return false
		}
	}
	return true
}

func tagMap(tags []Tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[string(t.Key)] = string(t.Value)
	}
	return m
}

// refParse is a slow, independent reading of the rules ParsePut documents.
func refParse(line string) (refPoint, bool) {
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	words := strings.Split(line, " ")
	if words[0] != "put" || len(words) < 5 || words[1] == "" || words[3] == "" {
		return refPoint{}, false
	}
	ms, ok := refTimestamp(words[2])
	if !ok {
		return refPoint{}, false
	}
	tags := map[string]string{}
	for _, w := range words[4:] {
		if w == "" {
			continue
		}
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" || v == "" || strings.Contains(v, "=") || k == "__name__" || !refName(k) || !refName(v) {
			return refPoint{}, false
		}
		if old, dup := tags[k]; dup && old != v {
			return refPoint{}, false
		}
		tags[k] = v
	}
	if len(tags) == 0 || len(tags) > DefaultMaxTags || !refName(words[1]) {
		return refPoint{}, false
	}
	v, ok := refValue(words[3])
	if !ok {
		return refPoint{}, false
	}
	return refPoint{words[1], ms, v, tags}, true
}

func refName(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !(r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("-_./", r)) || r >= 128 && unicode.IsLetter(r)) {
			return false
		}
	}
	return true
}

func digitsOnly(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func refLong(s string) (int64, bool) {
	digits := strings.TrimLeft(s, "+-")
	if len(s)-len(digits) > 1 || digits == "" || !digitsOnly(digits) || len(digits) > 19 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

func refTimestamp(s string) (int64, bool) {
	if sec, frac, ok := strings.Cut(s, "."); ok {
		if sec == "" || len(sec) > 10 || !digitsOnly(sec) || !digitsOnly(frac) {
			return 0, false
		}
		n, _ := strconv.ParseInt(sec, 10, 64)
		frac = (frac + "000")[:3]
		f, _ := strconv.ParseInt(frac, 10, 64)
		ms := n*1000 + f
		return ms, n <= math.MaxUint32 && ms > 0
	}
	n, ok := refLong(s)
	switch {
	case !ok || n <= 0:
		return 0, false
	case n <= math.MaxUint32:
		return n * 1000, true
	}
	return n, n >= 1e12 && n <= 9999999999999
}

func refValue(s string) (float64, bool) {
	if !strings.ContainsAny(s, ".eE") {
		n, ok := refLong(s)
		return float64(n), ok
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789.eE+-", c) {
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil && !strings.Contains(err.Error(), "out of range") {
		return 0, false
	}
	return v, !math.IsInf(v, 0) && !math.IsNaN(v)
}

// formatLine writes p back as a put line.
func formatLine(p *Point) string {
	var b strings.Builder
	fmt.Fprintf(&b, "put %s %s %s", p.Metric, formatTimestamp(p.Timestamp), strconv.FormatFloat(p.Value, 'g', -1, 64))
	for _, t := range p.Tags {
		fmt.Fprintf(&b, " %s=%s", t.Key, t.Value)
	}
	return b.String()
}

// formatTimestamp writes ms as seconds, milliseconds or seconds with a
// fraction, whichever the rules accept.
func formatTimestamp(ms int64) string {
	switch {
	case ms >= minMillis:
		return strconv.FormatInt(ms, 10)
	case ms%1000 == 0:
		return strconv.FormatInt(ms/1000, 10)
	}
	return fmt.Sprintf("%d.%03d", ms/1000, ms%1000)
}

// FuzzPut feeds arbitrary bodies to the /api/put handler with ?details. It
// checks that the decoder accepts exactly what encoding/json accepts (of
// the right shape), that every point is either stored or reported, that
// storage only sees valid series whose labels do not alias the request,
// and that each stored point, written back as JSON, is stored again the
// same. Seeds are in testdata/fuzz/FuzzPut.
func FuzzPut(f *testing.F) {
	f.Add([]byte(`{"metric":"sys.cpu.nice","timestamp":1767225600,"value":18,"tags":{"host":"web01","dc":"lga"}}`))
	app := &recordingAppendable{}
	h := newPutHandler(app, testOptions().withDefaults(), &counters{})
	f.Fuzz(func(t *testing.T, body []byte) {
		app.begin(t)
		code, resp := fuzzPost(t, h, body)
		stored := app.take()

		points, shapeOK := jsonShape(body)
		if !json.Valid([]byte(resp)) {
			t.Fatalf("response is not JSON: %s", resp)
		}
		if !shapeOK || points == 0 {
			if code != http.StatusBadRequest || !strings.HasPrefix(resp, `{"error":{"code":400,`) {
				t.Fatalf("body valid=%v points=%d: got %d %s", shapeOK, points, code, resp)
			}
			if len(stored) != 0 {
				t.Fatalf("stored %d points from a rejected body", len(stored))
			}
			return
		}
		var sum struct {
			Success, Failed int
			Errors          []json.RawMessage
		}
		if err := json.Unmarshal([]byte(resp), &sum); err != nil {
			t.Fatal(err)
		}
		if code != http.StatusOK && code != http.StatusBadRequest || (code == http.StatusOK) != (sum.Failed == 0) {
			t.Fatalf("status %d for %s", code, resp)
		}
		if sum.Success+sum.Failed != points || len(sum.Errors) != sum.Failed || sum.Success != len(stored) {
			t.Fatalf("%d points in the body, %d stored, response %s", points, len(stored), resp)
		}
		for _, s := range stored {
			metric, tags := MetricAndTags(s.ls)
			again := map[string]any{"metric": metric, "timestamp": json.Number(formatTimestamp(s.t)),
				"value": json.Number(strconv.FormatFloat(s.v, 'g', -1, 64)), "tags": tags}
			b, err := json.Marshal(again)
			if err != nil {
				t.Fatal(err)
			}
			app.begin(t)
			code, resp := fuzzPost(t, h, b)
			re := app.take()
			if code != http.StatusOK || len(re) != 1 || !labels.Equal(re[0].ls, s.ls) || re[0].t != s.t || re[0].v != s.v {
				t.Fatalf("stored %v %d %v; written back as %s: %d %s, stored %v", s.ls, s.t, s.v, b, code, resp, re)
			}
		}
	})
}

func fuzzPost(t *testing.T, h http.Handler, body []byte) (int, string) {
	req := httptest.NewRequest(http.MethodPost, "/api/put?details", bytes.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// jsonShape reports whether body is valid JSON holding an object or an
// array of objects, and how many data points that is.
func jsonShape(body []byte) (int, bool) {
	if !json.Valid(body) {
		return 0, false
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return 1, true
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(body, &arr); err != nil {
		return 0, false
	}
	for _, el := range arr {
		if el = bytes.TrimLeft(el, " \t\r\n"); len(el) == 0 || el[0] != '{' {
			return 0, false
		}
	}
	return len(arr), true
}

// recordingAppendable keeps the samples committed during one fuzz input
// and fails the input if storage is handed an invalid series, or if labels
// it kept from earlier inputs changed since (they would alias a reused
// request buffer).
type recordingAppendable struct {
	mu        sync.Mutex
	t         *testing.T
	committed []recorded
	kept      []recorded
}

type recorded struct {
	ls       labels.Labels
	lsString string
	t        int64
	v        float64
}

func (r *recordingAppendable) begin(t *testing.T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t = t
	for _, k := range r.kept {
		if k.ls.String() != k.lsString {
			t.Fatalf("labels handed to storage changed after their request: %q became %q", k.lsString, k.ls.String())
		}
	}
	if len(r.kept) > 256 {
		r.kept = r.kept[:0]
	}
}

func (r *recordingAppendable) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.committed
	r.committed = nil
	return c
}

func (r *recordingAppendable) Appender(context.Context) storage.Appender {
	return &recordingAppender{r: r}
}

type recordingAppender struct {
	r       *recordingAppendable
	pending []recorded
}

func (a *recordingAppender) Append(ref storage.SeriesRef, ls labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	r := a.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if math.IsNaN(v) || math.IsInf(v, 0) || t <= 0 || t > testNow.Add(DefaultMaxFutureSkew).UnixMilli() {
		r.t.Errorf("appended %v at %d", v, t)
	}
	n := 0
	prev := ""
	ls.Range(func(l labels.Label) {
		n++
		if l.Name <= prev || l.Value == "" || (l.Name != labels.MetricName && !validName([]byte(l.Name))) || !validName([]byte(l.Value)) {
			r.t.Errorf("appended invalid series %q", ls.String())
		}
		prev = l.Name
	})
	if !ls.Has(labels.MetricName) || n < 2 || n > DefaultMaxTags+1 {
		r.t.Errorf("appended invalid series %q", ls.String())
	}
	rec := recorded{ls: ls, lsString: ls.String(), t: t, v: v}
	a.pending = append(a.pending, rec)
	r.kept = append(r.kept, rec)
	return 1, nil
}

func (a *recordingAppender) Commit() error {
	a.r.mu.Lock()
	defer a.r.mu.Unlock()
	a.r.committed = append(a.r.committed, a.pending...)
	return nil
}

func (a *recordingAppender) Rollback() error                   { return nil }
func (a *recordingAppender) SetOptions(*storage.AppendOptions) {}
func (a *recordingAppender) AppendExemplar(ref storage.SeriesRef, _ labels.Labels, _ exemplar.Exemplar) (storage.SeriesRef, error) {
	return ref, nil
}
func (a *recordingAppender) AppendHistogram(ref storage.SeriesRef, _ labels.Labels, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, nil
}
func (a *recordingAppender) AppendHistogramSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, nil
}
func (a *recordingAppender) UpdateMetadata(ref storage.SeriesRef, _ labels.Labels, _ metadata.Metadata) (storage.SeriesRef, error) {
	return ref, nil
}
func (a *recordingAppender) AppendSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64) (storage.SeriesRef, error) {
	return ref, nil
}
