package opentsdb

import (
	"log/slog"
	"time"

	"github.com/immune-dev/immune/ingest/memlimit"
)

// Defaults for the zero values of Options.
const (
	// DefaultMaxTags is the default of Options.MaxTags, OpenTSDB's own
	// default (tsd.storage.max_tags).
	DefaultMaxTags = 8
	// DefaultMaxFutureSkew is the default of Options.MaxFutureSkew, the
	// margin the remote-write receiver allows too.
	DefaultMaxFutureSkew = 10 * time.Minute
	// DefaultMaxLineBytes is the default of Options.MaxLineBytes.
	DefaultMaxLineBytes = 64 << 10
	// DefaultMaxConnections is the default of Options.MaxConnections.
	DefaultMaxConnections = 1024
	// DefaultIdleTimeout is the default of Options.IdleTimeout.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultWriteTimeout is the default of Options.WriteTimeout.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxBatchLines is the default of Options.MaxBatchLines.
	DefaultMaxBatchLines = 4096
	// DefaultMaxBodyBytes is the default of Options.MaxBodyBytes.
	DefaultMaxBodyBytes = 32 << 20
	// DefaultMaxConcurrentRequests is the default of
	// Options.MaxConcurrentRequests.
	DefaultMaxConcurrentRequests = 16
	// DefaultQueueTimeout is the default of Options.QueueTimeout.
	DefaultQueueTimeout = 10 * time.Second
)

// Options configures the telnet Server and the HTTP put handler. The zero
// value is usable: every zero or negative field means the default
// documented on it. Fields marked telnet or HTTP apply to that front end
// only.
type Options struct {
	// Logger receives connection and storage problems (warn), and each
	// rejected line or data point (debug). Nil discards all logs.
	Logger *slog.Logger

	// Now is the clock used to reject data points from the future and to
	// timestamp the stats reply. Nil means time.Now.
	Now func() time.Time

	// MaxFutureSkew is how far ahead of Now a data point may be. A point
	// further ahead is rejected: stored, it would make every real point of
	// its series look out of order. Zero means DefaultMaxFutureSkew (10m).
	MaxFutureSkew time.Duration

	// MaxTags is the largest number of tags a data point may have, as
	// OpenTSDB's tsd.storage.max_tags. Zero means DefaultMaxTags (8).
	MaxTags int

	// MaxLineBytes (telnet) is the longest line accepted, in bytes, without
	// its newline. A longer line is discarded up to its newline, never held
	// whole, and answered with an error; the connection stays usable. A
	// connection's read buffer is 16 KiB, growing to 256 KiB (or
	// MaxLineBytes+2 if more) while the client sends faster than it is
	// served. Zero means DefaultMaxLineBytes (64 KiB).
	MaxLineBytes int

	// MaxConnections (telnet) bounds the connections open at once, over
	// all listeners. A connection beyond it is answered with one error line
	// and closed. Zero means DefaultMaxConnections (1024).
	MaxConnections int

	// IdleTimeout (telnet) closes a connection that completes no line for
	// this long: one that sends nothing, or never sends a newline. Zero
	// means DefaultIdleTimeout (5m).
	IdleTimeout time.Duration

	// WriteTimeout (telnet) bounds each write of replies; a client that
	// does not read its replies for this long is disconnected. Zero means
	// DefaultWriteTimeout (10s).
	WriteTimeout time.Duration

	// MaxBatchLines (telnet) is how many data points a connection appends
	// before it commits, even if more input is already buffered. A
	// connection also commits whenever its buffered input is drained,
	// before it waits for more, so a commit is never held back by a quiet
	// client. Zero means DefaultMaxBatchLines (4096).
	MaxBatchLines int

	// Authenticate (telnet), if set, makes the first line of every
	// connection "auth <token>": the connection is served once
	// Authenticate accepts the token, and is answered "auth: ..." and
	// closed otherwise, with nothing of it stored. Nil serves connections
	// without credentials.
	Authenticate func(token string) error

	// Version (telnet) is Immune's version, shown by the version command.
	// Empty means the main module's version from the build information.
	Version string

	// MaxBodyBytes (HTTP) is the largest request body accepted, in bytes,
	// after decompression. A larger body is answered 413 and nothing is
	// stored. Zero means DefaultMaxBodyBytes (32 MiB).
	MaxBodyBytes int64

	// MaxConcurrentRequests (HTTP) bounds the requests being read, decoded
	// and written at once, and so the memory they hold. A request beyond
	// it waits for a turn without its body being read. Zero means
	// DefaultMaxConcurrentRequests (16).
	MaxConcurrentRequests int

	// QueueTimeout (HTTP) is how long a request waits for a turn before it
	// is answered 503 with Retry-After. Zero means DefaultQueueTimeout
	// (10s).
	QueueTimeout time.Duration

	// Memory (HTTP), if set, is the write memory budget, shared with the
	// other front ends. A request reserves putCost of its body as it reads
	// it, waiting up to QueueTimeout for room; it is answered 503 with
	// Retry-After if none frees up, and 413 if it needs more than the
	// whole budget. Nil leaves MaxConcurrentRequests and MaxBodyBytes to
	// bound the memory. Telnet connections are bounded by MaxConnections
	// and MaxLineBytes instead.
	Memory *memlimit.Limiter
}

// withDefaults returns o with every zero or negative field replaced by its
// default.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxFutureSkew <= 0 {
		o.MaxFutureSkew = DefaultMaxFutureSkew
	}
	if o.MaxTags <= 0 {
		o.MaxTags = DefaultMaxTags
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MaxBatchLines <= 0 {
		o.MaxBatchLines = DefaultMaxBatchLines
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxConcurrentRequests <= 0 {
		o.MaxConcurrentRequests = DefaultMaxConcurrentRequests
	}
	if o.QueueTimeout <= 0 {
		o.QueueTimeout = DefaultQueueTimeout
	}
	return o
}
