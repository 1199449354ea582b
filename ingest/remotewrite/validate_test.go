package remotewrite

import (
	"testing"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

func TestValidUTF8(t *testing.T) {
	for _, s := range []string{
		"", "a", "abcdefgh", "abcdefghi", "日本語", "abcdefg日本", "abcdefgh\xff", "\xff", "abc\xc3", "abc\xc3\xa9",
		"12345678\xe2\x82", "12345678\xe2\x82\xac", "\xed\xa0\x80", // surrogate half: invalid
	} {
		if got, want := validUTF8(s), utf8.ValidString(s); got != want {
			t.Errorf("validUTF8(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzValidUTF8(f *testing.F) {
	f.Add("abcdefgh\xff")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validUTF8(s), utf8.ValidString(s); got != want {
			t.Fatalf("validUTF8(%q) = %v, want %v", s, got, want)
		}
	})
}

// TestMetricTypeBothProtocols: one mapping serves remote write 1.0 and 2.0
// metadata, because both enums number the types alike; Prometheus' own
// encoders of each enum are the reference.
func TestMetricTypeBothProtocols(t *testing.T) {
	for _, typ := range []model.MetricType{model.MetricTypeUnknown, model.MetricTypeCounter, model.MetricTypeGauge,
		model.MetricTypeHistogram, model.MetricTypeGaugeHistogram, model.MetricTypeSummary, model.MetricTypeInfo, model.MetricTypeStateset} {
		if got := metricType(int32(prompb.FromMetadataType(typ))); got != typ {
			t.Errorf("1.0 %s: got %s", typ, got)
		}
		if got := metricType(int32(writev2.FromMetadataType(typ))); got != typ {
			t.Errorf("2.0 %s: got %s", typ, got)
		}
	}
}
