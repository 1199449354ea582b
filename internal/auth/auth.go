// Package auth owns who may call Immune: the clients of an auth file, each
// with a bearer token or a basic-auth password and the scopes it holds, and
// the HTTP middleware and telnet check that enforce them.
//
// The auth file is YAML:
//
//	clients:
//	  - name: prometheus          # for logs; the user name for basic auth
//	    token_sha256: 5e88...     # hex SHA-256 of the bearer token
//	    scopes: [write]
//	  - name: argo
//	    token: s3cret-token       # or the token itself
//	    scopes: [gate]
//	  - name: alice
//	    password_bcrypt: $2y$10$... # basic auth, as Prometheus' web config
//	    scopes: [read, gate]
//
// Which scope a request needs is the caller's to say (Guard.Handler's
// scopeOf); Immune's serve command asks write for ingest, read for the
// query APIs, gate for deployments, verdicts, backtests and the Flagger
// hooks, and admin for writing profiles, backups and /debug/pprof. Admin
// holds every other scope too.
package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
)

// Scope is a kind of access a client may hold.
type Scope string

// The scopes. Admin holds every other scope too.
const (
	Write Scope = "write"
	Read  Scope = "read"
	Gate  Scope = "gate"
	Admin Scope = "admin"
)

var scopes = []Scope{Write, Read, Gate, Admin}

// entry is one client of the auth file.
type entry struct {
	Name           string  `yaml:"name"`
	Token          string  `yaml:"token"`
	TokenSHA256    string  `yaml:"token_sha256"`
	PasswordBcrypt string  `yaml:"password_bcrypt"`
	Scopes         []Scope `yaml:"scopes"`
}

type file struct {
	Clients []entry `yaml:"clients"`
}

// client is a loaded Client: its token reduced to a hash, so that every
// comparison is between equal-length digests.
type client struct {
	name     string
	token    []byte // SHA-256 of the token; nil without one
	password []byte // bcrypt hash; nil without one
	scopes   []Scope
	// verified is the SHA-256 of the last password bcrypt accepted, so
	// that a client sending it on every request pays bcrypt once.
	verified atomic.Pointer[[sha256.Size]byte]
}

func (c *client) holds(s Scope) bool {
	return slices.Contains(c.scopes, s) || slices.Contains(c.scopes, Admin)
}

// Clients is a loaded auth file. It is safe for concurrent use.
type Clients struct {
	list   []*client
	byName map[string]*client
	// dummy is a bcrypt hash at the clients' highest cost, compared
	// against for unknown users so that a wrong name costs the same time
	// as a wrong password.
	dummy []byte
}

// Load reads and checks an auth file.
func Load(path string) (*Clients, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	cs, err := newClients(f.Clients)
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	return cs, nil
}

func newClients(entries []entry) (*Clients, error) {
	if len(entries) == 0 {
		return nil, errors.New("no clients")
	}
	cs := &Clients{byName: map[string]*client{}}
	dummyCost := 0
	for i, e := range entries {
		where := fmt.Sprintf("client %d (%q)", i+1, e.Name)
		if e.Name == "" {
			return nil, fmt.Errorf("%s: name is required", where)
		}
		if _, dup := cs.byName[e.Name]; dup {
			return nil, fmt.Errorf("%s: name used twice", where)
		}
		c := &client{name: e.Name, scopes: e.Scopes}
		if len(e.Scopes) == 0 {
			return nil, fmt.Errorf("%s: no scopes", where)
		}
		for _, s := range e.Scopes {
			if !slices.Contains(scopes, s) {
				return nil, fmt.Errorf("%s: unknown scope %q (want write, read, gate or admin)", where, s)
			}
		}
		switch {
		case e.Token != "" && e.TokenSHA256 != "":
			return nil, fmt.Errorf("%s: token and token_sha256 both set", where)
		case e.Token != "":
			sum := sha256.Sum256([]byte(e.Token))
			c.token = sum[:]
		case e.TokenSHA256 != "":
			sum, err := hex.DecodeString(e.TokenSHA256)
			if err != nil || len(sum) != sha256.Size {
				return nil, fmt.Errorf("%s: token_sha256 must be 64 hex digits", where)
			}
			if bytes.Equal(sum, emptyToken[:]) {
				return nil, fmt.Errorf("%s: token_sha256 is the digest of the empty token", where)
			}
			c.token = sum
		}
		for _, other := range cs.list {
			if c.token != nil && bytes.Equal(other.token, c.token) {
				return nil, fmt.Errorf("%s: the same token as client %q", where, other.name)
			}
		}
		if e.PasswordBcrypt != "" {
			cost, err := bcrypt.Cost([]byte(e.PasswordBcrypt))
			if err != nil {
				return nil, fmt.Errorf("%s: password_bcrypt: %w", where, err)
			}
			c.password = []byte(e.PasswordBcrypt)
			if cost > dummyCost {
				dummyCost = cost
			}
		}
		if c.token == nil && c.password == nil {
			return nil, fmt.Errorf("%s: needs a token, token_sha256 or password_bcrypt", where)
		}
		cs.list = append(cs.list, c)
		cs.byName[e.Name] = c
	}
	if dummyCost > 0 {
		var err error
		if cs.dummy, err = bcrypt.GenerateFromPassword([]byte("immune"), dummyCost); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

var emptyToken = sha256.Sum256(nil)

// errNoCredentials and errBadCredentials are why a request is refused 401.
var (
	errNoCredentials  = errors.New("no credentials: send Authorization: Bearer <token> or basic auth")
	errBadCredentials = errors.New("invalid credentials")
)

// bcrypts bounds the bcrypt comparisons running at once: each takes tens
// of milliseconds of CPU, and wrong passwords never reach the cache.
var bcrypts = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))

func (cs *Clients) byToken(token string) *client {
	if token == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(token))
	var found *client
	// Every entry is compared, so the time taken says nothing of which.
	for _, c := range cs.list {
		if c.token != nil && subtle.ConstantTimeCompare(c.token, sum[:]) == 1 {
			found = c
		}
	}
	return found
}

func (cs *Clients) byPassword(user, password string) *client {
	c := cs.byName[user]
	if c == nil || c.password == nil {
		if cs.dummy != nil {
			compareBcrypt(cs.dummy, password)
		}
		return nil
	}
	sum := sha256.Sum256([]byte(password))
	if v := c.verified.Load(); v != nil && subtle.ConstantTimeCompare(v[:], sum[:]) == 1 {
		return c
	}
	if !compareBcrypt(c.password, password) {
		return nil
	}
	c.verified.Store(&sum)
	return c
}

func compareBcrypt(hash []byte, password string) bool {
	bcrypts <- struct{}{}
	defer func() { <-bcrypts }()
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// authenticate returns the client that r's credentials name.
func (cs *Clients) authenticate(r *http.Request) (*client, error) {
	if user, password, ok := r.BasicAuth(); ok {
		if c := cs.byPassword(user, password); c != nil {
			return c, nil
		}
		return nil, errBadCredentials
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, errNoCredentials
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, errBadCredentials
	}
	if c := cs.byToken(strings.TrimSpace(token)); c != nil {
		return c, nil
	}
	return nil, errBadCredentials
}

// Guard enforces an auth file that can be swapped while serving (on
// SIGHUP). Its zero value refuses everything.
type Guard struct {
	mu      sync.RWMutex
	clients *Clients
}

// NewGuard returns a Guard over cs.
func NewGuard(cs *Clients) *Guard {
	return &Guard{clients: cs}
}

// Swap replaces the clients; requests already admitted are not affected.
func (g *Guard) Swap(cs *Clients) {
	g.mu.Lock()
	g.clients = cs
	g.mu.Unlock()
}

func (g *Guard) current() *Clients {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.clients
}

// CheckToken returns nil if token is a client's holding scope s.
func (g *Guard) CheckToken(token string, s Scope) error {
	cs := g.current()
	if cs == nil {
		return errBadCredentials
	}
	c := cs.byToken(token)
	if c == nil {
		return errBadCredentials
	}
	if !c.holds(s) {
		return fmt.Errorf("client %q does not hold the %s scope", c.name, s)
	}
	return nil
}

// Handler wraps next: a request for which scopeOf returns "" passes
// untouched; others need credentials (401 without or with wrong ones, with
// a WWW-Authenticate challenge) of a client holding the scope (403 if not).
func (g *Guard) Handler(next http.Handler, scopeOf func(*http.Request) Scope) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := scopeOf(r)
		if s == "" {
			next.ServeHTTP(w, r)
			return
		}
		cs := g.current()
		if cs == nil {
			http.Error(w, "no auth file loaded", http.StatusForbidden)
			return
		}
		c, err := cs.authenticate(r)
		if err != nil {
			w.Header().Add("WWW-Authenticate", `Bearer realm="immune"`)
			w.Header().Add("WWW-Authenticate", `Basic realm="immune", charset="UTF-8"`)
			http.Error(w, "401 Unauthorized: "+err.Error(), http.StatusUnauthorized)
			return
		}
		if !c.holds(s) {
			http.Error(w, fmt.Sprintf("403 Forbidden: client %q does not hold the %s scope", c.name, s), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
