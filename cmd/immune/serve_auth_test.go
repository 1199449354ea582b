package main

import (
	"net/http/httptest"
	"testing"

	"github.com/immune-dev/immune/internal/auth"
)

func TestScopeOf(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         auth.Scope
	}{
		{"GET", "/-/healthy", ""},
		{"GET", "/-/ready", ""},
		{"POST", "/api/v1/write", auth.Write},
		{"POST", "/api/put", auth.Write},
		{"GET", "/api/v1/query", auth.Read},
		{"POST", "/api/v1/query_range", auth.Read},
		{"GET", "/api/v1/series", auth.Read},
		{"GET", "/api/v1/labels", auth.Read},
		{"GET", "/api/v1/label/job/values", auth.Read},
		{"GET", "/api/v1/metadata", auth.Read},
		{"GET", "/api/v1/status/buildinfo", auth.Read},
		{"GET", "/api/v1/query_exemplars", auth.Read},
		{"GET", "/api/v1/format_query", auth.Read},
		{"GET", "/api/query", auth.Read},
		{"GET", "/api/suggest", auth.Read},
		{"GET", "/api/search/lookup", auth.Read},
		{"GET", "/api/aggregators", auth.Read},
		{"GET", "/api/config/filters", auth.Read},
		{"GET", "/api/version", auth.Read},
		{"POST", "/api/v1/deployments", auth.Gate},
		{"GET", "/api/v1/deployments/x/plot.svg", auth.Gate},
		{"POST", "/api/v1/backtests/aa", auth.Gate},
		{"POST", "/api/v1/flagger/rollback", auth.Gate},
		{"GET", "/api/v1/profiles", auth.Gate},
		{"POST", "/api/v1/profiles", auth.Admin},
		{"POST", "/api/v1/admin/backup", auth.Admin},
		{"GET", "/debug/pprof/heap", auth.Admin},
		{"GET", "/api/v1/some_future_route", auth.Admin},
	} {
		if got := scopeOf(httptest.NewRequest(tc.method, tc.path, nil)); got != tc.want {
			t.Errorf("%s %s: scope %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}
