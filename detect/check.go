package detect

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/immune-dev/immune/internal/pebblecheck"
)

// StoreCheck says what CheckStore read.
type StoreCheck struct {
	Tables      int   // sstables whose every block checksum was verified
	Keys        int64 // live Pebble keys read
	Deployments int
	Verdicts    int // in the deployments' histories
}

// CheckStore verifies the deployment store in dir, which no process may
// have open, without changing it: Pebble opened read-only and checked (its
// levels, every block checksum, every key and value read), then the
// store's own layout: every value is JSON, every deployment decodes under
// its own ID, and every verdict decodes and belongs to a stored
// deployment. The error names the first problem.
func CheckStore(dir string) (StoreCheck, error) {
	var (
		st  StoreCheck
		ids = map[string]bool{}
	)
	pst, err := pebblecheck.Check(dir, func(k, v []byte) error {
		if !json.Valid(v) {
			return fmt.Errorf("key %q: the value is not JSON", k)
		}
		if len(k) == 0 {
			return fmt.Errorf("an empty key")
		}
		switch k[0] {
		case 'd':
			id := string(k[1:])
			d, err := decodeDeployment(id, v)
			if err != nil {
				return err
			}
			if d.ID != id {
				return fmt.Errorf("deployment %q is stored as %q", d.ID, id)
			}
			ids[id] = true
			st.Deployments++
		case 'h':
			// "h" id 0x00 at(8, Unix ns, big-endian); its deployment's "d"
			// key sorts first.
			id, at, ok := bytes.Cut(k[1:], []byte{0})
			if !ok || !ids[string(id)] {
				return fmt.Errorf("verdict %q: no such deployment", k)
			}
			if len(at) != 8 {
				return fmt.Errorf("verdict of deployment %q: key %q does not end in a time", id, k)
			}
			var vd Verdict
			if err := json.Unmarshal(v, &vd); err != nil {
				return fmt.Errorf("verdict of deployment %q: %w", id, err)
			}
			if int64(binary.BigEndian.Uint64(at)) != vd.At.UnixNano() {
				return fmt.Errorf("verdict of deployment %q at %s is stored under another time", id, vd.At)
			}
			st.Verdicts++
		}
		return nil
	})
	st.Tables, st.Keys = pst.Tables, pst.Keys
	if err != nil {
		return st, fmt.Errorf("check deployment store %s: %w", dir, err)
	}
	return st, nil
}
