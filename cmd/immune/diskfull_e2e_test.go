package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of size bytes and unmounts it when the test
// ends (after the server on it has stopped: cleanups run last first). It
// needs root; under CI, which runs as root, failing to mount fails.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs (root needed): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestDiskFull fills the data directory's file system: writes are refused
// with 503 and Retry-After while queries keep working, and resume by
// themselves once space returns.
func TestDiskFull(t *testing.T) {
	fs := mountTmpfs(t, 96<<20)
	_, base := startImmune(t, filepath.Join(fs, "data"), "--min-free-space", "32MiB")
	now := time.Now().Unix()
	put := func(i int64) (*http.Response, error) { return postPut(base, pointBody("filled", now-600+i, i)) }
	if resp, err := put(0); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("put with room: %v %v", resp, err)
	}

	// Leave about 16 MiB free.
	free := freeBytes(t, fs)
	filler := filepath.Join(fs, "filler")
	if err := os.WriteFile(filler, make([]byte, free-16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	// The store reads the free space at most every 100 ms: a put just
	// after the filler may still be taken, and then it must be stored.
	want := 2
	eventually(t, 10*time.Second, "writes refused", func() error {
		resp, err := put(1)
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusNoContent && want == 2 {
			want = 3
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			return fmt.Errorf("%s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
		}
		return nil
	})
	query := fmt.Sprintf("%s/api/v1/query?query=count_over_time(filled[1h])&time=%d", base, now)
	if err := httpGet(query); err != nil {
		t.Errorf("a query with the disk full: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "writes accepted again", func() error {
		resp, err := put(2)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	})
	if got := vectorValues(t, query); len(got) != 1 || got[0] != fmt.Sprint(want) {
		t.Errorf("stored points: %v, want the %d accepted", got, want)
	}
}

// freeBytes is the space an unprivileged writer has left on dir's file system.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}
