package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/immune-dev/immune/bench"
)

// immuneBin is the binary under test, built once by TestMain.
var immuneBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "immune-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	immuneBin = filepath.Join(dir, "immune")
	if out, err := exec.Command("go", "build", "-o", immuneBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build immune: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireBinary returns the path of a real dependency. Missing, it fails the
// test under CI (which installs it) and skips it elsewhere.
func requireBinary(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	// Daemons such as collectd live in /usr/sbin, not on every user's PATH.
	if sbin := filepath.Join("/usr/sbin", name); fileExists(sbin) {
		return sbin
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (CI installs it in .ci/run): %v", name, err)
	}
	t.Skipf("%s is not installed: %v", name, err)
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := bench.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// process is a child process started by a test and stopped by pid.
type process struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// start runs bin with args, logging to a file in the test's temp dir, and
// stops it with SIGTERM when the test ends.
func start(t *testing.T, name, bin string, args ...string) *process {
	t.Helper()
	logFile, err := os.CreateTemp(t.TempDir(), name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t, syscall.SIGTERM)
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("%s log (last 3000 bytes):\n%s", name, tail(b, 3000))
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// stop sends sig and waits for the process to exit, killing it after 30s.
func (p *process) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("signal %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not exit within 30s of %s; killing it", p.name, sig)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// eventually polls cond every interval until it returns nil or timeout
// passes, then fails with cond's last error.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startImmune starts the server on a fresh port and waits until it is ready.
func startImmune(t *testing.T, dataDir string, extra ...string) (*process, string) {
	t.Helper()
	return startImmuneOn(t, dataDir, freeAddr(t), extra...)
}

// startImmuneOn starts the server on addr, as a restart on the same address.
func startImmuneOn(t *testing.T, dataDir, addr string, extra ...string) (*process, string) {
	t.Helper()
	// The OpenTSDB port is off unless a test asks for it: tests run side by side.
	args := append([]string{"serve", "--data-dir", dataDir, "--http-listen", addr, "--log-level", "debug", "--opentsdb-listen="}, extra...)
	p := start(t, "immune", immuneBin, args...)
	waitProcessReady(t, p, "http://"+addr+"/-/ready")
	return p, "http://" + addr
}

func waitProcessReady(t *testing.T, p *process, url string) {
	t.Helper()
	eventually(t, 60*time.Second, p.name+" ready", func() error {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		default:
		}
		return httpGet(url)
	})
}

func httpGet(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// pointBody is an OpenTSDB /api/put body of one point of metric, tagged
// host=a.
func pointBody(metric string, ts, value int64) string {
	return fmt.Sprintf(`[{"metric":%q,"timestamp":%d,"value":%d,"tags":{"host":"a"}}]`, metric, ts, value)
}

// postPut POSTs an /api/put body and returns the response, its body read
// and closed.
func postPut(base, body string) (*http.Response, error) {
	resp, err := http.Post(base+"/api/put", "application/json", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// vectorValues runs the instant query at url and returns its samples'
// values.
func vectorValues(t *testing.T, url string) []string {
	t.Helper()
	var got struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(url, &got); err != nil {
		t.Fatal(err)
	}
	var values []string
	for _, s := range got.Data.Result {
		v, _ := s.Value[1].(string)
		values = append(values, v)
	}
	return values
}
