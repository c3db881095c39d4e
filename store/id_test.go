package store

import (
	"slices"
	"testing"

	"github.com/hearth-fhir/hearth/fhir"
)

// TestNewIDsSortByCreation: server-assigned ids are valid FHIR ids, unique,
// and in creation order, which is what keeps bulk loads appending to the
// (type, id) indexes.
func TestNewIDsSortByCreation(t *testing.T) {
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = NewID()
		if !fhir.ValidID(ids[i]) {
			t.Fatalf("%q is not a valid FHIR id", ids[i])
		}
	}
	if !slices.IsSorted(ids) {
		t.Error("ids created in sequence do not sort in creation order")
	}
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Error("duplicate ids")
	}
}
