package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/store"
)

// testAuditTrail: records are appended on their own or with a write (and
// rolled back with it), found by patient, agent, entity, codes and time,
// in recorded order either way, paged by keyset, and pruned by age.
func testAuditTrail(t *testing.T, s store.Store) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := func(i int, patients []string, agent, subtype, outcome string) store.AuditRecord {
		id := store.NewID()
		return store.AuditRecord{ID: id, Recorded: base.Add(time.Duration(i) * time.Minute), Type: "rest", Subtype: subtype, Action: "R",
			Outcome: outcome, Patients: patients, Agents: []string{agent, "Device/app"}, Entities: []string{"Observation/o" + string(rune('0'+i))},
			JSON: []byte(`{"resourceType":"AuditEvent","id":"` + id + `"}`)}
	}
	recs := []store.AuditRecord{
		rec(0, []string{"p1"}, "Patient/p1", "read", "0"),
		rec(1, []string{"p1", "p2"}, "Practitioner/d", "search-type", "0"),
		rec(2, []string{"p2"}, "RelatedPerson/r", "read", "4"),
		rec(3, nil, "Device/backend", "search-system", "0"),
	}
	if err := s.AppendAudit(ctx, recs[:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.Transact(ctx, func(tx store.Tx) error {
		if _, err := tx.Create(ctx, store.Write{Type: "Patient", Body: patient("Audited")}); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, recs[2:])
	}); err != nil {
		t.Fatal(err)
	}
	rolledBack := rec(4, []string{"p1"}, "Patient/p1", "create", "0")
	boom := errors.New("boom")
	if err := s.Transact(ctx, func(tx store.Tx) error {
		if _, err := tx.Create(ctx, store.Write{Type: "Patient", Body: patient("Never")}); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, []store.AuditRecord{rolledBack}); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("rolled back transaction: %v", err)
	}
	ids := func(q store.AuditQuery) []string {
		t.Helper()
		got, err := s.SearchAudit(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		var out []string
		for _, r := range got {
			out = append(out, r.ID)
		}
		return out
	}
	want := func(name string, q store.AuditQuery, idx ...int) {
		t.Helper()
		var w []string
		for _, i := range idx {
			w = append(w, recs[i].ID)
		}
		if got := ids(q); !slices.Equal(got, w) {
			t.Errorf("%s: got %v, want records %v", name, got, idx)
		}
	}
	want("all", store.AuditQuery{}, 0, 1, 2, 3)
	want("newest first", store.AuditQuery{Descending: true}, 3, 2, 1, 0)
	want("patient p1", store.AuditQuery{Patients: []string{"p1"}}, 0, 1)
	want("patient p2 or p1", store.AuditQuery{Patients: []string{"p2", "p1"}}, 0, 1, 2)
	want("agent", store.AuditQuery{Agents: []string{"RelatedPerson/r"}}, 2)
	want("client", store.AuditQuery{Agents: []string{"Device/app"}}, 0, 1, 2, 3)
	want("entity", store.AuditQuery{Entities: []string{"Observation/o1"}}, 1)
	want("subtype", store.AuditQuery{Subtypes: []string{"read"}}, 0, 2)
	want("outcome", store.AuditQuery{Outcomes: []string{"4"}}, 2)
	want("since", store.AuditQuery{Since: base.Add(time.Minute)}, 1, 2, 3)
	want("until", store.AuditQuery{Until: base.Add(2 * time.Minute)}, 0, 1)
	want("page", store.AuditQuery{Limit: 2}, 0, 1)
	want("next page", store.AuditQuery{After: recs[1].ID, Limit: 2}, 2, 3)
	want("next page, newest first", store.AuditQuery{Descending: true, After: recs[2].ID}, 1, 0)
	got, err := s.SearchAudit(ctx, store.AuditQuery{Entities: []string{"Observation/o2"}})
	if err != nil || len(got) != 1 || string(got[0].JSON) != string(recs[2].JSON) || !got[0].Recorded.Equal(recs[2].Recorded) || got[0].Outcome != "4" {
		t.Errorf("record read back: %+v %v", got, err)
	}
	n, err := s.PruneAudit(ctx, base.Add(2*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("prune: %d %v", n, err)
	}
	want("after pruning", store.AuditQuery{}, 2, 3)
	want("after pruning, by patient", store.AuditQuery{Patients: []string{"p1", "p2"}}, 2)
}
