package interact

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/sqlite"
)

// retryingStore runs every transaction twice, the way a backend retries
// one that lost a race: the first attempt is rolled back after it ran.
type retryingStore struct{ store.Store }

var errLostRace = errors.New("lost a race (test)")

func (r retryingStore) Transact(ctx context.Context, fn func(store.Tx) error) error {
	err := r.Store.Transact(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errLostRace
	})
	if !errors.Is(err, errLostRace) {
		return err
	}
	return r.Store.Transact(ctx, fn)
}

// TestRetriedTransactionResolvesAgain: a retried transaction gives its POST
// entries new ids, and the references to them follow — in the stored bytes
// and in the search index alike.
func TestRetriedTransactionResolvesAgain(t *testing.T) {
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := New(retryingStore{st}, Config{}).Unrestricted(audit.Agent{})
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:0b1f3a8e-5a51-4c47-9e63-7a0c3e6f1d20","resource":{"resourceType":"Patient","gender":"female"},"request":{"method":"POST","url":"Patient"}},
		{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:0b1f3a8e-5a51-4c47-9e63-7a0c3e6f1d20"}},"request":{"method":"POST","url":"Observation"}}]}`
	_, entries, err := s.Bundle(context.Background(), []byte(bundle), true)
	if err != nil {
		t.Fatal(err)
	}
	patient := entries[0].Result.Resource.ID
	var obs struct {
		Subject struct{ Reference string } `json:"subject"`
	}
	json.Unmarshal(entries[1].Result.Resource.JSON, &obs)
	if obs.Subject.Reference != "Patient/"+patient {
		t.Fatalf("the Observation refers to %s, the Patient is %s", obs.Subject.Reference, patient)
	}
	q, err := conditionQuery("Observation", "subject=Patient/"+patient, "")
	if err != nil {
		t.Fatal(err)
	}
	page, err := s.Search(context.Background(), q, "")
	if err != nil || len(page.Matches) != 1 {
		t.Errorf("the index of the retried Observation: %v %d matches", err, len(page.Matches))
	}
	if !strings.HasPrefix(string(entries[1].Result.Resource.JSON), "{") {
		t.Error("no Observation")
	}
}
