package opentsdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-dev/immune/ingest/memlimit"
	"github.com/immune-dev/immune/internal/jsonquote"
)

// maxPooledBytes: request buffers that grew beyond this are left to the GC
// instead of being pooled, so one unusually large request does not pin
// its memory for good.
const maxPooledBytes = 16 << 20

// NewPutHandler returns OpenTSDB's HTTP put endpoint, to be mounted at
// /api/put. It writes to app through one appender per request, committed
// once before the reply; storage's commit is durable, so ?sync changes
// nothing and is accepted, as is sync_timeout (milliseconds).
//
// Request: POST, a JSON body holding one data point object or an array of
// them, {"metric": "sys.cpu.user", "timestamp": 1356998400, "value": 42.5,
// "tags": {"host": "web01"}}, optionally with Content-Encoding gzip or
// deflate. The timestamp is a number or a numeric string, seconds or
// milliseconds as in ParsePut; the value a number or a numeric string;
// tag values may be numbers or booleans too. Members other than these four
// are ignored.
//
// Each data point is validated and stored on its own: bad points are
// reported and the good ones around them are kept. Per-point errors use
// OpenTSDB's words: "Metric name was empty", "Invalid timestamp", "Empty
// value", "Missing tags", "Unable to parse value to a number", and the
// messages of ParsePut for the rest.
//
// Responses, as OpenTSDB's:
//
//   - 204, empty: every point was stored, and neither ?summary nor
//     ?details was given.
//   - 400 {"error":{"code":400,"message":"One or more data points had
//     errors","details":"Please see the TSD logs or append \"details\" to
//     the put request"}}: some point failed, without those flags.
//   - 200 or, if some point failed, 400 {"success":S,"failed":F} with
//     ?summary; with ?details (which wins) also "errors":[{"datapoint":
//     {...},"error":"..."}]. With sync_timeout, also "timeouts":0.
//   - 400 {"error":{...}}: the body is empty, is not JSON of that shape
//     ("Unable to parse the given JSON"; nothing is stored), or holds no
//     data point ("No datapoints found in content").
//   - 405 for a method other than POST, 413 for a body larger than
//     MaxBodyBytes after decompression or needing more than the whole
//     write memory budget (Options.Memory), 415 for another
//     Content-Encoding.
//   - 500 if storage failed (nothing of the request was stored; clients
//     retry), or 503 with Retry-After if the storage error has a method
//     RetryAfter() time.Duration, or if MaxConcurrentRequests requests were
//     busy, or the write memory budget full, for QueueTimeout.
func NewPutHandler(app storage.Appendable, opts Options) http.Handler {
	return newPutHandler(app, opts.withDefaults(), &counters{})
}

type putHandler struct {
	app   storage.Appendable
	opts  Options
	stats *counters
	turns chan struct{} // one token per request being handled
	pool  sync.Pool     // *putState
}

// putState is the reusable memory of one request.
type putState struct {
	body  []byte
	dec   jsonDecoder
	fails []putFailure
	out   []byte
	gz    *gzip.Reader
}

// putFailure is a data point that was not stored.
type putFailure struct {
	point int // index in dec.points
	msg   string
}

func newPutHandler(app storage.Appendable, opts Options, stats *counters) *putHandler {
	h := &putHandler{
		app:   app,
		opts:  opts,
		stats: stats,
		turns: make(chan struct{}, opts.MaxConcurrentRequests),
	}
	h.pool.New = func() any { return new(putState) }
	return h
}

func (h *putHandler) getState() *putState { return h.pool.Get().(*putState) }

func (h *putHandler) releaseState(st *putState) {
	retained := cap(st.body) + cap(st.dec.arena) + cap(st.out) +
		cap(st.dec.points)*int(unsafe.Sizeof(jsonPoint{})) + cap(st.dec.tags)*int(unsafe.Sizeof(Tag{}))
	if retained > maxPooledBytes {
		return
	}
	clear(st.fails) // drop references to messages
	st.fails = st.fails[:0]
	h.pool.Put(st)
}

const (
	msgDetailsHint = `Please see the TSD logs or append "details" to the put request`
	msgBadJSON     = "Unable to parse the given JSON"
)

func (h *putHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "Method not allowed",
			fmt.Sprintf("The HTTP method [%s] is not permitted for this endpoint", r.Method))
		return
	}
	q := r.URL.Query()
	details, summary := q.Has("details"), q.Has("summary")
	syncTimeout := false
	if q.Has("sync_timeout") {
		ms, err := strconv.Atoi(q.Get("sync_timeout"))
		if err != nil || ms < 0 {
			writeError(w, http.StatusBadRequest, "Invalid sync_timeout", "sync_timeout must be a number of milliseconds, 0 or more")
			return
		}
		syncTimeout = ms > 0
	}

	if !h.admit(w, r) {
		return
	}
	defer func() { <-h.turns }()
	h.stats.httpRequests.Add(1)

	res := h.opts.Memory.Reservation(r.Context(), h.opts.QueueTimeout)
	defer res.Release()
	st := h.getState()
	defer h.releaseState(st)
	if status, msg, detail := h.readBody(st, r, res); status != 0 {
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, status, msg, detail)
		return
	}
	st.dec.maxTags = h.opts.MaxTags
	if err := st.dec.decode(st.body); err != nil {
		h.stats.illegalArguments.Add(1)
		if errors.Is(err, errNoContent) {
			writeError(w, http.StatusBadRequest, "Missing request content", "Supply valid JSON formatted data in the body of your request")
		} else {
			writeError(w, http.StatusBadRequest, msgBadJSON, err.Error())
		}
		return
	}
	points := st.dec.points
	if len(points) == 0 {
		writeError(w, http.StatusBadRequest, "No datapoints found in content", "")
		return
	}
	h.stats.httpPoints.Add(int64(len(points)))

	stored, failed, err := h.store(r.Context(), st, details)
	if err != nil {
		h.opts.Logger.Error("opentsdb put: storage failed, nothing was stored", "data_points", len(points), "err", err)
		status := http.StatusInternalServerError
		if ra, ok := errors.AsType[retryAfterError](err); ok {
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", retryAfterSeconds(ra.RetryAfter()))
		}
		writeError(w, status, "Storage error, nothing was stored", err.Error())
		return
	}
	if failed > 0 {
		h.opts.Logger.Warn("opentsdb put: data points rejected", "stored", stored, "rejected", failed, "first", st.firstFailure())
	}

	if !details && !summary {
		if failed == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeError(w, http.StatusBadRequest, "One or more data points had errors", msgDetailsHint)
		return
	}
	out := append(st.out[:0], `{"success":`...)
	out = strconv.AppendInt(out, int64(stored), 10)
	out = append(out, `,"failed":`...)
	out = strconv.AppendInt(out, int64(failed), 10)
	if syncTimeout {
		out = append(out, `,"timeouts":0`...)
	}
	if details {
		out = append(out, `,"errors":[`...)
		for i, f := range st.fails {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, `{"datapoint":`...)
			out = st.dec.appendPoint(out, &points[f.point])
			out = append(out, `,"error":`...)
			out = jsonquote.Append(out, []byte(f.msg))
			out = append(out, '}')
		}
		out = append(out, ']')
	}
	out = append(out, "}\n"...)
	st.out = out
	status := http.StatusOK
	if failed > 0 {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, out)
}

// store validates and appends every decoded point through one appender,
// committed once. With details it records each failure's message. A
// non-nil error is a storage failure: then nothing was stored.
func (h *putHandler) store(ctx context.Context, st *putState, details bool) (stored, failed int, err error) {
	b := newBatch(ctx, h.app, &h.opts)
	points, tags := st.dec.points, st.dec.tags
	for i := range points {
		p := &points[i]
		metric, ts, v, perr := checkJSONPoint(p, tags[p.tagStart:p.tagEnd], h.opts.MaxTags)
		if perr == nil {
			ae := b.append(metric, tags[p.tagStart:p.tagEnd], ts, v)
			if ae == nil {
				continue
			}
			if !ae.rejected {
				h.stats.storageErrors.Add(1)
				if rerr := b.rollback(); rerr != nil {
					h.opts.Logger.Error("opentsdb put: rolling back", "err", rerr)
				}
				return 0, 0, ae
			}
			h.stats.storageRejected.Add(1)
			perr = &ParseError{Msg: ae.msg}
		} else {
			h.stats.countParseError(perr)
		}
		failed++
		if details || len(st.fails) == 0 {
			st.fails = append(st.fails, putFailure{point: i, msg: perr.Msg})
		}
	}
	n, err := b.commit()
	if err != nil {
		h.stats.storageErrors.Add(1)
		return 0, 0, err
	}
	if n > 0 {
		h.stats.stored.Add(int64(n))
		h.stats.commits.Add(1)
	}
	return n, failed, nil
}

func (st *putState) firstFailure() string {
	if len(st.fails) == 0 {
		return ""
	}
	f := st.fails[0]
	return string(st.dec.appendPoint(nil, &st.dec.points[f.point])) + ": " + f.msg
}

// checkJSONPoint validates one decoded point in OpenTSDB's order
// (IncomingDataPoint.validate, then TSDB.addPoint).
func checkJSONPoint(p *jsonPoint, tags []Tag, maxTags int) (metric []byte, ts int64, v float64, perr *ParseError) {
	switch p.metric.kind {
	case jsonString, jsonNumber, jsonBool:
		metric = p.metric.text
	case jsonObject, jsonArray:
		return nil, 0, 0, &ParseError{Msg: "Metric name must be a string"}
	}
	if len(metric) == 0 {
		return nil, 0, 0, &ParseError{Msg: "Metric name was empty"}
	}
	var rangeErr *ParseError
	switch p.ts.kind {
	case jsonNumber, jsonString:
		var tsErr *ParseError
		if ts, rangeErr, tsErr = parseTimestamp(p.ts.text); tsErr == nil {
			break
		}
		fallthrough
	default:
		return nil, 0, 0, &ParseError{Msg: "Invalid timestamp"}
	}
	switch p.value.kind {
	case jsonMissing, jsonNull:
		return nil, 0, 0, &ParseError{Msg: "Empty value"}
	case jsonString:
		if len(p.value.text) == 0 {
			return nil, 0, 0, &ParseError{Msg: "Empty value"}
		}
	}
	if p.tags != jsonObject || len(tags)+p.extraTags == 0 && p.badTag == nil {
		return nil, 0, 0, &ParseError{Msg: "Missing tags"}
	}
	if p.badTag != nil {
		what := "null"
		if p.badTagKind != jsonNull {
			what = "not a string"
		}
		return nil, 0, 0, &ParseError{Msg: fmt.Sprintf("Invalid tag value for %s: %s", safe(p.badTag), what)}
	}
	if p.value.kind == jsonObject || p.value.kind == jsonArray {
		return nil, 0, 0, &ParseError{InvalidValue: true, Msg: "Unable to parse value to a number"}
	}
	v, verr := parseValue(p.value.text)
	if verr != nil {
		return nil, 0, 0, &ParseError{InvalidValue: true, Msg: "Unable to parse value to a number"}
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, 0, 0, illegal("value is NaN or Infinite: %s for metric=%s timestamp=%s", javaFloat(v), safe(metric), safe(p.ts.text))
	}
	if rangeErr != nil {
		return nil, 0, 0, rangeErr
	}
	if perr := checkSeries(metric, tags, p.extraTags, maxTags, true); perr != nil {
		return nil, 0, 0, perr
	}
	return metric, ts, v, nil
}

// appendPoint appends p as OpenTSDB echoes a data point in details:
// {"metric":...,"timestamp":...,"value":"...","tags":{...}}, the value a
// string as OpenTSDB holds it.
func (d *jsonDecoder) appendPoint(dst []byte, p *jsonPoint) []byte {
	dst = append(dst, `{"metric":`...)
	dst = appendScalar(dst, p.metric)
	dst = append(dst, `,"timestamp":`...)
	if p.ts.kind == jsonNumber {
		dst = append(dst, p.ts.text...)
	} else if p.ts.kind == jsonString {
		dst = jsonquote.Append(dst, p.ts.text)
	} else {
		dst = append(dst, '0')
	}
	dst = append(dst, `,"value":`...)
	dst = appendScalar(dst, p.value)
	dst = append(dst, `,"tags":`...)
	if p.tags != jsonObject {
		return append(dst, "null}"...)
	}
	dst = append(dst, '{')
	for i, t := range d.tags[p.tagStart:p.tagEnd] {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonquote.Append(dst, t.Key)
		dst = append(dst, ':')
		dst = jsonquote.Append(dst, t.Value)
	}
	return append(dst, "}}"...)
}

func appendScalar(dst []byte, s jsonScalar) []byte {
	switch s.kind {
	case jsonString, jsonNumber, jsonBool:
		return jsonquote.Append(dst, s.text)
	}
	return append(dst, "null"...)
}

// admit waits for one of MaxConcurrentRequests turns. It answers 503 and
// reports false if none frees up within QueueTimeout, or nothing if the
// client went away.
func (h *putHandler) admit(w http.ResponseWriter, r *http.Request) bool {
	select {
	case h.turns <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(h.opts.QueueTimeout)
	defer t.Stop()
	select {
	case h.turns <- struct{}{}:
		return true
	case <-t.C:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "Overloaded",
			fmt.Sprintf("%d put requests are in progress and none finished within %s; retry later", cap(h.turns), h.opts.QueueTimeout))
		return false
	case <-r.Context().Done():
		return false
	}
}

// readStep is how much more body is read, and reserved, at a time when
// its length is not known ahead.
const readStep = 256 << 10

// putCost is the write memory reserved for n bytes of body: the body and
// the points decoded from it. A point is about 200 bytes of structs and
// 56 bytes of JSON at the least: bodies of such points hold about 5.5
// times their size (TestPutCostCoversTheDecodedPoints).
func putCost(n int64) int64 { return 6 * n }

// readBody reads and decompresses the body into st.body, growing res with
// it. A non-zero status is the error to answer.
func (h *putHandler) readBody(st *putState, r *http.Request, res *memlimit.Reservation) (status int, msg, detail string) {
	limit := h.opts.MaxBodyBytes
	var body io.Reader = r.Body
	hint := int64(-1)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		if r.ContentLength > limit {
			return http.StatusRequestEntityTooLarge, "Request body too large", fmt.Sprintf("The body is larger than %d bytes", limit)
		}
		hint = r.ContentLength
	case "gzip", "x-gzip":
		if st.gz == nil {
			st.gz = new(gzip.Reader)
		}
		if err := st.gz.Reset(r.Body); err != nil {
			return http.StatusBadRequest, "Unable to decompress the request body", err.Error()
		}
		defer st.gz.Close()
		body = st.gz
	case "deflate":
		zr, err := zlib.NewReader(r.Body)
		if err != nil {
			return http.StatusBadRequest, "Unable to decompress the request body", err.Error()
		}
		defer zr.Close()
		body = zr
	default:
		return http.StatusUnsupportedMediaType, "Unsupported Content-Encoding",
			fmt.Sprintf("Content-Encoding %q is not supported; use gzip, deflate or none", enc)
	}
	buf := st.body[:0]
	if hint > 0 {
		buf = slices.Grow(buf, int(hint)+1) // +1 to see EOF without growing
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 16<<10)
		}
		// Reserved as the body grows, a step at a time: a compressed
		// body's size is known only once it is read, and a pooled buffer's
		// capacity says nothing of this body.
		end := min(int64(cap(buf)), limit+1, int64(len(buf))+max(hint+1, readStep))
		if err := res.Resize(putCost(end)); err != nil {
			st.body = buf[:0]
			return memoryRefusal(err)
		}
		n, err := body.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			st.body = buf[:0]
			return http.StatusRequestEntityTooLarge, "Request body too large", fmt.Sprintf("The body is larger than %d bytes after decompression", limit)
		}
		if err == io.EOF {
			st.body = buf
			return 0, "", ""
		}
		if err != nil {
			st.body = buf[:0]
			if errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
				return http.StatusBadRequest, "Unable to decompress the request body", err.Error()
			}
			return http.StatusBadRequest, "Unable to read the request body", err.Error()
		}
	}
}

// writeError answers OpenTSDB's error shape,
// {"error":{"code":N,"message":"...","details":"..."}}.
func writeError(w http.ResponseWriter, status int, msg, detail string) {
	out := make([]byte, 0, 128+len(msg)+len(detail))
	out = append(out, `{"error":{"code":`...)
	out = strconv.AppendInt(out, int64(status), 10)
	out = append(out, `,"message":`...)
	out = jsonquote.Append(out, []byte(msg))
	if detail != "" {
		out = append(out, `,"details":`...)
		out = jsonquote.Append(out, []byte(detail))
	}
	out = append(out, "}}\n"...)
	writeJSON(w, status, out)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// memoryRefusal is the answer to a failed write memory reservation: 413
// for a body needing more than the whole budget, 503 (with Retry-After)
// when the budget did not free up in time.
func memoryRefusal(err error) (status int, msg, detail string) {
	if _, ok := errors.AsType[*memlimit.TooLargeError](err); ok {
		return http.StatusRequestEntityTooLarge, "Request body too large", err.Error()
	}
	return http.StatusServiceUnavailable, "Overloaded", err.Error()
}

// retryAfterError is the overload contract with storage, the same as the
// remote-write receiver's: an error with a RetryAfter method anywhere in
// its chain answers 503 with Retry-After.
type retryAfterError interface {
	error
	RetryAfter() time.Duration
}

// retryAfterSeconds renders d for a Retry-After header: whole seconds,
// rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	return strconv.FormatInt(max(s, 1), 10)
}
