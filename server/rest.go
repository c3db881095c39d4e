package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-chi/chi/v5"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

var jsonTypes = []string{fhirJSON, plainJSON, "application/json+fhir"}

func (s *Server) location(res store.Resource) string {
	return s.cfg.BaseURL + "/" + res.Type + "/" + res.ID + "/_history/" + strconv.FormatInt(res.VersionID, 10)
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// read serves the current version's stored bytes.
func (s *Server) read(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	if !validID(id) {
		s.writeError(w, r, fmt.Errorf("%s/%s: %w", typ, quoteSafe(id), store.ErrNotFound))
		return
	}
	res, err := s.store.Read(r.Context(), typ, id)
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
	setVersionHeaders(w.Header(), res)
	s.writeJSON(w, r, http.StatusOK, res.JSON)
}

// notModified evaluates If-None-Match, then If-Modified-Since (RFC 9110 §13.2.2).
func notModified(r *http.Request, res store.Resource) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, tag := range strings.Split(inm, ",") {
			if strings.TrimSpace(tag) == "*" {
				return true
			}
			if v, ok := parseETag(tag); ok && v == res.VersionID {
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
	if err != nil || vid < 1 || !validID(id) {
		s.writeError(w, r, fmt.Errorf("%s/%s/_history/%s: %w", typ, quoteSafe(id), quoteSafe(chi.URLParam(r, "vid")), store.ErrNotFound))
		return
	}
	res, err := s.store.VRead(r.Context(), typ, id, vid)
	if err != nil {
		if errors.Is(err, store.ErrGone) {
			setVersionHeaders(w.Header(), res)
		}
		s.writeError(w, r, err)
		return
	}
	setVersionHeaders(w.Header(), res)
	s.writeJSON(w, r, http.StatusOK, res.JSON)
}

// create handles POST [type], with If-None-Exist for conditional create.
func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	typ := chi.URLParam(r, "type")
	body, err := s.readBody(w, r, jsonTypes...)
	if err == nil {
		err = parseResource(body, typ)
	}
	var cond *fhir.SearchQuery
	if err == nil {
		if ine := r.Header.Get("If-None-Exist"); ine != "" {
			cond, err = s.conditionQuery(typ, ine)
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var res store.Resource
	existing := false
	err = s.store.Transact(r.Context(), func(tx store.Tx) error {
		if cond != nil {
			matches, err := tx.Search(r.Context(), cond, 2)
			if err != nil {
				return err
			}
			switch len(matches) {
			case 1:
				res, existing = matches[0], true
				return nil
			case 2:
				return fmt.Errorf("If-None-Exist matched more than one %s: %w", typ, store.ErrMultipleMatches)
			}
		}
		res, err = tx.Create(r.Context(), store.Write{Type: typ, Body: body})
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if existing {
		// The spec: a conditional create that matches one resource is ignored
		// and answered 200 OK.
		s.respondWrite(w, r, http.StatusOK, res, "")
		return
	}
	s.respondWrite(w, r, http.StatusCreated, res, "created "+res.Type+"/"+res.ID)
}

// conditionQuery parses the search of a conditional operation
// ("identifier=sys|val&…", or "Patient?identifier=…"). Unknown parameters
// are refused, not ignored: ignoring a condition could create a duplicate or
// change the wrong resource.
func (s *Server) conditionQuery(typ, raw string) (*fhir.SearchQuery, error) {
	raw = strings.TrimPrefix(raw, "?")
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[i+1:]
	}
	vals, err := url.ParseQuery(raw)
	if err != nil || len(vals) == 0 {
		return nil, errorf(http.StatusBadRequest, "invalid", "a conditional operation needs a search query such as identifier=system|value")
	}
	q, err := fhir.ParseSearch(typ, vals, fhir.SearchOptions{DefaultCount: 2, MaxCount: 2, Strict: true, BaseURL: s.cfg.BaseURL})
	if err != nil {
		return nil, searchError(err)
	}
	if len(q.Params) == 0 {
		return nil, errorf(http.StatusBadRequest, "invalid", "a conditional operation needs at least one search parameter")
	}
	return q, nil
}

// update handles PUT [type]/[id]: update, or create with the client's id.
func (s *Server) update(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	if !validID(id) {
		s.writeError(w, r, errorf(http.StatusBadRequest, "value", "id in the URL must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'"))
		return
	}
	body, err := s.readBody(w, r, jsonTypes...)
	if err == nil {
		err = parseResource(body, typ)
	}
	if err == nil {
		_, bodyID, _ := fhir.ResourceHeader(body)
		if bodyID != id {
			err = errorf(http.StatusBadRequest, "invalid", "the resource id must be present and equal the id in the URL")
		}
	}
	ifMatch, merr := ifMatch(r)
	if err == nil {
		err = merr
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var res store.Resource
	var created bool
	err = s.store.Transact(r.Context(), func(tx store.Tx) error {
		var err error
		res, created, err = tx.Update(r.Context(), store.Write{Type: typ, ID: id, Body: body, IfMatch: ifMatch})
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if created {
		s.respondWrite(w, r, http.StatusCreated, res, "created "+typ+"/"+id)
		return
	}
	s.respondWrite(w, r, http.StatusOK, res, "updated "+typ+"/"+id)
}

func ifMatch(r *http.Request) (int64, error) {
	v := r.Header.Get("If-Match")
	if v == "" {
		return 0, nil
	}
	n, ok := parseETag(v)
	if !ok {
		return 0, errorf(http.StatusBadRequest, "invalid", `If-Match must be a version ETag such as W/"3"`)
	}
	return n, nil
}

// patch handles PATCH [type]/[id] with a JSON Patch (RFC 6902) document.
// The patched resource is validated like any update, and the write is
// conditional on the version patched, so a concurrent update is never lost.
func (s *Server) patch(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	body, err := s.readBody(w, r, jsonPatch)
	var p jsonpatch.Patch
	if err == nil {
		p, err = jsonpatch.DecodePatch(body)
		if err != nil {
			err = errorf(http.StatusBadRequest, "structure", "body is not a valid JSON Patch document")
		}
	}
	want, merr := ifMatch(r)
	if err == nil {
		err = merr
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var res store.Resource
	err = s.store.Transact(r.Context(), func(tx store.Tx) error {
		cur, err := tx.Read(r.Context(), typ, id)
		if err != nil {
			return err
		}
		if want != 0 && want != cur.VersionID {
			return fmt.Errorf("%s/%s: %w", typ, id, store.ErrVersionMismatch)
		}
		patched, err := p.Apply(cur.JSON)
		if err != nil {
			return errorf(http.StatusUnprocessableEntity, "processing", "the patch could not be applied: "+patchErrorText(err))
		}
		if err := parseResource(patched, typ); err != nil {
			var ae *apiError
			if errors.As(err, &ae) {
				ae.status = http.StatusUnprocessableEntity
			}
			return err
		}
		if _, pid, _ := fhir.ResourceHeader(patched); pid != id {
			return errorf(http.StatusUnprocessableEntity, "processing", "a patch may not change the resource id")
		}
		res, _, err = tx.Update(r.Context(), store.Write{Type: typ, ID: id, Body: patched, IfMatch: cur.VersionID})
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respondWrite(w, r, http.StatusOK, res, "patched "+typ+"/"+id)
}

// patchErrorText describes a patch failure without echoing resource values.
func patchErrorText(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "testing value"):
		return "a test operation failed"
	case strings.Contains(msg, "missing"):
		return "a path does not exist in the resource"
	}
	return "an operation is invalid for this resource"
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	want, err := ifMatch(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var res store.Resource
	err = s.store.Transact(r.Context(), func(tx store.Tx) error {
		var err error
		res, err = tx.Delete(r.Context(), typ, id, want)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setVersionHeaders(w.Header(), res)
	if preferReturn(r) == "minimal" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.writeJSON(w, r, http.StatusOK, fhir.Information(fmt.Sprintf("deleted %s/%s (version %d)", typ, id, res.VersionID)))
}

// respondWrite answers a create, update or patch according to Prefer.
func (s *Server) respondWrite(w http.ResponseWriter, r *http.Request, status int, res store.Resource, what string) {
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
		s.writeJSON(w, r, status, fhir.Information(what))
	default:
		s.writeJSON(w, r, status, res.JSON)
	}
}
