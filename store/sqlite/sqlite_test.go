package sqlite

import (
	"context"
	"errors"
	"testing"

	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestDirectoryIsLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open: err = %v, want ErrLocked", err)
	}
	s.Close()
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	s2.Close()
}

func TestDataSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var id string
	err = s.Transact(ctx, func(tx store.Tx) error {
		r, err := tx.Create(ctx, store.Write{Type: "Patient", Body: []byte(`{"resourceType":"Patient"}`)})
		id = r.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.Read(ctx, "Patient", id); err != nil || r.VersionID != 1 {
		t.Fatalf("after reopen: %+v %v", r, err)
	}
}
