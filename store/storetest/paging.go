package storetest

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

func resourceIDs(rs []store.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Type + "/" + r.ID
	}
	return out
}

func testSearchPagingAndIncludes(t *testing.T, s store.Store) {
	loadSearchFixtures(t, s)
	for i := 0; i < 23; i++ {
		update(s, store.Write{Type: "Patient", ID: fmt.Sprintf("bulk-%02d", i), Body: []byte(fmt.Sprintf(`{"resourceType":"Patient","id":"bulk-%02d","name":[{"family":"Bulk%02d"}]}`, i, 22-i))})
	}

	t.Run("keyset paging is stable under writes", func(t *testing.T) {
		q := mustQuery(t, "Patient", "_count=10")
		seen := map[string]bool{}
		token := ""
		for pages := 0; ; pages++ {
			page, err := interact.New(s, interact.Config{}).Unrestricted(audit.Agent{}).Search(ctx, q, token)
			if err != nil {
				t.Fatal(err)
			}
			if page.Total != 26 {
				t.Errorf("page %d total = %d, want 26", pages, page.Total)
			}
			for _, r := range page.Matches {
				if seen[r.ID] {
					t.Errorf("%s served twice", r.ID)
				}
				seen[r.ID] = true
			}
			// A write between pages: an update must not repeat a resource.
			update(s, store.Write{Type: "Patient", ID: "bulk-00", Body: []byte(`{"resourceType":"Patient","id":"bulk-00","active":true}`)})
			if page.Next == "" {
				break
			}
			if pages > 5 {
				t.Fatal("paging does not end")
			}
			token = page.Next
		}
		if len(seen) != 26 {
			t.Errorf("paged through %d patients, want 26", len(seen))
		}
	})

	t.Run("sorted paging uses a snapshot", func(t *testing.T) {
		q := mustQuery(t, "Patient", "_sort=family&_count=7&name=bulk")
		var got []string
		token := ""
		for {
			page, err := interact.New(s, interact.Config{}).Unrestricted(audit.Agent{}).Search(ctx, q, token)
			if err != nil {
				t.Fatal(err)
			}
			if page.Total != 22 && page.Total != 23 {
				t.Errorf("total = %d", page.Total)
			}
			got = append(got, resourceIDs(page.Matches)...)
			// Re-sorting writes between pages must not reorder later pages.
			update(s, store.Write{Type: "Patient", ID: "bulk-05", Body: []byte(`{"resourceType":"Patient","id":"bulk-05","name":[{"family":"Bulk00"}]}`)})
			if page.Next == "" {
				break
			}
			token = page.Next
		}
		// bulk-00 lost its name in the keyset test, so 22 remain; family
		// BulkNN = 22-i sorts them by descending id.
		if len(got) != 22 || got[0] != "Patient/bulk-22" || got[len(got)-1] != "Patient/bulk-01" {
			t.Errorf("sorted pages: %v", got)
		}
		seen := map[string]bool{}
		for _, id := range got {
			if seen[id] {
				t.Errorf("%s served twice", id)
			}
			seen[id] = true
		}
	})

	t.Run("bad page token", func(t *testing.T) {
		if _, err := interact.New(s, interact.Config{}).Unrestricted(audit.Agent{}).Search(ctx, mustQuery(t, "Patient", ""), "s.nope.0"); err == nil {
			t.Error("unknown snapshot accepted")
		}
		if _, err := interact.New(s, interact.Config{}).Unrestricted(audit.Agent{}).Search(ctx, mustQuery(t, "Patient", ""), "garbage"); err == nil {
			t.Error("garbage token accepted")
		}
	})

	includeCases := []struct {
		typ, query string
		matches    []string
		included   []string
	}{
		{"Observation", "_id=obs-1&_include=Observation:subject", []string{"Observation/obs-1"}, []string{"Patient/pat-a"}},
		{"Observation", "_id=obs-1,obs-2&_include=Observation:subject:Patient", []string{"Observation/obs-1", "Observation/obs-2"}, []string{"Patient/pat-a"}},
		{"Observation", "_id=obs-1&_include=*", []string{"Observation/obs-1"}, []string{"Patient/pat-a", "Practitioner/doc-1"}},
		{"Observation", "_id=obs-1&_revinclude=Provenance:target", []string{"Observation/obs-1"}, []string{"Provenance/prov-1"}},
		{"Observation", "_id=obs-1&_include=Observation:subject&_include:iterate=Patient:general-practitioner", []string{"Observation/obs-1"}, []string{"Patient/pat-a", "Practitioner/doc-1"}},
		{"Observation", "_id=obs-1&_include=Observation:subject&_include:iterate=Patient:organization&_include:iterate=Organization:partof", []string{"Observation/obs-1"}, []string{"Organization/org-1", "Organization/org-2", "Patient/pat-a"}},
		{"Patient", "_id=pat-a&_revinclude=Observation:subject&_revinclude:iterate=Provenance:target", []string{"Patient/pat-a"}, []string{"Observation/obs-1", "Observation/obs-2", "Provenance/prov-1"}},
		{"Observation", "_id=obs-1&_include=Observation:subject&_include:iterate=Patient:general-practitioner&_revinclude:iterate=Observation:performer", []string{"Observation/obs-1"}, []string{"Patient/pat-a", "Practitioner/doc-1"}},
	}
	for _, tc := range includeCases {
		t.Run(tc.typ+"?"+tc.query, func(t *testing.T) {
			page, err := interact.New(s, interact.Config{}).Unrestricted(audit.Agent{}).Search(ctx, mustQuery(t, tc.typ, tc.query), "")
			if err != nil {
				t.Fatal(err)
			}
			m, inc := resourceIDs(page.Matches), resourceIDs(page.Included)
			sort.Strings(m)
			sort.Strings(inc)
			if strings.Join(m, ",") != strings.Join(tc.matches, ",") || strings.Join(inc, ",") != strings.Join(tc.included, ",") {
				t.Errorf("matches %v included %v, want %v and %v", m, inc, tc.matches, tc.included)
			}
		})
	}

	t.Run("_summary=count and _count=0 count without reading", func(t *testing.T) {
		for _, query := range []string{"_summary=count&gender=male", "_count=0&gender=male"} {
			page, err := interact.New(s, interact.Config{}).Unrestricted(audit.Agent{}).Search(ctx, mustQuery(t, "Patient", query), "")
			if err != nil || page.Total != 1 || len(page.Matches) != 0 {
				t.Errorf("%s: total %d matches %d err %v", query, page.Total, len(page.Matches), err)
			}
		}
	})
}
