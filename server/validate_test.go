package server_test

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/conformance/profile"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/server"
)

func usCorePatient(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../conformance/kit/uscore/patient.json")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const usCorePatientProfile = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"

func TestValidateOperation(t *testing.T) {
	ts := newServer(t)
	good := usCorePatient(t)
	noGender := strings.Replace(good, `"gender":"female",`, "", 1)
	do(t, ts, "PUT", "/fhir/Patient/v1", `{"resourceType":"Patient","id":"v1"}`)
	cases := []struct {
		name, method, path, body string
		status                   int
		has, hasNot              string
	}{
		{"valid and conformant", "POST", "/fhir/Patient/$validate", good, 200, `"severity":"information"`, `"severity":"error"`},
		{"claimed profile broken", "POST", "/fhir/Patient/$validate", noGender, 200, `"expression":["Patient.gender"]`, ""},
		{"profile parameter", "POST", "/fhir/Patient/$validate?profile=" + usCorePatientProfile, `{"resourceType":"Patient","name":[{"family":"x"}]}`, 200, "Patient.identifier", ""},
		{"Parameters body", "POST", "/fhir/Patient/$validate",
			`{"resourceType":"Parameters","parameter":[{"name":"resource","resource":{"resourceType":"Patient","name":[{"family":"x"}]}},{"name":"profile","valueUri":"` + usCorePatientProfile + `"}]}`,
			200, "Patient.identifier", ""},
		{"unknown profile", "POST", "/fhir/Patient/$validate?profile=http://example.org/nope", `{"resourceType":"Patient"}`, 200, `"code":"not-supported"`, ""},
		{"R4 structure", "POST", "/fhir/Patient/$validate", `{"resourceType":"Patient","multipleBirthBoolean":true,"multipleBirthInteger":2}`, 200, "multipleBirth[x]", ""},
		{"R4 invariant", "POST", "/fhir/Patient/$validate", `{"resourceType":"Patient","contact":[{"gender":"male"}]}`, 200, "pat-1", ""},
		{"wrong type", "POST", "/fhir/Observation/$validate", `{"resourceType":"Patient"}`, 200, "does not match the endpoint type", ""},
		{"update of an existing resource", "POST", "/fhir/Patient/v1/$validate?mode=update", `{"resourceType":"Patient","id":"v1","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">A patient</div>"}}`, 200, "no issues found", ""},
		{"update with another id", "POST", "/fhir/Patient/v1/$validate?mode=update", `{"resourceType":"Patient","id":"v2"}`, 200, "equal the id in the URL", ""},
		{"update of nothing", "POST", "/fhir/Patient/none/$validate?mode=update", `{"resourceType":"Patient","id":"none"}`, 404, "", ""},
		{"delete", "POST", "/fhir/Patient/v1/$validate?mode=delete", "", 0, "", ""},
		{"update without an id", "POST", "/fhir/Patient/$validate?mode=update", `{"resourceType":"Patient"}`, 400, "is for [type]/[id]/$validate", ""},
		{"bad mode", "POST", "/fhir/Patient/$validate?mode=maybe", `{"resourceType":"Patient"}`, 400, "mode must be", ""},
		{"not JSON", "POST", "/fhir/Patient/$validate", `{"resourceType":`, 400, "not valid JSON", ""},
	}
	for _, tc := range cases {
		var r response
		if tc.name == "delete" {
			r = do(t, ts, "POST", tc.path, "", "Content-Type", "application/fhir+json")
			if r.status != 200 || !strings.Contains(string(r.body), "may be deleted") {
				t.Errorf("%s: %d %s", tc.name, r.status, r.body)
			}
			continue
		}
		r = do(t, ts, tc.method, tc.path, tc.body)
		if r.status != tc.status || !strings.Contains(string(r.body), tc.has) || tc.hasNot != "" && strings.Contains(string(r.body), tc.hasNot) {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	// $validate stores nothing.
	if r := do(t, ts, "GET", "/fhir/Patient", ""); !strings.Contains(string(r.body), `"total":1`) {
		t.Errorf("$validate stored something: %s", r.body)
	}
	// The CapabilityStatement declares the operation and the profiles.
	md := string(do(t, ts, "GET", "/fhir/metadata", "").body)
	for _, want := range []string{`"name":"validate"`, usCorePatientProfile, "application/fhir+json\"]"} {
		if !strings.Contains(md, want) {
			t.Errorf("metadata lacks %s", want)
		}
	}
}

// With --validate-profiles, a write claiming a profile must conform to it;
// a write claiming none is checked against R4 alone.
func TestWritesValidateClaimedProfiles(t *testing.T) {
	st := openStore(t)
	reg, err := profile.USCore()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Start()
	t.Cleanup(ts.Close)
	door := interact.New(st, interact.Config{BaseURL: ts.URL + "/fhir", Profiles: reg})
	ts.Config.Handler = server.New(server.Config{BaseURL: ts.URL + "/fhir", MaxBodyBytes: 1 << 20, Version: "test", Open: true}, door, slog.New(slog.NewTextHandler(io.Discard, nil)))

	good := usCorePatient(t)
	if r := do(t, ts, "POST", "/fhir/Patient", good); r.status != 201 {
		t.Fatalf("conformant patient: %d %s", r.status, r.body)
	}
	noGender := strings.Replace(good, `"gender":"female",`, "", 1)
	if r := do(t, ts, "POST", "/fhir/Patient", noGender); r.status != 400 || !strings.Contains(r.issue(t), "Patient.gender") {
		t.Errorf("non-conformant patient: %d %s", r.status, r.body)
	}
	unclaimed := strings.Replace(noGender, `"meta":{"profile":["`+usCorePatientProfile+`"]},`, "", 1)
	if r := do(t, ts, "POST", "/fhir/Patient", unclaimed); r.status != 201 {
		t.Errorf("patient claiming no profile: %d %s", r.status, r.body)
	}
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + noGender + `,"request":{"method":"POST","url":"Patient"}}]}`
	if r := do(t, ts, "POST", "/fhir", tx); r.status != 400 || !strings.Contains(string(r.body), "Patient.gender") {
		t.Errorf("non-conformant patient in a transaction: %d %s", r.status, r.body)
	}
}
