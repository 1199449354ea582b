package query

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/prometheus/prometheus/promql"
)

// errorType is the "errorType" string of an error envelope.
type errorType string

// The error types this API produces, named as in Prometheus.
const (
	errorBadData  errorType = "bad_data"
	errorExec     errorType = "execution"
	errorTimeout  errorType = "timeout"
	errorCanceled errorType = "canceled"
	errorInternal errorType = "internal"
)

// statusClientClosedConnection is nginx's non-standard code, used by
// Prometheus when the client went away before the query finished.
const statusClientClosedConnection = 499

// maxAnnotations caps warnings and infos per response, as Prometheus does.
const maxAnnotations = 10

type apiError struct {
	typ errorType
	err error
}

// statusCode mirrors Prometheus' getDefaultErrorCode.
func (e *apiError) statusCode() int {
	switch e.typ {
	case errorBadData:
		return http.StatusBadRequest
	case errorExec:
		return http.StatusUnprocessableEntity
	case errorCanceled:
		return statusClientClosedConnection
	case errorTimeout:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// toAPIError classifies an evaluation or storage error like Prometheus'
// returnAPIError.
func toAPIError(err error) *apiError {
	if _, ok := errors.AsType[promql.ErrQueryCanceled](err); ok {
		return &apiError{errorCanceled, err}
	}
	if _, ok := errors.AsType[promql.ErrQueryTimeout](err); ok {
		return &apiError{errorTimeout, err}
	}
	if _, ok := errors.AsType[promql.ErrStorage](err); ok {
		return &apiError{errorInternal, err}
	}
	if errors.Is(err, context.Canceled) {
		return &apiError{errorCanceled, err}
	}
	return &apiError{errorExec, err}
}

// response is the envelope of every reply.
type response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Infos     []string `json:"infos,omitempty"`
}

func (a *API) respond(w http.ResponseWriter, r *http.Request, res result) {
	// The query string lets annotations render their position in it.
	warnings, infos := res.warnings.AsStrings(r.FormValue("query"), maxAnnotations, maxAnnotations)
	b, err := json.Marshal(&response{
		Status:   "success",
		Data:     res.data,
		Warnings: warnings,
		Infos:    infos,
	})
	if err != nil {
		a.logger.Error("encoding response", "url", r.URL.String(), "err", err)
		a.respondError(w, r, &apiError{errorInternal, err})
		return
	}
	a.write(w, r, http.StatusOK, b)
}

func (a *API) respondError(w http.ResponseWriter, r *http.Request, apiErr *apiError) {
	if apiErr.typ == errorInternal {
		a.logger.Error("request failed", "url", r.URL.String(), "err", apiErr.err)
	}
	b, err := json.Marshal(&response{
		Status:    "error",
		ErrorType: string(apiErr.typ),
		Error:     apiErr.err.Error(),
	})
	if err != nil {
		a.logger.Error("encoding error response", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	a.write(w, r, apiErr.statusCode(), b)
}

func (a *API) write(w http.ResponseWriter, r *http.Request, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if n, err := w.Write(b); err != nil {
		a.logger.Debug("writing response", "url", r.URL.String(), "bytesWritten", n, "err", err)
	}
}
