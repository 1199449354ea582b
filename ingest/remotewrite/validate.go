package remotewrite

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// reason is why a series or a sample was rejected.
type reason uint8

const (
	reasonNone reason = iota
	// Series-level: the whole series is dropped.
	reasonNoLabels
	reasonTooManyLabels
	reasonEmptyName
	reasonNameTooLong
	reasonEmptyValue
	reasonValueTooLong
	reasonInvalidUTF8
	reasonDuplicateName
	reasonUnsorted
	reasonNoMetricName
	reasonBadLabelRefs
	reasonNoSamples
	// Sample-level: only the sample is dropped.
	reasonNegativeTimestamp
	reasonFutureTimestamp
	reasonOutOfOrder
	reasonDuplicateTimestamp
	reasonTooOld
	reasonOutOfBounds
	// The store's active-series limit: the rest of the series is dropped.
	reasonSeriesLimit
	numReasons
)

func (r reason) String() string {
	switch r {
	case reasonNoLabels:
		return "series without labels"
	case reasonTooManyLabels:
		return "too many labels"
	case reasonEmptyName:
		return "empty label name"
	case reasonNameTooLong:
		return "label name too long"
	case reasonEmptyValue:
		return "empty label value"
	case reasonValueTooLong:
		return "label value too long"
	case reasonInvalidUTF8:
		return "label not valid UTF-8"
	case reasonDuplicateName:
		return "duplicate label name"
	case reasonUnsorted:
		return "labels not sorted by name"
	case reasonNoMetricName:
		return "missing __name__ label"
	case reasonBadLabelRefs:
		return "invalid label references"
	case reasonNoSamples:
		return "series without samples"
	case reasonNegativeTimestamp:
		return "timestamp before 1970"
	case reasonFutureTimestamp:
		return "timestamp too far in the future"
	case reasonOutOfOrder:
		return "out-of-order sample"
	case reasonDuplicateTimestamp:
		return "duplicate timestamp with a different value"
	case reasonTooOld:
		return "sample too old"
	case reasonOutOfBounds:
		return "sample out of bounds"
	case reasonSeriesLimit:
		return "active series limit reached"
	}
	return "none"
}

// storageReason classifies an error from Appender.Append. Errors it does
// not know are not about the sample and fail the whole request with 5xx.
func storageReason(err error) reason {
	switch {
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return reasonOutOfOrder
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return reasonDuplicateTimestamp
	case errors.Is(err, storage.ErrTooOldSample):
		return reasonTooOld
	case errors.Is(err, storage.ErrOutOfBounds):
		return reasonOutOfBounds
	}
	if _, ok := errors.AsType[seriesLimitError](err); ok {
		return reasonSeriesLimit
	}
	return reasonNone
}

// seriesLimitError is the cardinality contract with storage: an error
// with, anywhere in its chain, a method SeriesLimit() int64 refuses a
// series new to storage because too many are active. It rejects that
// series (400), not the request: senders must not retry what will be
// refused again, and the request's other series are stored.
type seriesLimitError interface {
	error
	SeriesLimit() int64
}

// limits are the per-series label limits, already defaulted.
type limits struct {
	maxLabels, maxName, maxValue int
}

// check returns the first problem with a series' labels and the index of
// the label at fault, or reasonNone. It never allocates: it runs for every
// series of every request.
func (lim *limits) check(ls []wireLabel) (reason, int) {
	if len(ls) == 0 {
		return reasonNoLabels, -1
	}
	if len(ls) > lim.maxLabels {
		return reasonTooManyLabels, -1
	}
	hasName := false
	for i, l := range ls {
		switch {
		case l.name == "":
			return reasonEmptyName, i
		case len(l.name) > lim.maxName:
			return reasonNameTooLong, i
		// Prometheus treats an empty value as an absent label, so storing
		// one would make the series unreadable by its own labels.
		case l.value == "":
			return reasonEmptyValue, i
		case len(l.value) > lim.maxValue:
			return reasonValueTooLong, i
		case !validUTF8(l.name) || !validUTF8(l.value):
			return reasonInvalidUTF8, i
		}
		if i > 0 {
			// The spec requires sorted labels; storage relies on it for
			// equality and hashing, so sorting here would hide a sender bug.
			if prev := ls[i-1].name; l.name == prev {
				return reasonDuplicateName, i
			} else if l.name < prev {
				return reasonUnsorted, i
			}
		}
		if l.name == labels.MetricName {
			hasName = true
		}
	}
	if !hasName {
		return reasonNoMetricName, -1
	}
	return reasonNone, -1
}

// validUTF8 is utf8.ValidString with a faster path for ASCII, which label
// names and values nearly always are: it runs twice per label of every
// series, where the standard function's setup cost dominates.
func validUTF8(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if (s[i]|s[i+1]|s[i+2]|s[i+3]|s[i+4]|s[i+5]|s[i+6]|s[i+7])&0x80 != 0 {
			return utf8.ValidString(s[i:])
		}
	}
	for ; i < len(s); i++ {
		if s[i] >= 0x80 {
			return utf8.ValidString(s[i:])
		}
	}
	return true
}

// describe explains a label problem found by check, for the response body.
func (lim *limits) describe(r reason, ls []wireLabel, at int) string {
	var l wireLabel
	if at >= 0 && at < len(ls) {
		l = ls[at]
	}
	switch r {
	case reasonNoLabels:
		return "series has no labels"
	case reasonTooManyLabels:
		return fmt.Sprintf("series has %d labels, more than the limit of %d", len(ls), lim.maxLabels)
	case reasonEmptyName:
		return fmt.Sprintf("label %d has an empty name", at)
	case reasonNameTooLong:
		return fmt.Sprintf("label name %s is %d bytes, more than the limit of %d", quote(l.name), len(l.name), lim.maxName)
	case reasonEmptyValue:
		return fmt.Sprintf("label %s has an empty value", quote(l.name))
	case reasonValueTooLong:
		return fmt.Sprintf("value of label %s is %d bytes, more than the limit of %d", quote(l.name), len(l.value), lim.maxValue)
	case reasonInvalidUTF8:
		return fmt.Sprintf("label %s=%s is not valid UTF-8", quote(l.name), quote(l.value))
	case reasonDuplicateName:
		return fmt.Sprintf("label name %s appears more than once", quote(l.name))
	case reasonUnsorted:
		return fmt.Sprintf("labels must be sorted by name, but %s comes after %s", quote(l.name), quote(ls[at-1].name))
	case reasonNoMetricName:
		return "series has no __name__ label"
	}
	return r.String()
}

// Bounds on the examples quoted in a 400 body, so that a series with
// thousands of labels cannot blow up the response.
const (
	maxQuotedString = 64
	maxQuotedSeries = 256
)

// quote quotes s for a message, shortening it to maxQuotedString bytes.
func quote(s string) string {
	if len(s) > maxQuotedString {
		return strconv.Quote(s[:maxQuotedString]) + "…"
	}
	return strconv.Quote(s)
}

// formatSeries renders labels as {name="value", ...} for a message,
// shortened to about maxQuotedSeries bytes.
func formatSeries(ls []wireLabel) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, l := range ls {
		if sb.Len() > maxQuotedSeries {
			fmt.Fprintf(&sb, ", …%d more", len(ls)-i)
			break
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		if isPlainName(l.name) {
			sb.WriteString(l.name)
		} else {
			sb.WriteString(quote(l.name))
		}
		sb.WriteByte('=')
		sb.WriteString(quote(l.value))
	}
	sb.WriteByte('}')
	return sb.String()
}

// isPlainName reports whether a label name can be shown unquoted.
func isPlainName(s string) bool {
	if s == "" || len(s) > maxQuotedString {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// reasonStats counts the rejections of one reason.
type reasonStats struct {
	series, samples int
	// lastSeries is the index+1 of the last series counted, so that a
	// series with several rejected samples is counted once.
	lastSeries int
	example    string
}

// report collects everything rejected in one request; a non-empty report
// turns the response into a 400.
type report struct {
	byReason    [numReasons]reasonStats
	histSamples int
	histSeries  int
}

func (rep *report) reset() { *rep = report{} }

// empty reports whether nothing was rejected.
func (rep *report) empty() bool {
	if rep.histSamples > 0 {
		return false
	}
	for i := range rep.byReason {
		if rep.byReason[i].series > 0 {
			return false
		}
	}
	return true
}

// reject records n rejected samples of series idx for reason r. It returns
// true if the caller should provide an example with setExample, which is
// only the first time for each reason, so formatting stays off the path of
// repeated rejections.
func (rep *report) reject(r reason, idx, n int) bool {
	st := &rep.byReason[r]
	if st.lastSeries != idx+1 {
		st.series++
		st.lastSeries = idx + 1
	}
	st.samples += n
	return st.example == ""
}

func (rep *report) setExample(r reason, idx int, series, problem string) {
	if series == "" {
		rep.byReason[r].example = fmt.Sprintf("series #%d: %s", idx, problem)
		return
	}
	rep.byReason[r].example = fmt.Sprintf("series #%d %s: %s", idx, series, problem)
}

// rejectedSamples is the number of float samples rejected.
func (rep *report) rejectedSamples() int {
	n := 0
	for i := range rep.byReason {
		n += rep.byReason[i].samples
	}
	return n
}

// firstExample is the example of the first reason recorded, for the log.
func (rep *report) firstExample() string {
	for i := range rep.byReason {
		if rep.byReason[i].series > 0 {
			return rep.byReason[i].example
		}
	}
	if rep.histSamples > 0 {
		return rep.histogramMessage()
	}
	return ""
}

func (rep *report) histogramMessage() string {
	return fmt.Sprintf("native histograms are not supported: %d histogram samples in %d series dropped", rep.histSamples, rep.histSeries)
}

// message is the human-readable 400 body: one line per reason with its
// counts and first example. Senders do not retry 4xx, so this is what an
// operator will see in the sender's log.
func (rep *report) message(stored int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d samples stored, %d rejected", stored, rep.rejectedSamples())
	for r := range rep.byReason {
		st := &rep.byReason[r]
		if st.series == 0 {
			continue
		}
		fmt.Fprintf(&sb, "\n- %s: %d samples in %d series dropped, e.g. %s", reason(r), st.samples, st.series, st.example)
	}
	if rep.histSamples > 0 {
		sb.WriteString("\n- ")
		sb.WriteString(rep.histogramMessage())
	}
	return sb.String()
}

// sampleProblem explains a rejected sample timestamp or storage error.
func sampleProblem(r reason, t int64, skew time.Duration, err error) string {
	switch r {
	case reasonNegativeTimestamp:
		return fmt.Sprintf("sample timestamp %d ms is before 1970", t)
	case reasonFutureTimestamp:
		return fmt.Sprintf("sample timestamp %d ms (%s) is more than %s in the future", t, time.UnixMilli(t).UTC().Format(time.RFC3339), skew)
	case reasonSeriesLimit:
		return err.Error()
	}
	return fmt.Sprintf("sample at %d ms: %v", t, err)
}
