package jsonquote

import (
	"encoding/json"
	"testing"
)

func TestAppend(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "a\nb\r\tc\x01", "héllo ☃", "bad \xff byte", "\ufffd"} {
		want, _ := json.Marshal(s)
		if got := string(Append(nil, s)); got != string(want) {
			t.Errorf("Append(%q) = %s, want %s", s, got, want)
		}
		if got := string(Append(nil, []byte(s))); got != string(want) {
			t.Errorf("Append([]byte(%q)) = %s, want %s", s, got, want)
		}
	}
}
