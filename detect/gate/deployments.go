package gate

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/immune-dev/immune/detect"
)

// Registration is the body of POST /api/v1/deployments: the fields of a
// detect.Deployment that a client sets. Zero fields take the domain's
// defaults (start now, the default profile, detect.DefaultMinBake,
// detect.DefaultMaxBake, detect.DefaultStep).
type Registration struct {
	Service  string            `json:"service"`
	Version  string            `json:"version"`
	Start    time.Time         `json:"start,omitzero"`
	Canary   string            `json:"canary"`
	Baseline string            `json:"baseline,omitempty"`
	Profile  string            `json:"profile,omitempty"`
	MinBake  detect.Duration   `json:"min_bake,omitzero"`
	MaxBake  detect.Duration   `json:"max_bake,omitzero"`
	Step     detect.Duration   `json:"step,omitzero"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Stages   []detect.Stage    `json:"stages,omitempty"`
}

// deployment returns the registration as a deployment to register.
func (r Registration) deployment() *detect.Deployment {
	return &detect.Deployment{
		Service: r.Service, Version: r.Version, Start: r.Start,
		Canary: r.Canary, Baseline: r.Baseline, Profile: r.Profile,
		MinBake: r.MinBake, MaxBake: r.MaxBake, Step: r.Step,
		Metadata: r.Metadata, Stages: r.Stages,
	}
}

// CheckReport is the body of POST /api/v1/deployments/{id}/checks:
// external evidence such as a smoke test. Passed must be given: a report
// that forgets it must not silently count as a failure (or a success).
type CheckReport struct {
	Name     string `json:"name"`
	Passed   *bool  `json:"passed"`
	Critical bool   `json:"critical"`
	Details  string `json:"details,omitempty"`
}

// AbortRequest is the optional body of POST
// /api/v1/deployments/{id}/abort.
type AbortRequest struct {
	Reason string `json:"reason,omitempty"`
}

// Status is the answer of GET /api/v1/deployments/{id}: a flat shape that
// stays the same in every state, so Argo Rollouts' web provider can read
// {$.verdict} and Flagger's hooks can log it. Verdict is pending, pass,
// fail, inconclusive or aborted.
type Status struct {
	ID      string        `json:"id"`
	Service string        `json:"service"`
	Version string        `json:"version"`
	Verdict detect.Status `json:"verdict"`
	Reason  string        `json:"reason"`
	// Stage is the index of the stage in force at the last evaluation:
	// 0 before the first added stage.
	Stage   int                    `json:"stage"`
	Metrics []detect.MetricVerdict `json:"metrics"`
	// ETASeconds estimates the time to a verdict while pending; null
	// otherwise.
	ETASeconds *float64  `json:"eta_seconds"`
	Start      time.Time `json:"start"`
	// Updated is when the verdict was reached (the start before the first
	// evaluation).
	Updated time.Time `json:"updated"`
	// DataThrough is the last time of the deployment's step grid the
	// verdict's evaluation covered: it reflects the samples stamped up to
	// it. Null before the first evaluation and for an abort.
	DataThrough *time.Time `json:"data_through"`
}

// StatusOf flattens a deployment and its latest verdict.
func StatusOf(d *detect.Deployment) Status {
	s := Status{
		ID: d.ID, Service: d.Service, Version: d.Version,
		Verdict: detect.Pending, Reason: "not evaluated yet",
		Metrics: []detect.MetricVerdict{}, Start: d.Start, Updated: d.Start,
	}
	if v := d.Verdict; v != nil {
		s.Verdict, s.Reason, s.ETASeconds, s.Updated, s.DataThrough = v.Verdict, v.Reason, v.ETASeconds, v.At, v.DataThrough
		if v.Metrics != nil {
			s.Metrics = v.Metrics
		}
	}
	s.Stage, _, _ = d.StageAt(s.Updated)
	return s
}

func (a *API) register(w http.ResponseWriter, r *http.Request) {
	var reg Registration
	if err := decode(w, r, &reg, false); err != nil {
		a.writeError(w, r, err)
		return
	}
	d, err := a.svc.Register(r.Context(), reg.deployment())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.log.Info("deployment registered", "id", d.ID, "service", d.Service, "version", d.Version, "verdict", d.State)
	w.Header().Set("Location", "/api/v1/deployments/"+url.PathEscape(d.ID))
	a.writeJSON(w, r, http.StatusCreated, d)
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := detect.Status(q.Get("state"))
	if state != "" && !slices.Contains(detect.States, state) {
		a.writeError(w, r, badRequest("state %q: want one of %s", state, joinStates(detect.States)))
		return
	}
	ds, err := a.svc.List(q.Get("service"), state)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	// Newest first: the deployment a person looks for is usually the last.
	slices.SortStableFunc(ds, func(x, y *detect.Deployment) int {
		return cmp.Or(y.Start.Compare(x.Start), strings.Compare(x.ID, y.ID))
	})
	if ds == nil {
		ds = []*detect.Deployment{}
	}
	a.writeJSON(w, r, http.StatusOK, map[string]any{"deployments": ds})
}

func joinStates(ss []detect.Status) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// statusJSON is a deployment's Status as the API answers it. Snapshots
// keep it: pollers of a deployment share one encoding per verdict.
var statusJSON = detect.NewEncoding(func(d *detect.Deployment) ([]byte, error) { return encodeJSON(StatusOf(d)) })

// status always answers 200 for a known deployment, whatever its verdict:
// Argo Rollouts counts any non-2xx as a measurement error.
func (a *API) status(w http.ResponseWriter, r *http.Request) {
	snap, err := a.svc.Snapshot(r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.writeStatus(w, r, http.StatusOK, snap)
}

// writeStatus writes the snapshot's Status with status code.
func (a *API) writeStatus(w http.ResponseWriter, r *http.Request, code int, snap *detect.Snapshot) {
	body, err := snap.Encode(statusJSON)
	if err != nil {
		a.writeError(w, r, fmt.Errorf("encode status: %w", err))
		return
	}
	a.writeBody(w, r, code, body)
}

func (a *API) history(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			a.writeError(w, r, badRequest("limit %q: want a whole number >= 0 (0 means all)", s))
			return
		}
		limit = n
	}
	vs, err := a.svc.History(r.PathValue("id"), limit)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if vs == nil {
		vs = []detect.Verdict{}
	}
	a.writeJSON(w, r, http.StatusOK, map[string]any{"verdicts": vs})
}

// addStage accepts an empty body: a stage that keeps the selectors records
// that more hosts now match them, which is the usual case when the canary
// is selected by version.
func (a *API) addStage(w http.ResponseWriter, r *http.Request) {
	var st detect.Stage
	if err := decode(w, r, &st, true); err != nil {
		a.writeError(w, r, err)
		return
	}
	d, err := a.svc.AddStage(r.Context(), r.PathValue("id"), st)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.log.Info("stage added", "id", d.ID, "stage", len(d.Stages), "canary", st.Canary)
	a.writeJSON(w, r, http.StatusOK, d)
}

func (a *API) abort(w http.ResponseWriter, r *http.Request) {
	var req AbortRequest
	if err := decode(w, r, &req, true); err != nil {
		a.writeError(w, r, err)
		return
	}
	d, err := a.svc.Abort(r.PathValue("id"), req.Reason)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.log.Info("deployment aborted", "id", d.ID, "reason", d.Verdict.Reason)
	a.writeJSON(w, r, http.StatusOK, d)
}

func (a *API) addCheck(w http.ResponseWriter, r *http.Request) {
	var c CheckReport
	if err := decode(w, r, &c, false); err != nil {
		a.writeError(w, r, err)
		return
	}
	if c.Passed == nil {
		a.writeError(w, r, badRequest(`field "passed" is required: true or false`))
		return
	}
	d, err := a.svc.AddCheck(r.Context(), r.PathValue("id"), detect.Check{
		Name: c.Name, Passed: *c.Passed, Critical: c.Critical, Details: c.Details,
	})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.log.Info("check reported", "id", d.ID, "check", c.Name, "passed", *c.Passed, "verdict", d.State)
	a.writeJSON(w, r, http.StatusOK, d)
}

func (a *API) listProfiles(w http.ResponseWriter, r *http.Request) {
	ps := a.svc.Profiles()
	slices.SortFunc(ps, func(x, y detect.Profile) int { return strings.Compare(x.Name, y.Name) })
	a.writeJSON(w, r, http.StatusOK, map[string]any{"profiles": ps})
}

func (a *API) putProfile(w http.ResponseWriter, r *http.Request) {
	var p detect.Profile
	if err := decode(w, r, &p, false); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := a.svc.PutProfile(p); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.log.Info("profile stored", "profile", p.Name, "metrics", len(p.Metrics))
	a.writeJSON(w, r, http.StatusOK, p)
}
