package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/store"
)

func testAuthRecords(t *testing.T, s store.Store) {
	ctx := context.Background()
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	rec := store.AuthRecord{Kind: "code", Key: "sig1", RequestID: "req1", Subject: "alice", Active: true, ExpiresAt: later, Data: []byte(`{"a":1}`)}
	if err := s.CreateAuth(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAuth(ctx, rec); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateAuth of one key: %v, want ErrConflict", err)
	}
	got, err := s.GetAuth(ctx, "code", "sig1")
	if err != nil {
		t.Fatal(err)
	}
	if got.RequestID != "req1" || got.Subject != "alice" || !got.Active || !got.ExpiresAt.Equal(later) || string(got.Data) != `{"a":1}` {
		t.Fatalf("GetAuth = %+v", got)
	}
	if _, err := s.GetAuth(ctx, "access", "sig1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("kinds are separate: %v", err)
	}
	if err := s.DeactivateAuth(ctx, "code", "sig1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAuth(ctx, "code", "sig1"); got.Active {
		t.Fatal("deactivated record still active")
	}
	if err := s.DeactivateAuth(ctx, "code", "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeactivateAuth(missing) = %v", err)
	}

	// Expired records are invisible and can be created again.
	gone := store.AuthRecord{Kind: "jti", Key: "j1", Active: true, ExpiresAt: time.Now().Add(-time.Second)}
	if err := s.PutAuth(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAuth(ctx, "jti", "j1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired record returned: %v", err)
	}
	gone.ExpiresAt = later
	if err := s.CreateAuth(ctx, gone); err != nil {
		t.Fatalf("CreateAuth over an expired record: %v", err)
	}

	// A grant's tokens are deactivated and deleted together, and only that grant's.
	for i, key := range []string{"t1", "t2", "t3"} {
		rid := "grantA"
		if i == 2 {
			rid = "grantB"
		}
		if err := s.PutAuth(ctx, store.AuthRecord{Kind: "refresh", Key: key, RequestID: rid, Subject: "bob", Active: true, ExpiresAt: later}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeactivateGrant(ctx, "refresh", "grantA"); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"t1": false, "t2": false, "t3": true} {
		if got, err := s.GetAuth(ctx, "refresh", key); err != nil || got.Active != want {
			t.Fatalf("%s after DeactivateGrant: active=%v err=%v, want %v", key, got.Active, err, want)
		}
	}
	if err := s.DeleteGrant(ctx, "refresh", "grantA"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAuth(ctx, "refresh", "t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("t1 after DeleteGrant: %v", err)
	}

	// PutAuth replaces; ListAuth filters by subject and orders by key.
	if err := s.PutAuth(ctx, store.AuthRecord{Kind: "user", Key: "zed", Subject: "zed", Active: true, Data: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAuth(ctx, store.AuthRecord{Kind: "user", Key: "amy", Subject: "amy", Active: true, Data: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAuth(ctx, store.AuthRecord{Kind: "user", Key: "amy", Subject: "amy", Active: true, Data: []byte(`2`)}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListAuth(ctx, "user", "")
	if err != nil || len(all) != 2 || all[0].Key != "amy" || string(all[0].Data) != "2" || !all[0].ExpiresAt.IsZero() {
		t.Fatalf("ListAuth = %+v, %v", all, err)
	}
	mine, err := s.ListAuth(ctx, "refresh", "bob")
	if err != nil || len(mine) != 1 || mine[0].Key != "t3" {
		t.Fatalf("ListAuth(refresh, bob) = %+v, %v", mine, err)
	}
	if err := s.DeleteAuth(ctx, "user", "zed"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAuth(ctx, "user", "zed"); err != nil {
		t.Fatalf("deleting a missing record: %v", err)
	}
}
