//go:build slicelabels || dedupelabels

package remotewrite

// wireString copies b into a new string. The slicelabels and dedupelabels
// implementations keep the strings given to ScratchBuilder.Add, so they
// must not alias the pooled request buffer.
func wireString(b []byte) string {
	return string(b)
}
