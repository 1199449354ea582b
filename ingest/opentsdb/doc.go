// Package opentsdb is Immune's OpenTSDB write front end: the telnet-style
// protocol on TCP (Server: put, version, help, stats, exit) and the HTTP
// endpoint POST /api/put (NewPutHandler). It owns the wire side of OpenTSDB
// ingestion: parsing lines and JSON, OpenTSDB's validation rules and reply
// texts, connection handling and batching. It writes only through
// Prometheus' storage.Appendable and owns no data. The reading side,
// OpenTSDB's /api/query and /api/suggest, lives elsewhere and must follow
// the same mapping.
//
// # Mapping
//
// An OpenTSDB series is a Prometheus series with the same identity, so
// data written by either protocol is one series:
//
//   - The metric name becomes the label __name__, unchanged: sys.cpu.user
//     stays sys.cpu.user, a UTF-8 metric name in Prometheus 3 terms, which
//     PromQL selects as {"sys.cpu.user", host="a"}. No character is
//     replaced.
//   - Each tag becomes a label of the same name and value, unchanged. The
//     tag key __name__ is therefore reserved and rejected.
//   - Timestamps become milliseconds: seconds (at most 4294967295, 10
//     digits) are multiplied by 1000, milliseconds (exactly 13 digits) are
//     kept, seconds with a fraction ("1364410924.250") keep their
//     milliseconds.
//   - Values become float64. (OpenTSDB keeps integers as longs and small
//     floats as float32; integers beyond 2^53 lose precision here.)
//
// SeriesLabels and MetricAndTags implement the rule.
//
// # Validation
//
// OpenTSDB's rules, with its error texts where it has them (see ParsePut):
// at least one tag and at most Options.MaxTags (8); names and tag values
// of a-z A-Z 0-9 - _ . / and Unicode letters; integer or decimal values,
// NaN and infinities rejected. Immune adds one rule: a point more than
// Options.MaxFutureSkew (10m) ahead of the clock is rejected, since it
// would make every later real point of its series look out of order.
// Storage may still refuse a sample (older than the retention or the
// out-of-order window); that rejects the point alone.
//
// # Bounds
//
// Telnet: lines of at most Options.MaxLineBytes (64 KiB; a longer one is
// discarded up to its newline and answered with an error), a read buffer
// of 16 KiB per connection growing to 256 KiB (or MaxLineBytes+2) while
// its client sends faster than it is served, at most
// Options.MaxConnections connections (1024), closed
// after Options.IdleTimeout (5m) without a complete line, replies written
// within Options.WriteTimeout (10s), a commit at least every
// Options.MaxBatchLines points (4096). HTTP: bodies of at most
// Options.MaxBodyBytes (32 MiB) after decompression, at most
// Options.MaxConcurrentRequests (16) requests at once.
package opentsdb
