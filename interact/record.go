package interact

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/store"
)

// The door records every interaction it carries out in the audit trail
// (Config.Audit): reads, searches and failures are grouped by the trail;
// a write's record commits in the write's transaction.

// outcomeOf is the AuditEvent outcome of an interaction's error: a request
// the door or the policy refused is a minor failure, anything else serious.
func outcomeOf(err error) (string, string) {
	var p *Problem
	switch {
	case err == nil:
		return audit.Success, ""
	case errors.Is(err, access.ErrForbidden), errors.Is(err, access.ErrCreateWithID):
		return audit.Minor, "forbidden"
	case errors.As(err, &p):
		return audit.Minor, "invalid request"
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone):
		return audit.Minor, "not found"
	case errors.Is(err, store.ErrVersionMismatch), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrMultipleMatches):
		return audit.Minor, "conflict"
	case errors.Is(err, store.ErrInvalidCursor), errors.Is(err, ErrUnresolved), errors.Is(err, store.ErrTooCostly), errors.Is(err, store.ErrUnsupported):
		return audit.Minor, "invalid request"
	}
	return audit.Serious, "server error"
}

// record adds a read-side event (or any failed interaction) to the trail.
// An error means the trail cannot take it: the answer must not go out.
func (s *Session) record(ctx context.Context, e audit.Event, err error) error {
	if s.door.cfg.Audit == nil {
		return nil
	}
	s.recorded.Store(true)
	e.Type = "rest"
	e.Outcome, e.Detail = outcomeOf(err)
	if s.who.Patient != "" && err == nil && len(e.Patients) == 0 {
		// A patient-bound token touches its patient's data (and shared
		// directory data) only.
		e.Patients = []string{s.who.Patient}
	}
	return s.door.cfg.Audit.Record(ctx, s.who, e)
}

// recordInTx adds a write's event to its transaction.
func (s *Session) recordInTx(ctx context.Context, tx store.Tx, e audit.Event) error {
	if s.door.cfg.Audit == nil {
		return nil
	}
	s.recorded.Store(true)
	e.Type = "rest"
	e.Outcome = audit.Success
	if s.who.Patient != "" && len(e.Patients) == 0 {
		e.Patients = []string{s.who.Patient}
	}
	return s.door.cfg.Audit.InTx(ctx, tx, s.who, e)
}

// RecordRefused records an interaction the API refused before it reached
// the door (a body that does not parse, an unknown type, a method not
// allowed …), unless the door recorded something of it already. subtype
// is the interaction it was to be, entity the resource it named ("" if
// none or not a valid reference). The refusal is answered whatever comes
// of it: a trail that cannot take the record is logged by the caller.
func (s *Session) RecordRefused(ctx context.Context, subtype, entity string, status int) error {
	if s.door.cfg.Audit == nil || s.recorded.Load() {
		return nil
	}
	e := audit.Event{Type: "rest", Subtype: subtype, Action: "E", Outcome: audit.Minor, Detail: strings.ToLower(http.StatusText(status))}
	if status >= 500 {
		e.Outcome = audit.Serious
	}
	if entity != "" {
		e.Entities = []string{entity}
	}
	return s.door.cfg.Audit.Record(ctx, s.who, e)
}

// auditFailed joins an interaction's answer with the trail's refusal:
// data is not served when its access cannot be recorded.
func auditFailed(err, recErr error) error {
	if recErr != nil {
		return errors.Join(ErrAuditUnavailable, recErr)
	}
	return err
}

// ErrAuditUnavailable: the interaction could not be recorded, so its
// answer is withheld (a 503).
var ErrAuditUnavailable = audit.ErrUnavailable

// patientsOf are the Patients a set of resources belongs to: a Patient
// itself, or the Patients another resource refers to.
func patientsOf(rs ...[]store.Resource) []string {
	seen := map[string]bool{}
	for _, list := range rs {
		for _, r := range list {
			if r.Type == "Patient" {
				seen[r.ID] = true
				continue
			}
			if r.JSON == nil {
				continue
			}
			fhir.VisitStrings(r.JSON, func(key, value string) {
				if key == "reference" {
					if id, ok := strings.CutPrefix(value, "Patient/"); ok && fhir.ValidID(id) {
						seen[id] = true
					}
				}
			})
		}
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// entitiesOf names resources as the trail does.
func entitiesOf(rs ...[]store.Resource) []string {
	var out []string
	for _, list := range rs {
		for _, r := range list {
			out = append(out, r.Type+"/"+r.ID)
		}
	}
	return out
}

// keptValues are the search parameters whose values the trail keeps: they
// say how the result was shaped, not whom it was about.
var keptValues = []string{"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_type", "_since"}

// recordedQuery is a search as the trail keeps it: every parameter name,
// and values only of keptValues; a name searched for is not recorded.
func recordedQuery(typ string, vals url.Values) string {
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		if k == "_page" {
			continue
		}
		if slices.Contains(keptValues, k) {
			for _, v := range vals[k] {
				parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(v))
			}
			continue
		}
		parts = append(parts, url.QueryEscape(k)+"=*")
	}
	q := typ
	if len(parts) > 0 {
		q += "?" + strings.Join(parts, "&")
	}
	return q
}
