package mongo

import (
	"context"
	"os"
	"testing"

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
