// Package remotewrite is Immune's Prometheus remote-write receiver, served
// at POST /api/v1/write. It owns the wire side of ingestion: HTTP status
// codes, snappy decompression, protobuf decoding of remote write 1.0
// (prometheus.WriteRequest) and 2.0 (io.prometheus.write.v2.Request), and
// per-series and per-sample validation. It writes only through
// storage.Appendable, one appender per request, and owns no data.
//
// Responses follow the remote write specs, which decide whether a sender
// retries:
//
//   - 204: everything was stored.
//   - 400: some or all of the data was invalid. The valid part is stored and
//     the body names what was rejected and why. Senders do not retry.
//   - 413: the body is larger than 32 MiB, compressed or not, or needs more
//     than the whole write memory budget (Options.Memory).
//   - 415: unknown Content-Type or Content-Encoding.
//   - 500: storage failed; nothing was stored and the sender retries.
//   - 503 with Retry-After: the receiver or storage is overloaded (see
//     Options.MaxConcurrentRequests, Options.Memory and NewHandler).
//
// Remote write 2.0 responses always carry the
// X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written headers.
// Native histograms and exemplars are not stored: histograms make the
// request a 400 (float samples are still stored), exemplars are dropped
// silently as Prometheus' own receiver does.
package remotewrite

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/storage"

	"github.com/immune-dev/immune/ingest/memlimit"
)

// Defaults for the zero values of Options.
const (
	// DefaultMaxFutureSkew is the default of Options.MaxFutureSkew, the
	// same margin Prometheus' own receiver allows.
	DefaultMaxFutureSkew = 10 * time.Minute
	// DefaultMaxLabelsPerSeries is the default of Options.MaxLabelsPerSeries.
	DefaultMaxLabelsPerSeries = 128
	// DefaultMaxLabelNameLength is the default of Options.MaxLabelNameLength, in bytes.
	DefaultMaxLabelNameLength = 1024
	// DefaultMaxLabelValueLength is the default of Options.MaxLabelValueLength, in bytes.
	DefaultMaxLabelValueLength = 4096
	// DefaultMaxSeriesPerRequest is the default of Options.MaxSeriesPerRequest.
	DefaultMaxSeriesPerRequest = 100_000
	// DefaultMaxConcurrentRequests is the default of Options.MaxConcurrentRequests.
	DefaultMaxConcurrentRequests = 16
	// DefaultQueueTimeout is the default of Options.QueueTimeout.
	DefaultQueueTimeout = 10 * time.Second
)

const (
	// maxBodyBytes caps the body both compressed and decompressed; it is
	// the limit of remoteapi.SnappyDecodeMiddleware, which this package's
	// pooled middleware replaces.
	maxBodyBytes = 32 << 20
	// maxPooledBytes: buffers and batches that grew beyond this after an
	// unusually large request are left to the GC instead of being pooled,
	// so one such request does not pin its memory for good.
	maxPooledBytes = 16 << 20
)

// Options configures the handler. The zero value is usable.
type Options struct {
	// Logger receives one warning per partially rejected request and
	// errors from storage. Nil discards all logs.
	Logger *slog.Logger

	// Now is the clock used to reject samples from the future. Nil means
	// time.Now.
	Now func() time.Time

	// MaxFutureSkew is how far ahead of Now a sample timestamp may be.
	// Samples beyond it are rejected (400). Zero or negative means
	// DefaultMaxFutureSkew (10m).
	MaxFutureSkew time.Duration

	// MaxLabelsPerSeries is the largest number of labels, __name__
	// included, a series may have; larger series are rejected (400). Zero
	// or negative means DefaultMaxLabelsPerSeries (128).
	MaxLabelsPerSeries int

	// MaxLabelNameLength is the longest label name accepted, in bytes.
	// Zero or negative means DefaultMaxLabelNameLength (1024).
	MaxLabelNameLength int

	// MaxLabelValueLength is the longest label value accepted, in bytes.
	// Zero or negative means DefaultMaxLabelValueLength (4096).
	MaxLabelValueLength int

	// MaxSeriesPerRequest is the largest number of series one request may
	// carry. A larger request is rejected whole (400) before anything is
	// stored. Zero or negative means DefaultMaxSeriesPerRequest (100000).
	MaxSeriesPerRequest int

	// MaxConcurrentRequests bounds the requests being read, decoded and
	// written at once, and so the memory they hold. A request beyond it
	// waits for a turn without its body being read. Zero or negative means
	// DefaultMaxConcurrentRequests (16): enough to keep the cores busy
	// while others wait for their synced commit.
	MaxConcurrentRequests int

	// QueueTimeout is how long a request waits for a turn before it is
	// answered 503 with Retry-After, which senders retry. Zero or negative
	// means DefaultQueueTimeout (10s).
	QueueTimeout time.Duration

	// Memory, if set, is the write memory budget, shared with the other
	// front ends. A request reserves its compressed body before reading
	// it and then decodedCost of its decompressed size, waiting up to
	// QueueTimeout for room; it is answered 503 with Retry-After if none
	// frees up, and 413 if it needs more than the whole budget. Nil leaves
	// MaxConcurrentRequests alone to bound the memory.
	Memory *memlimit.Limiter
}

// handler implements remoteapi's write storage interface; remoteapi
// provides the HTTP framing around it (method and content-type checks,
// response headers).
type handler struct {
	app       storage.Appendable
	logger    *slog.Logger
	now       func() time.Time
	skew      time.Duration
	lim       limits
	maxSeries int

	// turns holds one token per request being handled (admission control).
	turns        chan struct{}
	queueTimeout time.Duration
	mem          *memlimit.Limiter

	// Separate pools for the two body buffers of a request, because their
	// sizes differ by the compression ratio.
	batches        sync.Pool // *batch
	compressedBufs sync.Pool // *[]byte
	decodedBufs    sync.Pool // *[]byte
}

// NewHandler returns the remote-write receiver, to be mounted at
// POST /api/v1/write. It accepts remote write 1.0 and 2.0 and writes to app
// through one Appender per request (none if nothing in the request is
// valid), committed once.
//
// Contract with storage:
//
//   - Errors from Append that wrap storage.ErrOutOfOrderSample,
//     ErrDuplicateSampleForTimestamp, ErrTooOldSample or ErrOutOfBounds
//     reject just that sample (400); the request goes on.
//   - Any other error from Append, or an error from Commit, fails the
//     request: after Append the appender is rolled back (a failed Commit is
//     not followed by Rollback, as the Appender contract forbids using it
//     again). The reply is 500, or 503 with a Retry-After header (whole
//     seconds, rounded up, at least 1) if the error has, anywhere in its
//     chain (errors.As), a method RetryAfter() time.Duration. That method
//     is the whole overload contract; storage need not import this package.
//   - Labels passed to Append are freshly allocated and may be kept, unless
//     the appender implements storage.GetRef: then each series is first
//     looked up through a reused scratch buffer and, if known, appended
//     with the ref and labels GetRef returns, allocating nothing.
//   - 1.0 metadata entries go to UpdateMetadata(0, {__name__="<family>"}, m);
//     2.0 per-series metadata (type, help or unit set) goes to
//     UpdateMetadata(ref, series labels, m) after the series' samples, if
//     any sample was appended. Metadata errors are logged at debug level
//     and never fail a request.
func NewHandler(app storage.Appendable, opts Options) http.Handler {
	h := newHandler(app, opts)
	return remoteapi.NewWriteHandler(h,
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType},
		remoteapi.WithWriteHandlerLogger(h.logger),
		remoteapi.WithWriteHandlerMiddlewares(h.admit, h.decompress),
	)
}

func newHandler(app storage.Appendable, opts Options) *handler {
	h := &handler{
		app:       app,
		logger:    opts.Logger,
		now:       opts.Now,
		skew:      opts.MaxFutureSkew,
		maxSeries: opts.MaxSeriesPerRequest,
		lim: limits{
			maxLabels: opts.MaxLabelsPerSeries,
			maxName:   opts.MaxLabelNameLength,
			maxValue:  opts.MaxLabelValueLength,
		},
	}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.skew <= 0 {
		h.skew = DefaultMaxFutureSkew
	}
	if h.maxSeries <= 0 {
		h.maxSeries = DefaultMaxSeriesPerRequest
	}
	if h.lim.maxLabels <= 0 {
		h.lim.maxLabels = DefaultMaxLabelsPerSeries
	}
	if h.lim.maxName <= 0 {
		h.lim.maxName = DefaultMaxLabelNameLength
	}
	if h.lim.maxValue <= 0 {
		h.lim.maxValue = DefaultMaxLabelValueLength
	}
	if opts.MaxConcurrentRequests <= 0 {
		opts.MaxConcurrentRequests = DefaultMaxConcurrentRequests
	}
	h.turns = make(chan struct{}, opts.MaxConcurrentRequests)
	h.mem = opts.Memory
	h.queueTimeout = opts.QueueTimeout
	if h.queueTimeout <= 0 {
		h.queueTimeout = DefaultQueueTimeout
	}
	h.batches.New = func() any { return new(batch) }
	h.compressedBufs.New = func() any { return new([]byte) }
	h.decodedBufs.New = func() any { return new([]byte) }
	return h
}

func getBuf(p *sync.Pool) *[]byte { return p.Get().(*[]byte) }

func putBuf(p *sync.Pool, b *[]byte) {
	if cap(*b) <= maxPooledBytes {
		p.Put(b)
	}
}

func (h *handler) getBatch() *batch { return h.batches.Get().(*batch) }

func (h *handler) putBatch(b *batch) {
	if b.retainedBytes() <= maxPooledBytes {
		b.reset()
		h.batches.Put(b)
	}
}

// decodedBody is a decompressed request body in a pooled buffer. Store
// takes the bytes directly instead of copying them out through Read.
type decodedBody struct {
	data []byte
	off  int
}

func (b *decodedBody) Read(p []byte) (int, error) {
	if b.off >= len(b.data) {
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += n
	return n, nil
}

func (b *decodedBody) Close() error { return nil }

// decompress replaces remoteapi.SnappyDecodeMiddleware with the same
// checks and limits but pooled buffers: the default allocates the
// compressed and decompressed body on every request.
// admit lets at most MaxConcurrentRequests requests through at once. One
// that waits QueueTimeout without a turn, or whose client goes away, is
// answered 503 with Retry-After before its body is read.
func (h *handler) admit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case h.turns <- struct{}{}:
		default:
			timer := time.NewTimer(h.queueTimeout)
			select {
			case h.turns <- struct{}{}:
				timer.Stop()
			case <-timer.C:
				w.Header().Set("Retry-After", "1")
				http.Error(w, fmt.Sprintf("overloaded: %d remote-write requests in progress and none finished within %s; retry later",
					cap(h.turns), h.queueTimeout), http.StatusServiceUnavailable)
				return
			case <-r.Context().Done():
				timer.Stop()
				return
			}
		}
		defer func() { <-h.turns }()
		next.ServeHTTP(w, r)
	})
}

func (h *handler) decompress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Leave requests remoteapi will refuse (405, 415 for the content
		// type) to it, rather than answering 400 because their body is not
		// snappy.
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			if _, err := remoteapi.ParseProtoMsg(ct); err != nil {
				next.ServeHTTP(w, r)
				return
			}
		}
		if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != string(remoteapi.SnappyBlockCompression) {
			http.Error(w, fmt.Sprintf("Content-Encoding %q is not supported; remote write requires %q", enc, remoteapi.SnappyBlockCompression), http.StatusUnsupportedMediaType)
			return
		}

		res := h.mem.Reservation(r.Context(), h.queueTimeout)
		defer res.Release()
		// Without a Content-Length the body's size is known once it is
		// read: until then, as much as a body may take of the budget.
		compressedLen := r.ContentLength
		if compressedLen < 0 || compressedLen > maxBodyBytes {
			compressedLen = min(maxBodyBytes, h.mem.Limit())
		}
		if !reserve(w, res, compressedLen) {
			return
		}
		compressed := getBuf(&h.compressedBufs)
		defer putBuf(&h.compressedBufs, compressed)
		var err error
		*compressed, err = readBody(r.Body, (*compressed)[:0], r.ContentLength)
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, errBodyTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			http.Error(w, err.Error(), status)
			return
		}
		n, err := snappy.DecodedLen(*compressed)
		if err != nil {
			http.Error(w, "snappy: "+err.Error(), http.StatusBadRequest)
			return
		}
		if n > maxBodyBytes {
			http.Error(w, fmt.Sprintf("decompressed body is %d bytes, more than the limit of %d", n, maxBodyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		if !reserve(w, res, int64(len(*compressed))+decodedCost(n)) {
			return
		}
		decoded := getBuf(&h.decodedBufs)
		defer putBuf(&h.decodedBufs, decoded)
		if cap(*decoded) < n {
			*decoded = make([]byte, n)
		}
		out, err := snappy.Decode((*decoded)[:cap(*decoded)], *compressed)
		if err != nil {
			http.Error(w, "snappy: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = &decodedBody{data: out}
		r.Header.Del("Content-Encoding")
		// Store is synchronous and nothing it hands to storage aliases the
		// buffers (see wireString), so they can go back to the pool when
		// this returns.
		next.ServeHTTP(w, r)
	})
}

// decodedCost is the memory reserved for a body that decompresses to n
// bytes: the decompressed body and the batch decoded from it. A sample is
// 16 bytes in both, but a label of one-byte name and value, 8 bytes on
// the wire, is two 16-byte string headers in the batch: such requests hold
// about 4.9 times their body (TestDecodedCostCoversTheBatch), and slice
// growth adds some.
func decodedCost(n int) int64 { return 6 * int64(n) }

// reserve resizes res to total bytes, or answers the request and returns
// false: 413 for more than the whole budget, 503 with Retry-After when the
// bytes did not free up in time.
func reserve(w http.ResponseWriter, res *memlimit.Reservation, total int64) bool {
	err := res.Resize(total)
	if err == nil {
		return true
	}
	if _, ok := errors.AsType[*memlimit.TooLargeError](err); ok {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return false
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, err.Error(), http.StatusServiceUnavailable)
	return false
}

var errBodyTooLarge = fmt.Errorf("request body exceeds the limit of %d bytes", maxBodyBytes)

// readBody reads r into buf, failing with errBodyTooLarge past
// maxBodyBytes. sizeHint is the Content-Length, or -1.
func readBody(r io.Reader, buf []byte, sizeHint int64) ([]byte, error) {
	if sizeHint > maxBodyBytes {
		return buf, errBodyTooLarge
	}
	if sizeHint > 0 {
		buf = slices.Grow(buf, int(sizeHint)+1) // +1 to see EOF without growing
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096)
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), maxBodyBytes+1)])
		buf = buf[:len(buf)+n]
		if len(buf) > maxBodyBytes {
			return buf, errBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, fmt.Errorf("reading request body: %w", err)
		}
	}
}

// Store decodes, validates and appends one request whose body is already
// decompressed. It implements the storage interface of remoteapi's
// NewWriteHandler, which turns the returned status and error into the
// response; it is not meant to be called otherwise.
func (h *handler) Store(r *http.Request, msgType remoteapi.WriteMessageType) (*remoteapi.WriteResponse, error) {
	wr := remoteapi.NewWriteResponse()
	b := h.getBatch()
	defer h.putBatch(b)

	var body []byte
	if db, ok := r.Body.(*decodedBody); ok {
		body = db.data[db.off:]
	} else if r.Body != nil {
		var err error
		b.body, err = readBody(r.Body, b.body[:0], r.ContentLength)
		if err != nil {
			wr.SetStatusCode(http.StatusBadRequest)
			if errors.Is(err, errBodyTooLarge) {
				wr.SetStatusCode(http.StatusRequestEntityTooLarge)
			}
			return wr, err
		}
		body = b.body
	}

	var err error
	switch msgType {
	case remoteapi.WriteV1MessageType:
		err = b.decodeV1(body, h.maxSeries)
	case remoteapi.WriteV2MessageType:
		err = b.decodeV2(body, h.maxSeries)
		if err == nil && len(b.symbols) > 0 && b.symbols[0] != "" {
			err = fmt.Errorf("symbols[0] must be the empty string, got %s", quote(b.symbols[0]))
		}
	default:
		wr.SetStatusCode(http.StatusUnsupportedMediaType)
		return wr, fmt.Errorf("unsupported message type %s", msgType)
	}
	if err != nil {
		wr.SetStatusCode(http.StatusBadRequest)
		if errors.Is(err, errTooManySeries) {
			return wr, fmt.Errorf("request has more than %d series; nothing was stored, send smaller requests", h.maxSeries)
		}
		return wr, fmt.Errorf("malformed %s, nothing was stored: %w", msgType, err)
	}

	t := txn{
		h:    h,
		ctx:  r.Context(),
		b:    b,
		maxT: h.now().Add(h.skew).UnixMilli(),
	}
	if msgType == remoteapi.WriteV1MessageType {
		err = t.ingestV1()
	} else {
		err = t.ingestV2()
	}
	if err != nil {
		status := http.StatusInternalServerError
		if ra, ok := errors.AsType[retryAfterError](err); ok {
			status = http.StatusServiceUnavailable
			wr.SetExtraHeader("Retry-After", retryAfterSeconds(ra.RetryAfter()))
		}
		wr.SetStatusCode(status)
		return wr, fmt.Errorf("storage failed, nothing was stored: %w", err)
	}
	wr.Samples = t.written

	if !b.rep.empty() {
		h.logger.Warn("remote write request partially rejected",
			"protocol", string(msgType),
			"stored_samples", t.written,
			"rejected_samples", b.rep.rejectedSamples(),
			"dropped_histograms", b.rep.histSamples,
			"first", b.rep.firstExample())
		wr.SetStatusCode(http.StatusBadRequest)
		return wr, errors.New(b.rep.message(t.written))
	}
	return wr, nil
}

// retryAfterError is the overload contract with storage (see NewHandler).
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
