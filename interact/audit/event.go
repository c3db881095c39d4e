// Package audit is Hearth's audit trail: one AuditEvent, after IHE Basic
// Audit Log Patterns (BALP), for every interaction the door to the data
// carries out and for the authorization server's security events. A
// write's event commits in the write's own transaction; the others are
// written in groups by a Trail, at most a flush interval after they
// happen, or before the answer with Sync.
//
// Events carry ids, codes and parameter names, never resource content or
// the values a search was for: the trail is read by people who may not
// see the records themselves.
package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/json/jsontext"
	"fmt"
	"slices"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// Agent is who acts in a session: the user (and the FHIR resource that is
// them), the client app, the patient acted for, from where, in which
// request.
type Agent struct {
	User      string // the account's username ("" for a backend service)
	FHIRUser  string // "Patient/x", "RelatedPerson/y", "Practitioner/z"
	Client    string // the OAuth client id ("" without a token: --open)
	Patient   string // the patient a patient-bound token acts for
	Address   string // the client's network address
	RequestID string // the request id the logs carry
}

// Outcome codes of AuditEvent.outcome.
const (
	Success = "0"
	Minor   = "4" // the request failed (4xx)
	Serious = "8" // the server failed (5xx)
)

// Event is one thing that happened, as the trail records it.
type Event struct {
	// Type and Subtype code the event: Type "rest" with a FHIR restful
	// interaction as Subtype ("read", "search-type", "create" …), or a
	// security event (SecurityType) with its own subtype ("login" …).
	Type, Subtype string
	Action        string // C, R, U, D or E
	Outcome       string // Success, Minor or Serious
	Detail        string // why it failed: no resource content
	// Patients are the ids of the Patients whose data was touched.
	Patients []string
	// Entities are the resources touched, "Type/id" or "Type/id/_history/v".
	Entities []string
	// Query is a search as recorded: parameter names, with the values
	// of the few that hold no personal data (_count, _sort …).
	Query string
}

// Codes of the systems BALP uses.
const (
	eventTypeSystem   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	interactionSystem = "http://hl7.org/fhir/restful-interaction"
	entityTypeSystem  = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	entityRoleSystem  = "http://terminology.hl7.org/CodeSystem/object-role"
	dicomSystem       = "http://dicom.nema.org/resources/ontology/DCM"
	balpEntitySystem  = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
	clientSystem      = "urn:hearth:client"
	userSystem        = "urn:hearth:user"
	// SecurityType is the event type of the authorization server's
	// security events (DICOM "Security Alert").
	SecurityType = "110113"
)

type coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *identifier `json:"identifier,omitempty"`
}

type identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

type agent struct {
	Type      *concept   `json:"type,omitempty"`
	Who       *reference `json:"who,omitempty"`
	AltID     string     `json:"altId,omitempty"`
	Requestor bool       `json:"requestor"`
	Network   *network   `json:"network,omitempty"`
}

type concept struct {
	Coding []coding `json:"coding"`
}

type network struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type entity struct {
	What  *reference `json:"what,omitempty"`
	Type  *coding    `json:"type,omitempty"`
	Role  *coding    `json:"role,omitempty"`
	Query string     `json:"query,omitempty"`
}

type auditEvent struct {
	ResourceType string   `json:"resourceType"`
	ID           string   `json:"id"`
	Meta         meta     `json:"meta"`
	Type         coding   `json:"type"`
	Subtype      []coding `json:"subtype,omitempty"`
	Action       string   `json:"action,omitempty"`
	Recorded     string   `json:"recorded"`
	Outcome      string   `json:"outcome"`
	OutcomeDesc  string   `json:"outcomeDesc,omitempty"`
	Agent        []agent  `json:"agent"`
	Source       source   `json:"source"`
	Entity       []entity `json:"entity,omitempty"`
}

type meta struct {
	VersionID   string `json:"versionId"`
	LastUpdated string `json:"lastUpdated"`
}

type source struct {
	Observer reference `json:"observer"`
	Type     []coding  `json:"type"`
}

// UserAgent is how the trail indexes an account among the agents of its
// security events (sign-ins, account changes), so that the account's own
// page finds them; it is no FHIR reference.
func UserAgent(username string) string { return "urn:hearth:user:" + username }

// ClientDevice is how the trail names a client app among the agents: a
// Device with the client's id, which AuditEvent?agent= finds.
func ClientDevice(client string) string { return "Device/" + client }

// facts is what the trail stores of an event besides the codes, time,
// patients and entities the store indexes: with those, all Render needs. Storing the facts
// rather than the rendered AuditEvent keeps the trail's write cheap (it
// happens for every request) and its records small: about 200 bytes
// against 1.2 KB.
type facts struct {
	User      string `json:"u,omitempty"`
	FHIRUser  string `json:"f,omitempty"`
	Client    string `json:"c,omitempty"`
	Patient   string `json:"pt,omitempty"`
	Address   string `json:"ip,omitempty"`
	RequestID string `json:"rq,omitempty"`
	Detail    string `json:"d,omitempty"`
	Query     string `json:"q,omitempty"`
}

// appendFacts encodes f as its JSON tags say, without reflection: the
// trail encodes one for every request.
func appendFacts(b []byte, f facts) []byte {
	b = append(b, '{')
	str := func(name, v string) {
		if v == "" {
			return
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(append(append(b, '"'), name...), `":`...)
		// Invalid UTF-8 is replaced (and reported, which is moot here).
		b, _ = jsontext.AppendQuote(b, v)
	}
	str("u", f.User)
	str("f", f.FHIRUser)
	str("c", f.Client)
	str("pt", f.Patient)
	str("ip", f.Address)
	str("rq", f.RequestID)
	str("d", f.Detail)
	str("q", f.Query)
	return append(b, '}')
}

// Facts is the record the trail stores of an event: its codes and the
// patients, agents and entities it is searched by, and in Data the rest
// of what Render needs to make it an AuditEvent.
func Facts(a Agent, e Event, at time.Time) store.AuditRecord {
	patients := e.Patients
	// A security event is about the patient the session acts for.
	if a.Patient != "" && e.Type != "rest" && !slices.Contains(patients, a.Patient) {
		patients = append(slices.Clip(patients), a.Patient)
	}
	rec := store.AuditRecord{Recorded: at.UTC().Truncate(time.Millisecond), Type: e.Type, Subtype: e.Subtype, Action: e.Action,
		Outcome: e.Outcome, Patients: patients, Entities: e.Entities}
	if a.FHIRUser != "" {
		rec.Agents = append(rec.Agents, a.FHIRUser)
	}
	if a.Client != "" {
		rec.Agents = append(rec.Agents, ClientDevice(a.Client))
	}
	if a.User != "" && e.Type != "rest" {
		rec.Agents = append(rec.Agents, UserAgent(a.User))
	}
	size := 64 + len(a.User) + len(a.FHIRUser) + len(a.Client) + len(a.Patient) + len(a.Address) + len(a.RequestID) + len(e.Detail) + len(e.Query)
	rec.Data = appendFacts(make([]byte, 0, size), facts{User: a.User, FHIRUser: a.FHIRUser, Client: a.Client, Patient: a.Patient,
		Address: a.Address, RequestID: a.RequestID, Detail: e.Detail, Query: e.Query})
	return rec
}

// Render makes a stored record the AuditEvent it stands for. Records of
// the trail's first version hold the rendered AuditEvent itself.
func Render(r store.AuditRecord) ([]byte, error) {
	if rendered(r) {
		return r.Data, nil
	}
	a, e, err := Parse(r)
	if err != nil {
		return nil, err
	}
	return render(a, e, r.ID, r.Recorded)
}

// rendered: a record of the trail's first version, its AuditEvent itself.
func rendered(r store.AuditRecord) bool { return bytes.HasPrefix(r.Data, []byte(`{"resourceType"`)) }

// Parse is the agent and event a stored record tells of. Of a record of
// the trail's first version it tells what the store indexed.
func Parse(r store.AuditRecord) (Agent, Event, error) {
	e := Event{Type: r.Type, Subtype: r.Subtype, Action: r.Action, Outcome: r.Outcome, Patients: r.Patients, Entities: r.Entities}
	if rendered(r) {
		return Agent{}, e, nil
	}
	var f facts
	if err := json.Unmarshal(r.Data, &f); err != nil {
		return Agent{}, Event{}, fmt.Errorf("audit record %s: %w", r.ID, err)
	}
	e.Detail, e.Query = f.Detail, f.Query
	return Agent{User: f.User, FHIRUser: f.FHIRUser, Client: f.Client, Patient: f.Patient, Address: f.Address, RequestID: f.RequestID}, e, nil
}

// render makes an event the AuditEvent the trail serves.
func render(a Agent, e Event, id string, at time.Time) ([]byte, error) {
	at = at.UTC().Truncate(time.Millisecond)
	ev := auditEvent{
		ResourceType: "AuditEvent", ID: id,
		Meta:        meta{VersionID: "1", LastUpdated: fhir.FormatInstant(at)},
		Type:        coding{System: eventTypeSystem, Code: e.Type},
		Action:      e.Action,
		Recorded:    fhir.FormatInstant(at),
		Outcome:     e.Outcome,
		OutcomeDesc: e.Detail,
		Source:      source{Observer: reference{Identifier: &identifier{Value: "Hearth"}}, Type: []coding{{System: "http://terminology.hl7.org/CodeSystem/security-source-type", Code: "4", Display: "Application Server"}}},
	}
	if e.Type == "rest" {
		ev.Type.Display = "Restful Operation"
		ev.Subtype = []coding{{System: interactionSystem, Code: e.Subtype}}
	} else {
		ev.Type.System = dicomSystem
		ev.Subtype = []coding{{System: "urn:hearth:security-event", Code: e.Subtype}}
	}
	var net *network
	if a.Address != "" {
		net = &network{Address: a.Address, Type: "2"} // IP address
	}
	// The user, as the FHIR resource that is them where there is one.
	if a.User != "" || a.FHIRUser != "" {
		who := &reference{Reference: a.FHIRUser}
		if a.FHIRUser == "" {
			who = &reference{Identifier: &identifier{System: userSystem, Value: a.User}}
		}
		ev.Agent = append(ev.Agent, agent{
			Type: &concept{Coding: []coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", Code: "IRCP", Display: "information recipient"}}},
			Who:  who, AltID: a.User, Requestor: true, Network: net,
		})
		net = nil
	}
	// The client app, as the source of the request (DICOM Source Role ID).
	if a.Client != "" {
		ev.Agent = append(ev.Agent, agent{
			Type:      &concept{Coding: []coding{{System: dicomSystem, Code: "110153", Display: "Source Role ID"}}},
			Who:       &reference{Reference: ClientDevice(a.Client), Identifier: &identifier{System: clientSystem, Value: a.Client}},
			Requestor: a.User == "" && a.FHIRUser == "", Network: net,
		})
		net = nil
	}
	if len(ev.Agent) == 0 {
		ev.Agent = append(ev.Agent, agent{Who: &reference{Identifier: &identifier{System: userSystem, Value: "anonymous"}}, Requestor: true, Network: net})
	}
	// The server itself (DICOM Destination Role ID).
	ev.Agent = append(ev.Agent, agent{
		Type: &concept{Coding: []coding{{System: dicomSystem, Code: "110152", Display: "Destination Role ID"}}},
		Who:  &reference{Identifier: &identifier{Value: "Hearth"}},
	})
	for _, p := range e.Patients {
		ev.Entity = append(ev.Entity, entity{What: &reference{Reference: "Patient/" + p},
			Type: &coding{System: entityTypeSystem, Code: "1", Display: "Person"},
			Role: &coding{System: entityRoleSystem, Code: "1", Display: "Patient"}})
	}
	for _, r := range e.Entities {
		if id, ok := store.EntityPatient(r); ok && slices.Contains(e.Patients, id) {
			continue // a Patient read: named once, as the patient
		}
		ev.Entity = append(ev.Entity, entity{What: &reference{Reference: r},
			Type: &coding{System: entityTypeSystem, Code: "2", Display: "System Object"},
			Role: &coding{System: entityRoleSystem, Code: "4", Display: "Domain Resource"}})
	}
	if e.Query != "" {
		ev.Entity = append(ev.Entity, entity{Query: base64.StdEncoding.EncodeToString([]byte(e.Query)),
			Type: &coding{System: entityTypeSystem, Code: "2", Display: "System Object"},
			Role: &coding{System: entityRoleSystem, Code: "24", Display: "Query"}})
	}
	if a.RequestID != "" {
		ev.Entity = append(ev.Entity, entity{What: &reference{Identifier: &identifier{Value: a.RequestID}},
			Type: &coding{System: balpEntitySystem, Code: "XrequestId", Display: "X-Request-Id"}})
	}
	return json.Marshal(ev)
}
