package gate

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/immune-dev/immune/internal/detecttest"
)

// BenchmarkGateStatus measures GET /api/v1/deployments/{id} on an
// evaluated deployment, as the gate's pollers read it, without the
// network: the handler's own cost ("cached"), and the same answer built
// as the handler did before snapshots, read from disk, decoded and
// encoded on every request ("from-disk").
func BenchmarkGateStatus(b *testing.B) {
	clock := detecttest.NewClock()
	svc := newService(b, detecttest.NewFleet(), clock, testProfile())
	var reg Registration
	if err := json.Unmarshal([]byte(registration(nil)), &reg); err != nil {
		b.Fatal(err)
	}
	d, err := svc.Register(b.Context(), reg.deployment())
	if err != nil {
		b.Fatal(err)
	}
	clock.Add(3 * time.Minute)
	if _, err := svc.Evaluate(b.Context(), d.ID); err != nil {
		b.Fatal(err)
	}
	api := New(svc, Options{})
	mux := http.NewServeMux()
	api.Register(mux)
	path := "/api/v1/deployments/" + d.ID
	fromDisk := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := svc.Get(d.ID)
		if err != nil {
			api.writeError(w, r, err)
			return
		}
		api.writeJSON(w, r, http.StatusOK, StatusOf(d))
	})
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"cached", mux}, {"from-disk", fromDisk}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w := httptest.NewRecorder()
					c.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
					if w.Code != http.StatusOK {
						b.Errorf("status %d: %s", w.Code, w.Body)
						return
					}
				}
			})
		})
	}
}
