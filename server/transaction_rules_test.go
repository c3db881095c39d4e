package server_test

import (
	"strings"
	"testing"
)

// TestTransactionRulesOfTheSpec: a transaction whose writes overlap in the
// resources they name — also once conditional matches are resolved — or
// whose entries share a fullUrl fails as a whole with a 400 naming the
// entries, and nothing is stored; ids . and .. and decimals no search could
// find are refused.
func TestTransactionRulesOfTheSpec(t *testing.T) {
	ts := newServer(t)
	do(t, ts, "PUT", "/fhir/Patient/known", `{"resourceType":"Patient","id":"known","identifier":[{"system":"urn:mrn","value":"K"}]}`)
	for name, tx := range map[string]string{
		"two PUTs of one id": `{"resourceType":"Bundle","type":"transaction","entry":[
			{"resource":{"resourceType":"Patient","id":"twice","gender":"male"},"request":{"method":"PUT","url":"Patient/twice"}},
			{"resource":{"resourceType":"Patient","id":"twice","gender":"female"},"request":{"method":"PUT","url":"Patient/twice"}}]}`,
		"a conditional PUT matching another entry's id": `{"resourceType":"Bundle","type":"transaction","entry":[
			{"resource":{"resourceType":"Patient","id":"known","gender":"male"},"request":{"method":"PUT","url":"Patient/known"}},
			{"resource":{"resourceType":"Patient","gender":"female"},"request":{"method":"PUT","url":"Patient?identifier=urn:mrn|K"}},
			{"resource":{"resourceType":"Patient","id":"fresh"},"request":{"method":"PUT","url":"Patient/fresh"}}]}`,
		"a conditional DELETE of an updated resource": `{"resourceType":"Bundle","type":"transaction","entry":[
			{"resource":{"resourceType":"Patient","id":"known","gender":"male"},"request":{"method":"PUT","url":"Patient/known"}},
			{"request":{"method":"DELETE","url":"Patient?identifier=urn:mrn|K"}},
			{"resource":{"resourceType":"Patient","id":"fresh"},"request":{"method":"PUT","url":"Patient/fresh"}}]}`,
		"two entries with one fullUrl": `{"resourceType":"Bundle","type":"transaction","entry":[
			{"fullUrl":"urn:uuid:0b1f3a8e-5a51-4c47-9e63-7a0c3e6f1d20","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
			{"fullUrl":"urn:uuid:0b1f3a8e-5a51-4c47-9e63-7a0c3e6f1d20","resource":{"resourceType":"Patient","id":"fresh"},"request":{"method":"PUT","url":"Patient/fresh"}}]}`,
	} {
		r := do(t, ts, "POST", "/fhir", tx)
		if r.status != 400 || !strings.Contains(r.issue(t), "entr") {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
		if r := do(t, ts, "GET", "/fhir/Patient/fresh", ""); r.status != 404 {
			t.Errorf("%s: a failed transaction stored an entry: %d", name, r.status)
		}
		if r := do(t, ts, "GET", "/fhir/Patient/twice", ""); r.status != 404 {
			t.Errorf("%s: a failed transaction stored an entry: %d", name, r.status)
		}
	}
	if r := do(t, ts, "GET", "/fhir/Patient/known/_history", ""); !strings.Contains(string(r.body), `"total":1`) {
		t.Errorf("known was changed by a failed transaction: %s", r.body)
	}
	// A batch may name one resource twice: its entries are independent.
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
		{"resource":{"resourceType":"Patient","id":"twice","gender":"male"},"request":{"method":"PUT","url":"Patient/twice"}},
		{"resource":{"resourceType":"Patient","id":"twice","gender":"female"},"request":{"method":"PUT","url":"Patient/twice"}}]}`
	if r := do(t, ts, "POST", "/fhir", batch); r.status != 200 {
		t.Errorf("batch: %d %s", r.status, r.body)
	}

	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/fhir/Patient/.", `{"resourceType":"Patient","id":"."}`},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient","id":".."}`},
		{"POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":".."},"request":{"method":"PUT","url":"Patient/.."}}]}`},
		{"POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e400}}`},
		{"POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":-2e308}}`},
	} {
		if r := do(t, ts, c.method, c.path, c.body); r.status != 400 {
			t.Errorf("%s %s %s: %d %s", c.method, c.path, c.body, r.status, r.body)
		}
	}
	if r := do(t, ts, "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.7e308}}`); r.status != 201 {
		t.Errorf("the largest searchable decimal: %d %s", r.status, r.body)
	}
}

// TestNoOpUpdateKeepsTheVersion: a PUT of the content a resource already
// has writes nothing and answers its current version; If-Match still holds.
func TestNoOpUpdateKeepsTheVersion(t *testing.T) {
	ts := newServer(t)
	body := `{"resourceType":"Patient","id":"same","name":[{"family":"Same"}],"meta":{"versionId":"99","lastUpdated":"2001-01-01T00:00:00Z"}}`
	if r := do(t, ts, "PUT", "/fhir/Patient/same", body); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	r := do(t, ts, "PUT", "/fhir/Patient/same", body)
	if r.status != 200 || r.header.Get("ETag") != `W/"1"` {
		t.Errorf("same content again: %d %s %s", r.status, r.header.Get("ETag"), r.body)
	}
	if r := do(t, ts, "PUT", "/fhir/Patient/same", body, "If-Match", `W/"2"`); r.status != 412 {
		t.Errorf("a no-op update with a wrong If-Match: %d", r.status)
	}
	if r := do(t, ts, "PUT", "/fhir/Patient/same", strings.Replace(body, "Same", "Other", 1)); r.status != 200 || r.header.Get("ETag") != `W/"2"` {
		t.Errorf("changed content: %d %s", r.status, r.header.Get("ETag"))
	}
	if r := do(t, ts, "GET", "/fhir/Patient/same/_history", ""); !strings.Contains(string(r.body), `"total":2`) {
		t.Errorf("history: %s", r.body)
	}
}

// TestPatchMissingMembersIs400: a JSON Patch operation without the members
// its op needs (a test without a value brought the patch library down) is
// refused as a 400 before it is applied.
func TestPatchMissingMembersIs400(t *testing.T) {
	ts := newServer(t)
	do(t, ts, "PUT", "/fhir/Patient/pp", `{"resourceType":"Patient","id":"pp","active":true}`)
	for _, doc := range []string{`[{"op":"test","path":""}]`, `[{"op":"add","path":"/x"}]`, `[{"op":"move","path":"/x"}]`, `[{"op":"frob","path":"/x"}]`, `[{"path":"/x"}]`, `{}`} {
		r := do(t, ts, "PATCH", "/fhir/Patient/pp", doc, "Content-Type", "application/json-patch+json")
		if r.status != 400 {
			t.Errorf("%s: %d %s", doc, r.status, r.body)
		}
	}
}
