//go:build !slicelabels && !dedupelabels

package remotewrite

import "unsafe"

// wireString returns b as a string without copying it. This is safe only
// because, with the default stringlabels implementation,
// labels.ScratchBuilder.Labels copies every name and value into a new
// allocation, and the handler clones every other string it passes to
// storage; so nothing that outlives the request aliases the pooled buffer.
func wireString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
