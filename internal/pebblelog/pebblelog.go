// Package pebblelog adapts Pebble's logger interface to log/slog, for every
// package that opens a Pebble database.
package pebblelog

import (
	"fmt"
	"log/slog"
	"os"
)

// Logger sends Pebble's informational lines to slog at debug level and its
// errors at error level. A nil L discards everything.
type Logger struct{ L *slog.Logger }

func (p Logger) logger() *slog.Logger {
	if p.L == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.L
}

// Infof logs at debug level: Pebble reports every flush and compaction.
func (p Logger) Infof(format string, args ...any) {
	p.logger().Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

// Errorf logs at error level.
func (p Logger) Errorf(format string, args ...any) {
	p.logger().Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf logs at error level and exits: Pebble calls it only when it cannot
// go on safely.
func (p Logger) Fatalf(format string, args ...any) {
	p.logger().Error(fmt.Sprintf(format, args...), "component", "pebble")
	os.Exit(1)
}
