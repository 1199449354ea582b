// Package gate owns the deploy gate's HTTP API over a *detect.Service: the
// JSON endpoints that deploy scripts, Argo Rollouts' web metric provider
// and Flagger's webhooks call to register deployments, grow them, report
// checks, read verdicts and plot a metric's evidence, and the backtests
// that replay deployments and A/A windows over stored history. It
// translates HTTP to service calls and errors to status codes; the
// judgement itself is in package detect.
package gate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/immune-dev/immune/detect"
)

// MaxBodyBytes bounds every request body. Registrations and profiles are a
// few kilobytes; anything near this size is a mistake or an attack.
const MaxBodyBytes = 1 << 20

// Options configures an API. Zero fields take the documented defaults.
type Options struct {
	// Logger receives server-side failures (500s, response write errors).
	// Nil discards them.
	Logger *slog.Logger
}

// API serves the gate endpoints under /api/v1/. It is safe for concurrent
// use.
type API struct {
	svc *detect.Service
	log *slog.Logger
	// flaggerMu serialises Flagger's pre-rollout find-or-register, so a
	// retried hook cannot register the same revision twice.
	flaggerMu sync.Mutex
}

// New returns an API over svc.
func New(svc *detect.Service, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &API{svc: svc, log: opts.Logger}
}

// Register adds the gate's routes to mux. They use method patterns, so mux
// answers 405 for a wrong method by itself.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/deployments", a.register)
	mux.HandleFunc("GET /api/v1/deployments", a.list)
	mux.HandleFunc("GET /api/v1/deployments/{id}", a.status)
	mux.HandleFunc("GET /api/v1/deployments/{id}/history", a.history)
	mux.HandleFunc("POST /api/v1/deployments/{id}/stages", a.addStage)
	mux.HandleFunc("POST /api/v1/deployments/{id}/abort", a.abort)
	mux.HandleFunc("POST /api/v1/deployments/{id}/checks", a.addCheck)
	mux.HandleFunc("GET /api/v1/deployments/{id}/plot.svg", a.plot)
	mux.HandleFunc("GET /api/v1/profiles", a.listProfiles)
	mux.HandleFunc("POST /api/v1/profiles", a.putProfile)
	mux.HandleFunc("POST /api/v1/flagger/pre-rollout", a.flaggerPreRollout)
	mux.HandleFunc("POST /api/v1/flagger/confirm-promotion", a.flaggerConfirmPromotion)
	mux.HandleFunc("POST /api/v1/flagger/rollback", a.flaggerRollback)
	a.registerBacktests(mux)
}

// errorBody is every error response.
type errorBody struct {
	Error string `json:"error"`
}

// encodeJSON encodes v as every answer is: one line, HTML unescaped.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Reasons hold ">=" and are read by people in curl and Flagger events.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeJSON writes v with status code.
func (a *API) writeJSON(w http.ResponseWriter, r *http.Request, code int, v any) {
	body, err := encodeJSON(v)
	if err != nil {
		a.writeError(w, r, fmt.Errorf("encode response: %w", err))
		return
	}
	a.writeBody(w, r, code, body)
}

// writeBody writes JSON already encoded with status code.
func (a *API) writeBody(w http.ResponseWriter, r *http.Request, code int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	if _, err := w.Write(body); err != nil {
		a.log.Warn("write response", "path", r.URL.Path, "err", err)
	}
}

// writeError maps the domain's error kinds to status codes: a client's
// mistake is 400, an unknown deployment 404, a finished one 409, and
// anything else is ours (500, logged).
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, detect.ErrInvalid), errors.Is(err, errBadRequest):
		code = http.StatusBadRequest
	case errors.Is(err, detect.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, detect.ErrTerminal):
		code = http.StatusConflict
	case errors.As(err, &tooLarge):
		code = http.StatusRequestEntityTooLarge
	default:
		a.log.Error("gate request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	a.writeJSON(w, r, code, errorBody{Error: err.Error()})
}

// errBadRequest marks errors found by the API itself in what the client
// sent (body, query parameters), as detect.ErrInvalid does in the domain.
var errBadRequest = errors.New("bad request")

// badRequest returns an error that writeError answers with 400; the
// message is the client's to read, so it is not prefixed.
func badRequest(format string, args ...any) error {
	return &clientError{msg: fmt.Sprintf(format, args...)}
}

type clientError struct{ msg string }

func (e *clientError) Error() string        { return e.msg }
func (e *clientError) Is(target error) bool { return target == errBadRequest }

// decode reads a JSON object into v, rejecting unknown fields (naming the
// field and the accepted ones), trailing data and bodies over
// MaxBodyBytes. optional allows an empty body, leaving v as it is.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var (
		syntax    *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
		tooLarge  *http.MaxBytesError
		fieldName string
	)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		if optional {
			return nil
		}
		return badRequest("request body is empty: send a JSON object with the fields %s", fieldList(v))
	case errors.As(err, &tooLarge):
		return fmt.Errorf("request body is over %d bytes: %w", MaxBodyBytes, err)
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body is not valid JSON: %v", err)
	case errors.As(err, &typeErr):
		return badRequest("field %q: cannot use a JSON %s here (want %s)", typeErr.Field, typeErr.Value, typeErr.Type)
	case unknownField(err, &fieldName):
		return badRequest("unknown field %q: the accepted fields are %s", fieldName, fieldList(v))
	default:
		// Errors from a field's own UnmarshalJSON, such as a bad duration.
		return badRequest("request body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("request body has data after the JSON object: send one object")
	}
	return nil
}

// unknownField recognises encoding/json's error for a field rejected by
// DisallowUnknownFields, which has no type of its own.
func unknownField(err error, name *string) bool {
	const prefix = "json: unknown field "
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		return false
	}
	*name = strings.Trim(strings.TrimPrefix(msg, prefix), `"`)
	return true
}

// fieldList names the JSON fields of the struct v points to, for error
// messages that say what would have been accepted.
func fieldList(v any) string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return "(a JSON object)"
	}
	return strings.Join(jsonFields(t), ", ")
}

// jsonFields lists a struct type's JSON field names, with those of
// embedded structs in their place, as encoding/json flattens them.
func jsonFields(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			names = append(names, jsonFields(f.Type)...)
			continue
		case !f.IsExported() || name == "-":
			continue
		case name == "":
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}
