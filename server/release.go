package server

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

// release handles POST DiagnosticReport|Observation|DocumentReference/[id]/$release:
// a clinician releases a final result to the patient now.
func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	switch typ {
	case "DiagnosticReport", "Observation", "DocumentReference":
	default:
		s.writeError(w, r, errorf(http.StatusNotFound, "not-supported", "$release is defined on DiagnosticReport, Observation and DocumentReference"))
		return
	}
	res, err := s.session(r).Release(r.Context(), typ, id)
	s.respondResult(w, r, res, nil, err)
}
