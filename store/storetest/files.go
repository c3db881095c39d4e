package storetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/store"
)

// testFiles: files are whole or absent, replaced by a second write of their
// name, deleted by prefix, and pruned once expired.
func testFiles(t *testing.T, s store.Store) {
	later := time.Now().Add(time.Hour)
	read := func(name string) ([]byte, error) {
		t.Helper()
		r, err := s.OpenFile(ctx, name)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
	if _, err := read("export/none.ndjson"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a missing file: %v", err)
	}
	// Larger than a GridFS chunk and a copy buffer: 3 MiB and a bit.
	big := make([]byte, 3<<20+123)
	rand.Read(big)
	if n, err := s.PutFile(ctx, "export/j1/Patient-1.ndjson", bytes.NewReader(big), later); err != nil || n != int64(len(big)) {
		t.Fatalf("put: %d %v", n, err)
	}
	if got, err := read("export/j1/Patient-1.ndjson"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	// A second write replaces the first.
	if _, err := s.PutFile(ctx, "export/j1/Patient-1.ndjson", strings.NewReader("{\"resourceType\":\"Patient\"}\n"), later); err != nil {
		t.Fatal(err)
	}
	if got, err := read("export/j1/Patient-1.ndjson"); err != nil || string(got) != "{\"resourceType\":\"Patient\"}\n" {
		t.Fatalf("after replacing: %q %v", got, err)
	}
	// A write that fails leaves no file.
	if _, err := s.PutFile(ctx, "export/j1/Observation-1.ndjson", io.MultiReader(strings.NewReader("half"), failingReader{}), later); err == nil {
		t.Fatal("a failing reader was stored")
	}
	if _, err := read("export/j1/Observation-1.ndjson"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed write left a file: %v", err)
	}
	// Delete by prefix: j1's files go, j10's and j2's stay.
	for _, name := range []string{"export/j1/Condition-1.ndjson", "export/j10/Patient-1.ndjson", "export/j2/Patient-1.ndjson"} {
		if _, err := s.PutFile(ctx, name, strings.NewReader(name), later); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteFiles(ctx, "export/j1/"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"export/j1/Patient-1.ndjson": false, "export/j1/Condition-1.ndjson": false, "export/j10/Patient-1.ndjson": true, "export/j2/Patient-1.ndjson": true} {
		if _, err := read(name); (err == nil) != want {
			t.Errorf("%s after deleting export/j1/: %v", name, err)
		}
	}
	// An expired file is not served, and pruning deletes it.
	if _, err := s.PutFile(ctx, "export/j3/old.ndjson", strings.NewReader("old"), time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := read("export/j3/old.ndjson"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an expired file was served: %v", err)
	}
	if n, err := s.PruneFiles(ctx, time.Now()); err != nil || n != 1 {
		t.Fatalf("prune: %d %v", n, err)
	}
	if _, err := read("export/j2/Patient-1.ndjson"); err != nil {
		t.Fatalf("pruning took a live file: %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("the source broke") }
