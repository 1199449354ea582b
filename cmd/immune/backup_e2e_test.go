package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBackupWhileServing copies a data directory while points keep
// arriving, then serves the copy: every point acknowledged before the
// backup began and the registered deployment are in it.
func TestBackupWhileServing(t *testing.T) {
	dir := t.TempDir()
	_, base := startImmune(t, filepath.Join(dir, "data"))
	now := time.Now().Add(-time.Minute).Truncate(time.Second)
	put := func(i int64) error {
		resp, err := postPut(base, pointBody("backed", now.Unix()-3000+i, i))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("put %d: %s", i, resp.Status)
		}
		return nil
	}
	for i := range int64(500) {
		if err := put(i); err != nil {
			t.Fatal(err)
		}
	}
	// The gate wants both sides reporting before it registers them.
	sides := fmt.Sprintf(`[{"metric":"up","timestamp":%[1]d,"value":1,"tags":{"service":"svc","version":"v1"}},`+
		`{"metric":"up","timestamp":%[1]d,"value":1,"tags":{"service":"svc","version":"v2"}}]`, now.Unix())
	if resp, err := postPut(base, sides); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("put: %v %v", resp, err)
	}
	code, id, stderr := gateCLI(t, "start", "--url", base, "--service", "svc", "--version", "v2",
		"--canary", `{service="svc",version="v2"}`, "--baseline", `{service="svc",version="v1"}`)
	if code != 0 {
		t.Fatalf("gate start: exit %d: %s", code, stderr)
	}
	id = strings.TrimSpace(id)

	// Points keep arriving during the backup.
	ctx, stop := context.WithCancel(context.Background())
	var during atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := int64(500); ctx.Err() == nil && i < 2500; i++ {
			if err := put(i); err != nil {
				done <- err
				return
			}
			during.Add(1)
		}
		done <- nil
	}()
	copyDir := filepath.Join(dir, "copy")
	out, err := exec.Command(immuneBin, "backup", "--url", base, "--to", copyDir).CombinedOutput()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("backup: %v: %s", err, out)
	}
	if during.Load() == 0 {
		t.Log("no point arrived while the backup ran: the copy was quicker than one put")
	}
	out, err = exec.Command(immuneBin, "backup", "--url", base, "--to", copyDir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already exists") {
		t.Errorf("a second backup into the same directory: %v: %s", err, out)
	}

	out, err = exec.Command(immuneBin, "backup", "--url", base, "--to", filepath.Join(dir, "data", "copy")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "inside the data directory") {
		t.Errorf("a backup into the data directory: %v: %s", err, out)
	}

	_, copyBase := startImmune(t, copyDir)
	got := vectorValues(t, fmt.Sprintf("%s/api/v1/query?query=count_over_time(backed[2h])&time=%d", copyBase, now.Unix()))
	if len(got) != 1 {
		t.Fatalf("the copy holds %d series, want 1", len(got))
	}
	var n int64
	fmt.Sscan(got[0], &n)
	if n < 500 || n > 500+during.Load() {
		t.Errorf("the copy holds %d points, want between 500 and %d", n, 500+during.Load())
	}
	if err := httpGet(copyBase + "/api/v1/deployments/" + id); err != nil {
		t.Errorf("the deployment is not in the copy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(copyDir, "tsdb")); err != nil {
		t.Error(err)
	}
}
