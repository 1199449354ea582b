package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/immune-dev/immune/internal/auth"
)

// scopeOf is the scope a request needs; "" for the health endpoints, which
// orchestrators probe without credentials. A path not listed needs admin,
// so that a route added later is closed until it is given its scope here.
func scopeOf(r *http.Request) auth.Scope {
	p := r.URL.Path
	switch {
	case p == "/-/healthy" || p == "/-/ready":
		return ""
	case p == "/api/v1/write" || p == "/api/put":
		return auth.Write
	case strings.HasPrefix(p, "/api/v1/deployments"),
		strings.HasPrefix(p, "/api/v1/backtests"),
		strings.HasPrefix(p, "/api/v1/flagger/"),
		p == "/api/v1/profiles" && r.Method == http.MethodGet:
		return auth.Gate
	case readPaths[p],
		strings.HasPrefix(p, "/api/v1/label/"),
		strings.HasPrefix(p, "/api/search/"),
		strings.HasPrefix(p, "/api/config/"):
		return auth.Read
	default:
		return auth.Admin
	}
}

// readPaths are the query APIs' endpoints (query.API and query/opentsdb)
// outside the prefixes scopeOf matches.
var readPaths = map[string]bool{
	"/api/v1/query": true, "/api/v1/query_range": true, "/api/v1/series": true,
	"/api/v1/labels": true, "/api/v1/query_exemplars": true, "/api/v1/format_query": true,
	"/api/v1/metadata": true, "/api/v1/status/buildinfo": true,
	"/api/query": true, "/api/suggest": true, "/api/aggregators": true, "/api/version": true,
}

// checkListen refuses a non-loopback address when nothing authenticates
// its clients, unless the operator said so: anyone who can reach it could
// write, read and gate.
func checkListen(flag, addr string, authenticated, insecure bool) error {
	if authenticated || insecure {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--%s %q: %w", flag, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing --%s %s without --auth-file: anyone who can reach it could write, read and gate; give an auth file, listen on loopback, or pass --insecure-listen", flag, addr)
}

// security is the serve process's authentication and TLS, both reloaded
// from their files on SIGHUP.
type security struct {
	authFile          string
	certFile, keyFile string
	guard             *auth.Guard // nil without an auth file
	cert              atomic.Pointer[tls.Certificate]
}

func newSecurity(f serveFlags) (*security, error) {
	s := &security{authFile: f.authFile, certFile: f.tlsCert, keyFile: f.tlsKey}
	if (s.certFile == "") != (s.keyFile == "") {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if s.authFile != "" {
		cs, err := auth.Load(s.authFile)
		if err != nil {
			return nil, err
		}
		s.guard = auth.NewGuard(cs)
	}
	if s.certFile != "" {
		if err := s.loadCert(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *security) loadCert() error {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	s.cert.Store(&cert)
	return nil
}

// handler puts h behind the auth file, if there is one.
func (s *security) handler(h http.Handler) http.Handler {
	if s.guard == nil {
		return h
	}
	return s.guard.Handler(h, scopeOf)
}

// telnetAuth is the OpenTSDB telnet check: nil without an auth file.
func (s *security) telnetAuth() func(string) error {
	if s.guard == nil {
		return nil
	}
	return func(token string) error { return s.guard.CheckToken(token, auth.Write) }
}

// listen wraps ln in TLS when a certificate is configured.
func (s *security) listen(ln net.Listener) net.Listener {
	if s.certFile == "" {
		return ln
	}
	return tls.NewListener(ln, &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
	})
}

// reloadOnHangup reloads the auth file and certificate on each SIGHUP
// until ctx ends; a file that fails to load leaves the previous one in
// force.
func (s *security) reloadOnHangup(ctx context.Context, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if s.guard != nil {
				if cs, err := auth.Load(s.authFile); err != nil {
					log.Error("auth file not reloaded, the previous one stays in force", "err", err)
				} else {
					s.guard.Swap(cs)
					log.Info("auth file reloaded", "file", s.authFile)
				}
			}
			if s.certFile != "" {
				if err := s.loadCert(); err != nil {
					log.Error("TLS certificate not reloaded, the previous one stays in force", "err", err)
				} else {
					log.Info("TLS certificate reloaded", "file", s.certFile)
				}
			}
		}
	}()
}
