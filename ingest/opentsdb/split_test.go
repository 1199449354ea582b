package opentsdb

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSplitHTTP: one port serves telnet puts and HTTP, told apart by the
// first byte; a silent client is dropped; closing both sides closes the
// port.
func TestSplitHTTP(t *testing.T) {
	db := openDB(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	telnetLn, httpLn := SplitHTTP(ln, 200*time.Millisecond, 4)

	srv := NewServer(db, testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, telnetLn) }()
	mux := http.NewServeMux()
	mux.Handle("/api/put", srv.PutHandler())
	hs := &http.Server{Handler: mux}
	httpDone := make(chan error, 1)
	go func() { httpDone <- hs.Serve(httpLn) }()

	c := dial(t, addr)
	c.send("put sys.cpu.user 1767225600 1 host=a")
	c.sync()
	resp, err := http.Post("http://"+addr+"/api/put?summary", "application/json",
		strings.NewReader(`{"metric":"sys.cpu.user","timestamp":1767225610,"value":2,"tags":{"host":"a"}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"success":1,"failed":0}` {
		t.Fatalf("HTTP on the telnet port: %s %s", resp.Status, body)
	}
	wantSeries(t, db, map[string][]sample{
		`{__name__="sys.cpu.user", host="a"}`: {{1767225600000, 1}, {1767225610000, 2}},
	})

	silent := dial(t, addr)
	silent.waitClosed()

	cancel()
	if err := <-served; err != nil {
		t.Fatalf("telnet Serve: %v", err)
	}
	if err := hs.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-httpDone; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("HTTP Serve: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatal("the shared port still accepts after both sides closed")
	}
}
