package mongo

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/storetest"
)

// mongoURI is the server the tests use: HEARTH_MONGO_URI (CI starts
// FerretDB and sets it). Without it the tests skip, unless
// HEARTH_REQUIRE_MONGO is set, as in CI, where they must run.
func mongoURI(t *testing.T) string {
	uri := os.Getenv("HEARTH_MONGO_URI")
	if uri == "" {
		if os.Getenv("HEARTH_REQUIRE_MONGO") != "" {
			t.Fatal("HEARTH_MONGO_URI is not set")
		}
		t.Skip("HEARTH_MONGO_URI is not set (make test-mongo starts FerretDB)")
	}
	return strings.TrimSuffix(uri, "/")
}

var dbCounter atomic.Int64

// freshDB is a new, empty database on the server.
func freshDB(t *testing.T) string {
	return fmt.Sprintf("%s/hearth_test_%d_%d", mongoURI(t), time.Now().UnixNano()%1e9, dbCounter.Add(1))
}

func openFresh(t *testing.T) *Store {
	t.Helper()
	uri := freshDB(t)
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
