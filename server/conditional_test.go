package server_test

import (
	"strings"
	"testing"
)

func TestConditionalUpdateDeletePatch(t *testing.T) {
	ts := newServer(t)
	mrn := func(v string) string {
		return `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"` + v + `"}],"active":true}`
	}
	// No match: creates.
	c := do(t, ts, "PUT", "/fhir/Patient?identifier=urn:mrn|1", mrn("1"))
	if c.status != 201 {
		t.Fatalf("conditional update, no match: %d %s", c.status, c.body)
	}
	id := c.json(t)["id"].(string)
	// One match: updates it.
	u := do(t, ts, "PUT", "/fhir/Patient?identifier=urn:mrn|1", strings.Replace(mrn("1"), `"active":true`, `"active":false`, 1))
	if u.status != 200 || u.json(t)["id"] != id || u.header.Get("ETag") != `W/"2"` {
		t.Fatalf("conditional update, one match: %d %s", u.status, u.body)
	}
	// A body id that contradicts the match is refused.
	if r := do(t, ts, "PUT", "/fhir/Patient?identifier=urn:mrn|1", `{"resourceType":"Patient","id":"other"}`); r.status != 400 {
		t.Errorf("contradicting id: %d", r.status)
	}
	// No match with a body id: update-as-create with that id.
	if r := do(t, ts, "PUT", "/fhir/Patient?identifier=urn:mrn|2", `{"resourceType":"Patient","id":"chosen","identifier":[{"system":"urn:mrn","value":"2"}]}`); r.status != 201 || r.json(t)["id"] != "chosen" {
		t.Errorf("no match with body id: %d %s", r.status, r.body)
	}
	// Several matches: 412, nothing changes.
	do(t, ts, "POST", "/fhir/Patient", mrn("dup"))
	do(t, ts, "POST", "/fhir/Patient", mrn("dup"))
	if r := do(t, ts, "PUT", "/fhir/Patient?identifier=urn:mrn|dup", mrn("dup")); r.status != 412 {
		t.Errorf("multiple matches: %d", r.status)
	}
	if r := do(t, ts, "PUT", "/fhir/Patient", mrn("x")); r.status != 400 {
		t.Errorf("conditional update without a query: %d", r.status)
	}
	if r := do(t, ts, "PUT", "/fhir/Patient?nonsense=1", mrn("x")); r.status != 400 {
		t.Errorf("conditional update with an unknown parameter: %d", r.status)
	}

	// Conditional patch.
	p := do(t, ts, "PATCH", "/fhir/Patient?identifier=urn:mrn|1", `[{"op":"replace","path":"/active","value":true}]`, "Content-Type", "application/json-patch+json")
	if p.status != 200 || p.json(t)["active"] != true || p.header.Get("ETag") != `W/"3"` {
		t.Errorf("conditional patch: %d %s", p.status, p.body)
	}
	if r := do(t, ts, "PATCH", "/fhir/Patient?identifier=urn:mrn|none", `[]`, "Content-Type", "application/json-patch+json"); r.status != 404 {
		t.Errorf("conditional patch, no match: %d", r.status)
	}

	// Conditional delete.
	if r := do(t, ts, "DELETE", "/fhir/Patient?identifier=urn:mrn|dup", ""); r.status != 412 {
		t.Errorf("conditional delete, several matches: %d", r.status)
	}
	if r := do(t, ts, "DELETE", "/fhir/Patient?identifier=urn:mrn|1", ""); r.status != 200 {
		t.Errorf("conditional delete: %d %s", r.status, r.body)
	}
	if r := do(t, ts, "GET", "/fhir/Patient/"+id, ""); r.status != 410 {
		t.Errorf("after conditional delete: %d", r.status)
	}
	if r := do(t, ts, "DELETE", "/fhir/Patient?identifier=urn:mrn|1", ""); r.status != 200 {
		t.Errorf("conditional delete with no match: %d", r.status)
	}
}
