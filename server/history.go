package server

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/store"
)

// history serves instance, type and system history as a history Bundle,
// newest first, with cursor paging that stays stable under concurrent writes.
func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	typ, id := chi.URLParam(r, "type"), chi.URLParam(r, "id")
	params := r.URL.Query()
	q := store.HistoryQuery{Type: typ, ID: id, Count: interact.DefaultCount, Cursor: params.Get("_cursor")}
	for name, vals := range params {
		v := vals[0]
		switch name {
		case "_count":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				s.writeError(w, r, errorf(http.StatusBadRequest, "invalid", "_count must be a non-negative integer"))
				return
			}
			q.Count = min(n, interact.MaxCount)
		case "_since":
			t, err := parseInstantParam(v)
			if err != nil {
				s.writeError(w, r, errorf(http.StatusBadRequest, "invalid", "_since must be a FHIR instant such as 2024-01-31T10:00:00Z"))
				return
			}
			q.Since = t
		case "_cursor", "_format", "_pretty":
		default:
			if strictHandling(r) {
				s.writeError(w, r, errorf(http.StatusBadRequest, "not-supported", "history parameter "+fhir.QuoteSafe(name)+" is not supported"))
				return
			}
		}
	}
	page, err := s.session(r).History(r.Context(), q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	total := page.Total
	b := fhir.Bundle{Type: "history", Total: &total}
	b.Links = append(b.Links, fhir.BundleLink{Relation: "self", URL: s.historyURL(typ, id, params, params.Get("_cursor"))})
	if page.Next != "" {
		b.Links = append(b.Links, fhir.BundleLink{Relation: "next", URL: s.historyURL(typ, id, params, page.Next)})
	}
	for _, v := range page.Versions {
		b.Entries = append(b.Entries, s.historyEntry(v))
	}
	s.writeBundle(w, r, &b)
}

func (s *Server) historyEntry(v store.Resource) fhir.BundleEntry {
	full := s.cfg.BaseURL + "/" + v.Type + "/" + v.ID
	e := fhir.BundleEntry{FullURL: full, Resource: v.JSON}
	req := &fhir.BundleEntryRequest{Method: http.MethodPut, URL: v.Type + "/" + v.ID}
	status := "200 OK"
	switch v.Op {
	case store.OpCreate:
		status = "201 Created"
		if v.VersionID == 1 {
			req.Method, req.URL = http.MethodPost, v.Type // a re-creation after a deletion was a PUT
		}
	case store.OpUpdateCreate:
		status = "201 Created"
	case store.OpDelete:
		req.Method, status = http.MethodDelete, "204 No Content"
	}
	e.Request = req
	e.Response = &fhir.BundleEntryResponse{
		Status:       status,
		Etag:         `W/"` + strconv.FormatInt(v.VersionID, 10) + `"`,
		LastModified: fhir.FormatInstant(v.LastUpdated),
	}
	return e
}

// historyURL rebuilds the query actually used, with the page cursor.
func (s *Server) historyURL(typ, id string, params url.Values, cursor string) string {
	u := s.cfg.BaseURL
	if typ != "" {
		u += "/" + typ
	}
	if id != "" {
		u += "/" + id
	}
	u += "/_history"
	q := url.Values{}
	for _, k := range []string{"_count", "_since"} {
		if v := params.Get(k); v != "" {
			q.Set(k, v)
		}
	}
	if cursor != "" {
		q.Set("_cursor", cursor)
	}
	if enc := q.Encode(); enc != "" {
		u += "?" + enc
	}
	return u
}

// parseInstantParam accepts a FHIR instant or a dateTime with at least a day.
func parseInstantParam(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z07:00", "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errInvalidInstant
}
