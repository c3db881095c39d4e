package noninterference

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// The data of the two worlds. Both hold the base: a directory (shared
// practitioners, organisations, medications, a location) and the records of
// three patients — pat-p, an adult; pat-t, a teenager whose parent is a
// proxy; pat-q, another adult. World B then differs by changes that the
// scenario's token may not see: a fourth patient's whole record, another
// patient's records changed and deleted, the teenager's restricted and
// sensitive records, resources of other patients that point at the token's
// patient's data, groups. Each change is applied only if the scenario's
// token can see neither the version it replaces nor the one it writes.

// res is one resource: its type, id and JSON.
type res struct {
	typ, id string
	body    map[string]any
}

func (r res) json() []byte {
	b, err := json.Marshal(r.body)
	if err != nil {
		panic(err)
	}
	return b
}

// change is a difference of world B: a resource written, or deleted.
type change struct {
	put    *res
	delete [2]string // type, id
}

const (
	loinc     = "http://loinc.org"
	snomed    = "http://snomed.info/sct"
	obsCat    = "http://terminology.hl7.org/CodeSystem/observation-category"
	actCode   = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	confCode  = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	mrn       = "urn:mrn"
	obsIDs    = "urn:obs"
	condition = "Condition"
)

func ref(s string) map[string]any { return map[string]any{"reference": s} }

func coding(system, code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
}

func label(r res, system, code string) res {
	r.body["meta"] = map[string]any{"security": []any{map[string]any{"system": system, "code": code}}}
	return r
}

func newRes(typ, id string, fields map[string]any) res {
	fields["resourceType"] = typ
	fields["id"] = id
	return res{typ: typ, id: id, body: fields}
}

// directory is the shared data every token with the scope may read.
func directory() []res {
	return []res{
		newRes("Organization", "org-1", map[string]any{"name": "General Hospital", "active": true}),
		newRes("Organization", "org-2", map[string]any{"name": "Mercy Clinic", "partOf": ref("Organization/org-1")}),
		newRes("Practitioner", "dr-1", map[string]any{"name": []any{map[string]any{"family": "House", "given": []any{"Gregory"}}}}),
		newRes("Practitioner", "dr-2", map[string]any{"name": []any{map[string]any{"family": "Cuddy", "given": []any{"Lisa"}}}}),
		newRes("Practitioner", "dr-3", map[string]any{"name": []any{map[string]any{"family": "Wilson", "given": []any{"James"}}}}),
		newRes("Medication", "med-1", map[string]any{"code": coding("http://www.nlm.nih.gov/research/umls/rxnorm", "860975")}),
		// Referred to only by the teenager's hidden prescription (world B).
		newRes("Medication", "med-arv", map[string]any{"code": coding("http://www.nlm.nih.gov/research/umls/rxnorm", "1999563")}),
		newRes("Location", "loc-1", map[string]any{"name": "Ward 1"}),
	}
}

type person struct {
	id, given, family, gender, birth, org, gp string
}

var (
	personP = person{"pat-p", "Alpha", "Pearson", "female", "1980-02-29", "org-1", "dr-1"}
	personT = person{"pat-t", "Tess", "Turner", "female", "2010-06-01", "org-1", "dr-2"}
	personQ = person{"pat-q", "Quinn", "Pearson", "male", "1975-11-11", "org-2", "dr-1"}
	personR = person{"pat-r", "Rita", "Alpha", "female", "1990-01-15", "org-2", "dr-3"}
)

var obsCodes = []struct{ code, category, unit string }{
	{"2345-7", "laboratory", "mg/dL"}, {"8867-4", "vital-signs", "/min"}, {"718-7", "laboratory", "g/dL"}, {"8302-2", "vital-signs", "cm"},
}

func observation(pid, id string, k int, value float64) res {
	c := obsCodes[k%len(obsCodes)]
	return newRes("Observation", id, map[string]any{
		"status":            "final",
		"identifier":        []any{map[string]any{"system": obsIDs, "value": id}},
		"category":          []any{coding(obsCat, c.category)},
		"code":              coding(loinc, c.code),
		"subject":           ref("Patient/" + pid),
		"encounter":         ref("Encounter/" + pid + "-enc-0"),
		"performer":         []any{ref(fmt.Sprintf("Practitioner/dr-%d", k%3+1))},
		"effectiveDateTime": fmt.Sprintf("%d-%02d-15", 2019+k%4, k%12+1),
		"valueQuantity":     map[string]any{"value": json.Number(fmt.Sprint(value)), "unit": c.unit, "system": "http://unitsofmeasure.org", "code": c.unit},
	})
}

// record is one patient's record.
func record(p person) []res {
	pid := p.id
	out := []res{newRes("Patient", pid, map[string]any{
		"identifier":           []any{map[string]any{"system": mrn, "value": pid + "-1"}},
		"name":                 []any{map[string]any{"family": p.family, "given": []any{p.given}}},
		"gender":               p.gender,
		"birthDate":            p.birth,
		"managingOrganization": ref("Organization/" + p.org),
		"generalPractitioner":  []any{ref("Practitioner/" + p.gp)},
	})}
	for k := range 4 {
		out = append(out, observation(pid, fmt.Sprintf("%s-obs-%d", pid, k), k, float64(40+k*35)))
	}
	out = append(out,
		newRes("Encounter", pid+"-enc-0", map[string]any{
			"status": "finished", "class": map[string]any{"code": "AMB"}, "subject": ref("Patient/" + pid),
			"participant":     []any{map[string]any{"individual": ref("Practitioner/dr-1")}},
			"serviceProvider": ref("Organization/" + p.org), "reasonCode": []any{map[string]any{"text": "checkup"}},
			"period": map[string]any{"start": "2020-03-01T09:00:00Z", "end": "2020-03-01T10:00:00Z"},
		}),
		newRes(condition, pid+"-cond-0", map[string]any{
			"subject": ref("Patient/" + pid), "encounter": ref("Encounter/" + pid + "-enc-0"),
			"code": coding(snomed, "44054006"), "onsetDateTime": "2018-05-05",
			"clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
		}),
		newRes("MedicationRequest", pid+"-mr-0", map[string]any{
			"status": "active", "intent": "order", "subject": ref("Patient/" + pid),
			"medicationReference": ref("Medication/med-1"), "requester": ref("Practitioner/dr-2"),
		}),
		newRes("List", pid+"-list", map[string]any{
			"status": "current", "mode": "working", "subject": ref("Patient/" + pid),
			"entry": []any{map[string]any{"item": ref("Observation/" + pid + "-obs-0")}, map[string]any{"item": ref("Practitioner/dr-1")}},
		}),
		newRes("Communication", pid+"-comm", map[string]any{
			"status": "completed", "subject": ref("Patient/" + pid), "sender": ref("Patient/" + pid),
			"recipient": []any{ref("Practitioner/dr-1")}, "payload": []any{map[string]any{"contentString": "question"}},
		}),
		// An appointment and a renewal request of the patient's own.
		newRes("Appointment", pid+"-appt", map[string]any{
			"status": "booked", "start": "2026-12-10T09:00:00Z", "end": "2026-12-10T09:20:00Z",
			"participant": []any{map[string]any{"actor": ref("Patient/" + pid), "status": "accepted"}, map[string]any{"actor": ref("Practitioner/dr-1"), "status": "accepted"}},
		}),
		newRes("MedicationRequest", pid+"-renewal", map[string]any{
			"status": "active", "intent": "proposal", "subject": ref("Patient/" + pid), "medicationReference": ref("Medication/med-1"),
			"requester": ref("Patient/" + pid), "basedOn": []any{ref("MedicationRequest/" + pid + "-mr-0")},
		}),
		newRes("Provenance", pid+"-prov", map[string]any{
			"target": []any{ref("Observation/" + pid + "-obs-0")}, "recorded": "2020-03-01T10:00:00Z",
			"agent": []any{map[string]any{"who": ref("Practitioner/dr-1")}},
		}),
	)
	return out
}

func base() []res {
	out := directory()
	for _, p := range []person{personP, personT, personQ} {
		out = append(out, record(p)...)
		// A final lab report: released at once, seen in both worlds.
		out = append(out, newRes("DiagnosticReport", p.id+"-dr-final", map[string]any{"status": "final", "category": []any{coding(v20074, "LAB")},
			"code": coding(loinc, "24323-8"), "subject": ref("Patient/" + p.id), "result": []any{ref("Observation/" + p.id + "-obs-0")}}))
	}
	// A Group of every patient: in each one's compartment, so each token
	// sees it, and its export holds the members the token may see.
	out = append(out, newRes("Group", "grp-all", map[string]any{"type": "person", "actual": true,
		"member": []any{map[string]any{"entity": ref("Patient/pat-p")}, map[string]any{"entity": ref("Patient/pat-t")}, map[string]any{"entity": ref("Patient/pat-q")}}}))
	return out
}

// v20074 is the code system of DiagnosticReport categories.
const v20074 = "http://terminology.hl7.org/CodeSystem/v2-0074"

// unreleased reports whether a result is not released to its patient
// yet, as the door stamps it: not final, or final within its category's
// delay (releaseDelays).
func unreleased(typ string, body map[string]any) bool {
	category := interact.ReleaseCategory(typ, body)
	if category == "" {
		return false
	}
	status, _ := body["status"].(string)
	if typ == "DocumentReference" {
		doc, _ := body["docStatus"].(string)
		return status != "current" || doc != "" && doc != "final" && doc != "amended"
	}
	return !slices.Contains([]string{"final", "amended", "corrected", "appended"}, status) || releaseDelays[category] > 0
}

// releaseDelays are the worlds' release delays: imaging waits.
var releaseDelays = map[string]time.Duration{interact.ReleaseImaging: 72 * time.Hour}

// differences are world B's changes, before any scenario filters them.
func differences() []change {
	var out []change
	put := func(r res) { out = append(out, change{put: &r}) }
	for _, r := range record(personR) {
		put(r)
	}
	// Another patient's records change and go.
	q0 := observation("pat-q", "pat-q-obs-0", 3, 999)
	put(q0)
	put(newRes("Patient", "pat-q", map[string]any{"name": []any{map[string]any{"family": "Alpha", "given": []any{"Quinn"}}},
		"gender": "male", "managingOrganization": ref("Organization/org-1"), "identifier": []any{map[string]any{"system": mrn, "value": "pat-q-1"}}}))
	out = append(out, change{delete: [2]string{condition, "pat-q-cond-0"}})
	put(observation("pat-q", "pat-q-obs-new", 0, 300))
	put(newRes("Encounter", "pat-q-enc-0", map[string]any{"status": "finished", "class": map[string]any{"code": "AMB"},
		"subject": ref("Patient/pat-q"), "participant": []any{map[string]any{"individual": ref("Practitioner/dr-3")}},
		"reasonCode": []any{map[string]any{"text": "secret"}}}))
	// The teenager's restricted and sensitive records.
	put(label(newRes(condition, "pat-t-hiv", map[string]any{"subject": ref("Patient/pat-t"), "encounter": ref("Encounter/pat-t-senc"),
		"code": coding(snomed, "86406008"), "onsetDateTime": "2024-01-01"}), actCode, "HIV"))
	put(label(newRes("Encounter", "pat-t-senc", map[string]any{"status": "finished", "class": map[string]any{"code": "AMB"},
		"subject": ref("Patient/pat-t"), "participant": []any{map[string]any{"individual": ref("Practitioner/dr-3")}},
		"serviceProvider": ref("Organization/org-2"), "reasonCode": []any{map[string]any{"text": "secret"}}}), confCode, "V"))
	put(label(newRes("MedicationRequest", "pat-t-mr-arv", map[string]any{"status": "active", "intent": "order",
		"subject": ref("Patient/pat-t"), "medicationReference": ref("Medication/med-arv"), "requester": ref("Practitioner/dr-3")}), actCode, "HIV"))
	put(label(observation("pat-t", "pat-t-obs-psy", 0, 301), actCode, "PSY"))
	put(label(observation("pat-t", "pat-t-obs-r", 2, 302), confCode, "R"))
	// Results not released yet, of the patients themselves: a preliminary
	// lab Observation and report, a final imaging report within its delay,
	// a clinical note not final. A final report is released at once.
	for _, pid := range []string{"pat-p", "pat-t"} {
		prelim := observation(pid, pid+"-obs-prelim", 0, 250)
		prelim.body["status"] = "preliminary"
		put(prelim)
		put(newRes("DiagnosticReport", pid+"-dr-prelim", map[string]any{"status": "preliminary", "category": []any{coding(v20074, "LAB")},
			"code": coding(loinc, "24323-8"), "subject": ref("Patient/" + pid), "result": []any{ref("Observation/" + pid + "-obs-prelim"), ref("Observation/" + pid + "-obs-0")}}))
		put(newRes("DiagnosticReport", pid+"-dr-img", map[string]any{"status": "final", "category": []any{coding(v20074, "RAD")},
			"code": coding(loinc, "36643-5"), "subject": ref("Patient/" + pid), "conclusion": "secret"}))
		put(newRes("DocumentReference", pid+"-doc-prelim", map[string]any{"status": "current", "docStatus": "preliminary",
			"category": []any{coding("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note")},
			"subject":  ref("Patient/" + pid), "content": []any{map[string]any{"attachment": map[string]any{"contentType": "text/plain", "data": "c2VjcmV0"}}}}))
	}
	// The adult patient's vital signs: hidden only from lab-only tokens.
	put(observation("pat-p", "pat-p-obs-extra", 1, 77))
	// Resources outside any compartment of the token that point at its data.
	put(newRes("Provenance", "pat-q-prov-x", map[string]any{"target": []any{ref("Observation/pat-p-obs-0"), ref("Observation/pat-t-obs-0")},
		"recorded": "2021-01-01T00:00:00Z", "agent": []any{map[string]any{"who": ref("Patient/pat-q")}}}))
	put(newRes("Group", "grp-x", map[string]any{"type": "person", "actual": true,
		"member": []any{map[string]any{"entity": ref("Patient/pat-q")}, map[string]any{"entity": ref("Patient/pat-r")}}}))
	put(newRes("List", "pat-q-list-x", map[string]any{"status": "current", "mode": "working", "subject": ref("Patient/pat-q"),
		"entry": []any{map[string]any{"item": ref("Practitioner/dr-3")}, map[string]any{"item": ref("Observation/pat-p-obs-1")}}}))
	return out
}

// load writes resources through an unrestricted session of the door.
func load(t testing.TB, door *interact.Door, rs []res) {
	t.Helper()
	items := make([]interact.LoadItem, len(rs))
	for i, r := range rs {
		body, err := interact.ParseResource(r.json(), r.typ)
		if err != nil {
			t.Fatalf("%s/%s: %v", r.typ, r.id, err)
		}
		items[i] = interact.LoadItem{Type: r.typ, ID: r.id, Body: body}
	}
	for i := range items {
		errs, err := door.Unrestricted(audit.Agent{}).Load(context.Background(), items[i:i+1])
		if err != nil || errs[0] != nil {
			t.Fatalf("load %s/%s: %v %v", rs[i].typ, rs[i].id, err, errs[0])
		}
	}
}

// apply makes world B: the changes the scenario's token cannot see.
func apply(t testing.TB, st store.Store, door *interact.Door, changes []change, sees func(typ, id string, body map[string]any) bool) int {
	t.Helper()
	ctx := context.Background()
	unseen := func(typ, id string) bool {
		cur, err := st.Read(ctx, typ, id)
		if err != nil {
			return true // nothing there to see
		}
		m, err := fhir.DecodeResource(cur.JSON)
		return err == nil && !sees(typ, id, m)
	}
	applied := 0
	for _, c := range changes {
		switch {
		case c.put != nil:
			if sees(c.put.typ, c.put.id, c.put.body) || !unseen(c.put.typ, c.put.id) {
				continue
			}
			load(t, door, []res{*c.put})
		default:
			if !unseen(c.delete[0], c.delete[1]) {
				continue
			}
			if _, err := door.Unrestricted(audit.Agent{}).Delete(ctx, c.delete[0], c.delete[1], 0); err != nil {
				t.Fatal(err)
			}
		}
		applied++
	}
	return applied
}

// compartments lists the patients whose compartment holds a resource.
func compartments(typ, id string, body map[string]any) []string {
	m := map[string]any{}
	for k, v := range body {
		m[k] = v
	}
	m["id"] = id
	return fhir.Extract(typ, m).Compartments
}

func labelled(body map[string]any) bool {
	meta, _ := body["meta"].(map[string]any)
	sec, _ := meta["security"].([]any)
	for _, s := range sec {
		c, _ := s.(map[string]any)["code"].(string)
		if slices.Contains([]string{"R", "V", "HIV", "PSY", "ETH", "SUD", "SDV", "SEX", "STD"}, c) {
			return true
		}
	}
	return false
}

func category(body map[string]any) string {
	cats, _ := body["category"].([]any)
	for _, c := range cats {
		codings, _ := c.(map[string]any)["coding"].([]any)
		for _, cd := range codings {
			if code, _ := cd.(map[string]any)["code"].(string); code != "" {
				return code
			}
		}
	}
	return ""
}
