package keys

import (
	"bytes"
	"slices"
	"testing"
)

func TestPostingsRoundTripAndOrder(t *testing.T) {
	cases := []struct {
		name, value string
	}{
		{"", ""}, {"a", ""}, {"a", "b"}, {"a", "b\x00c"}, {"a\x00", "x"}, {"ab", ""}, {"b", "\xff"},
	}
	var encoded [][]byte
	for _, c := range cases {
		k := Postings(nil, 7, c.name, c.value, 42)
		day, name, value, id, err := ParsePostings(k)
		if err != nil || day != 7 || name != c.name || value != c.value || id != 42 {
			t.Fatalf("%q=%q: parsed %d %q %q %d %v", c.name, c.value, day, name, value, id, err)
		}
		encoded = append(encoded, k)
	}
	// Key order is (name, value) order, so prefix scans visit one label at a time.
	if !slices.IsSortedFunc(encoded, bytes.Compare) {
		t.Fatalf("postings keys are not in (name, value) order")
	}
	// No name's prefix range contains another name's keys.
	a := PostingsNamePrefix(nil, 7, "a")
	if bytes.HasPrefix(Postings(nil, 7, "ab", "", 1), a) || bytes.HasPrefix(Postings(nil, 7, "a\x00", "", 1), a) {
		t.Fatalf("name prefix is not prefix-free")
	}
}

func TestPrefixEnd(t *testing.T) {
	if got := PrefixEnd([]byte{1, 0xff}); !bytes.Equal(got, []byte{2}) {
		t.Fatalf("got %x", got)
	}
	if got := PrefixEnd([]byte{0xff}); got != nil {
		t.Fatalf("got %x, want nil", got)
	}
}

func TestChunkKeysSortByBucketThenID(t *testing.T) {
	ks := [][]byte{Chunk(1, 5), Chunk(1, 300), Chunk(2, 1)}
	if !slices.IsSortedFunc(ks, bytes.Compare) {
		t.Fatal("chunk keys out of order")
	}
	b, id, err := ParseChunk(Chunk(9, 77))
	if err != nil || b != 9 || id != 77 {
		t.Fatalf("got %d %d %v", b, id, err)
	}
}

func FuzzParsePostings(f *testing.F) {
	f.Add(Postings(nil, 1, "job", "node", 3))
	f.Add([]byte{PrefixPostings, 0, 0, 0, 1, 0, 0xff, 0})
	f.Fuzz(func(t *testing.T, k []byte) {
		day, name, value, id, err := ParsePostings(k)
		if err != nil {
			return
		}
		if again := Postings(nil, day, name, value, id); !bytes.Equal(again, k) {
			t.Fatalf("re-encoding %x gave %x", k, again)
		}
	})
}
