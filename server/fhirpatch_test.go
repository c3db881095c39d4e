package server_test

import (
	"strings"
	"testing"
)

func fhirPathPatch(ops ...string) string {
	return `{"resourceType":"Parameters","parameter":[` + strings.Join(ops, ",") + `]}`
}

func patchOp(typ, path string, parts ...string) string {
	all := append([]string{`{"name":"type","valueCode":"` + typ + `"}`, `{"name":"path","valueString":"` + path + `"}`}, parts...)
	return `{"name":"operation","part":[` + strings.Join(all, ",") + `]}`
}

// FHIRPath Patch over HTTP: PATCH with a Parameters body applies its
// operations; the result is validated like an update; a malformed patch
// is a 400 and one that cannot apply a 422, with nothing changed.
func TestFHIRPathPatch(t *testing.T) {
	ts := newServer(t)
	do(t, ts, "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","active":true,"name":[{"family":"Doe","given":["Jane"]}],"birthDate":"1980-02-29"}`)
	patch := func(body string, headers ...string) response {
		return do(t, ts, "PATCH", "/fhir/Patient/p1", body, headers...)
	}
	ok := patch(fhirPathPatch(
		patchOp("replace", "Patient.birthDate", `{"name":"value","valueDate":"1980-03-01"}`),
		patchOp("insert", "Patient.name[0].given", `{"name":"index","valueInteger":0}`, `{"name":"value","valueString":"Mary"}`),
		patchOp("add", "Patient", `{"name":"name","valueString":"telecom"}`, `{"name":"value","valueContactPoint":{"system":"phone","value":"555"}}`),
		patchOp("add", "Patient", `{"name":"name","valueString":"contact"}`, `{"name":"value","part":[{"name":"name","valueHumanName":{"family":"Roe"}},{"name":"telecom","valueContactPoint":{"system":"email","value":"a@b.c"}}]}`),
		patchOp("delete", "Patient.active"),
	))
	if ok.status != 200 || ok.header.Get("ETag") != `W/"2"` {
		t.Fatalf("patch: %d %s", ok.status, ok.body)
	}
	got := string(ok.body)
	for _, want := range []string{`"birthDate":"1980-03-01"`, `"given":["Mary","Jane"]`, `"telecom":[{"system":"phone","value":"555"}]`, `"contact":[{"name":{"family":"Roe"},"telecom":[{"system":"email","value":"a@b.c"}]}]`} {
		if !strings.Contains(got, want) {
			t.Errorf("patched resource lacks %s: %s", want, got)
		}
	}
	if strings.Contains(got, `"active"`) {
		t.Errorf("delete left active: %s", got)
	}
	cases := []struct {
		name, body string
		status     int
		want       string
	}{
		{"bad path", fhirPathPatch(patchOp("delete", "Patient.name.(")), 400, "not a valid FHIRPath Patch: operation 0: path"},
		{"unknown type", fhirPathPatch(patchOp("remove", "Patient.name")), 400, "unknown type"},
		{"missing value", fhirPathPatch(patchOp("replace", "Patient.gender")), 400, "replace needs a value part"},
		{"add to nothing", fhirPathPatch(patchOp("add", "Patient.identifier.where(use = 'official').period", `{"name":"name","valueString":"end"}`, `{"name":"value","valueDate":"2021-12-01"}`)), 422, "no content found"},
		{"invalid result", fhirPathPatch(patchOp("add", "Patient", `{"name":"name","valueString":"gender"}`, `{"name":"value","valueCode":"robot"}`)), 422, "Patient.gender"},
		{"breaks an invariant", fhirPathPatch(patchOp("add", "Patient", `{"name":"name","valueString":"contact"}`, `{"name":"value","part":[{"name":"gender","valueCode":"male"}]}`)), 422, "pat-1"},
		{"replace the id", fhirPathPatch(patchOp("replace", "Patient.id", `{"name":"value","valueId":"other"}`)), 422, "id"},
	}
	for _, tc := range cases {
		r := patch(tc.body, "Content-Type", "application/fhir+json")
		if r.status != tc.status || !strings.Contains(string(r.body), tc.want) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, r.status, r.body, tc.status, tc.want)
		}
	}
	if r := do(t, ts, "GET", "/fhir/Patient/p1", ""); r.header.Get("ETag") != `W/"2"` {
		t.Errorf("failed patches changed the resource: %s", r.header.Get("ETag"))
	}
	// In a transaction, a PATCH entry carries the Parameters itself.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` +
		fhirPathPatch(patchOp("replace", "Patient.name[0].family", `{"name":"value","valueString":"Smith"}`)) +
		`,"request":{"method":"PATCH","url":"Patient/p1"}}]}`
	if r := do(t, ts, "POST", "/fhir", tx); r.status != 200 {
		t.Fatalf("transaction patch: %d %s", r.status, r.body)
	}
	if r := do(t, ts, "GET", "/fhir/Patient/p1", ""); !strings.Contains(string(r.body), `"family":"Smith"`) {
		t.Errorf("transaction patch not applied: %s", r.body)
	}
}
