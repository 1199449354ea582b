package opentsdb

import (
	"os"
	"strconv"
	"sync/atomic"
)

// Stats are the counters of a Server since it was created, the numbers
// behind the telnet stats command. The comment on each field is the line
// it appears as (OpenTSDB's name where OpenTSDB has the counter).
type Stats struct {
	// ConnectionsOpen is the number of telnet connections open now.
	// tsd.connectionmgr.connections type=open
	ConnectionsOpen int64
	// ConnectionsTotal counts telnet connections accepted and served.
	// tsd.connectionmgr.connections type=total
	ConnectionsTotal int64
	// ConnectionsRejected counts connections refused at MaxConnections.
	// tsd.connectionmgr.connections type=rejected
	ConnectionsRejected int64
	// IdleTimeouts counts connections closed by IdleTimeout.
	// tsd.connectionmgr.exceptions type=timeout
	IdleTimeouts int64
	// WriteErrors counts connections closed because a reply could not be
	// written within WriteTimeout, or at all.
	// tsd.connectionmgr.exceptions type=write
	WriteErrors int64

	// TelnetCommands counts telnet lines handled, of any command.
	// tsd.rpc.received type=telnet
	TelnetCommands int64
	// TelnetPuts counts telnet put lines, valid or not.
	// tsd.rpc.received type=put
	TelnetPuts int64
	// HTTPPutRequests counts /api/put requests served by the handler of
	// Server.PutHandler. tsd.rpc.received type=http_put
	HTTPPutRequests int64
	// HTTPDataPoints counts the data points in those requests, valid or
	// not. tsd.rpc.received type=http_put_datapoints
	HTTPDataPoints int64

	// DataPointsStored counts data points committed to storage.
	// tsd.datapoints.added type=all
	DataPointsStored int64
	// Commits counts successful storage commits.
	// tsd.storage.commits type=all
	Commits int64

	// InvalidValues counts data points with a number that does not parse.
	// tsd.rpc.errors type=invalid_values
	InvalidValues int64
	// IllegalArguments counts data points rejected for any other problem
	// with their content. tsd.rpc.errors type=illegal_arguments
	IllegalArguments int64
	// LinesTooLong counts telnet lines longer than MaxLineBytes.
	// tsd.rpc.errors type=lines_too_long
	LinesTooLong int64
	// UnknownCommands counts telnet lines with an unknown command.
	// tsd.rpc.errors type=unknown_commands
	UnknownCommands int64
	// StorageRejected counts data points storage refused: older than the
	// retention or the out-of-order window, or a conflicting duplicate.
	// tsd.rpc.errors type=storage_rejected
	StorageRejected int64
	// StorageErrors counts storage failures (OpenTSDB's hbase_errors):
	// each failed append that is not a rejection, and each failed commit.
	// tsd.rpc.errors type=storage_errors
	StorageErrors int64
}

// counters are the live Stats.
type counters struct {
	connsOpen, connsTotal, connsRejected atomic.Int64
	idleTimeouts, writeErrors            atomic.Int64
	telnetCommands, telnetPuts           atomic.Int64
	httpRequests, httpPoints             atomic.Int64
	stored, commits                      atomic.Int64
	invalidValues, illegalArguments      atomic.Int64
	linesTooLong, unknownCommands        atomic.Int64
	storageRejected, storageErrors       atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		ConnectionsOpen:     c.connsOpen.Load(),
		ConnectionsTotal:    c.connsTotal.Load(),
		ConnectionsRejected: c.connsRejected.Load(),
		IdleTimeouts:        c.idleTimeouts.Load(),
		WriteErrors:         c.writeErrors.Load(),
		TelnetCommands:      c.telnetCommands.Load(),
		TelnetPuts:          c.telnetPuts.Load(),
		HTTPPutRequests:     c.httpRequests.Load(),
		HTTPDataPoints:      c.httpPoints.Load(),
		DataPointsStored:    c.stored.Load(),
		Commits:             c.commits.Load(),
		InvalidValues:       c.invalidValues.Load(),
		IllegalArguments:    c.illegalArguments.Load(),
		LinesTooLong:        c.linesTooLong.Load(),
		UnknownCommands:     c.unknownCommands.Load(),
		StorageRejected:     c.storageRejected.Load(),
		StorageErrors:       c.storageErrors.Load(),
	}
}

// countParseError counts a rejected data point by its kind.
func (c *counters) countParseError(perr *ParseError) {
	if perr.InvalidValue {
		c.invalidValues.Add(1)
	} else {
		c.illegalArguments.Add(1)
	}
}

// appendStats appends the stats reply: one line per counter in OpenTSDB's
// StatsCollector format, "tsd.<name> <unix seconds> <value> <tag=value>
// host=<hostname>".
func appendStats(dst []byte, st Stats, unixSeconds int64, host string) []byte {
	line := func(name string, v int64, tag string) {
		dst = append(dst, "tsd."...)
		dst = append(dst, name...)
		dst = append(dst, ' ')
		dst = strconv.AppendInt(dst, unixSeconds, 10)
		dst = append(dst, ' ')
		dst = strconv.AppendInt(dst, v, 10)
		dst = append(dst, ' ')
		dst = append(dst, tag...)
		dst = append(dst, " host="...)
		dst = append(dst, host...)
		dst = append(dst, '\n')
	}
	line("connectionmgr.connections", st.ConnectionsOpen, "type=open")
	line("connectionmgr.connections", st.ConnectionsRejected, "type=rejected")
	line("connectionmgr.connections", st.ConnectionsTotal, "type=total")
	line("connectionmgr.exceptions", st.IdleTimeouts, "type=timeout")
	line("connectionmgr.exceptions", st.WriteErrors, "type=write")
	line("rpc.received", st.TelnetCommands, "type=telnet")
	line("rpc.received", st.TelnetPuts, "type=put")
	line("rpc.received", st.HTTPPutRequests, "type=http_put")
	line("rpc.received", st.HTTPDataPoints, "type=http_put_datapoints")
	line("rpc.errors", st.InvalidValues, "type=invalid_values")
	line("rpc.errors", st.IllegalArguments, "type=illegal_arguments")
	line("rpc.errors", st.LinesTooLong, "type=lines_too_long")
	line("rpc.errors", st.UnknownCommands, "type=unknown_commands")
	line("rpc.errors", st.StorageRejected, "type=storage_rejected")
	line("rpc.errors", st.StorageErrors, "type=storage_errors")
	line("datapoints.added", st.DataPointsStored, "type=all")
	line("storage.commits", st.Commits, "type=all")
	return dst
}

// statsHost is the host tag of stats lines, as OpenTSDB's addHostTag.
func statsHost() string {
	h, err := os.Hostname()
	if err != nil || !validName([]byte(h)) {
		return "unknown"
	}
	return h
}
