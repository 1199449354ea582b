package remotewrite

import (
	"testing"
	"unicode/utf8"
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
