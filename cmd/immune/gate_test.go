package main

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/immune-dev/immune/detect"
	"github.com/immune-dev/immune/detect/gate"
	"github.com/immune-dev/immune/internal/detecttest"
)

var gateT0 = detecttest.T0

type gateEnv struct {
	svc   *detect.Service
	src   *detecttest.Fleet
	clock *detecttest.Clock
	mux   *http.ServeMux
}

func newGateEnv(t *testing.T) *gateEnv {
	t.Helper()
	store, err := detect.OpenStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := &gateEnv{src: detecttest.NewFleet(), clock: detecttest.NewClock(), mux: http.NewServeMux()}
	profile := detect.Profile{Name: "test", Metrics: []detect.Metric{
		{Name: "error-ratio", Kind: detect.KindCount, Critical: true, Tolerance: 0.2, Limit: 0.01,
			Events: `sum(increase(errors_total[$step]))`, Exposure: `sum(increase(requests_total[$step]))`},
	}}
	e.svc, err = detect.NewService(store, e.src, detect.Options{Now: e.clock.Now, Profiles: []detect.Profile{profile}})
	if err != nil {
		t.Fatal(err)
	}
	gate.New(e.svc, gate.Options{}).Register(e.mux)
	return e
}

// serve serves the gate API, through wrap if not nil.
func (e *gateEnv) serve(t *testing.T, wrap func(http.Handler) http.Handler) string {
	var h http.Handler = e.mux
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// start runs "immune gate start" with a start in the past, so the first
// evaluation already has 30 minutes of data, and returns the ID.
func (e *gateEnv) start(t *testing.T, url string, ago time.Duration) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"gate", "start", "--url", url, "--service", "checkout", "--version", "v2",
		"--canary", `{app="checkout",version="v2"}`, "--baseline", `{app="checkout",version!="v2"}`,
		"--profile", "test", "--start", gateT0.Add(-ago).Format(time.RFC3339), "--metadata", "ticket=OPS-1"},
		&stdout, &stderr)
	if err != nil {
		t.Fatalf("gate start: %v\n%s", err, stderr.String())
	}
	id := strings.TrimSuffix(stdout.String(), "\n")
	if id == "" || strings.ContainsAny(id, " \n") {
		t.Fatalf("gate start printed %q on stdout, want only the ID", stdout.String())
	}
	return id
}

// wantExit checks that err carries the exit status code.
func wantExit(t *testing.T, err error, code int, stderr string) {
	t.Helper()
	var ec exitCode
	switch {
	case code == 0 && err != nil:
		t.Fatalf("exit: %v, want success\n%s", err, stderr)
	case code != 0 && !errors.As(err, &ec):
		t.Fatalf("error %v is not an exit code, want %d\n%s", err, code, stderr)
	case code != 0 && ec.code != code:
		t.Fatalf("exit %d (%v), want %d\n%s", ec.code, err, code, stderr)
	}
}

func TestGateCLIWaitPass(t *testing.T) {
	e := newGateEnv(t)
	url := e.serve(t, nil)
	id := e.start(t, url, 30*time.Minute)
	if d, _ := e.svc.Get(id); d.State != detect.Pass || d.Metadata["ticket"] != "OPS-1" {
		t.Fatalf("registered deployment: %+v", d)
	}
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"gate", "wait", "--url", url, "--deployment", id, "--timeout", "1m", "--interval", "10ms"}, &stdout, &stderr)
	wantExit(t, err, 0, stderr.String())
	if stdout.String() != "pass\n" || !strings.Contains(stderr.String(), " pass  every critical metric is within tolerance") {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

func TestGateCLIWaitFail(t *testing.T) {
	e := newGateEnv(t)
	e.src.Set(1000, 0.2, 0.001)
	url := e.serve(t, nil)
	id := e.start(t, url, 30*time.Minute)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"gate", "wait", "--url", url, "--deployment", id, "--interval", "10ms"}, &stdout, &stderr)
	wantExit(t, err, 1, stderr.String())
	if !strings.Contains(err.Error(), "deployment "+id+" failed: error-ratio: ") || !strings.Contains(err.Error(), "beyond the +20% tolerance") {
		t.Errorf("error %q does not name the failing metric", err)
	}
	if !strings.Contains(stderr.String(), " fail  error-ratio: ") {
		t.Errorf("status line: %q", stderr.String())
	}
}

func TestGateCLIWaitTimeout(t *testing.T) {
	e := newGateEnv(t)
	url := e.serve(t, nil)
	id := e.start(t, url, 0) // no data yet: pending for as long as the clock stands still
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"gate", "wait", "--url", url, "--deployment", id, "--timeout", "300ms", "--interval", "20ms"}, &stdout, &stderr)
	wantExit(t, err, 2, stderr.String())
	if !strings.Contains(err.Error(), "timed out after 300ms") || !strings.Contains(stderr.String(), " pending  error-ratio: ") || !strings.Contains(stderr.String(), "eta ") {
		t.Errorf("error %q, stderr %q", err, stderr.String())
	}
}

// TestGateCLIWaitPollsThrough503: the first poll meets a server that is
// starting (503), the next sees pending, then the canary bakes and passes.
func TestGateCLIWaitPollsThrough503(t *testing.T) {
	e := newGateEnv(t)
	var polls atomic.Int32
	url := e.serve(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "GET" {
				switch polls.Add(1) {
				case 1:
					http.Error(w, "starting: replaying the write-ahead log", http.StatusServiceUnavailable)
					return
				case 3:
					// The detector's next evaluation, 30 minutes on.
					e.clock.Add(30 * time.Minute)
					id := strings.TrimPrefix(r.URL.Path, "/api/v1/deployments/")
					if _, err := e.svc.Evaluate(r.Context(), id); err != nil {
						t.Error(err)
					}
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	id := e.start(t, url, 0)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"gate", "wait", "--url", url, "--deployment", id, "--timeout", "1m", "--interval", "10ms"}, &stdout, &stderr)
	wantExit(t, err, 0, stderr.String())
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "503 Service Unavailable: starting") || !strings.Contains(lines[0], "retrying") ||
		!strings.Contains(lines[1], " pending ") || !strings.Contains(lines[2], " pass ") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

// lineSignal is a writer that closes hit once the output contains want.
type lineSignal struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	hit  chan struct{}
	once sync.Once
}

func (w *lineSignal) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.hit) })
	}
	return len(p), nil
}

func (w *lineSignal) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestGateCLIWaitSurvivesRestart: the server is down when the wait starts
// (connection refused) and comes back on the same address.
func TestGateCLIWaitSurvivesRestart(t *testing.T) {
	e := newGateEnv(t)
	first := e.serve(t, nil)
	id := e.start(t, first, 30*time.Minute)

	addr := freeAddr(t)

	stderr := &lineSignal{want: "retrying", hit: make(chan struct{})}
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), []string{"gate", "wait", "--url", "http://" + addr, "--deployment", id, "--timeout", "1m", "--interval", "10ms"}, &stdout, stderr)
	}()
	select {
	case <-stderr.hit:
	case err := <-done:
		t.Fatalf("wait ended while the server was down: %v\n%s", err, stderr.String())
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv := &http.Server{Handler: e.mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	wantExit(t, <-done, 0, stderr.String())
	if !strings.Contains(stderr.String(), "connection refused") || stdout.String() != "pass\n" {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

func TestGateCLIStageCheckAbort(t *testing.T) {
	e := newGateEnv(t)
	url := e.serve(t, nil)
	id := e.start(t, url, 0)
	cli := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append([]string{"gate"}, args...), &stdout, &stderr)
		return stdout.String() + stderr.String(), err
	}
	if out, err := cli("stage", "--url", url, "--deployment", id, "--canary", `{app="checkout",version="v2",zone="b"}`, "--note", "2 hosts"); err != nil || !strings.Contains(out, "stage 1 recorded") {
		t.Fatalf("stage: %v %s", err, out)
	}
	if out, err := cli("stage", "--url", url, "--deployment", id, "--canary", `{app="checkout"}`); err == nil || !strings.Contains(err.Error(), "400 Bad Request: invalid request: canary") {
		t.Errorf("overlapping stage: %v %s", err, out)
	}
	if out, err := cli("check", "--url", url, "--deployment", id, "--name", "smoke", "--passed=false", "--critical", "--details", "500 on /healthz"); err != nil || !strings.Contains(out, ` fail  stage 1  check "smoke" failed: 500 on /healthz`) {
		t.Fatalf("check: %v %s", err, out)
	}
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"gate", "wait", "--url", url, "--deployment", id, "--interval", "10ms"}, &stdout, &stderr)
	wantExit(t, err, 1, stderr.String())
	if !strings.Contains(err.Error(), `failed: check "smoke" failed: 500 on /healthz`) {
		t.Errorf("wait after a failed check: %v", err)
	}
	if out, err := cli("abort", "--url", url, "--deployment", id); err == nil || !strings.Contains(err.Error(), "409 Conflict") {
		t.Errorf("abort of a finished deployment: %v %s", err, out)
	}

	other := e.start(t, url, 0)
	if out, err := cli("abort", "--url", url, "--deployment", other, "--reason", "rolled back by hand"); err != nil || !strings.Contains(out, "aborted  rolled back by hand") {
		t.Fatalf("abort: %v %s", err, out)
	}
	err = run(t.Context(), []string{"gate", "wait", "--url", url, "--deployment", other, "--interval", "10ms"}, &stdout, &stderr)
	wantExit(t, err, 2, stderr.String())
	if out, err := cli("status", "--url", url, "--deployment", other); err != nil || !strings.Contains(out, `"verdict": "aborted"`) {
		t.Errorf("status: %v %s", err, out)
	}
	if _, err := cli("wait", "--url", url, "--deployment", "nope-1"); err == nil || !strings.Contains(err.Error(), "404 Not Found") {
		t.Errorf("wait for an unknown deployment: %v", err)
	}
	if _, err := cli("start", "--url", url, "--service", "checkout"); err == nil || !strings.Contains(err.Error(), "--version is required") {
		t.Errorf("start without a version: %v", err)
	}
}
