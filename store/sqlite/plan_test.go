package sqlite

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// TestSearchPlanDrivesFromSelectiveIndex pins the query shapes that keep
// patient-scoped searches fast on a million Observations: a token anchored
// on one patient drives through idx_token_patient (that patient's rows with
// that code, together); otherwise the reference drives through its value
// index; the other conditions probe by owner, and current is visited only
// when a condition or the sort needs it. Without this SQLite walks
// every Observation (seconds per query), or probes each of the patient's
// thousand Observations.
func TestSearchPlanDrivesFromSelectiveIndex(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		query   string
		want    []string
		current bool // whether current is visited (by key, never scanned)
	}{
		{"patient=p1&code=http://loinc.org|8867-4&date=ge2020-01-01", []string{
			"COVERING INDEX idx_token_patient_value (patient_id=? AND type=? AND param=? AND code=? AND system=?)",
			"COVERING INDEX idx_ref_owner (type=? AND id=? AND param=?)",
			"COVERING INDEX idx_date_owner (type=? AND id=? AND param=?)"}, false},
		{"subject=Patient/p1&category=vital-signs", []string{
			"COVERING INDEX idx_token_patient_value (patient_id=? AND type=? AND param=? AND code=?)"}, false},
		{"patient=p1&date=ge2020-01-01", []string{
			"COVERING INDEX idx_ref_value (type=? AND param=? AND target_id=?)",
			"COVERING INDEX idx_date_owner (type=? AND id=? AND param=?)"}, false},
		{"patient=p1&_lastUpdated=ge2020-01-01", []string{
			"COVERING INDEX idx_ref_value (type=? AND param=? AND target_id=?)",
			"SEARCH c USING INDEX sqlite_autoindex_current_1 (type=? AND id=?)"}, true},
	} {
		vals, _ := url.ParseQuery(tc.query)
		q, err := fhir.ParseSearch("Observation", vals, fhir.SearchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := &compiler{now: time.Now()}
		from, where, err := c.where(q, "c")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.reader.Query("EXPLAIN QUERY PLAN SELECT c.id FROM "+from+" WHERE "+where+" ORDER BY "+c.orderBy(q, "c")+" LIMIT 11", c.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		all := strings.Join(plan, "\n")
		for _, want := range tc.want {
			if !strings.Contains(all, want) {
				t.Errorf("Observation?%s: plan lacks %q:\n%s", tc.query, want, all)
			}
		}
		if visits := strings.Contains(all, "current_1"); visits != tc.current {
			t.Errorf("Observation?%s: visits current = %v, want %v:\n%s", tc.query, visits, tc.current, all)
		}
		if strings.Contains(all, "SCAN c") && !strings.Contains(all, "CO-ROUTINE c") {
			t.Errorf("Observation?%s: plan scans current:\n%s", tc.query, all)
		}
		if strings.Contains(all, "idx_token_patient") && strings.Contains(all, "idx_token_owner") {
			t.Errorf("Observation?%s: the token condition the driver implies is probed again:\n%s", tc.query, all)
		}
	}
}

// TestMigrationFillsTokenPatientIndex: a version-2 database (no
// idx_token_patient rows) opened by this version answers patient-anchored
// token searches fully, from the rows the migration derives.
func TestMigrationFillsTokenPatientIndex(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = s.Transact(ctx, func(tx store.Tx) error {
		for _, body := range []string{
			`{"resourceType":"Patient","id":"p1"}`,
			`{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"}}`,
			`{"resourceType":"Observation","id":"o2","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"subject":{"reference":"Patient/p1"}}`,
		} {
			var r struct{ ResourceType, ID string }
			json.Unmarshal([]byte(body), &r)
			if _, _, err := tx.Update(ctx, store.Write{Type: r.ResourceType, ID: r.ID, Body: []byte(body)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.writer.Exec(`DELETE FROM idx_token_patient; PRAGMA user_version = 2`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vals, _ := url.ParseQuery("patient=p1&code=http://loinc.org|8867-4")
	q, _ := fhir.ParseSearch("Observation", vals, fhir.SearchOptions{})
	ids, err := s.SearchIDs(ctx, q, "", 0)
	if err != nil || len(ids) != 1 || ids[0] != "o1" {
		t.Fatalf("after migration: %v %v, want [o1]", ids, err)
	}
}
