package interact

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// EverythingQuery is a $everything request on a Patient or an Encounter.
type EverythingQuery struct {
	Type  string // Patient or Encounter
	ID    string
	Since time.Time // only resources changed at or after Since
	Types []string  // only these types (_type)
	Count int
}

// Everything returns a page of the focal resource, the resources of its
// compartment (for an Encounter, those that refer to it) and the resources
// those refer to. The whole list is fixed by the first page (a snapshot), so
// later pages are stable under writes.
func (ss *Session) Everything(ctx context.Context, q EverythingQuery, token string) (*SearchPage, error) {
	page, err := everything(ctx, ss.data, q, token)
	e := audit.Event{Subtype: "operation", Action: "E", Entities: []string{q.Type + "/" + q.ID}, Query: q.Type + "/" + q.ID + "/$everything"}
	if err == nil {
		e.Patients = patientsOf(page.Matches, page.Included)
	}
	return page, auditFailed(err, ss.record(ctx, e, err))
}

func everything(ctx context.Context, s store.Resources, q EverythingQuery, token string) (*SearchPage, error) {
	var refs []string
	page := &SearchPage{}
	if token != "" {
		snap, offsetText, ok := strings.Cut(token, ".")
		offset, err := strconv.Atoi(offsetText)
		if !ok || err != nil || offset < 0 {
			return nil, fmt.Errorf("page token: %w", store.ErrInvalidCursor)
		}
		all, err := s.LoadSnapshot(ctx, snap)
		if err != nil {
			return nil, err
		}
		page.Total, page.Offset = len(all), offset
		end := min(len(all), offset+q.Count)
		if offset < end {
			refs = all[offset:end]
		}
		if end < len(all) {
			page.Next = snap + "." + strconv.Itoa(end)
		}
	} else {
		all, err := everythingList(ctx, s, q)
		if err != nil {
			return nil, err
		}
		page.Total = len(all)
		refs = all
		if len(all) > q.Count {
			snap, err := s.SaveSnapshot(ctx, all)
			if err != nil {
				return nil, err
			}
			refs = all[:q.Count]
			page.Next = snap + "." + strconv.Itoa(q.Count)
		}
	}
	// Read the page, one query batch per type, keeping the list's order.
	byType := map[string][]string{}
	for _, r := range refs {
		typ, id, _ := strings.Cut(r, "/")
		byType[typ] = append(byType[typ], id)
	}
	got := map[string]store.Resource{}
	for typ, ids := range byType {
		rs, err := s.ReadMany(ctx, typ, ids)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			got[r.Type+"/"+r.ID] = r
		}
	}
	for _, r := range refs {
		if res, ok := got[r]; ok {
			page.Matches = append(page.Matches, res)
		}
	}
	return page, nil
}

// everythingList lists "Type/id" of everything, focal resource first.
func everythingList(ctx context.Context, s store.Resources, q EverythingQuery) ([]string, error) {
	focus, err := s.Read(ctx, q.Type, q.ID)
	if err != nil {
		return nil, err
	}
	var members []store.Member
	if q.Type == "Patient" {
		members, err = s.CompartmentMembers(ctx, q.ID)
	} else {
		members, err = s.ReferencingMembers(ctx, q.Type, q.ID)
	}
	if err != nil {
		return nil, err
	}
	in := map[string]bool{q.Type + "/" + q.ID: true}
	byType := map[string][]string{q.Type: {q.ID}}
	list := []store.Member{{Type: focus.Type, ID: focus.ID, LastUpdated: focus.LastUpdated}}
	for _, m := range members {
		k := m.Type + "/" + m.ID
		if in[k] {
			continue
		}
		in[k] = true
		byType[m.Type] = append(byType[m.Type], m.ID)
		list = append(list, m)
	}
	// What the members refer to outside the set: practitioners,
	// organizations, locations, medications.
	var extra []store.Member
	for _, typ := range sortedKeys(byType) {
		refs, err := s.References(ctx, typ, byType[typ], "*")
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			k := r.Type + "/" + r.ID
			if r.Type == "" || in[k] {
				continue
			}
			in[k] = true
			res, err := s.Read(ctx, r.Type, r.ID)
			if err != nil {
				continue // dangling reference or deleted: nothing to return
			}
			extra = append(extra, store.Member{Type: res.Type, ID: res.ID, LastUpdated: res.LastUpdated})
		}
	}
	sort.Slice(extra, func(i, j int) bool {
		if extra[i].Type != extra[j].Type {
			return extra[i].Type < extra[j].Type
		}
		return extra[i].ID < extra[j].ID
	})
	list = append(list, extra...)
	types := map[string]bool{}
	for _, t := range q.Types {
		types[t] = true
	}
	out := make([]string, 0, len(list))
	for _, m := range list {
		if len(types) > 0 && !types[m.Type] {
			continue
		}
		if !q.Since.IsZero() && m.LastUpdated.Before(q.Since) {
			continue
		}
		out = append(out, m.Type+"/"+m.ID)
	}
	return out, nil
}
