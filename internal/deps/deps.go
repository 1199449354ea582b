// Package deps pins module dependencies while the packages that use them are
// being written. It is removed once every dependency has a real importer.
package deps

import (
	_ "github.com/cockroachdb/pebble/v2"
	_ "github.com/golang/snappy"
	_ "github.com/prometheus/client_golang/exp/api/remote"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/prometheus/model/labels"
	_ "github.com/prometheus/prometheus/prompb"
	_ "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	_ "github.com/prometheus/prometheus/promql"
	_ "github.com/prometheus/prometheus/promql/parser"
	_ "github.com/prometheus/prometheus/promql/promqltest"
	_ "github.com/prometheus/prometheus/storage"
	_ "github.com/prometheus/prometheus/tsdb/chunkenc"
	_ "github.com/prometheus/prometheus/util/teststorage"
	_ "gonum.org/v1/gonum/stat"
)
