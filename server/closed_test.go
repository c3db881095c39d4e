package server_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/server"
)

// TestNoPolicyIsClosed: a server that is neither open nor able to check
// tokens reaches no data — every interaction is a 500, never open access —
// while metadata, which carries no data, is still served.
func TestNoPolicyIsClosed(t *testing.T) {
	st := openStore(t)
	door := interact.New(st, interact.Config{})
	if _, err := door.Unrestricted(audit.Agent{}).Put(t.Context(), "Patient", []byte(`{"resourceType":"Patient","gender":"female"}`)); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(server.New(server.Config{}, door, slog.New(slog.DiscardHandler)))
	t.Cleanup(ts.Close)
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/fhir/Patient", ""}, {"GET", "/fhir/Patient/x", ""}, {"GET", "/fhir/_history", ""},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient"}`},
		{"POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient"}}]}`},
	} {
		req, _ := http.NewRequest(c.method, ts.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Errorf("%s %s without a policy: %d, want 500", c.method, c.path, resp.StatusCode)
		}
	}
	resp, err := http.Get(ts.URL + "/fhir/metadata")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("metadata: %d", resp.StatusCode)
	}
}
