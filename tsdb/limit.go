package tsdb

import "fmt"

// SeriesLimitError refuses a sample because its series is not in the head
// and the head already holds Options.MaxActiveSeries series. Samples of
// series in the head are still taken, and new series are taken again as
// idle ones leave the head at checkpoints. Front ends treat it as the
// sample's fault, not the request's: they reject the series and store the
// rest.
type SeriesLimitError struct {
	Limit int64
}

func (e *SeriesLimitError) Error() string {
	return fmt.Sprintf("active series limit of %d reached (--max-active-series): samples of new series are refused until idle series leave the head", e.Limit)
}

// SeriesLimit returns the limit that was reached. Front ends recognise the
// error by this method, without importing this package.
func (e *SeriesLimitError) SeriesLimit() int64 { return e.Limit }
