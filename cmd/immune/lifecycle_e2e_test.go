package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// TestSIGTERMDrainsInFlightRequests sends SIGTERM while a remote-write
// request is in its handler, its body half sent. The server stops accepting connections but stays
// up until the request is whole, answers it 204, then checkpoints, closes
// Pebble and exits 0; after a restart the sample is there.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	dir := t.TempDir()
	server, base := startImmune(t, dir)
	addr := strings.TrimPrefix(base, "http://")
	now := time.Now().UnixMilli()
	raw, err := proto.Marshal(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "drained"}},
		Samples: []prompb.Sample{{Timestamp: now, Value: 42}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	body := snappy.Encode(nil, raw)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server answers "100 Continue" once the handler reads the body:
	// the signal that the request is in flight.
	fmt.Fprintf(conn, "POST /api/v1/write HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"+
		"X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, len(body))
	replies := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(replies, nil); err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("waiting for 100 Continue: %v %v", resp, err)
	}
	if _, err := conn.Write(body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}

	if err := server.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Draining has begun once the listener is closed.
	eventually(t, 10*time.Second, "listener closed after SIGTERM", func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		c.Close()
		return fmt.Errorf("still accepting connections")
	})
	select {
	case <-server.done:
		t.Fatalf("the server exited with a request in flight: %v", server.err)
	default:
	}

	if _, err := conn.Write(body[len(body)/2:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(replies, nil)
	if err != nil {
		t.Fatalf("reading the in-flight request's response: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("in-flight request answered %s, want 204", resp.Status)
	}
	select {
	case <-server.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not exit within 30s of its last request")
	}
	if server.err != nil {
		t.Fatalf("exit after SIGTERM: %v", server.err)
	}
	logged, err := os.ReadFile(server.log.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), "store closed") {
		t.Fatalf("the log does not say the store was closed:\n%s", tail(logged, 2000))
	}

	restarted, base := startImmune(t, dir)
	q := fmt.Sprintf("%s/api/v1/query?%s", base, url.Values{"query": {"drained"}, "time": {formatTime(time.Now())}}.Encode())
	if got := vectorValues(t, q); len(got) != 1 || got[0] != "42" {
		t.Fatalf("after the restart: drained = %v, want 42", got)
	}
	// The clean stop checkpointed the head: nothing is left to replay.
	if logged, err := os.ReadFile(restarted.log.Name()); err != nil || strings.Contains(string(logged), "replayed WAL") {
		t.Fatalf("restart after a clean stop replayed the WAL (%v):\n%s", err, tail(logged, 2000))
	}
}

// TestReadyOnlyOnceStarted holds the server's start between its listener
// and its stores: its --profiles-file is a named pipe, which blocks the
// read until the test writes it. Meanwhile /-/healthy answers, /-/ready is
// 503 and the API 503 with Retry-After; once the start goes on, /-/ready
// turns 200.
func TestReadyOnlyOnceStarted(t *testing.T) {
	dir := t.TempDir()
	profiles := filepath.Join(dir, "profiles.yaml")
	if err := syscall.Mkfifo(profiles, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := start(t, "immune", immuneBin, "serve", "--data-dir", filepath.Join(dir, "data"), "--http-listen", addr,
		"--opentsdb-listen=", "--profiles-file", profiles)
	base := "http://" + addr
	eventually(t, 60*time.Second, "healthy while starting", func() error { return httpGet(base + "/-/healthy") })
	for _, path := range []string{"/-/ready", "/api/v1/query?query=1"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s while starting: %s, want 503", path, resp.Status)
		}
		if path != "/-/ready" && resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s while starting: no Retry-After", path)
		}
	}
	// Opening the pipe for writing meets the server's read of it.
	if err := os.WriteFile(profiles, []byte("profiles: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitProcessReady(t, p, base+"/-/ready")
}
