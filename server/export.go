package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
)

// Bulk Data export (FHIR Bulk Data Access IG v2) over HTTP: the kick-off
// (GET, or POST with a Parameters body), the status URL it answers with
// (GET to poll, DELETE to cancel) and the files of the manifest. The work
// itself is interact.Exports'.

// exportKickoff answers a kick-off at one level (an instance's, Patient
// or Group, for "") with 202 and the status URL in Content-Location.
func (s *Server) exportKickoff(level interact.ExportLevel) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		level := level // this request's: the handler serves every request
		if s.cfg.Exports == nil {
			s.writeError(w, r, errorf(http.StatusNotFound, "not-supported", "bulk export is not enabled on this server"))
			return
		}
		if _, async := preference(r, "respond-async"); !async {
			s.writeError(w, r, errorf(http.StatusBadRequest, "invalid", "$export runs asynchronously: send Prefer: respond-async"))
			return
		}
		typ := chi.URLParam(r, "type")
		switch {
		case level == "" && typ == "Patient":
			level = interact.ExportPatient
		case level == "" && typ == "Group":
			level = interact.ExportGroup
		case level == "", level == interact.ExportAllPatients && typ != "Patient":
			s.writeError(w, r, errorf(http.StatusNotFound, "not-supported", "$export is defined on the system, on Patient and on a Group"))
			return
		}
		req := interact.ExportRequest{Level: level, Lenient: lenientHandling(r), Params: r.URL.Query()}
		if level == interact.ExportGroup || level == interact.ExportPatient {
			req.ID = chi.URLParam(r, "id")
		}
		if r.Method == http.MethodPost {
			body, err := s.readBody(w, r, "application/fhir+json", "application/json")
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			if req.Params, req.Patients, err = exportParameters(body); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		delete(req.Params, "_format")
		req.URL = s.cfg.BaseURL + strings.TrimPrefix(r.URL.Path, "/fhir")
		switch {
		case r.Method == http.MethodGet && r.URL.RawQuery != "":
			req.URL += "?" + r.URL.RawQuery
		case len(req.Params) > 0:
			req.URL += "?" + req.Params.Encode()
		}
		id, err := s.cfg.Exports.Export(r.Context(), s.session(r), req)
		if errors.Is(err, interact.ErrTooManyExports) {
			w.Header().Set("Retry-After", "60")
			s.recordRefusal(r, http.StatusTooManyRequests)
			s.writeJSON(w, r, http.StatusTooManyRequests, fhir.OperationOutcome(fhir.Issue{Severity: "error", Code: "throttled",
				Diagnostics: "this client has as many bulk exports running as it may; wait for one to finish or cancel one"}))
			return
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Location", s.cfg.BaseURL+"/$export-status/"+id)
		w.WriteHeader(http.StatusAccepted)
	}
}

// exportParameters reads a POST kick-off's Parameters resource: the
// operation's parameters as strings, and the patient references.
func exportParameters(body []byte) (url.Values, []string, error) {
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name           string                      `json:"name"`
			ValueString    *string                     `json:"valueString"`
			ValueInstant   *string                     `json:"valueInstant"`
			ValueCode      *string                     `json:"valueCode"`
			ValueReference *struct{ Reference string } `json:"valueReference"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Parameters" {
		return nil, nil, errorf(http.StatusBadRequest, "structure", "a POST $export takes a Parameters resource")
	}
	vals := url.Values{}
	var patients []string
	for _, prm := range p.Parameter {
		switch {
		case prm.Name == "patient" && prm.ValueReference != nil:
			typ, id, ok := strings.Cut(prm.ValueReference.Reference, "/")
			if !ok || typ != "Patient" || !fhir.ValidID(id) {
				return nil, nil, errorf(http.StatusBadRequest, "invalid", "patient must reference a Patient (Patient/id)")
			}
			patients = append(patients, id)
		case prm.ValueString != nil:
			vals.Add(prm.Name, *prm.ValueString)
		case prm.ValueInstant != nil:
			vals.Add(prm.Name, *prm.ValueInstant)
		case prm.ValueCode != nil:
			vals.Add(prm.Name, *prm.ValueCode)
		default:
			return nil, nil, errorf(http.StatusBadRequest, "invalid", "parameter "+fhir.QuoteSafe(prm.Name)+" has no value of a type $export takes")
		}
	}
	return vals, patients, nil
}

// lenientHandling reports Prefer: handling=lenient, which an export must
// ask for (strict is its default).
func lenientHandling(r *http.Request) bool {
	v, _ := preference(r, "handling")
	return v == "lenient"
}

// exportStatus answers a status poll: 202 with X-Progress while the job
// runs, 200 with the manifest when it is done, 500 when it failed.
func (s *Server) exportStatus(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Exports == nil {
		s.notFound(w, r)
		return
	}
	st, err := s.cfg.Exports.Status(r.Context(), s.session(r), chi.URLParam(r, "job"))
	switch {
	case err != nil:
		s.writeError(w, r, err)
	case !st.Done:
		w.Header().Set("X-Progress", st.Progress)
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusAccepted)
	case st.Failed != "":
		s.writeJSON(w, r, http.StatusInternalServerError, fhir.OperationOutcome(fhir.Issue{Severity: "error", Code: "exception", Diagnostics: st.Failed}))
	default:
		if !st.Expires.IsZero() {
			w.Header().Set("Expires", st.Expires.UTC().Format(http.TimeFormat))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(st.Manifest)
	}
}

// exportCancel cancels a job (or deletes a finished one's files): 202.
func (s *Server) exportCancel(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Exports == nil {
		s.notFound(w, r)
		return
	}
	if err := s.cfg.Exports.CancelExport(r.Context(), s.session(r), chi.URLParam(r, "job")); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusAccepted, fhir.OperationOutcome(fhir.Issue{Severity: "information", Code: "informational",
		Diagnostics: "the export was cancelled and its files deleted"}))
}

// exportFile serves one file of a finished job to the client that asked
// for it, streamed from the store.
func (s *Server) exportFile(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Exports == nil {
		s.notFound(w, r)
		return
	}
	f, err := s.cfg.Exports.OpenExportFile(r.Context(), s.session(r), chi.URLParam(r, "job"), chi.URLParam(r, "file"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, f); err != nil {
		s.log.WarnContext(r.Context(), "export file: the download stopped", "request_id", requestID(r.Context()), "error", err.Error())
	}
}
