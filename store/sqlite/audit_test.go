package sqlite

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/store"
)

// A data directory written by the trail's first version (a row per
// record in tables audit and audit_key) opens with its records moved
// into blocks, found as before.
func TestAuditRecordsOfTheFirstSchemaAreKept(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC).UnixMilli()
	_, err = s.writer.Exec(`
		CREATE TABLE audit (id TEXT PRIMARY KEY, recorded INTEGER NOT NULL, type TEXT NOT NULL, subtype TEXT NOT NULL,
			action TEXT NOT NULL, outcome TEXT NOT NULL, json BLOB NOT NULL) WITHOUT ROWID;
		CREATE TABLE audit_key (kind TEXT NOT NULL, value TEXT NOT NULL, recorded INTEGER NOT NULL, id TEXT NOT NULL,
			PRIMARY KEY (kind, value, recorded, id)) WITHOUT ROWID;
		INSERT INTO audit VALUES ('old-1', ?, 'rest', 'read', 'R', '0', '{"resourceType":"AuditEvent","id":"old-1"}'),
			('old-2', ?, 'rest', 'search-type', 'E', '4', '{"resourceType":"AuditEvent","id":"old-2"}');
		INSERT INTO audit_key VALUES ('p', 'kid', ?, 'old-1'), ('a', 'Device/app', ?, 'old-1'), ('e', 'Observation/o1', ?, 'old-1'),
			('a', 'Device/app', ?, 'old-2');`, at, at+1000, at, at, at, at+1000)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	all, err := s.SearchAudit(ctx, store.AuditQuery{})
	if err != nil || len(all) != 2 {
		t.Fatalf("records after migration: %+v %v", all, err)
	}
	if string(all[0].Data) != `{"resourceType":"AuditEvent","id":"old-1"}` || all[0].Recorded.UnixMilli() != at || all[1].Outcome != "4" ||
		!slices.Equal(all[0].Patients, []string{"kid"}) || !slices.Equal(all[0].Entities, []string{"Observation/o1"}) {
		t.Errorf("migrated: %+v", all)
	}
	for _, q := range []store.AuditQuery{{Patients: []string{"kid"}}, {Entities: []string{"Observation/o1"}}, {Agents: []string{"Device/app"}, Subtypes: []string{"read"}}} {
		got, err := s.SearchAudit(ctx, q)
		if err != nil || len(got) != 1 || got[0].ID != all[0].ID {
			t.Errorf("%+v: %+v %v", q, got, err)
		}
	}
	var old int
	if err := s.reader.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name IN ('audit', 'audit_key')`).Scan(&old); err != nil || old != 0 {
		t.Errorf("the first schema's tables remain: %d %v", old, err)
	}
}

// Ids are opaque: consecutive records' ids share nothing, and an id this
// store did not give (or another store's) finds nothing.
func TestAuditIDsAreOpaque(t *testing.T) {
	ctx := context.Background()
	open := func() *Store {
		s, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s, other := open(), open()
	recs := []store.AuditRecord{{Recorded: time.Now(), Type: "rest", Subtype: "read"}, {Recorded: time.Now(), Type: "rest", Subtype: "read"}}
	if err := s.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if recs[0].ID[:8] == recs[1].ID[:8] || len(recs[0].ID) != 32 {
		t.Errorf("ids %s and %s look related", recs[0].ID, recs[1].ID)
	}
	if err := other.AppendAudit(ctx, []store.AuditRecord{{Recorded: time.Now(), Type: "rest", Subtype: "read"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"00000000000000000000000000000000", recs[0].ID[:31] + "x", "1.0"} {
		if got, err := other.SearchAudit(ctx, store.AuditQuery{IDs: []string{id}}); err != nil || len(got) != 0 {
			t.Errorf("id %s found %+v, %v", id, got, err)
		}
	}
	if got, err := other.SearchAudit(ctx, store.AuditQuery{IDs: []string{recs[0].ID}}); err != nil || len(got) != 0 {
		t.Errorf("another store's id found %+v, %v", got, err)
	}
}

// A transaction's records past a block's worth go into further blocks:
// every one found, in order, by its own id.
func TestAuditTransactionFillsSeveralBlocks(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]store.AuditRecord, 2*maxBlockRecords+500)
	for i := range recs {
		recs[i] = store.AuditRecord{Recorded: base.Add(time.Duration(i) * time.Millisecond), Type: "rest", Subtype: "create", Entities: []string{fmt.Sprintf("Observation/o%d", i)}}
	}
	if err := s.Transact(ctx, func(tx store.Tx) error {
		for i := range recs {
			if err := tx.AppendAudit(ctx, recs[i:i+1]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var blocks int
	s.reader.QueryRow(`SELECT count(*) FROM audit_block`).Scan(&blocks)
	if blocks != 3 {
		t.Errorf("%d blocks, want 3", blocks)
	}
	all, err := s.SearchAudit(ctx, store.AuditQuery{})
	if err != nil || len(all) != len(recs) {
		t.Fatalf("%d records, %v", len(all), err)
	}
	for i, r := range all {
		if r.ID != recs[i].ID || !r.Recorded.Equal(recs[i].Recorded) {
			t.Fatalf("record %d: %s %v, want %s %v", i, r.ID, r.Recorded, recs[i].ID, recs[i].Recorded)
		}
	}
	got, err := s.SearchAudit(ctx, store.AuditQuery{Entities: []string{"Observation/o2100"}})
	if err != nil || len(got) != 1 || got[0].ID != recs[2100].ID {
		t.Errorf("by entity: %+v %v", got, err)
	}
}
