package smart_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/smart"
)

// auditEvents are the AuditEvents a search answers, as decoded maps.
func auditEvents(t *testing.T, b map[string]any) []map[string]any {
	t.Helper()
	var out []map[string]any
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		res, _ := e.(map[string]any)["resource"].(map[string]any)
		if res["resourceType"] == "AuditEvent" {
			out = append(out, res)
		}
	}
	return out
}

// eventFacts reads what a test checks of an AuditEvent: its subtype, the
// references of its agents and entities, and its query.
func eventFacts(ev map[string]any) (subtype string, agents, entities []string, query string) {
	if st, ok := ev["subtype"].([]any); ok && len(st) > 0 {
		subtype, _ = st[0].(map[string]any)["code"].(string)
	}
	for _, a := range ev["agent"].([]any) {
		if who, ok := a.(map[string]any)["who"].(map[string]any); ok {
			if ref, ok := who["reference"].(string); ok {
				agents = append(agents, ref)
			}
		}
	}
	for _, en := range ev["entity"].([]any) {
		m := en.(map[string]any)
		if what, ok := m["what"].(map[string]any); ok {
			if ref, ok := what["reference"].(string); ok {
				entities = append(entities, ref)
			}
		}
		if q, ok := m["query"].(string); ok {
			raw, _ := base64.StdEncoding.DecodeString(q)
			query = string(raw)
		}
	}
	return
}

// TestAuditTrail: each interaction through the door leaves exactly one
// AuditEvent naming who (user, app, proxy), what and whose data; a
// patient reads the events about their own record, a proxy's accesses
// included, while the proxy sees none; a backend service with
// system/AuditEvent.rs sees all; nobody writes one.
func TestAuditTrail(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := smart.NewAccounts(e.st).AddUser(ctx, "kid1", password, "kid1"); err != nil {
		t.Fatal(err)
	}
	alice := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs"), "alice", "")).AccessToken
	parent := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs"), "parent", "kid1")).AccessToken
	kid := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs"), "kid1", "")).AccessToken
	b := e.newBackend("system/*.rs")
	status, body := e.backendToken(b, "system/*.rs")
	if status != 200 {
		t.Fatalf("backend token: %d %v", status, body)
	}
	backend := body["access_token"].(string)

	proxy := "RelatedPerson/" + e.parentRP["kid1"]

	// The interactions.
	if s, _, _ := e.fhir("GET", "/Patient/alice", alice, ""); s != 200 {
		t.Fatalf("alice reads herself: %d", s)
	}
	if s, _, _ := e.fhir("GET", "/Observation?category=laboratory", alice, ""); s != 200 {
		t.Fatalf("alice searches: %d", s)
	}
	if s, _, _ := e.fhir("GET", "/Observation/kid1-lab", parent, ""); s != 200 {
		t.Fatalf("the parent reads kid1's lab: %d", s)
	}
	if s, _, _ := e.fhir("GET", "/Observation/alice-lab", parent, ""); s != 404 {
		t.Fatalf("the parent reads alice's lab: %d", s)
	}
	if s, _, _ := e.fhir("GET", "/Patient?name=Doe", backend, ""); s != 200 {
		t.Fatalf("the backend searches: %d", s)
	}

	// What the backend service sees: everything.
	search := func(token, query string) []map[string]any {
		t.Helper()
		s, b, _ := e.fhir("GET", "/AuditEvent?"+query, token, "")
		if s != 200 {
			t.Fatalf("AuditEvent?%s: %d %v", query, s, b)
		}
		return auditEvents(t, b)
	}
	one := func(name string, events []map[string]any, match func(subtype string, agents, entities []string, query string) bool) map[string]any {
		t.Helper()
		var found []map[string]any
		for _, ev := range events {
			if match(eventFacts(ev)) {
				found = append(found, ev)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s: %d matching AuditEvents, want exactly 1", name, len(found))
			return nil
		}
		return found[0]
	}
	all := search(backend, "_count=1000")
	one("alice's read", all, func(st string, ag, en []string, _ string) bool {
		return st == "read" && slices.Contains(ag, "Patient/alice") && slices.Contains(en, "Patient/alice") && slices.Contains(ag, "Device/"+appID)
	})
	one("alice's search", all, func(st string, ag, en []string, q string) bool {
		return st == "search-type" && slices.Contains(ag, "Patient/alice") && q == "Observation?category=*" && slices.Contains(en, "Patient/alice")
	})
	one("the parent's read", all, func(st string, ag, en []string, _ string) bool {
		return st == "read" && slices.Contains(ag, proxy) && slices.Contains(en, "Observation/kid1-lab") && slices.Contains(en, "Patient/kid1")
	})
	refused := one("the parent's refused read", all, func(st string, ag, en []string, _ string) bool {
		return st == "read" && slices.Contains(ag, proxy) && slices.Contains(en, "Observation/alice-lab")
	})
	if refused != nil && refused["outcome"] != "4" {
		t.Errorf("a refused read's outcome: %v", refused["outcome"])
	}
	// A search over three patients' data names each of them.
	if ev := one("the backend's search", all, func(st string, ag, _ []string, q string) bool {
		return st == "search-type" && slices.Contains(ag, "Device/"+b.id) && q == "Patient?name=*"
	}); ev != nil {
		_, _, entities, _ := eventFacts(ev)
		for _, p := range []string{"Patient/alice", "Patient/kid1", "Patient/kid2"} {
			if !slices.Contains(entities, p) {
				t.Errorf("the backend's search names %v, not %s", entities, p)
			}
		}
		if strings.Contains(ev["entity"].([]any)[len(ev["entity"].([]any))-1].(map[string]any)["what"].(map[string]any)["identifier"].(map[string]any)["value"].(string), "Doe") {
			t.Errorf("the request id entity holds a searched value")
		}
	}
	if got := search(backend, "patient=kid1&subtype=read&agent="+proxy); len(got) != 1 {
		t.Errorf("the backend's view of the proxy's reads about kid1: %d events, want 1", len(got))
	}

	// kid1 sees who looked at her record, the parent included.
	mine := search(kid, "_count=100")
	one("kid1 sees the parent's read", mine, func(st string, ag, en []string, _ string) bool {
		return st == "read" && slices.Contains(ag, proxy) && slices.Contains(en, "Observation/kid1-lab")
	})
	for _, ev := range mine {
		if _, _, entities, _ := eventFacts(ev); !slices.Contains(entities, "Patient/kid1") {
			t.Errorf("kid1 sees an event not about her: %v", entities)
		}
	}
	// Asking for another patient's events finds none.
	if got := search(kid, "patient=alice"); len(got) != 0 {
		t.Errorf("kid1 sees %d events about alice", len(got))
	}
	// The proxy sees none.
	if s, _, _ := e.fhir("GET", "/AuditEvent", parent, ""); s != http.StatusForbidden {
		t.Errorf("the parent's AuditEvent search: %d, want 403", s)
	}
	// Nobody writes one.
	for _, tok := range []string{alice, backend} {
		if s, _, _ := e.fhir("POST", "/AuditEvent", tok, `{"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2020-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}`); s < 400 || s >= 500 {
			t.Errorf("an AuditEvent write answered %d", s)
		}
	}
	// One read of an AuditEvent by id, in the patient's view.
	if len(mine) > 0 {
		id := mine[0]["id"].(string)
		if s, _, _ := e.fhir("GET", "/AuditEvent/"+id, kid, ""); s != 200 {
			t.Errorf("kid1 reads her AuditEvent: %d", s)
		}
		if s, _, _ := e.fhir("GET", "/AuditEvent/"+id, alice, ""); s != 404 {
			t.Errorf("alice reads kid1's AuditEvent: %d, want 404", s)
		}
	}
}
