package storetest

import (
	"errors"
	"fmt"
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
			Data: []byte(`{"resourceType":"AuditEvent","id":"` + id + `"}`)}
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
	if err != nil || len(got) != 1 || string(got[0].Data) != string(recs[2].Data) || !got[0].Recorded.Equal(recs[2].Recorded) || got[0].Outcome != "4" {
		t.Errorf("record read back: %+v %v", got, err)
	}
	n, err := s.PruneAudit(ctx, base.Add(2*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("prune: %d %v", n, err)
	}
	want("after pruning", store.AuditQuery{}, 2, 3)
	want("after pruning, by patient", store.AuditQuery{Patients: []string{"p1", "p2"}}, 2)
}

// testAuditOrder: appends overlap in time (a write's record lands inside
// a group's window), yet searches answer in recorded order either way,
// page across appends, and find a Patient entity as the patient.
func testAuditOrder(t *testing.T, s store.Store) {
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	at := func(min int, patient string) store.AuditRecord {
		return store.AuditRecord{Recorded: base.Add(time.Duration(min) * time.Minute), Type: "rest", Subtype: "read", Action: "R", Outcome: "0",
			Agents: []string{"Device/order"}, Entities: []string{"Patient/" + patient}, Data: []byte(fmt.Sprintf(`{"m":%d}`, min))}
	}
	groups := [][]store.AuditRecord{
		{at(0, "a"), at(10, "b"), at(5, "a")},
		{at(3, "b")},
		{at(12, "a"), at(7, "b"), at(7, "a")},
	}
	for _, g := range groups {
		if err := s.AppendAudit(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	var all []store.AuditRecord
	for _, g := range groups {
		for _, r := range g {
			if r.ID == "" {
				t.Fatal("AppendAudit gave a record no id")
			}
			all = append(all, r)
		}
	}
	minutes := func(q store.AuditQuery) (out []int) {
		t.Helper()
		q.Agents = []string{"Device/order"}
		got, err := s.SearchAudit(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		for _, r := range got {
			out = append(out, int(r.Recorded.Sub(base)/time.Minute))
		}
		return out
	}
	check := func(name string, q store.AuditQuery, want ...int) {
		t.Helper()
		if got := minutes(q); !slices.Equal(got, want) {
			t.Errorf("%s: got minutes %v, want %v", name, got, want)
		}
	}
	check("ascending", store.AuditQuery{}, 0, 3, 5, 7, 7, 10, 12)
	check("descending", store.AuditQuery{Descending: true}, 12, 10, 7, 7, 5, 3, 0)
	check("entity Patient/a is patient a", store.AuditQuery{Entities: []string{"Patient/a"}}, 0, 5, 7, 12)
	check("patient b", store.AuditQuery{Patients: []string{"b"}}, 3, 7, 10)
	check("window", store.AuditQuery{Since: base.Add(4 * time.Minute), Until: base.Add(11 * time.Minute)}, 5, 7, 7, 10)
	// Page through both ways, three at a time: every record once, in order.
	for _, desc := range []bool{false, true} {
		var got []string
		after := ""
		for range 10 {
			q := store.AuditQuery{Agents: []string{"Device/order"}, Descending: desc, After: after, Limit: 3}
			page, err := s.SearchAudit(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page {
				got = append(got, r.ID)
			}
			if len(page) < 3 {
				break
			}
			after = page[len(page)-1].ID
		}
		want, err := s.SearchAudit(ctx, store.AuditQuery{Agents: []string{"Device/order"}, Descending: desc})
		if err != nil {
			t.Fatal(err)
		}
		var wantIDs []string
		for _, r := range want {
			wantIDs = append(wantIDs, r.ID)
		}
		if !slices.Equal(got, wantIDs) || len(got) != len(all) {
			t.Errorf("paged (descending %v): %v, want %v", desc, got, wantIDs)
		}
	}
	// A record read by id is the one appended.
	for _, r := range all {
		got, err := s.SearchAudit(ctx, store.AuditQuery{IDs: []string{r.ID}})
		if err != nil || len(got) != 1 || string(got[0].Data) != string(r.Data) || !got[0].Recorded.Equal(r.Recorded) {
			t.Errorf("record %s: %+v %v", r.ID, got, err)
		}
	}
	if _, err := s.SearchAudit(ctx, store.AuditQuery{After: "no-such-record"}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("unknown cursor: %v", err)
	}
}
