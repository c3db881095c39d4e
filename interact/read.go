package interact

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// Read is the current version; ErrGone (with the deletion) if deleted.
func (s *Session) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	var res store.Resource
	var err error
	if typ == auditType {
		res, err = s.readAudit(ctx, id)
	} else {
		res, err = s.data.Read(ctx, typ, id)
	}
	e := audit.Event{Subtype: "read", Action: "R", Entities: []string{typ + "/" + id}}
	if err == nil {
		e.Patients = patientsOf([]store.Resource{res})
	}
	return res, auditFailed(err, s.record(ctx, e, err))
}

// VRead is one version.
func (s *Session) VRead(ctx context.Context, typ, id string, version int64) (store.Resource, error) {
	var res store.Resource
	var err error
	switch {
	case typ == auditType && version == 1:
		res, err = s.readAudit(ctx, id)
	case typ == auditType:
		err = fmt.Errorf("AuditEvent/%s has one version: %w", id, store.ErrNotFound)
	default:
		res, err = s.data.VRead(ctx, typ, id, version)
	}
	e := audit.Event{Subtype: "vread", Action: "R", Entities: []string{typ + "/" + id + "/_history/" + strconv.FormatInt(version, 10)}}
	if err == nil {
		e.Patients = patientsOf([]store.Resource{res})
	}
	return res, auditFailed(err, s.record(ctx, e, err))
}

// History is a page of the history of one resource, a type or the whole
// server, newest first.
func (s *Session) History(ctx context.Context, q store.HistoryQuery) (store.HistoryPage, error) {
	page, err := s.history(ctx, q)
	e := audit.Event{Subtype: "history-system", Action: "R"}
	switch {
	case q.ID != "":
		e.Subtype, e.Entities = "history-instance", []string{q.Type + "/" + q.ID}
	case q.Type != "":
		e.Subtype = "history-type"
	}
	if err == nil {
		e.Patients = patientsOf(page.Versions)
	}
	return page, auditFailed(err, s.record(ctx, e, err))
}

func (s *Session) history(ctx context.Context, q store.HistoryQuery) (store.HistoryPage, error) {
	if q.ID != "" {
		// An instance history of a resource that never existed is a 404.
		if _, err := s.data.Read(ctx, q.Type, q.ID); err != nil && !errors.Is(err, store.ErrGone) {
			return store.HistoryPage{}, err
		}
	}
	count := q.Count
	if count == 0 {
		q.Count = 1 // _count=0: only the total is wanted
	}
	page, err := s.data.History(ctx, q)
	if err != nil {
		return page, err
	}
	if count == 0 {
		page.Versions, page.Next = nil, ""
	}
	return page, nil
}
