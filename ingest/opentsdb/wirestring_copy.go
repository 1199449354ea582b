//go:build slicelabels || dedupelabels

package opentsdb

// wireString copies b into a new string. The slicelabels and dedupelabels
// implementations keep the strings given to ScratchBuilder.Add, so they
// must not alias a connection's read buffer or a pooled request body.
func wireString(b []byte) string {
	return string(b)
}
