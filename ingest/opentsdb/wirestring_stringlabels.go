//go:build !slicelabels && !dedupelabels

package opentsdb

import "unsafe"

// wireString returns b as a string without copying it. This is safe only
// because, with the default stringlabels implementation,
// labels.ScratchBuilder.Labels copies every name and value into a new
// allocation, so nothing handed to storage aliases a connection's read
// buffer or a pooled request body.
func wireString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
