package remotewrite

import (
	"fmt"
	"testing"
)

// TestDecodedCostCoversTheBatch backs decodedCost: what the handler
// reserves for a decompressed body covers the body and the batch decoded
// from it, for the requests that decode largest against their size (one
// short-labelled sample per series) and for sample-heavy ones, in both
// protocols.
func TestDecodedCostCoversTheBatch(t *testing.T) {
	labelHeavy, sampleHeavy := make([]tseries, 0, 2000), make([]tseries, 0, 20)
	for i := range 2000 {
		// One-byte names and values: the most labels per byte.
		labelHeavy = append(labelHeavy, ser("__name__", "m", "a", "b", "c", "d", "i", fmt.Sprint(i%10)).at(testNowMs, 1))
	}
	for i := range 20 {
		s := ser("__name__", "node_cpu_seconds_total", "instance", fmt.Sprintf("host-%d:9100", i), "mode", "idle")
		for j := range 500 {
			s = s.at(testNowMs+int64(j)*15_000, float64(j))
		}
		sampleHeavy = append(sampleHeavy, s)
	}
	for name, series := range map[string][]tseries{"label-heavy": labelHeavy, "sample-heavy": sampleHeavy} {
		for proto, body := range map[string][]byte{"v1": marshal(t, v1Request(series...)), "v2": marshal(t, v2Request(series...))} {
			var b batch
			var err error
			if proto == "v1" {
				err = b.decodeV1(body, DefaultMaxSeriesPerRequest)
			} else {
				err = b.decodeV2(body, DefaultMaxSeriesPerRequest)
			}
			if err != nil {
				t.Fatal(err)
			}
			held := int64(len(body) + b.retainedBytes())
			t.Logf("%s %s: body %d bytes, body and batch %d, reserved %d", name, proto, len(body), held, decodedCost(len(body)))
			if held > decodedCost(len(body)) {
				t.Errorf("%s %s: body and batch hold %d bytes, decodedCost reserves %d", name, proto, held, decodedCost(len(body)))
			}
		}
	}
}
