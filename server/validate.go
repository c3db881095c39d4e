package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/hearth-fhir/hearth/conformance"
	"github.com/hearth-fhir/hearth/conformance/profile"
	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
)

// validate handles POST [type]/$validate and [type]/[id]/$validate: the
// body is the resource, or a Parameters with resource, mode and profile
// (which may also come in the query). The answer is 200 with an
// OperationOutcome of every issue found; no issue is one information.
func (s *Server) validate(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	q := r.URL.Query()
	mode, profiles := q.Get("mode"), q["profile"]
	raw, err := s.readBody(w, r, jsonTypes...)
	if err == nil {
		if rt, _, _ := fhir.ResourceHeader(raw); rt == "Parameters" && typ != "Parameters" {
			raw, mode, profiles, err = validateParameters(raw, mode, profiles)
		}
	}
	if err == nil {
		err = checkValidateMode(mode, id, raw)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// An update or delete names a resource: it must be one the token may
	// read (the door answers 404 for one it may not see).
	if id != "" && mode != "create" {
		if _, err := s.session(r).Read(r.Context(), typ, id); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if mode == "delete" {
		s.writeJSON(w, r, http.StatusOK, fhir.Information(typ+"/"+id+" may be deleted"))
		return
	}
	issues, err := conformance.Validate(raw, typ, profiles, s.profiles)
	var pe *fhir.ParseError
	if errors.As(err, &pe) {
		s.writeError(w, r, errorf(http.StatusBadRequest, "structure", pe.Msg))
		return
	}
	if mode == "update" {
		if err := interact.CheckBodyID(raw, id); err != nil {
			issues = append(issues, fhir.Issue{Severity: "error", Code: "invalid", Expression: typ + ".id", Diagnostics: "the resource id must be present and equal the id in the URL"})
		}
	}
	if len(issues) == 0 {
		issues = []fhir.Issue{{Severity: "information", Code: "informational", Diagnostics: "no issues found"}}
	}
	s.writeJSON(w, r, http.StatusOK, fhir.OperationOutcome(issues...))
}

func checkValidateMode(mode, id string, raw []byte) error {
	switch mode {
	case "", "create":
	case "update", "delete":
		if id == "" {
			return errorf(http.StatusBadRequest, "invalid", "mode "+mode+" is for [type]/[id]/$validate")
		}
	default:
		return errorf(http.StatusBadRequest, "code-invalid", "mode must be create, update or delete")
	}
	if mode != "delete" && len(raw) == 0 {
		return errorf(http.StatusBadRequest, "required", "$validate needs the resource (mode "+mode+")")
	}
	return nil
}

// validateParameters reads $validate's Parameters: the resource, mode and
// profile(s), adding to those of the query.
func validateParameters(raw []byte, mode string, profiles []string) ([]byte, string, []string, error) {
	var params struct {
		Parameter []struct {
			Name           string          `json:"name"`
			Resource       json.RawMessage `json:"resource"`
			ValueCode      string          `json:"valueCode"`
			ValueURI       string          `json:"valueUri"`
			ValueCanonical string          `json:"valueCanonical"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(raw, &params); err != nil {
		return nil, "", nil, errorf(http.StatusBadRequest, "structure", "the Parameters body is not valid")
	}
	var resource []byte
	for _, p := range params.Parameter {
		switch p.Name {
		case "resource":
			resource = p.Resource
		case "mode":
			mode = p.ValueCode
		case "profile":
			profiles = append(profiles, p.ValueURI+p.ValueCanonical)
		}
	}
	return resource, mode, profiles, nil
}

// validationProfiles is the registry $validate checks profiles against.
func validationProfiles() *profile.Registry {
	reg, err := profile.USCore()
	if err != nil {
		return nil // $validate then knows no profile, and says so
	}
	return reg
}
