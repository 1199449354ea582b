package gate

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/immune-dev/immune/detect"
)

// BacktestRequest is the body of POST /api/v1/backtests: a deployment
// exactly as POST /api/v1/deployments takes it (with a start in the past
// and stages with their times), the poll schedule, and the checks reported
// during it.
type BacktestRequest struct {
	Registration
	// Every is the time between polls. Zero means 30s.
	Every detect.Duration `json:"every,omitzero"`
	// Until is the last poll. Zero means the maximum bake, or now if
	// sooner.
	Until time.Time `json:"until,omitzero"`
	// Checks are external evidence, each counted from its time "at".
	Checks []BacktestCheck `json:"checks,omitempty"`
}

// BacktestCheck is a check reported during a backtested deployment: a
// CheckReport with the time it was reported.
type BacktestCheck struct {
	CheckReport
	At time.Time `json:"at"`
}

// deployment returns the request as a deployment to replay, with its
// checks; a check must say whether it passed, as a live report must.
func (r BacktestRequest) deployment() (*detect.Deployment, error) {
	d := r.Registration.deployment()
	for _, c := range r.Checks {
		if c.Passed == nil {
			return nil, badRequest(`check %q: field "passed" is required: true or false`, c.Name)
		}
		d.Checks = append(d.Checks, detect.Check{Name: c.Name, Passed: *c.Passed, Critical: c.Critical, Details: c.Details, At: c.At})
	}
	return d, nil
}

// registerBacktests adds the backtest routes. The literal "aa" segments
// are more specific than {id}, so the mux routes them first.
func (a *API) registerBacktests(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/backtests", a.backtest)
	mux.HandleFunc("GET /api/v1/backtests", a.listBacktests)
	mux.HandleFunc("GET /api/v1/backtests/{id}", a.getBacktest)
	mux.HandleFunc("POST /api/v1/backtests/aa", a.calibrate)
	mux.HandleFunc("GET /api/v1/backtests/aa", a.listCalibrations)
	mux.HandleFunc("GET /api/v1/backtests/aa/{id}", a.getCalibration)
}

// backtest replays a deployment synchronously: a replay takes well under
// a second of CPU per 60 polls, and the client's disconnect cancels it.
func (a *API) backtest(w http.ResponseWriter, r *http.Request) {
	var req BacktestRequest
	if err := decode(w, r, &req, false); err != nil {
		a.writeError(w, r, err)
		return
	}
	d, err := req.deployment()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	bt, err := a.svc.Backtest(r.Context(), d, detect.Schedule{Every: time.Duration(req.Every), Until: req.Until})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/backtests/"+url.PathEscape(bt.ID))
	a.writeJSON(w, r, http.StatusCreated, bt)
}

func (a *API) getBacktest(w http.ResponseWriter, r *http.Request) {
	bt, err := a.svc.GetBacktest(r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.writeJSON(w, r, http.StatusOK, bt)
}

// listBacktests answers {backtests: [...]} without timelines, newest
// first, of one service with ?service=.
func (a *API) listBacktests(w http.ResponseWriter, r *http.Request) {
	bts, err := a.svc.ListBacktests(r.URL.Query().Get("service"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	slices.SortStableFunc(bts, func(x, y *detect.Backtest) int {
		return cmp.Or(y.Created.Compare(x.Created), strings.Compare(x.ID, y.ID))
	})
	if bts == nil {
		bts = []*detect.Backtest{}
	}
	a.writeJSON(w, r, http.StatusOK, map[string]any{"backtests": bts})
}

// calibrate runs an A/A calibration synchronously; at most
// detect.MaxCalibrationRuns windows bound its time.
func (a *API) calibrate(w http.ResponseWriter, r *http.Request) {
	var req detect.CalibrationRequest
	if err := decode(w, r, &req, false); err != nil {
		a.writeError(w, r, err)
		return
	}
	c, err := a.svc.Calibrate(r.Context(), req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/backtests/aa/"+url.PathEscape(c.ID))
	a.writeJSON(w, r, http.StatusCreated, c)
}

func (a *API) getCalibration(w http.ResponseWriter, r *http.Request) {
	c, err := a.svc.GetCalibration(r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.writeJSON(w, r, http.StatusOK, c)
}

// listCalibrations answers {calibrations: [...]} without their runs,
// newest first, of one service with ?service=.
func (a *API) listCalibrations(w http.ResponseWriter, r *http.Request) {
	cs, err := a.svc.ListCalibrations(r.URL.Query().Get("service"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	slices.SortStableFunc(cs, func(x, y *detect.Calibration) int {
		return cmp.Or(y.Created.Compare(x.Created), strings.Compare(x.ID, y.ID))
	})
	if cs == nil {
		cs = []*detect.Calibration{}
	}
	a.writeJSON(w, r, http.StatusOK, map[string]any{"calibrations": cs})
}
