package detect

import (
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/immune-dev/immune/internal/pebblelog"
)

// checkedStore writes a closed store of two deployments, one with three
// verdicts, and returns its dir.
func checkedStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	store, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, service := range []string{"checkout", "payments"} {
		d := &Deployment{Service: service, Version: "v2", Start: t0, Canary: `{version="v2"}`, State: Pending}
		if err := store.Create(d); err != nil {
			t.Fatal(err)
		}
		for j := range 3 * (1 - i) {
			if _, err := store.Record(d.ID, Verdict{At: t0.Add(time.Duration(j) * time.Minute), Verdict: Pending}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCheckStore(t *testing.T) {
	st, err := CheckStore(checkedStore(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Deployments != 2 || st.Verdicts != 3 || st.Keys != 5 {
		t.Fatalf("stats %+v: want 2 deployments, 3 verdicts, 5 keys", st)
	}
}

func TestCheckStoreBadLayout(t *testing.T) {
	for name, tc := range map[string]struct {
		key, value, want string
	}{
		"not JSON":                   {"pnoise", "{", `key "pnoise": the value is not JSON`},
		"deployment renamed":         {"dother-1", `{"id":"checkout-1"}`, `deployment "checkout-1" is stored as "other-1"`},
		"orphan verdict":             {"hgone-1\x00\x00\x00\x00\x00\x00\x00\x00\x01", `{"verdict":"pass"}`, "no such deployment"},
		"verdict key without a time": {"h{id}\x00\x01", `{"verdict":"pass"}`, "does not end in a time"},
		"verdict under another time": {"h{id}\x00\x00\x00\x00\x00\x00\x00\x00\x01", `{"verdict":"pass","time":"2026-01-01T00:00:00Z"}`,
			"is stored under another time"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := checkedStore(t)
			db, err := pebble.Open(dir, &pebble.Options{Logger: pebblelog.Logger{}})
			if err != nil {
				t.Fatal(err)
			}
			// {id} stands for a stored deployment's ID.
			it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte("d"), UpperBound: []byte("e")})
			if err != nil || !it.First() {
				t.Fatalf("no deployment stored: %v", err)
			}
			key := strings.ReplaceAll(tc.key, "{id}", string(it.Key()[1:]))
			if err := it.Close(); err != nil {
				t.Fatal(err)
			}
			if err := db.Set([]byte(key), []byte(tc.value), pebble.Sync); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := CheckStore(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("check: %v, want %q", err, tc.want)
			}
		})
	}
}
