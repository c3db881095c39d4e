package audit

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/store"
)

// A record keeps every fact of its event: the AuditEvent rendered from it
// names the agents, patients, entities, query, outcome and request.
func TestFactsRenderEveryFact(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC)
	a := Agent{User: "mum", FHIRUser: "RelatedPerson/r1", Client: "portal \"app\"", Patient: "kid", Address: "10.0.0.7", RequestID: "req-1"}
	e := Event{Type: "rest", Subtype: "search-type", Action: "E", Outcome: Minor, Detail: "bad \xff parameter",
		Patients: []string{"kid", "other"}, Entities: []string{"Observation/o1"}, Query: "Observation?code&_count=10"}
	rec := Facts(a, e, at)
	rec.ID = "id-1" // as a store gives it
	if !rec.Recorded.Equal(at.Truncate(time.Millisecond)) || rec.Type != "rest" || rec.Subtype != "search-type" || rec.Outcome != Minor {
		t.Fatalf("record codes: %+v", rec)
	}
	if want := []string{"RelatedPerson/r1", "Device/portal \"app\""}; !slices.Equal(rec.Agents, want) {
		t.Errorf("agents %q, want %q", rec.Agents, want)
	}
	body, err := Render(rec)
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		ID          string `json:"id"`
		Recorded    string `json:"recorded"`
		Outcome     string `json:"outcome"`
		OutcomeDesc string `json:"outcomeDesc"`
		Subtype     []struct{ Code string }
		Agent       []struct {
			Who *struct {
				Reference  string
				Identifier *struct{ Value string }
			}
			AltID     string
			Requestor bool
			Network   *struct{ Address string }
		}
		Entity []struct {
			What *struct {
				Reference  string
				Identifier *struct{ Value string }
			}
			Role  *struct{ Code string }
			Query string
		}
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if ev.ID != "id-1" || ev.Recorded != "2026-12-02T10:00:00.123Z" || ev.Outcome != Minor || ev.OutcomeDesc != "bad \ufffd parameter" || ev.Subtype[0].Code != "search-type" {
		t.Errorf("rendered: %s", body)
	}
	if len(ev.Agent) != 3 || ev.Agent[0].Who.Reference != "RelatedPerson/r1" || ev.Agent[0].AltID != "mum" || !ev.Agent[0].Requestor ||
		ev.Agent[0].Network == nil || ev.Agent[0].Network.Address != "10.0.0.7" || ev.Agent[1].Who.Identifier.Value != "portal \"app\"" {
		t.Errorf("agents: %s", body)
	}
	var entities []string
	for _, en := range ev.Entity {
		switch {
		case en.Query != "":
			entities = append(entities, "query:"+en.Query)
		case en.What.Reference != "":
			entities = append(entities, en.Role.Code+":"+en.What.Reference)
		default:
			entities = append(entities, "request:"+en.What.Identifier.Value)
		}
	}
	want := []string{"1:Patient/kid", "1:Patient/other", "4:Observation/o1", "query:T2JzZXJ2YXRpb24/Y29kZSZfY291bnQ9MTA=", "request:req-1"}
	if !slices.Equal(entities, want) {
		t.Errorf("entities %q, want %q", entities, want)
	}
}

// A security event names the patient the session acts for.
func TestFactsOfASecurityEventNameThePatient(t *testing.T) {
	rec := Facts(Agent{User: "alice", FHIRUser: "Patient/p1", Patient: "p1"}, Event{Type: SecurityType, Subtype: "login", Outcome: Success}, time.Now())
	if !slices.Equal(rec.Patients, []string{"p1"}) {
		t.Errorf("patients %q", rec.Patients)
	}
	body, err := Render(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(body) || !containsAll(string(body), `"reference":"Patient/p1"`, `"code":"login"`) {
		t.Errorf("rendered: %s", body)
	}
}

// Records of the trail's first version hold their AuditEvent: served as is.
func TestRenderServesARenderedRecordAsIs(t *testing.T) {
	old := []byte(`{"resourceType":"AuditEvent","id":"x"}`)
	got, err := Render(store.AuditRecord{ID: "x", Data: old})
	if err != nil || string(got) != string(old) {
		t.Errorf("got %s, %v", got, err)
	}
	if _, err := Render(store.AuditRecord{ID: "y", Data: []byte("{broken")}); err == nil {
		t.Error("a broken record rendered without error")
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
