// Package ingest groups Immune's protocol front ends: the packages under it
// accept metrics in a wire protocol (for example Prometheus remote write in
// ingest/remotewrite), validate them and hand them to storage through
// Prometheus' storage.Appendable interface. Nothing in ingest owns data; each
// front end only translates and validates.
package ingest
