package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
)

// bundle handles POST [base]: a batch or a transaction.
func (s *Server) bundle(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r, jsonTypes...)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	prefer := preferReturn(r)
	typ, entries, err := s.session(r).Bundle(r.Context(), body, prefer == "representation")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeBundle(w, r, bundleResponse(r.Context(), s.session(r), s.cfg.BaseURL, prefer, typ+"-response", entries))
}

// ProcessBundle runs a batch or transaction on session and renders the
// response Bundle as POST [base] answers it; prefer is the Prefer return
// value. `hearth import` loads bundles through it; BundleError describes
// its failure.
func ProcessBundle(ctx context.Context, session *interact.Session, body []byte, prefer string) ([]byte, error) {
	typ, entries, err := session.Bundle(ctx, body, prefer == "representation")
	if err != nil {
		return nil, err
	}
	return bundleResponse(ctx, session, session.BaseURL(), prefer, typ+"-response", entries).MarshalJSON()
}

// bundleResponse renders the batch-response or transaction-response an
// entry at a time as it is written, reading back the written versions
// whose bytes the session let go.
func bundleResponse(ctx context.Context, session *interact.Session, base, prefer, typ string, entries []*interact.Entry) *fhir.Bundle {
	return &fhir.Bundle{Type: typ, More: func(yield func(fhir.BundleEntry, error) bool) {
		for _, op := range entries {
			e, err := entryResponse(ctx, session, base, prefer, op)
			if !yield(e, err) || err != nil {
				return
			}
		}
	}}
}

// entryResponse is one entry of a batch-response or transaction-response.
func entryResponse(ctx context.Context, session *interact.Session, base, prefer string, op *interact.Entry) (fhir.BundleEntry, error) {
	e := fhir.BundleEntry{}
	switch {
	case op.Err != nil:
		status, issues := statusOf(op.Err)
		e.Response = &fhir.BundleEntryResponse{Status: statusLine(status), Outcome: fhir.OperationOutcome(issues...)}
	case op.Method == http.MethodGet && op.Search != nil:
		sb, err := searchBundle(base, op.Type, "", op.SearchQuery, op.Search, op.Query.Get("_page"))
		if err != nil {
			return e, err
		}
		body, err := sb.MarshalJSON()
		if err != nil {
			return e, err
		}
		e.Resource = body
		e.Response = &fhir.BundleEntryResponse{Status: statusLine(http.StatusOK)}
	case op.Method == http.MethodGet:
		res := op.Resource
		e.Resource = res.JSON
		e.FullURL = base + "/" + res.Type + "/" + res.ID
		e.Response = &fhir.BundleEntryResponse{Status: statusLine(http.StatusOK),
			Etag: etag(res.VersionID), LastModified: fhir.FormatInstant(res.LastUpdated)}
	default:
		res := op.Result.Resource
		e.Response = &fhir.BundleEntryResponse{Status: statusLine(writeStatus(op.Result.Outcome))}
		if res.ID == "" {
			return e, nil
		}
		e.Response.Etag = etag(res.VersionID)
		e.Response.LastModified = fhir.FormatInstant(res.LastUpdated)
		if res.Deleted {
			return e, nil
		}
		e.FullURL = base + "/" + res.Type + "/" + res.ID
		e.Response.Location = res.Type + "/" + res.ID + "/_history/" + strconv.FormatInt(res.VersionID, 10)
		switch prefer {
		case "minimal":
		case "operationoutcome":
			// The resource's warnings too, as a single write gives them; not
			// unasked, where a large transaction would carry one per entry.
			info := fhir.Issue{Severity: "information", Code: "informational", Diagnostics: op.Result.Info}
			e.Response.Outcome = fhir.OperationOutcome(append([]fhir.Issue{info}, op.Warnings()...)...)
		default:
			if res.JSON == nil {
				written, err := session.Written(ctx, op)
				if err != nil {
					return e, err
				}
				res.JSON = written.JSON
			}
			e.Resource = res.JSON
		}
	}
	return e, nil
}

func etag(v int64) string { return `W/"` + strconv.FormatInt(v, 10) + `"` }

func statusLine(code int) string {
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// BundleError describes a failed bundle as an HTTP status and text.
func BundleError(err error) (int, string) {
	status, issues := statusOf(err)
	var msgs []string
	for _, is := range issues {
		msgs = append(msgs, is.Error())
	}
	return status, strings.Join(msgs, "; ")
}
