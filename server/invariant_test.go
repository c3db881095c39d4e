package server_test

import (
	"strings"
	"testing"
)

// A resource that breaks an R4 invariant is refused with a 400 naming the
// invariant and the element, on create, update and in a transaction, and
// nothing is stored.
func TestInvariantsRefuseWrites(t *testing.T) {
	ts := newServer(t)
	badPeriod := `{"resourceType":"Patient","id":"p1","name":[{"family":"Doe","period":{"start":"2020-01-02","end":"2020-01-01"}}]}`
	for _, w := range []struct{ method, path string }{{"POST", "/fhir/Patient"}, {"PUT", "/fhir/Patient/p1"}} {
		r := do(t, ts, w.method, w.path, badPeriod)
		if r.status != 400 || !strings.Contains(r.issue(t), "invariant Patient.name[0].period: per-1") {
			t.Errorf("%s %s: %d %s", w.method, w.path, r.status, r.body)
		}
	}
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
		{"resource":{"resourceType":"Patient","contact":[{"gender":"male"}]},"request":{"method":"POST","url":"Patient"}}]}`
	if r := do(t, ts, "POST", "/fhir", tx); r.status != 400 || !strings.Contains(string(r.body), "pat-1") {
		t.Errorf("transaction: %d %s", r.status, r.body)
	}
	if r := do(t, ts, "GET", "/fhir/Patient", ""); !strings.Contains(string(r.body), `"total":0`) {
		t.Errorf("something was stored: %s", r.body)
	}
	// The same patient made valid is stored; its warnings (dom-6: no
	// narrative) come back when the client asks for an OperationOutcome.
	good := strings.Replace(badPeriod, `"end":"2020-01-01"`, `"end":"2020-01-03"`, 1)
	r := do(t, ts, "PUT", "/fhir/Patient/p1", good, "Prefer", "return=OperationOutcome")
	if r.status != 201 || !strings.Contains(string(r.body), `"severity":"warning"`) || !strings.Contains(string(r.body), "dom-6") {
		t.Errorf("valid update: %d %s", r.status, r.body)
	}
}

// In a transaction asked for OperationOutcomes, each entry's outcome
// carries its resource's warnings.
func TestTransactionEntryWarnings(t *testing.T) {
	ts := newServer(t)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}]}`
	r := do(t, ts, "POST", "/fhir", tx, "Prefer", "return=OperationOutcome")
	if r.status != 200 || !strings.Contains(string(r.body), "dom-6") || !strings.Contains(string(r.body), `"severity":"warning"`) {
		t.Errorf("%d %s", r.status, r.body)
	}
}
