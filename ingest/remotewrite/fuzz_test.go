package remotewrite

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"unicode/utf8"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
)

// FuzzWriteV1 feeds arbitrary decompressed bodies to the 1.0 receiver. It
// checks the decoder against gogo's generated Unmarshal, then sends the
// body through remoteapi's handler into Store, asserting a well-formed
// status and that storage only ever sees valid series (see
// checkingAppendable).
func FuzzWriteV1(f *testing.F) { fuzzWrite(f, remoteapi.WriteV1MessageType) }

// FuzzWriteV2 is FuzzWriteV1 for remote write 2.0.
func FuzzWriteV2(f *testing.F) { fuzzWrite(f, remoteapi.WriteV2MessageType) }

func fuzzWrite(f *testing.F, msgType remoteapi.WriteMessageType) {
	f.Add(marshal(f, v1Request(ser("__name__", "up", "job", "a").at(testNowMs, 1))))
	f.Add(marshal(f, v2Request(ser("__name__", "up", "job", "a").at(testNowMs, 1))))

	app := &checkingAppendable{}
	// One handler for the whole run, so its pooled buffers are reused
	// across inputs as in production; checkingAppendable notices if
	// anything handed to storage changes afterwards.
	h := newRawHandler(app)
	contentType := contentTypeV1
	if msgType == remoteapi.WriteV2MessageType {
		contentType = contentTypeV2
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if msgType == remoteapi.WriteV1MessageType {
			compareV1(t, body)
		} else {
			compareV2(t, body)
		}

		app.setT(t)
		defer app.setT(nil)
		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusNoContent, http.StatusBadRequest:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
		if rec.Code == http.StatusBadRequest && rec.Body.Len() == 0 {
			t.Fatal("400 without a message")
		}
	})
}

// checkingAppendable discards everything but fails the current test if it
// receives a series the receiver should have rejected, or if labels or
// metadata it received earlier have changed since, which would mean they
// alias a pooled request buffer.
type checkingAppendable struct {
	mu   sync.Mutex
	t    *testing.T
	kept []kept
}

type kept struct {
	ls           labels.Labels
	lsString     string
	help, unit   string
	helpC, unitC string
}

func (c *checkingAppendable) setT(t *testing.T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
	if t == nil {
		return
	}
	for _, k := range c.kept {
		if k.ls.String() != k.lsString || k.help != k.helpC || k.unit != k.unitC {
			t.Fatalf("data handed to storage changed after its request: %q became %q", k.lsString, k.ls.String())
		}
	}
	if len(c.kept) > 64 {
		c.kept = c.kept[:0]
	}
}

func (c *checkingAppendable) Appender(context.Context) storage.Appender {
	return &checkingAppender{c: c}
}

type checkingAppender struct {
	discardAppender
	c *checkingAppendable
}

func (a *checkingAppender) Append(ref storage.SeriesRef, ls labels.Labels, ts int64, v float64) (storage.SeriesRef, error) {
	c := a.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts < 0 || ts > testNowMs+DefaultMaxFutureSkew.Milliseconds() {
		c.t.Errorf("appended timestamp %d out of range", ts)
	}
	if ls.Len() == 0 || ls.Len() > DefaultMaxLabelsPerSeries || !ls.Has(labels.MetricName) {
		c.t.Errorf("appended invalid series %s", ls)
	}
	prev := ""
	ls.Range(func(l labels.Label) {
		if l.Name == "" || l.Value == "" || l.Name <= prev ||
			!utf8.ValidString(l.Name) || !utf8.ValidString(l.Value) ||
			len(l.Name) > DefaultMaxLabelNameLength || len(l.Value) > DefaultMaxLabelValueLength {
			c.t.Errorf("appended invalid series %q", ls.String())
		}
		prev = l.Name
	})
	c.kept = append(c.kept, kept{ls: ls, lsString: ls.String()})
	return a.discardAppender.Append(ref, ls, ts, v)
}

func (a *checkingAppender) UpdateMetadata(ref storage.SeriesRef, ls labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	c := a.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kept = append(c.kept, kept{
		ls: ls, lsString: ls.String(),
		help: m.Help, unit: m.Unit, helpC: string([]byte(m.Help)), unitC: string([]byte(m.Unit)),
	})
	return ref, nil
}
