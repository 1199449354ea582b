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
// Scopes are write (remote write, OpenTSDB put), read (the query APIs),
// gate (deployments, verdicts, backtests, Argo Rollouts and Flagger hooks)
// and admin (profiles, /debug/pprof), which holds every other scope too.
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

// Client is one entry of the auth file.
type Client struct {
	Name           string  `yaml:"name"`
	Token          string  `yaml:"token"`
	TokenSHA256    string  `yaml:"token_sha256"`
	PasswordBcrypt string  `yaml:"password_bcrypt"`
	Scopes         []Scope `yaml:"scopes"`
}

type file struct {
	Clients []Client `yaml:"clients"`
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

func newClients(entries []Client) (*Clients, error) {
	if len(entries) == 0 {
		return nil, errors.New("no clients")
	}
	cs := &Clients{byName: map[string]*client{}}
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
			c.token = sum
		}
		if e.PasswordBcrypt != "" {
			if _, err := bcrypt.Cost([]byte(e.PasswordBcrypt)); err != nil {
				return nil, fmt.Errorf("%s: password_bcrypt: %w", where, err)
			}
			c.password = []byte(e.PasswordBcrypt)
		}
		if c.token == nil && c.password == nil {
			return nil, fmt.Errorf("%s: needs a token, token_sha256 or password_bcrypt", where)
		}
		cs.list = append(cs.list, c)
		cs.byName[e.Name] = c
	}
	return cs, nil
}

// ErrNoCredentials and ErrBadCredentials are why a request is refused 401.
var (
	ErrNoCredentials  = errors.New("no credentials: send Authorization: Bearer <token> or basic auth")
	ErrBadCredentials = errors.New("invalid credentials")
)

func (cs *Clients) byToken(token string) *client {
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

// dummyHash is compared against for unknown users, so that a wrong name
// costs the same bcrypt time as a wrong password.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("immune"), bcrypt.DefaultCost)

func (cs *Clients) byPassword(user, password string) *client {
	c := cs.byName[user]
	if c == nil || c.password == nil {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return nil
	}
	sum := sha256.Sum256([]byte(password))
	if v := c.verified.Load(); v != nil && subtle.ConstantTimeCompare(v[:], sum[:]) == 1 {
		return c
	}
	if bcrypt.CompareHashAndPassword(c.password, []byte(password)) != nil {
		return nil
	}
	c.verified.Store(&sum)
	return c
}

// authenticate returns the client r's credentials name.
func (cs *Clients) authenticate(r *http.Request) (*client, error) {
	if user, password, ok := r.BasicAuth(); ok {
		if c := cs.byPassword(user, password); c != nil {
			return c, nil
		}
		return nil, ErrBadCredentials
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, ErrNoCredentials
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, ErrBadCredentials
	}
	if c := cs.byToken(strings.TrimSpace(token)); c != nil {
		return c, nil
	}
	return nil, ErrBadCredentials
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

// Token returns the name of the client holding token, if it holds scope s.
func (g *Guard) Token(token string, s Scope) (string, error) {
	cs := g.current()
	if cs == nil {
		return "", ErrBadCredentials
	}
	c := cs.byToken(token)
	if c == nil {
		return "", ErrBadCredentials
	}
	if !c.holds(s) {
		return c.name, fmt.Errorf("client %q does not hold the %s scope", c.name, s)
	}
	return c.name, nil
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
