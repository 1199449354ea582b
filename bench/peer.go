package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Peer is a server process started by the harness on loopback ports with a
// data directory of its own, and stopped by pid.
type Peer struct {
	Name string
	// DataDir is the peer's data directory, removed by Stop.
	DataDir string
	cmd     *exec.Cmd
	done    chan struct{}
	log     *os.File
}

// PeerSpec says how to start a peer: Args gets the data directory.
type PeerSpec struct {
	Name string
	// Binary is the executable; Package names the Debian package that
	// installs it, for the error when it is missing.
	Binary, Package string
	Args            func(dataDir string) []string
	// Files are written into the peer's directory, beside its data
	// directory, before it starts: configuration its Args refer to.
	Files map[string]string
	// ReadyURL answers 2xx once the peer serves.
	ReadyURL string
}

// StartPeer starts spec's binary and waits until it is ready.
func StartPeer(ctx context.Context, spec PeerSpec) (*Peer, error) {
	bin, err := exec.LookPath(spec.Binary)
	if err != nil {
		if spec.Package != "" {
			return nil, fmt.Errorf("%s: %s not found: install the Debian package %s", spec.Name, spec.Binary, spec.Package)
		}
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	dir, err := os.MkdirTemp("", "immune-bench-"+spec.Name+"-")
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for name, content := range spec.Files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			log.Close()
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	cmd := exec.Command(bin, spec.Args(data)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Peer{Name: spec.Name, DataDir: data, cmd: cmd, done: make(chan struct{}), log: log}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(ctx, spec.ReadyURL, time.Minute); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// Pid is the peer's process id, for CPU and memory figures from /proc.
func (p *Peer) Pid() int { return p.cmd.Process.Pid }

// CPU returns the user plus system CPU time the peer has used, whether it
// still runs or has exited.
func (p *Peer) CPU() (time.Duration, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime(), nil
	default:
		return ProcessCPU(p.Pid())
	}
}

func (p *Peer) waitReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready; log in %s", p.Name, p.log.Name())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w", p.Name, url, ctx.Err())
		case <-tick.C:
		}
	}
}

// Terminate sends SIGTERM and waits for the exit (SIGKILL after 30 s),
// keeping the peer's directory.
func (p *Peer) Terminate() error {
	err := p.cmd.Process.Signal(syscall.SIGTERM)
	if errors.Is(err, os.ErrProcessDone) {
		err = nil
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		err = fmt.Errorf("%s ignored SIGTERM for 30s; killed", p.Name)
	}
	return err
}

// Stop terminates the peer and removes its directory. It may follow
// Terminate.
func (p *Peer) Stop() error {
	err := p.Terminate()
	p.log.Close()
	return errors.Join(err, os.RemoveAll(filepath.Dir(p.DataDir)))
}

// AwaitLog waits until the peer's log holds text: how a peer that works in
// the background tells that it is done.
func (p *Peer) AwaitLog(ctx context.Context, text string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(p.log.Name())
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(text)) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited; log in %s", p.Name, p.log.Name())
		case <-ctx.Done():
			return fmt.Errorf("%s: no %q in its log: %w", p.Name, text, ctx.Err())
		case <-tick.C:
		}
	}
}

// FreeAddr returns a loopback address whose port was free just now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
