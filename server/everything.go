package server

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
)

const (
	everythingDefaultCount = 1000
	everythingMaxCount     = 5000
)

// everything serves Patient/[id]/$everything and Encounter/[id]/$everything.
func (s *Server) everything(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	if typ != "Patient" && typ != "Encounter" {
		s.writeError(w, r, errorf(http.StatusNotFound, "not-supported", "$everything is defined on Patient and Encounter"))
		return
	}
	q := interact.EverythingQuery{Type: typ, ID: id, Count: everythingDefaultCount}
	params := r.URL.Query()
	for name, vals := range params {
		v := vals[0]
		switch name {
		case "_since":
			t, err := parseInstantParam(v)
			if err != nil {
				s.writeError(w, r, errorf(http.StatusBadRequest, "invalid", "_since must be a FHIR instant"))
				return
			}
			q.Since = t
		case "_type":
			for _, t := range strings.Split(v, ",") {
				if !fhir.IsResourceType(t) {
					s.writeError(w, r, errorf(http.StatusBadRequest, "invalid", "_type: unknown resource type "+fhir.QuoteSafe(t)))
					return
				}
				q.Types = append(q.Types, t)
			}
		case "_count":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				s.writeError(w, r, errorf(http.StatusBadRequest, "invalid", "_count must be a positive integer"))
				return
			}
			q.Count = min(n, everythingMaxCount)
		case "_page", "_format", "_pretty":
		case "start", "end":
			s.writeError(w, r, errorf(http.StatusBadRequest, "not-supported", "$everything: start and end are not supported; use _since"))
			return
		default:
			if strictHandling(r) {
				s.writeError(w, r, errorf(http.StatusBadRequest, "not-supported", "$everything: unknown parameter "+fhir.QuoteSafe(name)))
				return
			}
		}
	}
	token := params.Get("_page")
	page, err := s.session(r).Everything(r.Context(), q, token)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	base := s.cfg.BaseURL + "/" + typ + "/" + id + "/$everything"
	link := func(tok string) string {
		v := url.Values{}
		for _, k := range []string{"_since", "_type", "_count"} {
			if params.Get(k) != "" {
				v.Set(k, params.Get(k))
			}
		}
		if tok != "" {
			v.Set("_page", tok)
		}
		if enc := v.Encode(); enc != "" {
			return base + "?" + enc
		}
		return base
	}
	total := page.Total
	b := fhir.Bundle{Type: "searchset", Total: &total}
	b.Links = append(b.Links, fhir.BundleLink{Relation: "self", URL: link(token)})
	if page.Next != "" {
		b.Links = append(b.Links, fhir.BundleLink{Relation: "next", URL: link(page.Next)})
	}
	for _, res := range page.Matches {
		b.Entries = append(b.Entries, fhir.BundleEntry{
			FullURL:  s.cfg.BaseURL + "/" + res.Type + "/" + res.ID,
			Resource: res.JSON,
			Search:   &fhir.BundleEntrySearch{Mode: "match"},
		})
	}
	s.writeBundle(w, r, &b)
}
