package interact

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
)

// AuditEvents are read from the audit trail, not the resource store: they
// are written by the server alone (every write of one through the API is
// refused) and never deleted by a resource's deletion. A backend service
// with system/AuditEvent scopes sees them all; a patient's own token sees
// the records about that patient; a proxy sees none (access.AuditView).

// auditType is the resource type the trail serves.
const auditType = "AuditEvent"

// errAuditReadOnly refuses every write of an AuditEvent.
var errAuditReadOnly = problem(NotSupported, "not-supported", "AuditEvents are written by the server alone: they cannot be created, changed or deleted through the API")

// auditView is the patient whose records the session may see ("" for
// all) with perm.
func (s *Session) auditView(perm scopes.Perm) (string, error) {
	switch {
	case s.door.trail == nil:
		return "", problem(NotSupported, "not-supported", "this store keeps no audit trail")
	case s.unrestricted:
		return "", nil
	case s.pol == nil:
		return "", ErrNoPolicy
	}
	return s.pol.AuditView(perm)
}

// readAudit is the read of one AuditEvent.
func (s *Session) readAudit(ctx context.Context, id string) (store.Resource, error) {
	patient, err := s.auditView(scopes.Read)
	if err != nil {
		return store.Resource{}, err
	}
	q := store.AuditQuery{IDs: []string{id}, Limit: 1}
	if patient != "" {
		q.Patients = []string{patient}
	}
	recs, err := s.door.trail.SearchAudit(ctx, q)
	if err != nil {
		return store.Resource{}, err
	}
	if len(recs) == 0 {
		return store.Resource{}, fmt.Errorf("AuditEvent/%s: %w", id, store.ErrNotFound)
	}
	return auditResource(recs[0])
}

// auditResource is a record as the AuditEvent it stands for.
func auditResource(r store.AuditRecord) (store.Resource, error) {
	body, err := audit.Render(r)
	if err != nil {
		return store.Resource{}, err
	}
	return store.Resource{Type: auditType, ID: r.ID, VersionID: 1, LastUpdated: r.Recorded, Op: store.OpCreate, JSON: body}, nil
}

// searchAudit is a search of AuditEvents: by date, agent, entity, patient,
// type, subtype, outcome, action and _id, sorted by date (either way),
// paged by the last record's id.
func (s *Session) searchAudit(ctx context.Context, q *fhir.SearchQuery, token string) (*SearchPage, error) {
	patient, err := s.auditView(scopes.Search)
	if err != nil {
		return nil, err
	}
	aq, err := auditQuery(q.Canonical)
	if err != nil {
		return nil, err
	}
	if patient != "" {
		// The patient's own records only: an explicit patient= of another
		// patient finds nothing.
		if len(aq.Patients) > 0 && !slices.Contains(aq.Patients, patient) {
			return &SearchPage{Total: -1}, nil
		}
		aq.Patients = []string{patient}
	}
	if token != "" {
		after, ok := strings.CutPrefix(token, "a.")
		if !ok || !fhir.ValidID(after) {
			return nil, fmt.Errorf("page token: %w", store.ErrInvalidCursor)
		}
		aq.After = after
	}
	aq.Limit = q.Count + 1
	recs, err := s.door.trail.SearchAudit(ctx, aq)
	if err != nil {
		return nil, err
	}
	page := &SearchPage{Total: -1}
	if len(recs) > q.Count {
		recs = recs[:q.Count]
		page.Next = "a." + recs[len(recs)-1].ID
	}
	for _, r := range recs {
		res, err := auditResource(r)
		if err != nil {
			return nil, err
		}
		page.Matches = append(page.Matches, res)
	}
	return page, nil
}

// auditQuery reads the parameters of an AuditEvent search. A parameter the
// trail cannot search by is refused, not ignored.
func auditQuery(vals url.Values) (store.AuditQuery, error) {
	var q store.AuditQuery
	for name, values := range vals {
		var list []string
		for _, v := range values {
			list = append(list, strings.Split(v, ",")...)
		}
		switch name {
		case "_count", "_total", "_summary", "_format", "_pretty":
		case "_sort":
			switch strings.Join(list, ",") {
			case "date":
			case "-date":
				q.Descending = true
			default:
				return q, problem(NotSupported, "not-supported", "AuditEvents sort by date or -date only")
			}
		case "_id":
			q.IDs = append(q.IDs, list...)
		case "patient":
			for _, v := range list {
				q.Patients = append(q.Patients, strings.TrimPrefix(v, "Patient/"))
			}
		case "agent":
			q.Agents = append(q.Agents, list...)
		case "entity":
			q.Entities = append(q.Entities, list...)
		case "type":
			q.Types = append(q.Types, codes(list)...)
		case "subtype":
			q.Subtypes = append(q.Subtypes, codes(list)...)
		case "outcome":
			q.Outcomes = append(q.Outcomes, codes(list)...)
		case "action":
			q.Actions = append(q.Actions, codes(list)...)
		case "date":
			for _, v := range list {
				if err := dateBound(&q, v); err != nil {
					return q, err
				}
			}
		default:
			return q, problem(NotSupported, "not-supported", "AuditEvents are searched by date, agent, entity, patient, type, subtype, outcome, action and _id; not by "+fhir.QuoteSafe(name))
		}
	}
	return q, nil
}

// codes drops the system of system|code tokens.
func codes(list []string) []string {
	out := make([]string, len(list))
	for i, v := range list {
		_, code, found := strings.Cut(v, "|")
		if !found {
			code = v
		}
		out[i] = code
	}
	return out
}

// dateBound narrows q by a date parameter: ge, gt, le, lt, or eq (the
// whole period the value names).
func dateBound(q *store.AuditQuery, v string) error {
	prefix := "eq"
	if len(v) > 2 && strings.Contains("eqgegtlelt", v[:2]) && v[0] >= 'a' {
		prefix, v = v[:2], v[2:]
	}
	loMS, hiMS, ok := fhir.DateRange(v)
	if !ok {
		return problem(Invalid, "value", "date must be a FHIR date or dateTime")
	}
	// The value covers [lo, end): Since is inclusive, Until exclusive.
	lo, end := time.UnixMilli(loMS).UTC(), time.UnixMilli(hiMS+1).UTC()
	switch prefix {
	case "ge":
		q.Since = later(q.Since, lo)
	case "gt":
		q.Since = later(q.Since, end)
	case "le":
		q.Until = earlier(q.Until, end)
	case "lt":
		q.Until = earlier(q.Until, lo)
	case "eq":
		q.Since, q.Until = later(q.Since, lo), earlier(q.Until, end)
	default:
		return problem(NotSupported, "not-supported", "AuditEvent dates take the prefixes eq, ge, gt, le and lt")
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.IsZero() || b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}
