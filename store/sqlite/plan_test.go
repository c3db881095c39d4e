package sqlite

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
)

// TestSearchPlanDrivesFromSelectiveIndex pins the query shape that keeps
// patient-scoped searches fast on a million Observations: the reference
// drives through its value index and the other conditions probe by owner.
// Without it SQLite walks every Observation (seconds per query).
func TestSearchPlanDrivesFromSelectiveIndex(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vals, _ := url.ParseQuery("patient=p1&code=http://loinc.org|8867-4&date=ge2020-01-01")
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
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	all := strings.Join(plan, "\n")
	for _, want := range []string{"COVERING INDEX idx_ref_value (type=? AND param=? AND target_id=?)", "COVERING INDEX idx_token_owner (type=? AND id=? AND param=? AND code=? AND system=?)", "COVERING INDEX idx_date_owner (type=? AND id=? AND param=?)"} {
		if !strings.Contains(all, want) {
			t.Errorf("plan lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "SCAN c") {
		t.Errorf("plan scans current:\n%s", all)
	}
}
