package smart_test

import (
	"net/url"
	"strings"
	"testing"
)

// TestPatientTokenCannotReachAnotherPatient tries every path the API
// offers with alice's token against kid1's data. Nothing of kid1's may come
// back, by any route.
func TestPatientTokenCannotReachAnotherPatient(t *testing.T) {
	e := newEnv(t)
	tok := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "openid", "fhirUser", "patient/*.cruds"), "alice", "")).AccessToken
	foreign := func(list []string) []string {
		var out []string
		for _, id := range list {
			if strings.Contains(id, "kid") {
				out = append(out, id)
			}
		}
		return out
	}
	searches := []string{
		"/Patient",
		"/Patient?_id=kid1",
		"/Patient?name=kid1",
		"/Observation",
		"/Observation?patient=kid1",
		"/Observation?subject=Patient/kid1",
		"/Observation?subject:Patient.name=kid1",
		"/Observation?_id=kid1-lab,kid1-vital,alice-lab",
		"/Patient?_has:Observation:patient:code=2345-7",
		"/Observation?_include=Observation:patient",
		"/Observation?_include=Observation:performer&_include:iterate=Practitioner:*",
		"/Practitioner?_revinclude=Observation:performer",
		"/Organization?_revinclude=Patient:organization",
		"/Patient?_revinclude=Observation:subject&_revinclude=RelatedPerson:patient",
		"/Encounter?_include=Encounter:subject&_revinclude:iterate=Condition:subject",
		"/Observation?_sort=-date&_count=1",
		"/Condition?_count=1",
		"/Patient/alice/$everything",
		"/Patient/alice/Observation",
		"/RelatedPerson",
	}
	for _, s := range searches {
		status, body, _ := e.fhir("GET", s, tok, "")
		if status != 200 {
			t.Errorf("%s: %d %v", s, status, body)
			continue
		}
		if got := foreign(ids(body)); len(got) > 0 {
			t.Errorf("%s leaked %v", s, got)
		}
		if s == "/Observation?_sort=-date&_count=1" || s == "/Condition?_count=1" {
			// Follow the paging links too.
			for hop := 0; hop < 5; hop++ {
				next := nextLink(body)
				if next == "" {
					break
				}
				if strings.Contains(next, "access_token") {
					t.Errorf("a paging link carries a token: %s", next)
				}
				status, body, _ = e.fhir("GET", strings.TrimPrefix(next, e.base), tok, "")
				if status != 200 {
					t.Errorf("page %s: %d", next, status)
					break
				}
				if got := foreign(ids(body)); len(got) > 0 {
					t.Errorf("%s (page %d) leaked %v", s, hop+2, got)
				}
			}
		}
	}
	// Totals must not count what the token cannot see.
	if status, body, _ := e.fhir("GET", "/Observation?_summary=count", tok, ""); status != 200 || body["total"] != float64(2) {
		t.Errorf("_summary=count: %d total=%v, want 2", status, body["total"])
	}
	// Reads of another patient's resources: not found, whatever the path.
	for _, p := range []string{"/Patient/kid1", "/Observation/kid1-lab", "/Observation/kid1-lab/_history/1",
		"/Observation/kid1-lab/_history", "/Patient/kid1/$everything", "/RelatedPerson/" + e.parentRP["kid1"]} {
		if status, body, _ := e.fhir("GET", p, tok, ""); status != 404 && status != 403 {
			t.Errorf("GET %s: %d %v", p, status, body)
		}
	}
	for _, p := range []string{"/Patient/kid1/Observation", "/_history", "/Observation/_history"} {
		if status, body, _ := e.fhir("GET", p, tok, ""); status != 403 && status != 404 {
			t.Errorf("GET %s: %d %v", p, status, body)
		}
	}
	// POST _search is the same search.
	status, body, _ := e.fhirForm("/Observation/_search", tok, url.Values{"patient": {"kid1"}})
	if status != 200 || len(foreign(ids(body))) > 0 {
		t.Errorf("POST _search: %d %v", status, ids(body))
	}

	// Writes: nothing lands in kid1's compartment, and nothing of kid1's changes.
	writes := []struct{ method, path, body string }{
		{"POST", "/Observation", obs("", "kid1", "laboratory", "1-8")},
		{"PUT", "/Observation/kid1-lab", obs("kid1-lab", "kid1", "laboratory", "1-8")},
		{"PUT", "/Observation/alice-lab", obs("alice-lab", "kid1", "laboratory", "1-8")},
		{"PUT", "/Patient/kid1", `{"resourceType":"Patient","id":"kid1"}`},
		{"DELETE", "/Observation/kid1-vital", ""},
		{"POST", "/Practitioner", `{"resourceType":"Practitioner","name":[{"family":"Fake"}]}`},
		{"POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + obs("", "kid1", "laboratory", "1-8") + `,"request":{"method":"POST","url":"Observation"}}]}`},
	}
	for _, w := range writes {
		if status, body, _ := e.fhir(w.method, w.path, tok, w.body); status < 400 {
			t.Errorf("%s %s was accepted: %d %v", w.method, w.path, status, body)
		}
	}
	// Conditional writes only see alice's compartment: the delete matches
	// nothing, and the update matches nothing so it creates alice's own.
	if status, body, _ := e.fhir("DELETE", "/Observation?patient=kid1", tok, ""); status >= 300 {
		t.Errorf("conditional delete: %d %v", status, body)
	}
	if status, body, _ := e.fhir("PUT", "/Observation?_id=kid1-lab", tok, homeReading("alice", "8867-4")); status != 201 {
		t.Errorf("conditional update matching another patient's resource: %d %v", status, body)
	}
	// A batch reading kid1's data gets per-entry refusals.
	status, body, _ = e.fhir("POST", "", tok, `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/kid1"}},{"request":{"method":"GET","url":"Observation?patient=kid1"}},{"request":{"method":"GET","url":"Patient/alice"}}]}`)
	if status != 200 {
		t.Errorf("batch: %d", status)
	}
	for _, en := range entries(body) {
		if r, _ := en["resource"].(map[string]any); r != nil {
			if r["id"] == "kid1" || strings.Contains(strings.Join(ids(r), ","), "kid") {
				t.Errorf("batch leaked %v", r["id"])
			}
		}
	}
	// Check with the store itself that kid1's data is unchanged and alone.
	open := e.openToken()
	status, body, _ = e.fhir("GET", "/Observation?patient=kid1", open, "")
	if got := ids(body); status != 200 || len(got) != 2 {
		t.Errorf("kid1's observations after the attempts: %d %v", status, got)
	}
	if status, body, _ := e.fhir("GET", "/Observation/kid1-lab", open, ""); status != 200 || body["meta"].(map[string]any)["versionId"] != "1" {
		t.Errorf("kid1-lab was changed: %d %v", status, body["meta"])
	}
	if status, body, _ := e.fhir("GET", "/Observation/alice-lab", open, ""); status != 200 || !strings.Contains(body["subject"].(map[string]any)["reference"].(string), "alice") {
		t.Errorf("alice-lab was moved to another patient: %d %v", status, body["subject"])
	}
	if status, body, _ := e.fhir("GET", "/Practitioner?name=Fake", open, ""); status != 200 || len(ids(body)) != 0 {
		t.Errorf("a patient token wrote directory data: %v", ids(body))
	}
	// And writes inside alice's own compartment work.
	if status, body, _ := e.fhir("POST", "/Observation", tok, homeReading("alice", "8867-4")); status != 201 {
		t.Errorf("own write: %d %v", status, body)
	}
}

func nextLink(b map[string]any) string {
	links, _ := b["link"].([]any)
	for _, l := range links {
		m := l.(map[string]any)
		if m["relation"] == "next" {
			return m["url"].(string)
		}
	}
	return ""
}

func entries(b map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := b["entry"].([]any)
	for _, en := range list {
		out = append(out, en.(map[string]any))
	}
	return out
}
