package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const authFile = `
clients:
  - name: prometheus
    token: write-token
    scopes: [write]
  - name: grafana
    token: read-token
    scopes: [read]
  - name: ops
    token: admin-token
    scopes: [admin]
`

// call sends one request with a bearer token ("" for none) and returns the
// status and body.
func call(t *testing.T, client *http.Client, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func queryURL(base string, ts int64) string {
	return base + "/api/v1/query?" + url.Values{"query": {"count_over_time(authed[1h])"}, "time": {fmt.Sprint(ts)}}.Encode()
}

func TestServeAuth(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "auth.yml")
	if err := os.WriteFile(file, []byte(authFile), 0o600); err != nil {
		t.Fatal(err)
	}
	tsdbAddr := freeAddr(t)
	p, base := startImmune(t, filepath.Join(dir, "data"), "--auth-file", file, "--opentsdb-listen", tsdbAddr)
	c := http.DefaultClient
	now := time.Now().Unix()

	for _, tc := range []struct {
		what, method, url, token, body string
		want                           int
	}{
		{"health without credentials", "GET", base + "/-/ready", "", "", 200},
		{"write without credentials", "POST", base + "/api/put", "", pointBody("authed", now, 1), 401},
		{"write with a wrong token", "POST", base + "/api/put", "nope", pointBody("authed", now, 1), 401},
		{"write with a read token", "POST", base + "/api/put", "read-token", pointBody("authed", now, 1), 403},
		{"write with a write token", "POST", base + "/api/put", "write-token", pointBody("authed", now, 1), 204},
		{"remote write with a read token", "POST", base + "/api/v1/write", "read-token", "", 403},
		{"query with a write token", "GET", queryURL(base, now), "write-token", "", 403},
		{"query with a read token", "GET", queryURL(base, now), "read-token", "", 200},
		{"gate with a read token", "GET", base + "/api/v1/deployments", "read-token", "", 403},
		{"gate with an admin token", "GET", base + "/api/v1/deployments", "admin-token", "", 200},
		{"profiles written with a read token", "POST", base + "/api/v1/profiles", "read-token", "{}", 403},
		{"pprof with a read token", "GET", base + "/debug/pprof/", "read-token", "", 403},
		{"backup with a read token", "POST", base + "/api/v1/admin/backup?dir=/nonexistent", "read-token", "", 403},
	} {
		if got, body := call(t, c, tc.method, tc.url, tc.token, tc.body); got != tc.want {
			t.Errorf("%s: got %d %q, want %d", tc.what, got, body, tc.want)
		}
	}

	// The CLI sends --token-file's token.
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte("admin-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(immuneBin, "backup", "--url", base, "--to", filepath.Join(dir, "copy")).CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Errorf("backup without a token: %v: %s", err, out)
	}
	if out, err := exec.Command(immuneBin, "backup", "--url", base, "--to", filepath.Join(dir, "copy"), "--token-file", tokenFile).CombinedOutput(); err != nil {
		t.Errorf("backup with the admin token: %v: %s", err, out)
	}

	// Telnet: nothing before "auth <token>", then puts as usual.
	conn := dialTelnet(t, func() (net.Conn, error) { return net.Dial("tcp", tsdbAddr) })
	conn.send(fmt.Sprintf("put authed %d 1 host=b", now))
	if got := conn.readAll(); got != "auth: required: the first line must be auth <token>\n" {
		t.Errorf("telnet without auth: %q", got)
	}
	conn = dialTelnet(t, func() (net.Conn, error) { return net.Dial("tcp", tsdbAddr) })
	conn.send("auth read-token")
	if got := conn.readAll(); !strings.HasPrefix(got, "auth: denied: ") {
		t.Errorf("telnet with a read token: %q", got)
	}
	conn = dialTelnet(t, func() (net.Conn, error) { return net.Dial("tcp", tsdbAddr) })
	conn.send("auth write-token", fmt.Sprintf("put authed %d 1 host=b", now), "version")
	conn.readLine() // the version reply: the put is committed
	if _, body := call(t, c, "GET", queryURL(base, now), "read-token", ""); !strings.Contains(body, `"host":"b"`) || !strings.Contains(body, `"host":"a"`) {
		t.Errorf("the written points are not both there: %s", body)
	}

	// SIGHUP swaps the file: the new token works, the removed one no more.
	if err := os.WriteFile(file, []byte(strings.Replace(authFile, "read-token", "new-read-token", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the reloaded token accepted", func() error {
		if got, body := call(t, c, "GET", queryURL(base, now), "new-read-token", ""); got != 200 {
			return fmt.Errorf("%d %s", got, body)
		}
		return nil
	})
	if got, _ := call(t, c, "GET", queryURL(base, now), "read-token", ""); got != 401 {
		t.Errorf("the removed token: got %d, want 401", got)
	}
	// A broken file leaves the last good one in force.
	if err := os.WriteFile(file, []byte("clients: [oops"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the broken file reported", func() error {
		b, _ := os.ReadFile(p.log.Name())
		if !strings.Contains(string(b), "auth file not reloaded") {
			return fmt.Errorf("not in the log yet")
		}
		return nil
	})
	if got, _ := call(t, c, "GET", queryURL(base, now), "new-read-token", ""); got != 200 {
		t.Errorf("after a broken reload: got %d, want 200", got)
	}
}

func TestServeRefusesOpenListenWithoutAuth(t *testing.T) {
	out, err := exec.Command(immuneBin, "serve", "--data-dir", t.TempDir(), "--http-listen", "0.0.0.0:0", "--opentsdb-listen=").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refusing --http-listen 0.0.0.0:0 without --auth-file") {
		t.Fatalf("got %v: %s", err, out)
	}
	out, err = exec.Command(immuneBin, "serve", "--data-dir", t.TempDir(), "--http-listen", "127.0.0.1:0", "--opentsdb-listen", ":0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refusing --opentsdb-listen :0") {
		t.Fatalf("got %v: %s", err, out)
	}
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	addr, tsdbAddr := freeAddr(t), freeAddr(t)
	p := start(t, "immune", immuneBin, "serve", "--data-dir", filepath.Join(dir, "data"), "--http-listen", addr,
		"--opentsdb-listen", tsdbAddr, "--tls-cert", certFile, "--tls-key", keyFile)
	tlsConfig := &tls.Config{RootCAs: pool}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	base := "https://" + addr
	eventually(t, 60*time.Second, "ready over HTTPS", func() error {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		default:
		}
		resp, err := c.Get(base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	})
	if err := httpGet("http://" + addr + "/-/ready"); err == nil {
		t.Error("plain HTTP answered on the TLS port")
	}
	now := time.Now().Unix()
	if got, body := call(t, c, "POST", base+"/api/put", "", pointBody("authed", now, 1)); got != 204 {
		t.Fatalf("put over HTTPS: %d %s", got, body)
	}
	conn := dialTelnet(t, func() (net.Conn, error) { return tls.Dial("tcp", tsdbAddr, tlsConfig) })
	conn.send(fmt.Sprintf("put authed %d 1 host=b", now), "version")
	if got := conn.readLine(); !strings.HasPrefix(got, "net.opentsdb.tools Immune ") {
		t.Fatalf("telnet over TLS: %q", got)
	}
	if _, body := call(t, c, "GET", queryURL(base, now), "", ""); !strings.Contains(body, `"host":"b"`) || !strings.Contains(body, `"host":"a"`) {
		t.Errorf("the written points are not both there: %s", body)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "immune test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// telnetConn is a line-oriented client of the OpenTSDB port.
type telnetConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialTelnet(t *testing.T, dial func() (net.Conn, error)) *telnetConn {
	t.Helper()
	nc, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &telnetConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *telnetConn) send(lines ...string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, strings.Join(lines, "\n")+"\n"); err != nil {
		c.t.Fatal(err)
	}
}

func (c *telnetConn) readLine() string {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, line)
	}
	return line
}

// readAll reads until the server closes the connection.
func (c *telnetConn) readAll() string {
	c.t.Helper()
	b, err := io.ReadAll(c.r)
	if err != nil && !strings.Contains(err.Error(), "connection reset") {
		c.t.Fatalf("read: %v (got %q)", err, b)
	}
	return string(b)
}
