package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"time"

	"github.com/immune-dev/immune/detect"
)

// FlaggerPayload is the body Flagger posts to every webhook. Checksum
// identifies the canary's revision and becomes the deployment's version.
//
// Metadata keys Immune reads: "deployment" (an ID, which overrides the
// lookup by name and checksum) and, for pre-rollout, "canary" (required),
// "baseline", "profile", "min_bake", "max_bake" and "step" (Go durations
// such as "5m").
type FlaggerPayload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Phase     string            `json:"phase"`
	Checksum  string            `json:"checksum"`
	Metadata  map[string]string `json:"metadata"`
}

// service is the deployment service a Flagger canary maps to.
func (p FlaggerPayload) service() string {
	if p.Namespace == "" {
		return p.Name
	}
	return p.Namespace + "/" + p.Name
}

// decodeFlagger reads a webhook payload. Unlike the rest of the API it
// accepts unknown fields: the payload is Flagger's, and a field a newer
// Flagger adds must not turn every promotion into a wait.
func decodeFlagger(w http.ResponseWriter, r *http.Request) (FlaggerPayload, error) {
	var p FlaggerPayload
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes)).Decode(&p)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return p, badRequest("request body is empty: send Flagger's webhook payload {name, namespace, phase, checksum, metadata}")
	case errors.As(err, &tooLarge):
		return p, fmt.Errorf("request body is over %d bytes: %w", MaxBodyBytes, err)
	case err != nil:
		return p, badRequest("request body is not a Flagger webhook payload: %v", err)
	case p.Name == "":
		return p, badRequest(`field "name" is required: the Flagger canary's name`)
	}
	return p, nil
}

// findFlagger maps a payload to a deployment: the ID in
// metadata.deployment, else the most recently started deployment of
// namespace/name (or name alone) at version checksum. It returns
// detect.ErrNotFound when none matches.
func (a *API) findFlagger(p FlaggerPayload) (*detect.Snapshot, error) {
	if id := p.Metadata["deployment"]; id != "" {
		return a.svc.Snapshot(id)
	}
	var best *detect.Deployment
	for _, service := range []string{p.service(), p.Name} {
		ds, err := a.svc.List(service, "")
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if d.Version == p.Checksum && (best == nil || d.Start.After(best.Start)) {
				best = d
			}
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w: no deployment of %s at checksum %q: register one (pre-rollout hook or POST /api/v1/deployments) or pass metadata.deployment", detect.ErrNotFound, p.service(), p.Checksum)
	}
	// Read again as the status endpoint reads it: the snapshot its
	// pollers share, status encoding included.
	return a.svc.Snapshot(best.ID)
}

// flaggerPreRollout registers the revision unless it is already
// registered, and answers 200 so Flagger starts shifting traffic. A 400
// (no canary selector, a bad duration) counts as a failed check in
// Flagger and shows up in its events with the message.
func (a *API) flaggerPreRollout(w http.ResponseWriter, r *http.Request) {
	p, err := decodeFlagger(w, r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.flaggerMu.Lock()
	defer a.flaggerMu.Unlock()
	snap, err := a.findFlagger(p)
	if err == nil {
		a.writeStatus(w, r, http.StatusOK, snap)
		return
	}
	if !errors.Is(err, detect.ErrNotFound) || p.Metadata["deployment"] != "" {
		a.writeError(w, r, err)
		return
	}
	reg, err := flaggerRegistration(p)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	d, err := a.svc.Register(r.Context(), reg.deployment())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.log.Info("deployment registered by flagger", "id", d.ID, "service", d.Service, "version", d.Version, "phase", p.Phase)
	a.writeJSON(w, r, http.StatusOK, StatusOf(d))
}

// flaggerRegistration builds a registration from a pre-rollout payload.
func flaggerRegistration(p FlaggerPayload) (Registration, error) {
	md := p.Metadata
	reg := Registration{
		Service: p.service(), Version: p.Checksum,
		Canary: md["canary"], Baseline: md["baseline"], Profile: md["profile"],
		Metadata: maps.Clone(md),
	}
	if reg.Canary == "" {
		return reg, badRequest(`metadata.canary is required: the canary's label selector, e.g. {app="podinfo",pod_template_hash="..."} or {app="podinfo-canary"}`)
	}
	if reg.Metadata == nil {
		reg.Metadata = map[string]string{}
	}
	reg.Metadata["flagger_name"], reg.Metadata["flagger_namespace"] = p.Name, p.Namespace
	for key, dst := range map[string]*detect.Duration{"min_bake": &reg.MinBake, "max_bake": &reg.MaxBake, "step": &reg.Step} {
		s := md[key]
		if s == "" {
			continue
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return reg, badRequest("metadata.%s %q: want a duration such as \"5m\"", key, s)
		}
		*dst = detect.Duration(v)
	}
	return reg, nil
}

// flaggerConfirmPromotion answers 200 only on a pass. Anything else is a
// 409 that Flagger treats as "wait", with the status as the body for its
// event log; a fail also answers 409, as a failed canary must never be
// promoted (the rollback hook acts on it).
func (a *API) flaggerConfirmPromotion(w http.ResponseWriter, r *http.Request) {
	a.flaggerGate(w, r, detect.Pass)
}

// flaggerRollback answers 200 (roll back now) only on a fail, else 409
// (no-op for Flagger).
func (a *API) flaggerRollback(w http.ResponseWriter, r *http.Request) {
	a.flaggerGate(w, r, detect.Fail)
}

// flaggerGate answers 200 when the mapped deployment's verdict is want and
// 409 with its status otherwise.
func (a *API) flaggerGate(w http.ResponseWriter, r *http.Request, want detect.Status) {
	p, err := decodeFlagger(w, r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	snap, err := a.findFlagger(p)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	code := http.StatusConflict
	if snap.Deployment().State == want {
		code = http.StatusOK
	}
	a.writeStatus(w, r, code, snap)
}
