package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.yml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func hash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestLoadRefusesBadFiles(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"clients: []", "no clients"},
		{"clients:\n- token: x\n  scopes: [read]", "name is required"},
		{"clients:\n- name: a\n  scopes: [read]", "needs a token"},
		{"clients:\n- name: a\n  token: x", "no scopes"},
		{"clients:\n- name: a\n  token: x\n  scopes: [root]", `unknown scope "root"`},
		{"clients:\n- name: a\n  token: x\n  token_sha256: " + sha("x") + "\n  scopes: [read]", "both set"},
		{"clients:\n- name: a\n  token_sha256: abc\n  scopes: [read]", "64 hex digits"},
		{"clients:\n- name: a\n  password_bcrypt: plain\n  scopes: [read]", "password_bcrypt"},
		{"clients:\n- name: a\n  token: x\n  scopes: [read]\n- name: a\n  token: y\n  scopes: [read]", "name used twice"},
		{"clients:\n- name: a\n  tokn: x\n  scopes: [read]", "field tokn not found"},
		{"clients:\n- name: a\n  token: x\n  scopes: [read]\n- name: b\n  token_sha256: " + sha("x") + "\n  scopes: [write]", `the same token as client "a"`},
		{"clients:\n- name: a\n  token_sha256: " + sha("") + "\n  scopes: [read]", "empty token"},
	} {
		if _, err := Load(writeFile(t, tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.text, err, tc.want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yml")); err == nil {
		t.Error("a missing file loaded")
	}
}

func TestHandler(t *testing.T) {
	cs, err := Load(writeFile(t, `
clients:
  - name: prom
    token: write-token
    scopes: [write]
  - name: argo
    token_sha256: `+sha("gate-token")+`
    scopes: [gate, read]
  - name: ops
    token: admin-token
    scopes: [admin]
  - name: alice
    password_bcrypt: `+hash(t, "pa55")+`
    scopes: [read]
`))
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuard(cs)
	h := g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}), func(r *http.Request) Scope { return Scope(strings.TrimPrefix(r.URL.Path, "/")) })

	for _, tc := range []struct {
		name, path, auth string
		user, password   string
		want             int
	}{
		{"public path", "/", "", "", "", http.StatusNoContent},
		{"no credentials", "/write", "", "", "", http.StatusUnauthorized},
		{"unknown token", "/write", "Bearer nope", "", "", http.StatusUnauthorized},
		{"other scheme", "/write", "Token write-token", "", "", http.StatusUnauthorized},
		{"token with its scope", "/write", "Bearer write-token", "", "", http.StatusNoContent},
		{"scheme in any case", "/write", "bearer write-token", "", "", http.StatusNoContent},
		{"token without the scope", "/read", "Bearer write-token", "", "", http.StatusForbidden},
		{"hashed token", "/gate", "Bearer gate-token", "", "", http.StatusNoContent},
		{"second scope", "/read", "Bearer gate-token", "", "", http.StatusNoContent},
		{"admin holds every scope", "/write", "Bearer admin-token", "", "", http.StatusNoContent},
		{"admin scope", "/admin", "Bearer admin-token", "", "", http.StatusNoContent},
		{"admin needs admin", "/admin", "Bearer gate-token", "", "", http.StatusForbidden},
		{"basic auth", "/read", "", "alice", "pa55", http.StatusNoContent},
		{"basic auth again, cached", "/read", "", "alice", "pa55", http.StatusNoContent},
		{"basic auth wrong password", "/read", "", "alice", "pa56", http.StatusUnauthorized},
		{"basic auth unknown user", "/read", "", "bob", "pa55", http.StatusUnauthorized},
		{"basic auth for a token client", "/write", "", "prom", "write-token", http.StatusUnauthorized},
		{"basic auth without the scope", "/gate", "", "alice", "pa55", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.password)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("got %d %q, want %d", rec.Code, rec.Body, tc.want)
			}
			challenges := rec.Header().Values("WWW-Authenticate")
			if (rec.Code == http.StatusUnauthorized) != (len(challenges) == 2) {
				t.Fatalf("status %d with challenges %q", rec.Code, challenges)
			}
		})
	}

	// The accepted password is remembered by its digest: bcrypt ran once.
	if v := cs.byName["alice"].verified.Load(); v == nil || *v != sha256.Sum256([]byte("pa55")) {
		t.Error("the accepted basic-auth password was not cached")
	}
	if cs.dummy == nil {
		t.Error("no dummy hash to spend a wrong user's time on")
	}

	// A swapped file takes effect for the next request.
	next, err := newClients([]entry{{Name: "new", Token: "new-token", Scopes: []Scope{Write}}})
	if err != nil {
		t.Fatal(err)
	}
	g.Swap(next)
	for token, want := range map[string]int{"write-token": http.StatusUnauthorized, "new-token": http.StatusNoContent} {
		req := httptest.NewRequest(http.MethodGet, "/write", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("after the swap, %s: got %d, want %d", token, rec.Code, want)
		}
	}
}

func TestGuardToken(t *testing.T) {
	cs, err := newClients([]entry{
		{Name: "prom", Token: "w", Scopes: []Scope{Write}},
		{Name: "graf", Token: "r", Scopes: []Scope{Read}},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuard(cs)
	if err := g.CheckToken("w", Write); err != nil {
		t.Errorf("write token: %v", err)
	}
	if err := g.CheckToken("r", Write); err == nil || !strings.Contains(err.Error(), `client "graf" does not hold the write scope`) {
		t.Errorf("read token for write: %v", err)
	}
	for _, token := range []string{"x", ""} {
		if err := g.CheckToken(token, Write); err != errBadCredentials {
			t.Errorf("token %q: %v", token, err)
		}
	}
	if err := new(Guard).CheckToken("w", Write); err != errBadCredentials {
		t.Errorf("empty guard: %v", err)
	}
}
