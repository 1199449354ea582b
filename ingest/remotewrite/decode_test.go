package remotewrite

import (
	"errors"
	"math"
	"testing"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// compareV1 decodes body with both this package's decoder and gogo's
// generated Unmarshal and fails t if they disagree: gogo accepting what the
// decoder rejects, the decoder accepting what gogo rejects other than
// inside exemplars and histograms (which it does not decode), or different
// content.
func compareV1(t *testing.T, body []byte) {
	t.Helper()
	var want prompb.WriteRequest
	gogoErr := want.Unmarshal(body)
	var b batch
	err := b.decodeV1(body, math.MaxInt)
	switch {
	case gogoErr == nil && err != nil:
		t.Fatalf("gogo accepts the request, decoder fails: %v", err)
	case gogoErr != nil && err == nil:
		if !b.hasSkippedMessages() {
			t.Fatalf("gogo rejects the request (%v), decoder accepts it", gogoErr)
		}
		return
	case err != nil:
		return
	}

	if len(b.series) != len(want.Timeseries) {
		t.Fatalf("decoded %d series, gogo %d", len(b.series), len(want.Timeseries))
	}
	for i, ts := range want.Timeseries {
		s := b.series[i]
		lbls := b.labels[s.labels.start:s.labels.end]
		if len(lbls) != len(ts.Labels) {
			t.Fatalf("series %d: %d labels, gogo %d", i, len(lbls), len(ts.Labels))
		}
		for j, l := range ts.Labels {
			if lbls[j].name != l.Name || lbls[j].value != l.Value {
				t.Fatalf("series %d label %d: %q=%q, gogo %q=%q", i, j, lbls[j].name, lbls[j].value, l.Name, l.Value)
			}
		}
		smps := b.samples[s.samples.start:s.samples.end]
		if len(smps) != len(ts.Samples) {
			t.Fatalf("series %d: %d samples, gogo %d", i, len(smps), len(ts.Samples))
		}
		for j, smp := range ts.Samples {
			if smps[j].t != smp.Timestamp || math.Float64bits(smps[j].v) != math.Float64bits(smp.Value) {
				t.Fatalf("series %d sample %d: %v, gogo %v", i, j, smps[j], smp)
			}
		}
		if s.histograms != len(ts.Histograms) || s.exemplars != len(ts.Exemplars) {
			t.Fatalf("series %d: %d histograms, %d exemplars; gogo %d, %d", i, s.histograms, s.exemplars, len(ts.Histograms), len(ts.Exemplars))
		}
	}
	if len(b.meta) != len(want.Metadata) {
		t.Fatalf("decoded %d metadata, gogo %d", len(b.meta), len(want.Metadata))
	}
	for i, m := range want.Metadata {
		got := b.meta[i]
		if got.typ != int32(m.Type) || got.family != m.MetricFamilyName || got.help != m.Help || got.unit != m.Unit {
			t.Fatalf("metadata %d: %+v, gogo %+v", i, got, m)
		}
	}
}

// compareV2 is compareV1 for remote write 2.0. The decoder is also allowed
// to reject a packed varint that runs past its field, which gogo reads on.
func compareV2(t *testing.T, body []byte) {
	t.Helper()
	var want writev2.Request
	gogoErr := want.Unmarshal(body)
	var b batch
	err := b.decodeV2(body, math.MaxInt)
	switch {
	case gogoErr == nil && err != nil:
		if !errors.Is(err, errPackedOverrun) {
			t.Fatalf("gogo accepts the request, decoder fails: %v", err)
		}
		return
	case gogoErr != nil && err == nil:
		if !b.hasSkippedMessages() {
			t.Fatalf("gogo rejects the request (%v), decoder accepts it", gogoErr)
		}
		return
	case err != nil:
		return
	}

	if len(b.symbols) != len(want.Symbols) {
		t.Fatalf("decoded %d symbols, gogo %d", len(b.symbols), len(want.Symbols))
	}
	for i, s := range want.Symbols {
		if b.symbols[i] != s {
			t.Fatalf("symbol %d: %q, gogo %q", i, b.symbols[i], s)
		}
	}
	if len(b.series) != len(want.Timeseries) {
		t.Fatalf("decoded %d series, gogo %d", len(b.series), len(want.Timeseries))
	}
	for i, ts := range want.Timeseries {
		s := b.series[i]
		refs := b.refs[s.labels.start:s.labels.end]
		if len(refs) != len(ts.LabelsRefs) {
			t.Fatalf("series %d: %d label refs, gogo %d", i, len(refs), len(ts.LabelsRefs))
		}
		for j, r := range ts.LabelsRefs {
			if refs[j] != r {
				t.Fatalf("series %d label ref %d: %d, gogo %d", i, j, refs[j], r)
			}
		}
		smps := b.samples[s.samples.start:s.samples.end]
		if len(smps) != len(ts.Samples) {
			t.Fatalf("series %d: %d samples, gogo %d", i, len(smps), len(ts.Samples))
		}
		for j, smp := range ts.Samples {
			if smps[j].t != smp.Timestamp || math.Float64bits(smps[j].v) != math.Float64bits(smp.Value) {
				t.Fatalf("series %d sample %d: %v, gogo %v", i, j, smps[j], smp)
			}
		}
		if s.histograms != len(ts.Histograms) || s.exemplars != len(ts.Exemplars) {
			t.Fatalf("series %d: %d histograms, %d exemplars; gogo %d, %d", i, s.histograms, s.exemplars, len(ts.Histograms), len(ts.Exemplars))
		}
		if want := (v2Meta{typ: int32(ts.Metadata.Type), help: ts.Metadata.HelpRef, unit: ts.Metadata.UnitRef}); s.meta != want {
			t.Fatalf("series %d metadata: %+v, gogo %+v", i, s.meta, want)
		}
	}
}

// hasSkippedMessages reports whether the batch holds exemplars or
// histograms, whose contents the decoder only checks for well-formedness.
func (b *batch) hasSkippedMessages() bool {
	for _, s := range b.series {
		if s.histograms > 0 || s.exemplars > 0 {
			return true
		}
	}
	return false
}

func TestDecodeMatchesGogo(t *testing.T) {
	withMeta := ser("__name__", "m", "job", "j").at(5, 1).withHistograms(2).withExemplars(1)
	withMeta.meta.Type = writev2.Metadata_METRIC_TYPE_SUMMARY
	withMeta.help, withMeta.unit = "help", "seconds"
	series := []tseries{
		ser("__name__", "up", "job", "a").at(1, 1).at(2, staleNaN).at(-3, math.Inf(-1)),
		ser(),
		ser("", "", "\xff", "日本").at(math.MaxInt64, math.MaxFloat64).at(math.MinInt64, math.SmallestNonzeroFloat64),
		withMeta,
	}
	v1 := v1Request(series...)
	v1.Metadata = []prompb.MetricMetadata{{Type: prompb.MetricMetadata_INFO, MetricFamilyName: "f", Help: "h", Unit: "u"}, {}}
	compareV1(t, marshal(t, v1))
	compareV2(t, marshal(t, v2Request(series...)))

	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"unknown fields of every wire type", []byte{
			0x10, 0x96, 0x01, // field 2 varint
			0x19, 1, 2, 3, 4, 5, 6, 7, 8, // field 3 fixed64
			0x22, 0x02, 'h', 'i', // field 4 bytes
			0x2b, 0x08, 0x01, 0x2c, // field 5 group containing a varint
			0x35, 1, 2, 3, 4, // field 6 fixed32
		}},
		{"unpacked label refs", []byte{0x22, 0x00, 0x22, 0x01, 'a', 0x2a, 0x04, 0x08, 0x01, 0x08, 0x00}},
		{"repeated scalar fields, last wins", []byte{0x0a, 0x0a, 0x12, 0x08, 0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f}},
		{"varint with ten bytes", []byte{0x0a, 0x0d, 0x12, 0x0b, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"varint with eleven bytes", []byte{0x0a, 0x0e, 0x12, 0x0c, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"field number zero", []byte{0x02, 0x00}},
		{"end group at top level", []byte{0x0c}},
		{"unterminated group", []byte{0x0b, 0x08, 0x01}},
		{"wire type 7", []byte{0x0f}},
		{"length past the end", []byte{0x0a, 0x05, 0x00}},
		{"huge length", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"huge field number aliasing field 1", []byte{0x0a | 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			compareV1(t, tc.body)
			compareV2(t, tc.body)
		})
	}
}

func TestDecodePackedOverrun(t *testing.T) {
	// A series whose packed label refs end in a varint continuation byte:
	// gogo reads on into the samples field, this decoder refuses.
	body := []byte{0x2a, 0x04, 0x0a, 0x01, 0x81, 0x01}
	var b batch
	if err := b.decodeV2(body, math.MaxInt); !errors.Is(err, errPackedOverrun) {
		t.Fatalf("err = %v, want errPackedOverrun", err)
	}
}

func TestDecodeTooManySeries(t *testing.T) {
	body := marshal(t, v1Request(ser("__name__", "a"), ser("__name__", "b"), ser("__name__", "c")))
	var b batch
	if err := b.decodeV1(body, 2); !errors.Is(err, errTooManySeries) {
		t.Fatalf("err = %v, want errTooManySeries", err)
	}
	b.reset()
	if err := b.decodeV1(body, 3); err != nil {
		t.Fatal(err)
	}
}

func TestResolve(t *testing.T) {
	b := batch{symbols: []string{"", "__name__", "up"}}
	if ls, problem := b.resolve([]uint32{1, 2}); problem != "" || len(ls) != 1 || ls[0] != (wireLabel{"__name__", "up"}) {
		t.Errorf("resolve = %v, %q", ls, problem)
	}
	if _, problem := b.resolve([]uint32{1, 99}); problem != "label reference 99 outside the symbols table of 3 entries" {
		t.Errorf("problem = %q", problem)
	}
	if _, problem := b.resolve([]uint32{1}); problem != "series has an odd number (1) of label references" {
		t.Errorf("problem = %q", problem)
	}
	if ls, problem := b.resolve(nil); problem != "" || len(ls) != 0 {
		t.Errorf("resolve(nil) = %v, %q", ls, problem)
	}
}
