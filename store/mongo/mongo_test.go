package mongo

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/fhir"

	"github.com/hearth-fhir/hearth/store/mongo/mongotest"

	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	mongotest.Stop()
	os.Exit(code)
}

func openFresh(t *testing.T) *Store {
	t.Helper()
	uri := mongotest.URI(t)
	s, err := Open(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.db.Drop(context.Background()) })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openFresh(t) })
}

// TestCrashBetweenHistoryAndCurrent: a writer that stopped after writing
// version 2's history entry and before the current document must not
// leave the resource refusing writes; the stopped write is rolled forward
// once it is older than orphanAge, and the next write lands after it.
func TestCrashBetweenHistoryAndCurrent(t *testing.T) {
	ctx := context.Background()
	s := openFresh(t)
	put := func(body string) (store.Resource, error) {
		var r store.Resource
		err := s.Transact(ctx, func(tx store.Tx) error {
			var err error
			r, _, err = tx.Update(ctx, store.Write{Type: "Patient", ID: "p1", Body: []byte(body)})
			return err
		})
		return r, err
	}
	if _, err := put(`{"resourceType":"Patient","id":"p1","gender":"male"}`); err != nil {
		t.Fatal(err)
	}
	// The half-done write: version 2 in the history only.
	stopped := time.Now().Add(-orphanAge - time.Minute)
	body, err := fhir.Stamp([]byte(`{"resourceType":"Patient","id":"p1","gender":"female"}`), "p1", 2, stopped)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.versions.InsertOne(ctx, version{Key: "Patient/p1/2", Type: "Patient", ID: "p1", V: 2, LU: stopped.UnixMilli(), Op: "update", JSON: body, Seq: 99}); err != nil {
		t.Fatal(err)
	}
	r, err := put(`{"resourceType":"Patient","id":"p1","gender":"other"}`)
	if err != nil {
		t.Fatalf("write after a stopped write: %v", err)
	}
	if r.VersionID != 3 {
		t.Errorf("version %d, want 3 (after the rolled-forward 2)", r.VersionID)
	}
	v2, err := s.VRead(ctx, "Patient", "p1", 2)
	if err != nil || !strings.Contains(string(v2.JSON), "female") {
		t.Errorf("version 2: %v %s", err, v2.JSON)
	}
	q, err := fhir.ParseSearch("Patient", url.Values{"gender": {"other"}}, fhir.SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := s.SearchIDs(ctx, q, "", 0)
	if err != nil || len(ids) != 1 {
		t.Errorf("search keys of version 3: %v %v", ids, err)
	}

	// A recent half-done write (a writer may still be at it) is left alone:
	// the next write is refused as a conflict, not forced over it.
	body, _ = fhir.Stamp([]byte(`{"resourceType":"Patient","id":"p1"}`), "p1", 4, time.Now())
	if _, err := s.versions.InsertOne(ctx, version{Key: "Patient/p1/4", Type: "Patient", ID: "p1", V: 4, LU: time.Now().UnixMilli(), Op: "update", JSON: body, Seq: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := put(`{"resourceType":"Patient","id":"p1"}`); !errors.Is(err, store.ErrConflict) {
		t.Errorf("write over a fresh half-done write: %v, want a conflict", err)
	}
}
