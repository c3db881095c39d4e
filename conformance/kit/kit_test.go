package kit_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/conformance/kit"
)

// liar is a FHIR server whose CapabilityStatement claims more than it
// does: its name parameter is refused, its creates carry no ETag, and a
// deleted resource still reads.
func liar() *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fhir/metadata", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","format":["json"],"rest":[{"mode":"server","resource":[
			{"type":"Patient","interaction":[{"code":"search-type"},{"code":"create"},{"code":"read"},{"code":"delete"}],
			 "searchParam":[{"name":"name","type":"string"},{"name":"birthdate","type":"date"}]}]}]}`))
	})
	mux.HandleFunc("GET /fhir/Patient", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("name") {
			w.WriteHeader(400)
			w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported","diagnostics":"unknown parameter name"}]}`))
			return
		}
		w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[]}`))
	})
	mux.HandleFunc("POST /fhir/Patient", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "http://"+r.Host+"/fhir/Patient/1")
		w.WriteHeader(201)
		w.Write([]byte(`{"resourceType":"Patient","id":"1"}`))
	})
	mux.HandleFunc("GET /fhir/Patient/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"resourceType":"Patient","id":"1","meta":{"versionId":"1"}}`))
	})
	mux.HandleFunc("DELETE /fhir/Patient/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	return httptest.NewServer(mux)
}

// The kit finds what a server claims and does not do: checks that can
// fail do.
func TestKitFindsBrokenClaims(t *testing.T) {
	ts := liar()
	defer ts.Close()
	report, err := kit.Run(context.Background(), kit.Config{Base: ts.URL + "/fhir", Suites: []string{"capability", "rest"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Patient: search and its declared parameters answer":      "name (string): HTTP 400",
		"create answers 201 with Location, ETag and the resource": "ETag",
		"delete; a deleted resource reads as 410 Gone":            "read after delete: HTTP 200",
		"an unknown id is 404 with an OperationOutcome":           "HTTP 200",
	}
	for _, res := range report.Results {
		if frag, ok := want[res.Name]; ok {
			if res.Status != kit.Fail || !strings.Contains(res.Detail, frag) {
				t.Errorf("%s: %s %q, want a failure saying %q", res.Name, res.Status, res.Detail, frag)
			}
			delete(want, res.Name)
		}
	}
	for name := range want {
		t.Errorf("no result for %s", name)
	}
	if !report.Failed() {
		t.Error("the report does not say it failed")
	}

	var junit bytes.Buffer
	if err := report.WriteJUnit(&junit); err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal(junit.Bytes(), &parsed); err != nil || parsed.Failures == 0 {
		t.Errorf("JUnit: %v, %d failures\n%s", err, parsed.Failures, junit.String())
	}
	var page bytes.Buffer
	if err := report.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), `class="fail">fail`) || strings.Contains(page.String(), "<script") {
		t.Errorf("HTML report lacks the failures or carries a script")
	}
}

func TestUnknownSuiteIsRefused(t *testing.T) {
	if _, err := kit.Run(context.Background(), kit.Config{Base: "http://x", Suites: []string{"nope"}}); err == nil {
		t.Error("an unknown suite was accepted")
	}
}
