package server

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/store"
)

var jsonTypes = []string{fhirJSON, plainJSON, "application/json+fhir"}

func (s *Server) location(res store.Resource) string {
	return s.cfg.BaseURL + "/" + res.Type + "/" + res.ID + "/_history/" + strconv.FormatInt(res.VersionID, 10)
}

// read serves the current version's stored bytes.
func (s *Server) read(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	if !fhir.ValidID(id) {
		s.writeError(w, r, fmt.Errorf("%s/%s: %w", typ, fhir.QuoteSafe(id), store.ErrNotFound))
		return
	}
	res, err := s.session(r).Read(r.Context(), typ, id)
	if err != nil {
		if errors.Is(err, store.ErrGone) {
			setVersionHeaders(w.Header(), res)
		}
		s.writeError(w, r, err)
		return
	}
	if notModified(r, res) {
		setVersionHeaders(w.Header(), res)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.writeResource(w, r, res)
}

// writeResource answers a read or vread: the stored bytes, or the subset
// _summary or _elements asks for.
func (s *Server) writeResource(w http.ResponseWriter, r *http.Request, res store.Resource) {
	setVersionHeaders(w.Header(), res)
	body := res.JSON
	if r.URL.RawQuery != "" {
		q := r.URL.Query()
		summary, elements := q.Get("_summary"), q.Get("_elements")
		switch summary {
		case "", "true", "text", "data", "false":
		default:
			s.writeError(w, r, errorf(http.StatusBadRequest, "invalid", "_summary must be true, text, data or false on a read"))
			return
		}
		if summary != "" || elements != "" {
			var list []string
			if elements != "" {
				list = strings.Split(elements, ",")
			}
			subset, err := fhir.Subset(body, summary, list)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			body = subset
		}
	}
	s.writeJSON(w, r, http.StatusOK, body)
}

// notModified evaluates If-None-Match, then If-Modified-Since (RFC 9110 §13.2.2).
func notModified(r *http.Request, res store.Resource) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, tag := range strings.Split(inm, ",") {
			if strings.TrimSpace(tag) == "*" {
				return true
			}
			if v, ok := interact.ParseETag(tag); ok && v == res.VersionID {
				return true
			}
		}
		return false
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil {
			return !res.LastUpdated.Truncate(time.Second).After(t)
		}
	}
	return false
}

func (s *Server) vread(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	vid, err := strconv.ParseInt(chi.URLParam(r, "vid"), 10, 64)
	if err != nil || vid < 1 || !fhir.ValidID(id) {
		s.writeError(w, r, fmt.Errorf("%s/%s/_history/%s: %w", typ, fhir.QuoteSafe(id), fhir.QuoteSafe(chi.URLParam(r, "vid")), store.ErrNotFound))
		return
	}
	res, err := s.session(r).VRead(r.Context(), typ, id, vid)
	if err != nil {
		if errors.Is(err, store.ErrGone) {
			setVersionHeaders(w.Header(), res)
		}
		s.writeError(w, r, err)
		return
	}
	s.writeResource(w, r, res)
}

// create handles POST [type], with If-None-Exist for conditional create.
func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	typ := chi.URLParam(r, "type")
	ss := s.session(r)
	raw, err := s.readBody(w, r, jsonTypes...)
	var body interact.Body
	if err == nil {
		body, err = ss.ParseResource(raw, typ)
	}
	var cond *fhir.SearchQuery
	if err == nil {
		if ine := r.Header.Get("If-None-Exist"); ine != "" {
			cond, err = ss.ConditionQuery(typ, ine)
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := ss.Create(r.Context(), typ, body, cond)
	s.respondResult(w, r, res, body.Warnings, err)
}

// respondResult answers a write interaction; warnings are the resource's
// (invariants of severity warning), for Prefer: return=OperationOutcome.
func (s *Server) respondResult(w http.ResponseWriter, r *http.Request, res interact.Result, warnings []fhir.Issue, err error) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch res.Outcome {
	case interact.Deleted, interact.NothingToDelete:
		s.respondDelete(w, r, res)
	default:
		s.respondWrite(w, r, writeStatus(res.Outcome), res.Resource, res.Info, warnings)
	}
}

// writeStatus is the HTTP status of a write's outcome.
func writeStatus(o interact.Outcome) int {
	switch o {
	case interact.Created:
		return http.StatusCreated
	case interact.NothingToDelete:
		return http.StatusNoContent
	}
	return http.StatusOK
}

// update handles PUT [type]/[id]: update, or create with the client's id.
func (s *Server) update(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	if !fhir.ValidID(id) {
		s.writeError(w, r, errorf(http.StatusBadRequest, "value", "id in the URL must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'"))
		return
	}
	ss := s.session(r)
	raw, err := s.readBody(w, r, jsonTypes...)
	var body interact.Body
	if err == nil {
		body, err = ss.ParseResource(raw, typ)
	}
	if err == nil {
		err = interact.CheckBodyID(raw, id)
	}
	want, merr := ifMatch(r)
	if err == nil {
		err = merr
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := ss.Update(r.Context(), typ, id, body, want)
	s.respondResult(w, r, res, body.Warnings, err)
}

// conditionalUpdate handles PUT [type]?search.
func (s *Server) conditionalUpdate(w http.ResponseWriter, r *http.Request) {
	typ := chi.URLParam(r, "type")
	ss := s.session(r)
	cond, err := ss.ConditionQuery(typ, r.URL.RawQuery)
	var raw []byte
	var body interact.Body
	if err == nil {
		raw, err = s.readBody(w, r, jsonTypes...)
	}
	if err == nil {
		body, err = ss.ParseResource(raw, typ)
	}
	want, merr := ifMatch(r)
	if err == nil {
		err = merr
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := ss.ConditionalUpdate(r.Context(), typ, cond, body, want)
	s.respondResult(w, r, res, body.Warnings, err)
}

func ifMatch(r *http.Request) (int64, error) {
	v := r.Header.Get("If-Match")
	if v == "" {
		return 0, nil
	}
	n, ok := interact.ParseETag(v)
	if !ok {
		return 0, errorf(http.StatusBadRequest, "invalid", `If-Match must be a version ETag such as W/"3"`)
	}
	return n, nil
}

// patch handles PATCH [type]/[id] with a JSON Patch (RFC 6902) document.
func (s *Server) patch(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	p, want, err := s.readPatch(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.session(r).Patch(r.Context(), typ, id, p, want)
	s.respondResult(w, r, res, nil, err)
}

// conditionalPatch handles PATCH [type]?search.
func (s *Server) conditionalPatch(w http.ResponseWriter, r *http.Request) {
	typ := chi.URLParam(r, "type")
	ss := s.session(r)
	cond, err := ss.ConditionQuery(typ, r.URL.RawQuery)
	var p interact.Patch
	var want int64
	if err == nil {
		p, want, err = s.readPatch(w, r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := ss.ConditionalPatch(r.Context(), typ, cond, p, want)
	s.respondResult(w, r, res, nil, err)
}

func (s *Server) readPatch(w http.ResponseWriter, r *http.Request) (interact.Patch, int64, error) {
	var p interact.Patch
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if strings.EqualFold(mt, interact.JSONPatch) {
		body, err := s.readBody(w, r, interact.JSONPatch)
		if err != nil {
			return nil, 0, err
		}
		if p, err = interact.DecodePatch(body); err != nil {
			return nil, 0, err
		}
	} else {
		// Anything else is a FHIRPath Patch, a Parameters resource; readBody
		// refuses a media type that is neither, naming both.
		body, err := s.readBody(w, r, append([]string{interact.JSONPatch}, jsonTypes...)...)
		if err != nil {
			return nil, 0, err
		}
		if p, err = interact.DecodeFHIRPathPatch(body); err != nil {
			return nil, 0, err
		}
	}
	want, err := ifMatch(r)
	return p, want, err
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	want, err := ifMatch(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.session(r).Delete(r.Context(), typ, id, want)
	s.respondResult(w, r, res, nil, err)
}

// conditionalDelete handles DELETE [type]?search: no match is a success
// with nothing to do; several matches are refused (412).
func (s *Server) conditionalDelete(w http.ResponseWriter, r *http.Request) {
	typ := chi.URLParam(r, "type")
	ss := s.session(r)
	cond, err := ss.ConditionQuery(typ, r.URL.RawQuery)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := ss.ConditionalDelete(r.Context(), typ, cond)
	s.respondResult(w, r, res, nil, err)
}

// respondDelete answers a delete: 200 with an OperationOutcome, or 204
// under Prefer: return=minimal.
func (s *Server) respondDelete(w http.ResponseWriter, r *http.Request, res interact.Result) {
	if res.Resource.ID != "" {
		setVersionHeaders(w.Header(), res.Resource)
	}
	if preferReturn(r) == "minimal" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.writeJSON(w, r, http.StatusOK, fhir.Information(res.Info))
}

// respondWrite answers a create, update or patch according to Prefer.
func (s *Server) respondWrite(w http.ResponseWriter, r *http.Request, status int, res store.Resource, what string, warnings []fhir.Issue) {
	h := w.Header()
	setVersionHeaders(h, res)
	if status == http.StatusCreated {
		h["Location"] = []string{s.location(res)}
	}
	h["Content-Location"] = []string{s.location(res)}
	switch preferReturn(r) {
	case "minimal":
		w.WriteHeader(status)
	case "operationoutcome":
		if what == "" {
			what = "matched existing " + res.Type + "/" + res.ID
		}
		info := fhir.Issue{Severity: "information", Code: "informational", Diagnostics: what}
		s.writeJSON(w, r, status, fhir.OperationOutcome(append([]fhir.Issue{info}, warnings...)...))
	default:
		s.writeJSON(w, r, status, res.JSON)
	}
}
