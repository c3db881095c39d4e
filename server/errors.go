package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/store"
)

// apiError is an error with the HTTP status and OperationOutcome issues it
// maps to. Handlers return it for problems with the request.
type apiError struct {
	status int
	issues []fhir.Issue
}

func (e *apiError) Error() string {
	if len(e.issues) == 0 {
		return http.StatusText(e.status)
	}
	return e.issues[0].Error()
}

// errorf builds an apiError with one issue.
func errorf(status int, code, diagnostics string) *apiError {
	return &apiError{status: status, issues: []fhir.Issue{{Severity: "error", Code: code, Diagnostics: diagnostics}}}
}

func invalid(issues []fhir.Issue) *apiError {
	return &apiError{status: http.StatusBadRequest, issues: issues}
}

// statusOf is the one place that maps errors to HTTP status and issues.
// Store errors carry resource ids, which are fine to show; they never carry
// resource content.
func statusOf(err error) (int, []fhir.Issue) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, ae.issues
	}
	var se *fhir.SearchError
	if errors.As(err, &se) {
		return http.StatusBadRequest, []fhir.Issue{{Severity: "error", Code: "invalid", Diagnostics: se.Msg}}
	}
	var ee *interact.EntryError
	if errors.As(err, &ee) {
		status, issues := statusOf(ee.Err)
		return status, entryIssues(ee.Entry, issues)
	}
	var pr *interact.Problem
	if errors.As(err, &pr) {
		return problemStatus[pr.Kind], pr.Issues
	}
	issue := func(code, diag string) []fhir.Issue {
		return []fhir.Issue{{Severity: "error", Code: code, Diagnostics: diag}}
	}
	switch {
	case errors.Is(err, interact.ErrAuditUnavailable):
		return http.StatusServiceUnavailable, issue("transient", "the audit trail cannot be written now, so nothing is served; retry shortly")
	case errors.Is(err, errUnavailable):
		return http.StatusServiceUnavailable, issue("transient", "the server cannot check the access token now; retry shortly")
	case errors.Is(err, access.ErrForbidden), errors.Is(err, access.ErrCreateWithID):
		return http.StatusForbidden, issue("forbidden", err.Error())
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, issue("not-found", err.Error())
	case errors.Is(err, store.ErrGone):
		return http.StatusGone, issue("deleted", err.Error())
	case errors.Is(err, store.ErrVersionMismatch):
		return http.StatusPreconditionFailed, issue("conflict", "If-Match does not name the current version: "+err.Error())
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, issue("conflict", "the resource was changed by another request; retry: "+err.Error())
	case errors.Is(err, store.ErrMultipleMatches):
		return http.StatusPreconditionFailed, issue("multiple-matches", err.Error())
	case errors.Is(err, store.ErrInvalidCursor):
		return http.StatusBadRequest, issue("invalid", err.Error())
	case errors.Is(err, interact.ErrUnresolved):
		return http.StatusBadRequest, issue("not-found", err.Error())
	case errors.Is(err, store.ErrTooCostly):
		return http.StatusBadRequest, issue("too-costly", err.Error())
	case errors.Is(err, store.ErrUnsupported):
		return http.StatusBadRequest, issue("not-supported", err.Error())
	}
	return http.StatusInternalServerError, issue("exception", "internal server error")
}

// problemStatus maps the door's kinds of refusal to HTTP status codes.
var problemStatus = map[interact.Kind]int{
	interact.Invalid:       http.StatusBadRequest,
	interact.Unprocessable: http.StatusUnprocessableEntity,
	interact.NotSupported:  http.StatusBadRequest,
}

// entryIssues names the bundle entry the issues are about.
func entryIssues(entry int, issues []fhir.Issue) []fhir.Issue {
	out := make([]fhir.Issue, len(issues))
	for i, is := range issues {
		is.Diagnostics = fmt.Sprintf("entry %d: %s", entry, is.Diagnostics)
		out[i] = is
	}
	return out
}

// writeError renders err as an OperationOutcome. Unexpected errors are
// logged with the request id; their text is not sent to the client.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, issues := statusOf(err)
	switch {
	case r.Context().Err() == nil:
	case errors.Is(err, context.Canceled):
		// The client closed its side of the connection before the work was
		// done, so it was not done. A client that only half-closed may
		// still read the answer: it must not be mistaken for a success
		// (left unwritten, the status would default to 200).
		status, issues = http.StatusServiceUnavailable, []fhir.Issue{{Severity: "error", Code: "transient",
			Diagnostics: "the request was cancelled (the client closed its connection) before it was carried out; nothing was changed"}}
		s.recordRefusal(r, status)
		s.writeJSON(w, r, status, fhir.OperationOutcome(issues...))
		return
	case errors.Is(err, context.DeadlineExceeded):
		status, issues = http.StatusServiceUnavailable, []fhir.Issue{{Severity: "error", Code: "timeout",
			Diagnostics: "the request took longer than the server allows (--request-timeout) and was stopped; nothing was changed"}}
	}
	if status == http.StatusForbidden && errors.Is(err, access.ErrForbidden) {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", error_description="the token's scopes do not allow this"`)
	}
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", slog.String("request_id", requestID(r.Context())), slog.String("error", err.Error()))
	}
	s.recordRefusal(r, status)
	s.writeJSON(w, r, status, fhir.OperationOutcome(issues...))
}

var errInvalidInstant = errors.New("invalid instant")
