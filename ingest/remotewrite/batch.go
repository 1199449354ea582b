package remotewrite

import (
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
)

// batch is the working state of one request: the decoded request in flat
// slices plus scratch space. Batches are pooled per handler and reset
// between requests, keeping their capacity, so a warm request allocates
// only what storage keeps.
type batch struct {
	series  []wireSeries
	labels  []wireLabel // 1.0 label pairs, indexed by wireSeries.labels
	refs    []uint32    // 2.0 label references, indexed by wireSeries.labels
	samples []sample
	symbols []string // 2.0 symbols table
	meta    []v1Meta // 1.0 metadata entries

	body          []byte      // request body, when Store had to read it itself
	resolved      []wireLabel // 2.0: the current series' labels, resolved from refs
	symClones     []string    // 2.0: symbols cloned for metadata, by ref; "" = not yet
	sb            labels.ScratchBuilder
	scratchLabels labels.Labels // reused buffer for GetRef lookups
	rep           report
}

func (b *batch) reset() {
	b.series = b.series[:0]
	b.labels = b.labels[:0]
	b.refs = b.refs[:0]
	b.samples = b.samples[:0]
	b.symbols = b.symbols[:0]
	b.meta = b.meta[:0]
	b.body = b.body[:0]
	b.resolved = b.resolved[:0]
	b.symClones = b.symClones[:0]
	b.rep.reset()
}

// retainedBytes estimates the memory the batch keeps, to decide whether it
// is worth pooling.
func (b *batch) retainedBytes() int {
	return cap(b.series)*int(unsafe.Sizeof(wireSeries{})) +
		(cap(b.labels)+cap(b.resolved))*int(unsafe.Sizeof(wireLabel{})) +
		cap(b.refs)*4 +
		cap(b.samples)*int(unsafe.Sizeof(sample{})) +
		(cap(b.symbols)+cap(b.symClones))*int(unsafe.Sizeof("")) +
		cap(b.meta)*int(unsafe.Sizeof(v1Meta{})) +
		cap(b.body)
}

// resolve turns a 2.0 series' label references into label pairs, in a
// buffer reused for the next series. problem is non-empty if the
// references are invalid.
func (b *batch) resolve(refs []uint32) (ls []wireLabel, problem string) {
	if len(refs)%2 != 0 {
		return nil, fmt.Sprintf("series has an odd number (%d) of label references", len(refs))
	}
	ls = b.resolved[:0]
	for i := 0; i < len(refs); i += 2 {
		n, v := refs[i], refs[i+1]
		if int64(n) >= int64(len(b.symbols)) || int64(v) >= int64(len(b.symbols)) {
			return nil, fmt.Sprintf("label reference %d outside the symbols table of %d entries", max(n, v), len(b.symbols))
		}
		ls = append(ls, wireLabel{name: b.symbols[n], value: b.symbols[v]})
	}
	b.resolved = ls
	return ls, ""
}

// symbol returns symbol ref cloned out of the request buffer, for metadata
// that storage may keep. Clones are cached per request since many series
// share help and unit strings. ok is false if ref is out of range.
func (b *batch) symbol(ref uint32) (s string, ok bool) {
	if int64(ref) >= int64(len(b.symbols)) {
		return "", false
	}
	if ref == 0 {
		return "", true
	}
	if len(b.symClones) == 0 {
		b.symClones = slices.Grow(b.symClones[:0], len(b.symbols))[:len(b.symbols)]
		clear(b.symClones)
	}
	if b.symClones[ref] == "" {
		b.symClones[ref] = strings.Clone(b.symbols[ref])
	}
	return b.symClones[ref], true
}
