package gate

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/immune-dev/immune/detect"
)

func flaggerPayload(checksum string, md map[string]string) string {
	b, _ := json.Marshal(map[string]any{
		"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": checksum, "metadata": md,
	})
	return string(b)
}

var podinfoMetadata = map[string]string{
	"canary": `{app="checkout",version="v2"}`, "baseline": `{app="checkout",version!="v2"}`,
	"profile": "test", "min_bake": "5m", "max_bake": "1h",
}

func TestGateFlaggerPromotion(t *testing.T) {
	e := newEnv(t)
	const (
		pre     = "/api/v1/flagger/pre-rollout"
		confirm = "/api/v1/flagger/confirm-promotion"
		back    = "/api/v1/flagger/rollback"
	)
	code, body := e.do(t, "POST", pre, flaggerPayload("85d557f47b", map[string]string{"profile": "test"}))
	if code != http.StatusBadRequest || !strings.Contains(string(body), "metadata.canary is required") {
		t.Fatalf("pre-rollout without a canary: %d %s", code, body)
	}
	code, body = e.do(t, "POST", pre, flaggerPayload("85d557f47b", map[string]string{"canary": `{app="checkout",version="v2"}`, "min_bake": "soon"}))
	if code != http.StatusBadRequest || !strings.Contains(string(body), `metadata.min_bake \"soon\"`) {
		t.Fatalf("pre-rollout with a bad duration: %d %s", code, body)
	}
	code, body = e.do(t, "POST", confirm, flaggerPayload("85d557f47b", nil))
	if code != http.StatusNotFound {
		t.Fatalf("confirm-promotion before pre-rollout: %d %s", code, body)
	}

	code, body = e.do(t, "POST", pre, flaggerPayload("85d557f47b", podinfoMetadata))
	st := decodeInto[Status](t, body)
	if code != http.StatusOK || st.Service != "test/podinfo" || st.Version != "85d557f47b" || st.Verdict != detect.Pending {
		t.Fatalf("pre-rollout: %d %s", code, body)
	}
	d, err := e.svc.Get(st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(d.MinBake) != 5*time.Minute || time.Duration(d.MaxBake) != time.Hour || d.Profile != "test" || d.Metadata["flagger_name"] != "podinfo" {
		t.Errorf("registered from metadata: %+v", d)
	}
	// A retried hook finds the same deployment.
	if code, body = e.do(t, "POST", pre, flaggerPayload("85d557f47b", podinfoMetadata)); decodeInto[Status](t, body).ID != st.ID {
		t.Errorf("second pre-rollout: %d %s", code, body)
	}
	if ds, _ := e.svc.List("test/podinfo", ""); len(ds) != 1 {
		t.Errorf("%d deployments after two pre-rollouts", len(ds))
	}

	// Pending: wait, and no rollback.
	code, body = e.do(t, "POST", confirm, flaggerPayload("85d557f47b", nil))
	if code != http.StatusConflict || decodeInto[Status](t, body).Verdict != detect.Pending {
		t.Errorf("confirm-promotion while pending: %d %s", code, body)
	}
	if code, body = e.do(t, "POST", back, flaggerPayload("85d557f47b", nil)); code != http.StatusConflict {
		t.Errorf("rollback while pending: %d %s", code, body)
	}

	// The canary bakes cleanly.
	e.clock.Add(30 * time.Minute)
	if d, err := e.svc.Evaluate(t.Context(), st.ID); err != nil || d.State != detect.Pass {
		t.Fatalf("evaluate: %v %+v", err, d.Verdict)
	}
	code, body = e.do(t, "POST", confirm, flaggerPayload("85d557f47b", map[string]string{"eventType": "Normal"}))
	if code != http.StatusOK || decodeInto[Status](t, body).Verdict != detect.Pass {
		t.Errorf("confirm-promotion after a pass: %d %s", code, body)
	}
	if code, body = e.do(t, "POST", back, flaggerPayload("85d557f47b", nil)); code != http.StatusConflict {
		t.Errorf("rollback after a pass: %d %s", code, body)
	}
	if code, _ = e.do(t, "POST", back, flaggerPayload("0000000000", nil)); code != http.StatusNotFound {
		t.Errorf("rollback of an unknown revision: %d", code)
	}
	// Payload fields Flagger may add are ignored.
	code, _ = e.do(t, "POST", confirm, `{"name":"podinfo","namespace":"test","checksum":"85d557f47b","phase":"Progressing","buildId":"7"}`)
	if code != http.StatusOK {
		t.Errorf("payload with an extra field: %d", code)
	}
}

func TestGateFlaggerRollback(t *testing.T) {
	e := newEnv(t)
	e.src.Set(1000, 0.2, 0.001)
	code, body := e.do(t, "POST", "/api/v1/flagger/pre-rollout", flaggerPayload("bad0001", podinfoMetadata))
	if code != http.StatusOK {
		t.Fatalf("pre-rollout: %d %s", code, body)
	}
	id := decodeInto[Status](t, body).ID
	e.clock.Add(5 * time.Minute)
	if d, err := e.svc.Evaluate(t.Context(), id); err != nil || d.State != detect.Fail {
		t.Fatalf("evaluate: %v %+v", err, d)
	}
	// Mapped by the deployment ID in the metadata this time.
	code, body = e.do(t, "POST", "/api/v1/flagger/rollback", flaggerPayload("other", map[string]string{"deployment": id}))
	if st := decodeInto[Status](t, body); code != http.StatusOK || st.Verdict != detect.Fail || !strings.Contains(st.Reason, "error-ratio") {
		t.Errorf("rollback after a fail: %d %s", code, body)
	}
	// A failed canary is never promoted.
	if code, body = e.do(t, "POST", "/api/v1/flagger/confirm-promotion", flaggerPayload("bad0001", nil)); code != http.StatusConflict {
		t.Errorf("confirm-promotion after a fail: %d %s", code, body)
	}
	if code, _ = e.do(t, "POST", "/api/v1/flagger/rollback", flaggerPayload("x", map[string]string{"deployment": "nope-1"})); code != http.StatusNotFound {
		t.Errorf("rollback of an unknown deployment ID: %d", code)
	}
}
