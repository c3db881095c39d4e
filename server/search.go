package server

import (
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/store"
)

// searchType serves GET [type]?…
func (s *Server) searchType(w http.ResponseWriter, r *http.Request) {
	s.search(w, r, chi.URLParam(r, "type"), "", r.URL.Query())
}

// searchPost serves POST [type]/_search with a form body; parameters in
// the URL and the body are combined.
func (s *Server) searchPost(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		s.writeError(w, r, errorf(http.StatusUnsupportedMediaType, "not-supported", "POST _search takes application/x-www-form-urlencoded"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		s.writeError(w, r, errorf(http.StatusRequestEntityTooLarge, "too-costly", "search form exceeds 1 MiB"))
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, "invalid", "the form body is not valid"))
		return
	}
	params := r.URL.Query()
	for k, vs := range form {
		params[k] = append(params[k], vs...)
	}
	s.search(w, r, chi.URLParam(r, "type"), "", params)
}

// searchCompartment serves GET Patient/[id]/[type]?…
func (s *Server) searchCompartment(w http.ResponseWriter, r *http.Request) {
	comp, id, typ := chi.URLParam(r, "type"), chi.URLParam(r, "id"), chi.URLParam(r, "ctype")
	if comp != "Patient" {
		s.writeError(w, r, errorf(http.StatusNotFound, "not-supported", "only the Patient compartment is supported"))
		return
	}
	if !fhir.IsResourceType(typ) {
		s.writeError(w, r, errorf(http.StatusNotFound, "not-supported", "unknown resource type "+fhir.QuoteSafe(typ)))
		return
	}
	if !fhir.IsPatientData(typ) {
		s.writeError(w, r, errorf(http.StatusBadRequest, "invalid", typ+" is not in the Patient compartment"))
		return
	}
	if !fhir.ValidID(id) {
		s.writeError(w, r, errorf(http.StatusNotFound, "not-found", "no such Patient"))
		return
	}
	s.search(w, r, typ, id, r.URL.Query())
}

func (s *Server) searchOptions(r *http.Request) fhir.SearchOptions {
	return fhir.SearchOptions{DefaultCount: interact.DefaultCount, MaxCount: interact.MaxCount, Strict: strictHandling(r), BaseURL: s.cfg.BaseURL}
}

func (s *Server) search(w http.ResponseWriter, r *http.Request, typ, compartment string, params url.Values) {
	token := params.Get("_page")
	q, err := fhir.ParseSearch(typ, params, s.searchOptions(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q.Compartment = compartment
	page, err := s.session(r).Search(r.Context(), q, token)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	b, err := searchBundle(s.cfg.BaseURL, typ, compartment, q, page, token)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeBundle(w, r, b)
}

// searchBundle renders a page as a searchset Bundle. Links repeat the
// parameters as understood, so a client sees what was ignored.
func searchBundle(fhirBase, typ, compartment string, q *fhir.SearchQuery, page *interact.SearchPage, token string) (*fhir.Bundle, error) {
	base := fhirBase + "/" + typ
	if compartment != "" {
		base = fhirBase + "/Patient/" + compartment + "/" + typ
	}
	link := func(tok string) string {
		v := url.Values{}
		for k, vs := range q.Canonical {
			v[k] = vs
		}
		if tok != "" {
			v.Set("_page", tok)
		}
		if enc := v.Encode(); enc != "" {
			return base + "?" + enc
		}
		return base
	}
	b := fhir.Bundle{Type: "searchset"}
	if page.Total >= 0 {
		total := page.Total
		b.Total = &total
	}
	b.Links = append(b.Links, fhir.BundleLink{Relation: "self", URL: link(token)})
	if page.Next != "" {
		b.Links = append(b.Links, fhir.BundleLink{Relation: "next", URL: link(page.Next)})
	}
	add := func(rs []store.Resource, mode string) error {
		for _, res := range rs {
			body, err := fhir.Subset(res.JSON, q.Summary, q.Elements)
			if err != nil {
				return err
			}
			b.Entries = append(b.Entries, fhir.BundleEntry{
				FullURL:  fhirBase + "/" + res.Type + "/" + res.ID,
				Resource: body,
				Search:   &fhir.BundleEntrySearch{Mode: mode},
			})
		}
		return nil
	}
	if err := add(page.Matches, "match"); err != nil {
		return nil, err
	}
	if err := add(page.Included, "include"); err != nil {
		return nil, err
	}
	if len(q.Ignored) > 0 {
		oo := fhir.OperationOutcome(fhir.Issue{Severity: "warning", Code: "not-supported",
			Diagnostics: "ignored unknown search parameters: " + fhir.QuoteSafe(strings.Join(q.Ignored, ", "))})
		b.Entries = append(b.Entries, fhir.BundleEntry{Resource: oo, Search: &fhir.BundleEntrySearch{Mode: "outcome"}})
	}
	return &b, nil
}
