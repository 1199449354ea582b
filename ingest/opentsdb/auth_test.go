package opentsdb

import (
	"errors"
	"fmt"
	"testing"
)

func TestTelnetAuth(t *testing.T) {
	db := openDB(t)
	opts := testOptions()
	opts.Authenticate = func(token string) error {
		if token != "s3cret" {
			return errors.New("unknown token")
		}
		return nil
	}
	addr := startServer(t, NewServer(db, opts))
	put := fmt.Sprintf("put m %d 1 host=a", ts(0))

	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"no auth line", []string{put}, "auth: required: the first line must be auth <token>\n"},
		{"wrong token", []string{"auth nope", put}, "auth: denied: unknown token\n"},
		{"empty token", []string{"auth", put}, "auth: denied: unknown token\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			c.send(tc.lines...)
			if got := c.waitClosed(); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	wantSeries(t, db, map[string][]sample{})

	c := dial(t, addr)
	c.send("auth s3cret", put)
	c.sync()
	wantSeries(t, db, map[string][]sample{`{__name__="m", host="a"}`: {{ts(0) * 1000, 1}}})
}
