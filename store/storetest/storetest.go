// Package storetest is the conformance suite every store.Store backend must
// pass, in the manner of dex's storage/conformance: a backend's own test calls
// Run with a function that opens a fresh, empty store.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// Opener returns a new, empty store for one subtest; the store is closed by the suite.
type Opener func(t *testing.T) store.Store

// Run runs every conformance test against the backend.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateRead", testCreateRead},
		{"StampKeepsClientJSON", testStampKeepsClientJSON},
		{"UpdateVersions", testUpdateVersions},
		{"UpdateAsCreate", testUpdateAsCreate},
		{"IfMatch", testIfMatch},
		{"DeleteGoneAndResurrect", testDeleteGoneAndResurrect},
		{"VRead", testVRead},
		{"History", testHistory},
		{"HistoryPagingStableUnderWrites", testHistoryPagingStable},
		{"HistorySince", testHistorySince},
		{"TransactionAtomic", testTransactionAtomic},
		{"SearchInsideTransaction", testSearchInsideTransaction},
		{"SearchTable", testSearchTable},
		{"SearchPagingAndIncludes", testSearchPagingAndIncludes},
		{"ConcurrentUpdatesNeverLoseWrites", testConcurrentUpdates},
		{"AuthRecords", testAuthRecords},
		{"AuditTrail", testAuditTrail},
		{"AuditOrderAcrossAppends", testAuditOrder},
		{"Files", testFiles},
		{"ScanType", testScanType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			tc.fn(t, s)
		})
	}
}

var ctx = context.Background()

func patient(family string) []byte {
	return []byte(fmt.Sprintf(`{"resourceType":"Patient","name":[{"family":%q}]}`, family))
}

func create(t *testing.T, s store.Store, typ string, body []byte) store.Resource {
	t.Helper()
	var r store.Resource
	err := s.Transact(ctx, func(tx store.Tx) error {
		var err error
		r, err = tx.Create(ctx, store.Write{Type: typ, Body: body})
		return err
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return r
}

func update(s store.Store, w store.Write) (store.Resource, bool, error) {
	var r store.Resource
	var created bool
	err := s.Transact(ctx, func(tx store.Tx) error {
		var err error
		r, created, err = tx.Update(ctx, w)
		return err
	})
	return r, created, err
}

func del(s store.Store, typ, id string, ifMatch int64) (store.Resource, error) {
	var r store.Resource
	err := s.Transact(ctx, func(tx store.Tx) error {
		var err error
		r, err = tx.Delete(ctx, typ, id, ifMatch)
		return err
	})
	return r, err
}

func field(t *testing.T, body []byte, path ...string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("stored JSON invalid: %v", err)
	}
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

func testCreateRead(t *testing.T, s store.Store) {
	r := create(t, s, "Patient", patient("Doe"))
	if r.ID == "" || r.VersionID != 1 || r.Deleted || r.Op != store.OpCreate {
		t.Fatalf("create returned %+v", r)
	}
	got, err := s.Read(ctx, "Patient", r.ID)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got.JSON) != string(r.JSON) || got.VersionID != 1 || !got.LastUpdated.Equal(r.LastUpdated) {
		t.Fatalf("read %+v, want %+v", got, r)
	}
	if id := field(t, got.JSON, "id"); id != r.ID {
		t.Errorf("stored id = %v, want %s", id, r.ID)
	}
	if v := field(t, got.JSON, "meta", "versionId"); v != "1" {
		t.Errorf("meta.versionId = %v", v)
	}
	if lu := field(t, got.JSON, "meta", "lastUpdated"); lu != r.LastUpdated.Format("2006-01-02T15:04:05.000Z07:00") {
		t.Errorf("meta.lastUpdated = %v, want %v", lu, r.LastUpdated)
	}
	if _, err := s.Read(ctx, "Patient", "does-not-exist"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("read missing: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Read(ctx, "Observation", r.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("read with wrong type: err = %v, want ErrNotFound", err)
	}
	other := create(t, s, "Patient", patient("Roe"))
	if other.ID == r.ID {
		t.Errorf("two creates got the same id %s", r.ID)
	}
}

func testStampKeepsClientJSON(t *testing.T, s store.Store) {
	body := []byte(`{"resourceType":"Observation","id":"client-id-ignored","meta":{"versionId":"99","profile":["http://example.org/p"]},"status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50,"unit":"mg"},"_status":{"extension":[{"url":"http://example.org/e","valueString":"kept"}]},"contained":[{"resourceType":"Patient","id":"c1"}]}`)
	r := create(t, s, "Observation", body)
	got, err := s.Read(ctx, "Observation", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	js := string(got.JSON)
	for _, want := range []string{`"value":1.50`, `"_status":{"extension":[{"url":"http://example.org/e","valueString":"kept"}]}`, `"profile":["http://example.org/p"]`, `"contained":[{"resourceType":"Patient","id":"c1"}]`, `"versionId":"1"`} {
		if !strings.Contains(js, want) {
			t.Errorf("stored JSON lost %s: %s", want, js)
		}
	}
	if strings.Contains(js, "client-id-ignored") || strings.Contains(js, `"99"`) {
		t.Errorf("stored JSON kept the client's id or version: %s", js)
	}
	if !strings.HasPrefix(js, `{"resourceType":"Observation","id":"`+r.ID+`","meta":{`) {
		t.Errorf("stored JSON does not start with resourceType, id, meta: %s", js)
	}
}

func testUpdateVersions(t *testing.T, s store.Store) {
	r := create(t, s, "Patient", patient("One"))
	for want := int64(2); want <= 4; want++ {
		u, created, err := update(s, store.Write{Type: "Patient", ID: r.ID, Body: patient(fmt.Sprint("V", want))})
		if err != nil || created || u.VersionID != want || u.Op != store.OpUpdate {
			t.Fatalf("update %d: %+v created=%v err=%v", want, u, created, err)
		}
		if u.LastUpdated.Before(r.LastUpdated) {
			t.Errorf("lastUpdated went backwards: %v < %v", u.LastUpdated, r.LastUpdated)
		}
	}
	got, err := s.Read(ctx, "Patient", r.ID)
	if err != nil || got.VersionID != 4 || !strings.Contains(string(got.JSON), `"V4"`) {
		t.Fatalf("read after updates: %+v %v", got, err)
	}
}

func testUpdateAsCreate(t *testing.T, s store.Store) {
	u, created, err := update(s, store.Write{Type: "Patient", ID: "client-chosen", Body: patient("X")})
	if err != nil || !created || u.VersionID != 1 || u.ID != "client-chosen" || u.Op != store.OpUpdateCreate {
		t.Fatalf("update-as-create: %+v created=%v err=%v", u, created, err)
	}
	if h, err := s.History(ctx, store.HistoryQuery{Type: "Patient", ID: "client-chosen"}); err != nil || len(h.Versions) != 1 || h.Versions[0].Op != store.OpUpdateCreate {
		t.Errorf("history of an update-as-create: %+v %v", h, err)
	}
	if _, _, err := update(s, store.Write{Type: "Patient", ID: "other", Body: patient("X"), IfMatch: 1}); !errors.Is(err, store.ErrVersionMismatch) {
		t.Errorf("If-Match on a missing resource: err = %v, want ErrVersionMismatch", err)
	}
	if _, err := s.Read(ctx, "Patient", "other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("failed conditional update stored something: %v", err)
	}
}

func testIfMatch(t *testing.T, s store.Store) {
	r := create(t, s, "Patient", patient("A"))
	if _, _, err := update(s, store.Write{Type: "Patient", ID: r.ID, Body: patient("B"), IfMatch: 7}); !errors.Is(err, store.ErrVersionMismatch) {
		t.Fatalf("stale If-Match: err = %v, want ErrVersionMismatch", err)
	}
	if got, _ := s.Read(ctx, "Patient", r.ID); got.VersionID != 1 {
		t.Fatalf("rejected update changed the resource: %+v", got)
	}
	if u, _, err := update(s, store.Write{Type: "Patient", ID: r.ID, Body: patient("B"), IfMatch: 1}); err != nil || u.VersionID != 2 {
		t.Fatalf("matching If-Match: %+v %v", u, err)
	}
	if _, err := del(s, "Patient", r.ID, 1); !errors.Is(err, store.ErrVersionMismatch) {
		t.Errorf("delete with stale If-Match: err = %v", err)
	}
}

func testDeleteGoneAndResurrect(t *testing.T, s store.Store) {
	r := create(t, s, "Patient", patient("A"))
	d, err := del(s, "Patient", r.ID, 0)
	if err != nil || !d.Deleted || d.VersionID != 2 || d.JSON != nil {
		t.Fatalf("delete: %+v %v", d, err)
	}
	got, err := s.Read(ctx, "Patient", r.ID)
	if !errors.Is(err, store.ErrGone) || got.VersionID != 2 || !got.Deleted {
		t.Fatalf("read deleted: %+v %v, want ErrGone with version 2", got, err)
	}
	again, err := del(s, "Patient", r.ID, 0)
	if err != nil || again.VersionID != 2 {
		t.Fatalf("second delete should be a no-op: %+v %v", again, err)
	}
	if _, err := del(s, "Patient", "never-existed", 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete missing: err = %v, want ErrNotFound", err)
	}
	u, created, err := update(s, store.Write{Type: "Patient", ID: r.ID, Body: patient("Back")})
	if err != nil || !created || u.VersionID != 3 {
		t.Fatalf("update after delete: %+v created=%v err=%v", u, created, err)
	}
	if got, err := s.Read(ctx, "Patient", r.ID); err != nil || got.VersionID != 3 {
		t.Fatalf("read resurrected: %+v %v", got, err)
	}
	if ids, err := s.SearchIDs(ctx, mustQuery(t, "Patient", "_id="+r.ID), "", 0); err != nil || len(ids) != 1 {
		t.Errorf("search finds resurrected resource: %d %v", len(ids), err)
	}

	// A deleted resource leaves every search, however it is driven.
	o := create(t, s, "Observation", []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/`+r.ID+`"},"effectiveDateTime":"2024-01-01"}`))
	if _, err := del(s, "Observation", o.ID, 0); err != nil {
		t.Fatal(err)
	}
	for _, query := range []string{"patient=" + r.ID, "patient=" + r.ID + "&code=8867-4", "code=8867-4", "date=2024", "patient=" + r.ID + "&date=2024"} {
		if ids, err := s.SearchIDs(ctx, mustQuery(t, "Observation", query), "", 0); err != nil || len(ids) != 0 {
			t.Errorf("Observation?%s after the delete: %v %v", query, ids, err)
		}
		if n, err := s.Count(ctx, mustQuery(t, "Observation", query)); err != nil || n != 0 {
			t.Errorf("count of Observation?%s after the delete: %d %v", query, n, err)
		}
	}
	q := mustQuery(t, "Observation", "code=8867-4")
	q.Compartment = r.ID
	if ids, err := s.SearchIDs(ctx, q, "", 0); err != nil || len(ids) != 0 {
		t.Errorf("compartment search after the delete: %v %v", ids, err)
	}
}

func testVRead(t *testing.T, s store.Store) {
	r := create(t, s, "Patient", patient("First"))
	update(s, store.Write{Type: "Patient", ID: r.ID, Body: patient("Second")})
	del(s, "Patient", r.ID, 0)
	v1, err := s.VRead(ctx, "Patient", r.ID, 1)
	if err != nil || !strings.Contains(string(v1.JSON), "First") || v1.VersionID != 1 {
		t.Fatalf("vread 1: %+v %v", v1, err)
	}
	v2, err := s.VRead(ctx, "Patient", r.ID, 2)
	if err != nil || !strings.Contains(string(v2.JSON), "Second") {
		t.Fatalf("vread 2: %+v %v", v2, err)
	}
	if _, err := s.VRead(ctx, "Patient", r.ID, 3); !errors.Is(err, store.ErrGone) {
		t.Errorf("vread of the deletion: err = %v, want ErrGone", err)
	}
	if _, err := s.VRead(ctx, "Patient", r.ID, 4); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("vread beyond last: err = %v, want ErrNotFound", err)
	}
}

func collectHistory(t *testing.T, s store.Store, q store.HistoryQuery) []store.Resource {
	t.Helper()
	var all []store.Resource
	for i := 0; ; i++ {
		page, err := s.History(ctx, q)
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		all = append(all, page.Versions...)
		if page.Next == "" {
			return all
		}
		if i > 1000 {
			t.Fatal("history paging does not end")
		}
		q.Cursor = page.Next
	}
}

func testHistory(t *testing.T, s store.Store) {
	a := create(t, s, "Patient", patient("A"))
	b := create(t, s, "Observation", []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`))
	update(s, store.Write{Type: "Patient", ID: a.ID, Body: patient("A2")})
	del(s, "Patient", a.ID, 0)

	inst := collectHistory(t, s, store.HistoryQuery{Type: "Patient", ID: a.ID, Count: 2})
	if len(inst) != 3 || inst[0].VersionID != 3 || !inst[0].Deleted || inst[0].Op != store.OpDelete || inst[1].Op != store.OpUpdate || inst[2].VersionID != 1 || inst[2].Op != store.OpCreate {
		t.Fatalf("instance history newest first: %+v", inst)
	}
	typ := collectHistory(t, s, store.HistoryQuery{Type: "Observation", Count: 10})
	if len(typ) != 1 || typ[0].ID != b.ID {
		t.Fatalf("type history: %+v", typ)
	}
	sys := collectHistory(t, s, store.HistoryQuery{Count: 1})
	if len(sys) != 4 {
		t.Fatalf("system history has %d versions, want 4", len(sys))
	}
	page, _ := s.History(ctx, store.HistoryQuery{Count: 1})
	if page.Total != 4 || len(page.Versions) != 1 || page.Next == "" {
		t.Errorf("first page: total=%d len=%d next=%q", page.Total, len(page.Versions), page.Next)
	}
	if _, err := s.History(ctx, store.HistoryQuery{Cursor: "garbage"}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("bad cursor: err = %v, want ErrInvalidCursor", err)
	}
}

func testHistoryPagingStable(t *testing.T, s store.Store) {
	for i := 0; i < 5; i++ {
		create(t, s, "Patient", patient(fmt.Sprint("P", i)))
	}
	page, err := s.History(ctx, store.HistoryQuery{Type: "Patient", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, v := range page.Versions {
		seen[v.ID] = true
	}
	// Writes between pages must not appear on later pages or shift them.
	for i := 0; i < 3; i++ {
		create(t, s, "Patient", patient("Late"))
	}
	rest := collectHistory(t, s, store.HistoryQuery{Type: "Patient", Count: 2, Cursor: page.Next})
	for _, v := range rest {
		if seen[v.ID] {
			t.Errorf("version %s/%d served twice", v.ID, v.VersionID)
		}
		if strings.Contains(string(v.JSON), "Late") {
			t.Errorf("a version written after the first page appeared on a later page")
		}
		seen[v.ID] = true
	}
	if len(seen) != 5 {
		t.Errorf("paging served %d distinct resources, want 5", len(seen))
	}
}

func testHistorySince(t *testing.T, s store.Store) {
	create(t, s, "Patient", patient("Old"))
	time.Sleep(5 * time.Millisecond) // lastUpdated has millisecond precision
	mark := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	n := create(t, s, "Patient", patient("New"))
	got := collectHistory(t, s, store.HistoryQuery{Since: mark, Count: 10})
	if len(got) != 1 || got[0].ID != n.ID {
		t.Fatalf("_since returned %d versions, want only the new one", len(got))
	}
}

func testTransactionAtomic(t *testing.T, s store.Store) {
	keep := create(t, s, "Patient", patient("Keep"))
	boom := errors.New("boom")
	var createdID string
	err := s.Transact(ctx, func(tx store.Tx) error {
		r, err := tx.Create(ctx, store.Write{Type: "Patient", Body: patient("Ghost")})
		if err != nil {
			return err
		}
		createdID = r.ID
		if _, _, err := tx.Update(ctx, store.Write{Type: "Patient", ID: keep.ID, Body: patient("Changed")}); err != nil {
			return err
		}
		// Reads inside the transaction see its own writes.
		if got, err := tx.Read(ctx, "Patient", keep.ID); err != nil || got.VersionID != 2 {
			return fmt.Errorf("read own write: %+v %v", got, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Transact err = %v, want the function's error", err)
	}
	if _, err := s.Read(ctx, "Patient", createdID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rolled-back create is visible: %v", err)
	}
	if got, _ := s.Read(ctx, "Patient", keep.ID); got.VersionID != 1 || strings.Contains(string(got.JSON), "Changed") {
		t.Errorf("rolled-back update is visible: %+v", got)
	}
	if h := collectHistory(t, s, store.HistoryQuery{Count: 10}); len(h) != 1 {
		t.Errorf("history has %d versions after rollback, want 1", len(h))
	}
}

// mustQuery parses a search query string for typ.
func mustQuery(t *testing.T, typ, query string) *fhir.SearchQuery {
	t.Helper()
	vals, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	q, err := fhir.ParseSearch(typ, vals, fhir.SearchOptions{DefaultCount: 1000, MaxCount: 1000, Strict: true})
	if err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	return q
}

func testSearchInsideTransaction(t *testing.T, s store.Store) {
	err := s.Transact(ctx, func(tx store.Tx) error {
		if _, err := tx.Create(ctx, store.Write{Type: "Patient", Body: []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"7"}]}`)}); err != nil {
			return err
		}
		got, err := tx.Search(ctx, mustQuery(t, "Patient", "identifier=urn:mrn|7"), 2)
		if err != nil {
			return err
		}
		if len(got) != 1 {
			return fmt.Errorf("search inside the transaction found %d, want its own write", len(got))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testConcurrentUpdates(t *testing.T, s store.Store) {
	r := create(t, s, "Patient", patient("Start"))
	const writers = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, _, err := update(s, store.Write{Type: "Patient", ID: r.ID, Body: patient(fmt.Sprint("W", i)), IfMatch: 1})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, store.ErrVersionMismatch) && !errors.Is(err, store.ErrConflict) {
				t.Errorf("writer %d: unexpected error %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d writers with If-Match: 1 succeeded, want exactly 1", wins)
	}
	// Unconditional concurrent updates all land, each as its own version.
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, _, err := update(s, store.Write{Type: "Patient", ID: r.ID, Body: patient(fmt.Sprint("U", i))}); err != nil {
				t.Errorf("unconditional writer %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	got, _ := s.Read(ctx, "Patient", r.ID)
	if got.VersionID != 2+writers {
		t.Errorf("final version %d, want %d", got.VersionID, 2+writers)
	}
	if h := collectHistory(t, s, store.HistoryQuery{Type: "Patient", ID: r.ID, Count: 100}); len(h) != 2+writers {
		t.Errorf("history has %d versions, want %d", len(h), 2+writers)
	}
}

// testScanType: a type's current resources in id order, page by page,
// without the deleted ones and without other types'.
func testScanType(t *testing.T, s store.Store) {
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("scan-%d", i)
		if _, _, err := update(s, store.Write{Type: "Patient", ID: id, Body: patient("Scan")}); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	if _, err := del(s, "Patient", "scan-3", 0); err != nil {
		t.Fatal(err)
	}
	want = slices.Delete(want, 3, 4)
	create(t, s, "Practitioner", []byte(`{"resourceType":"Practitioner"}`))
	var got []string
	after := ""
	for page := 0; page < 10; page++ {
		rs, err := s.ScanType(ctx, "Patient", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) > 2 {
			t.Fatalf("a page of %d, limit 2", len(rs))
		}
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			if r.Type != "Patient" || r.Deleted || len(r.JSON) == 0 {
				t.Fatalf("scanned %+v", r)
			}
			got = append(got, r.ID)
		}
		after = rs[len(rs)-1].ID
	}
	if !slices.Equal(got, want) {
		t.Errorf("scan: %v, want %v", got, want)
	}
}
