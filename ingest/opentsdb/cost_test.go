package opentsdb

import (
	"strings"
	"testing"
	"unsafe"
)

// TestPutCostCoversTheDecodedPoints backs putCost: what a put reserves for
// its body covers the body and the points decoded from it, for the
// smallest points (which decode largest against their size) and for
// typical collector ones.
func TestPutCostCoversTheDecodedPoints(t *testing.T) {
	for name, point := range map[string]string{
		"smallest": `{"metric":"m","timestamp":1,"value":1,"tags":{"a":"b"}}`,
		"typical":  `{"metric":"sys.cpu.user","timestamp":1356998400,"value":42.5,"tags":{"host":"web01","cpu":"0"}}`,
	} {
		body := []byte("[" + strings.Repeat(point+",", 4999) + point + "]")
		var dec jsonDecoder
		dec.maxTags = DefaultMaxTags
		if err := dec.decode(body); err != nil {
			t.Fatal(err)
		}
		held := int64(len(body) + cap(dec.arena) + cap(dec.points)*int(unsafe.Sizeof(jsonPoint{})) + cap(dec.tags)*int(unsafe.Sizeof(Tag{})))
		t.Logf("%s: body %d bytes, body and points %d, reserved %d", name, len(body), held, putCost(int64(len(body))))
		if held > putCost(int64(len(body))) {
			t.Errorf("%s: body and points hold %d bytes, putCost reserves %d", name, held, putCost(int64(len(body))))
		}
	}
}
