package noninterference

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/smart/access"
)

// generator draws interactions from a vocabulary that names the token's own
// data, other patients' data (visible or not, in one world or both), shared
// data, and things that exist nowhere.
type generator struct {
	rng *rand.Rand
	sc  scenario
	n   int
}

var (
	patients = []string{"pat-p", "pat-t", "pat-q", "pat-r", "nobody"}
	codes    = []string{"2345-7", "8867-4", "718-7", "8302-2", "44054006", "86406008", "38341003", "999-9",
		loinc + "|2345-7", loinc + "|8302-2", snomed + "|86406008", "|718-7", loinc + "|"}
	names = []string{"alpha", "pearson", "quinn", "rita", "tess", "turner", "house", "cuddy", "wilson", "gen", "zzz", "Alpha"}
	dates = []string{"ge2019", "le2020-06", "2021", "eq2020", "ne2020", "sa2019-01-01", "eb2022", "ap2020", "gt2018-05-01T00:00:00Z",
		"lt2021-03", "2019-01-15", "ge2024"}
	quantities  = []string{"gt50", "lt100", "ge999", "300", "ap120", "le40", "ne110", "gt100|http://unitsofmeasure.org|mg/dL", "75|http://unitsofmeasure.org|/min"}
	security    = []string{actCode + "|HIV", actCode + "|PSY", confCode + "|V", confCode + "|R", confCode + "|N", actCode + "|"}
	practs      = []string{"dr-1", "dr-2", "dr-3", "dr-9"}
	orgs        = []string{"org-1", "org-2", "org-9"}
	suffixes    = []string{"-obs-0", "-obs-1", "-obs-2", "-obs-3", "-enc-0", "-cond-0", "-mr-0", "-list", "-comm", "-prov", "-hiv", "-senc", "-mr-arv", "-obs-psy", "-obs-r", "-obs-new", "-obs-extra", "-prov-x", "-list-x", "-obs-prelim", "-dr-final", "-dr-prelim", "-dr-img", "-doc-prelim", "-appt", "-renewal"}
	releaseTags = []string{access.ReleaseSystem + "|held", access.ReleaseSystem + "|pending", access.ReleaseSystem + "|released"}
	types       = []string{"Observation", "Patient", "Condition", "Encounter", "Practitioner", "Organization", "MedicationRequest", "Medication", "List", "Communication", "Provenance", "Group", "DiagnosticReport", "DocumentReference", "Appointment"}
)

func (g *generator) pick(xs []string) string { return xs[g.rng.IntN(len(xs))] }

func (g *generator) chance(p float64) bool { return g.rng.Float64() < p }

// id names a resource of any patient, or one that exists nowhere.
func (g *generator) id() string {
	if g.chance(0.05) {
		return "nope"
	}
	return g.pick(patients[:4]) + g.pick(suffixes)
}

func (g *generator) idOf(typ string) string {
	switch typ {
	case "Patient":
		return g.pick(patients)
	case "Practitioner":
		return g.pick(practs)
	case "Organization":
		return g.pick(orgs)
	case "Medication":
		return g.pick([]string{"med-1", "med-arv", "med-9"})
	case "Group":
		return g.pick([]string{"grp-x", "grp-9"})
	}
	want := map[string][]string{
		"Observation": {"-obs-0", "-obs-1", "-obs-3", "-obs-psy", "-obs-r", "-obs-new", "-obs-extra", "-obs-prelim"}, "Condition": {"-cond-0", "-hiv"},
		"DiagnosticReport": {"-dr-final", "-dr-prelim", "-dr-img"}, "DocumentReference": {"-doc-prelim"}, "Appointment": {"-appt"},
		"Encounter": {"-enc-0", "-senc"}, "MedicationRequest": {"-mr-0", "-mr-arv", "-renewal"}, "List": {"-list", "-list-x"},
		"Communication": {"-comm"}, "Provenance": {"-prov", "-prov-x"},
	}[typ]
	if len(want) == 0 {
		return g.id()
	}
	return g.pick(patients) + g.pick(want)
}

// params are the search conditions of each type.
func (g *generator) param(typ string) (string, string) {
	p := g.pick(patients)
	switch typ {
	case "Observation":
		return g.pickParam([][2]string{
			{"code", g.pick(codes)}, {"code:not", g.pick(codes)}, {"code:text", g.pick([]string{"glucose", "zzz"})},
			{"category", g.pick([]string{"laboratory", "vital-signs", obsCat + "|laboratory"})},
			{"patient", p}, {"subject", "Patient/" + p}, {"subject:Patient", p}, {"performer", "Practitioner/" + g.pick(practs)},
			{"date", g.pick(dates)}, {"value-quantity", g.pick(quantities)}, {"encounter", "Encounter/" + g.idOf("Encounter")},
			{"identifier", obsIDs + "|" + g.idOf("Observation")}, {"_security", g.pick(security)}, {"_security:not", g.pick(security)},
			{"patient.name", g.pick(names)}, {"subject:Patient.gender", g.pick([]string{"female", "male"})},
			{"performer:Practitioner.name", g.pick(names)}, {"encounter.reason-code:text", g.pick([]string{"secret", "checkup", "none"})},
			{"encounter._security", g.pick(security)}, {"patient.general-practitioner.name", g.pick(names)},
			{"patient.organization.name", g.pick(names)}, {"_has:Provenance:target:agent", "Patient/" + p},
			{"_has:List:item:subject", p}, {"_id", g.idOf("Observation") + "," + g.idOf("Observation")},
			{"_lastUpdated", "gt2000-01-01"}, {"code-value-quantity", "http://loinc.org|2345-7$gt100"},
			{"combo-code", g.pick(codes)}, {"status", g.pick([]string{"final", "preliminary"})}, {"_text", g.pick(names)},
			{"_tag", g.pick(releaseTags)}, {"_has:DiagnosticReport:result:status", g.pick([]string{"final", "preliminary"})},
		})
	case "Patient":
		return g.pickParam([][2]string{
			{"name", g.pick(names)}, {"family", g.pick(names)}, {"family:exact", "Pearson"}, {"name:contains", "ur"},
			{"gender", g.pick([]string{"female", "male"})}, {"birthdate", g.pick(dates)}, {"identifier", mrn + "|" + p + "-1"},
			{"organization", "Organization/" + g.pick(orgs)}, {"general-practitioner", "Practitioner/" + g.pick(practs)},
			{"_has:Observation:patient:code", g.pick(codes)}, {"_has:Condition:subject:code", g.pick(codes)},
			{"_has:Condition:patient:_security", g.pick(security)},
			{"_has:Observation:subject:_has:Provenance:target:agent", "Patient/" + p},
			{"_has:Encounter:patient:reason-code:text", g.pick([]string{"secret", "checkup"})},
			{"organization.name", g.pick(names)}, {"general-practitioner.name", g.pick(names)}, {"_id", p + "," + g.pick(patients)},
			{"_has:Group:member:_id", "grp-x"}, {"identifier:not", mrn + "|" + p + "-1"},
		})
	case "Condition":
		return g.pickParam([][2]string{
			{"code", g.pick(codes)}, {"subject", "Patient/" + p}, {"encounter.reason-code:text", g.pick([]string{"secret", "checkup"})},
			{"onset-date", g.pick(dates)}, {"_security", g.pick(security)}, {"clinical-status", "active"}, {"patient.name", g.pick(names)},
			{"encounter._security", g.pick(security)}, {"code:not", g.pick(codes)},
		})
	case "Encounter":
		return g.pickParam([][2]string{
			{"practitioner", "Practitioner/" + g.pick(practs)}, {"service-provider", "Organization/" + g.pick(orgs)},
			{"reason-code:text", g.pick([]string{"secret", "checkup"})}, {"date", g.pick(dates)}, {"patient", p},
			{"_has:Condition:encounter:code", g.pick(codes)}, {"practitioner.name", g.pick(names)}, {"_security", g.pick(security)},
			{"_has:Observation:encounter:value-quantity", g.pick(quantities)}, {"subject:Patient.name", g.pick(names)},
		})
	case "Practitioner":
		return g.pickParam([][2]string{
			{"name", g.pick(names)}, {"_has:Encounter:practitioner:patient", p}, {"_has:Observation:performer:code", g.pick(codes)},
			{"_has:Encounter:practitioner:reason-code:text", g.pick([]string{"secret", "checkup"})},
			{"_has:Observation:performer:subject:Patient.name", g.pick(names)}, {"_list", p + "-list,pat-q-list-x"},
			{"_has:Encounter:practitioner:_security", g.pick(security)}, {"_has:MedicationRequest:requester:medication", "Medication/med-arv"},
			{"_has:Patient:general-practitioner:birthdate", g.pick(dates)}, {"_id", g.pick(practs)},
		})
	case "Organization":
		return g.pickParam([][2]string{
			{"name", g.pick(names)}, {"partof", "Organization/org-1"}, {"_has:Patient:organization:name", g.pick(names)},
			{"_has:Patient:organization:_has:Condition:subject:code", g.pick(codes)},
			{"_has:Encounter:service-provider:patient", p}, {"_has:Encounter:service-provider:_security", g.pick(security)},
		})
	case "MedicationRequest":
		return g.pickParam([][2]string{
			{"medication", "Medication/" + g.idOf("Medication")}, {"patient", p}, {"_security", g.pick(security)},
			{"requester", "Practitioner/" + g.pick(practs)}, {"medication.code", "1999563"},
			{"intent", g.pick([]string{"order", "proposal"})}, {"requester", "Patient/" + p},
		})
	case "Medication":
		return g.pickParam([][2]string{
			{"_has:MedicationRequest:medication:patient", p}, {"_has:MedicationRequest:medication:_security", g.pick(security)},
			{"code", g.pick([]string{"1999563", "860975"})},
		})
	case "List":
		return g.pickParam([][2]string{{"subject", p}, {"item", "Practitioner/" + g.pick(practs)}, {"item", "Observation/" + g.idOf("Observation")}})
	case "Communication":
		return g.pickParam([][2]string{{"subject", p}, {"sender", "Patient/" + p}, {"recipient", "Practitioner/dr-1"}})
	case "Provenance":
		return g.pickParam([][2]string{{"target", "Observation/" + g.idOf("Observation")}, {"agent", "Patient/" + p}, {"patient", p}})
	case "Group":
		return g.pickParam([][2]string{{"member", "Patient/" + p}, {"type", "person"}})
	case "DiagnosticReport":
		return g.pickParam([][2]string{
			{"subject", "Patient/" + p}, {"patient", p}, {"status", g.pick([]string{"final", "preliminary"})},
			{"category", g.pick([]string{"LAB", "RAD"})}, {"result", "Observation/" + g.idOf("Observation")},
			{"result.code", g.pick(codes)}, {"result.status", g.pick([]string{"final", "preliminary"})},
			{"_tag", g.pick(releaseTags)}, {"_tag:not", g.pick(releaseTags)}, {"_id", g.idOf("DiagnosticReport")},
		})
	case "Appointment":
		return g.pickParam([][2]string{
			{"patient", p}, {"actor", "Patient/" + p}, {"status", g.pick([]string{"booked", "cancelled"})},
			{"practitioner", "Practitioner/" + g.pick(practs)}, {"date", g.pick(dates)},
		})
	case "DocumentReference":
		return g.pickParam([][2]string{
			{"subject", "Patient/" + p}, {"status", "current"}, {"category", "clinical-note"}, {"_tag", g.pick(releaseTags)},
		})
	}
	return "_id", g.id()
}

func (g *generator) pickParam(ps [][2]string) (string, string) {
	p := ps[g.rng.IntN(len(ps))]
	return p[0], p[1]
}

var includes = map[string][]string{
	"Observation":       {"Observation:subject", "Observation:performer", "Observation:encounter", "*", "Observation:patient"},
	"Patient":           {"Patient:organization", "Patient:general-practitioner"},
	"Encounter":         {"Encounter:practitioner", "Encounter:subject", "Encounter:service-provider"},
	"MedicationRequest": {"MedicationRequest:medication", "MedicationRequest:subject"},
	"Condition":         {"Condition:encounter", "Condition:subject"},
	"List":              {"List:item"},
	"DiagnosticReport":  {"DiagnosticReport:result", "DiagnosticReport:subject"},
}

var revincludes = map[string][]string{
	"Patient":      {"Observation:subject", "Condition:patient", "Group:member", "Encounter:patient", "Provenance:patient", "DiagnosticReport:subject", "DocumentReference:subject"},
	"Practitioner": {"Encounter:practitioner", "Observation:performer", "MedicationRequest:requester", "Patient:general-practitioner"},
	"Organization": {"Patient:organization", "Encounter:service-provider", "Organization:partof"},
	"Observation":  {"Provenance:target", "List:item", "DiagnosticReport:result"},
	"Medication":   {"MedicationRequest:medication"},
	"Encounter":    {"Condition:encounter", "Observation:encounter"},
}

var sorts = map[string][]string{
	"Observation": {"date", "-date", "code", "-value-quantity", "_id", "-_lastUpdated"},
	"Patient":     {"name", "-birthdate", "_id"},
	"Encounter":   {"-date", "_id"},
	"Condition":   {"onset-date", "-_id"},
}

// search is a search URL with one to three conditions and result controls.
func (g *generator) search(typ string) string {
	v := url.Values{}
	for range 1 + g.rng.IntN(3) {
		k, val := g.param(typ)
		v.Add(k, val)
	}
	if inc := includes[typ]; len(inc) > 0 && g.chance(0.3) {
		v.Add("_include", g.pick(inc))
		if g.chance(0.4) {
			v.Add("_include:iterate", g.pick([]string{"Patient:general-practitioner", "Patient:organization", "Encounter:practitioner", "Organization:partof"}))
		}
	}
	if rev := revincludes[typ]; len(rev) > 0 && g.chance(0.3) {
		v.Add("_revinclude", g.pick(rev))
		if g.chance(0.3) {
			v.Add("_revinclude:iterate", g.pick([]string{"Provenance:target", "Observation:encounter", "Condition:encounter"}))
		}
	}
	switch {
	case g.chance(0.15):
		v.Set("_summary", "count")
	case g.chance(0.2):
		v.Set("_total", "accurate")
	}
	if s := sorts[typ]; len(s) > 0 && g.chance(0.3) {
		v.Set("_sort", g.pick(s))
	}
	if g.chance(0.5) {
		v.Set("_count", fmt.Sprint(1+g.rng.IntN(3)))
	}
	if g.chance(0.1) {
		v.Set("_elements", "id,code,subject")
	}
	return "/" + typ + "?" + v.Encode()
}

// ownObservation is an Observation of the token's patient.
func (g *generator) ownObservation(id string) string {
	r := observation(g.sc.patient, id, g.rng.IntN(4), float64(g.rng.IntN(200)))
	if id == "" {
		delete(r.body, "id")
	}
	// Mostly a home reading by the token's user, which the patient write
	// rules let it write; otherwise a lab result, which they refuse.
	if user := g.sc.policy.FHIRUser; user != "" && g.chance(0.7) {
		r.body["category"] = []any{coding(obsCat, "vital-signs")}
		r.body["performer"] = []any{ref(user)}
	}
	if g.chance(0.2) {
		r.body["identifier"] = []any{map[string]any{"system": obsIDs, "value": g.idOf("Observation")}}
	}
	return string(r.json())
}

func (g *generator) next() request {
	g.n++
	if g.chance(0.06) {
		return g.auditEvent()
	}
	typ := g.pick(types)
	if len(g.sc.types) > 0 {
		typ = g.pick(g.sc.types)
	}
	switch k := g.rng.IntN(100); {
	case k < 45:
		return request{method: "GET", path: g.search(typ)}
	case k < 55:
		return request{method: "GET", path: "/" + typ + "/" + g.idOf(typ)}
	case k < 59:
		if g.chance(0.25) {
			// $validate of an update or delete reads the resource it names.
			mode := g.pick([]string{"update", "delete"})
			id := g.idOf(typ)
			return request{method: "POST", path: "/" + typ + "/" + id + "/$validate?mode=" + mode,
				body: `{"resourceType":"` + typ + `","id":"` + id + `"}`, header: map[string]string{"Content-Type": "application/fhir+json"}}
		}
		return request{method: "GET", path: fmt.Sprintf("/%s/%s/_history/%d", typ, g.idOf(typ), 1+g.rng.IntN(2))}
	case k < 63:
		return request{method: "GET", path: "/" + typ + "/" + g.idOf(typ) + "/_history?_count=" + fmt.Sprint(1+g.rng.IntN(2))}
	case k < 64:
		return request{method: "GET", path: g.pick([]string{"/_history", "/Observation/_history", "/Practitioner/_history"})}
	case k < 68:
		if g.chance(0.7) {
			return request{method: "GET", path: "/Patient/" + g.pick(patients) + "/$everything?_count=" + fmt.Sprint(2+g.rng.IntN(10))}
		}
		return request{method: "GET", path: "/Encounter/" + g.idOf("Encounter") + "/$everything"}
	case k < 72:
		ct := g.pick([]string{"Observation", "Condition", "Encounter", "MedicationRequest", "List"})
		path := g.search(ct)
		return request{method: "GET", path: "/Patient/" + g.pick(patients) + path}
	case k < 76:
		entries := []string{}
		for range 1 + g.rng.IntN(3) {
			u := strings.TrimPrefix(g.search(g.pick(types)), "/")
			if g.chance(0.4) {
				t := g.pick(types)
				u = t + "/" + g.idOf(t)
			}
			entries = append(entries, fmt.Sprintf(`{"request":{"method":"GET","url":%q}}`, u))
		}
		return request{method: "POST", path: "", body: `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Join(entries, ",") + `]}`}
	case k < 80:
		// A transaction whose entry refers to a patient by condition.
		obs := strings.Replace(g.ownObservation(""), `"reference":"Patient/`+g.sc.patient+`"`, `"reference":"Patient?identifier=`+mrn+`|`+g.pick(patients)+`-1"`, 1)
		ine := ""
		if g.chance(0.5) {
			ine = fmt.Sprintf(`,"ifNoneExist":"identifier=%s|%s"`, obsIDs, g.idOf("Observation"))
		}
		return request{method: "POST", path: "", body: `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + obs + `,"request":{"method":"POST","url":"Observation"` + ine + `}}]}`}
	case k < 84:
		return request{method: "POST", path: "/Observation", body: g.ownObservation(""),
			header: map[string]string{"If-None-Exist": "identifier=" + obsIDs + "|" + g.idOf("Observation")}}
	case k < 87:
		return request{method: "PUT", path: "/Observation?identifier=" + url.QueryEscape(obsIDs+"|"+g.idOf("Observation")), body: g.ownObservation("")}
	case k < 90:
		id := g.idOf("Observation")
		if g.chance(0.5) {
			return request{method: "PUT", path: "/Observation?_id=" + id, body: g.ownObservation(id)}
		}
		return request{method: "PUT", path: "/Observation/" + id, body: g.ownObservation(id)}
	case k < 93:
		if g.chance(0.5) {
			// A FHIRPath Patch, by id or by condition.
			target := "/Observation/" + g.idOf("Observation")
			if g.chance(0.5) {
				target = "/Observation?identifier=" + url.QueryEscape(obsIDs+"|"+g.idOf("Observation"))
			}
			return request{method: "PATCH", path: target, header: map[string]string{"Content-Type": "application/fhir+json"},
				body: `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Observation.status"},{"name":"value","valueCode":"amended"}]}]}`}
		}
		return request{method: "PATCH", path: "/Observation?identifier=" + url.QueryEscape(obsIDs+"|"+g.idOf("Observation")),
			body: `[{"op":"replace","path":"/status","value":"amended"}]`, header: map[string]string{"Content-Type": "application/json-patch+json"}}
	case k < 96:
		if g.chance(0.5) {
			return request{method: "DELETE", path: "/Observation?identifier=" + url.QueryEscape(obsIDs+"|"+g.idOf("Observation"))}
		}
		t := g.pick([]string{"Observation", "Condition", "Communication"})
		return request{method: "DELETE", path: "/" + t + "/" + g.idOf(t)}
	default:
		subject := g.pick(patients)
		return request{method: "POST", path: "/Communication", body: fmt.Sprintf(`{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/%s"},"sender":{"reference":"Patient/%s"},"recipient":[{"reference":"Practitioner/dr-1"}]}`, subject, g.sc.patient)}
	}
}

// auditEvent reads or searches the audit trail: by patient (the token's
// own, another's), agent, entity, codes and date, sorted and paged.
func (g *generator) auditEvent() request {
	if g.chance(0.1) {
		return request{method: "GET", path: "/AuditEvent/" + g.pick([]string{"0123456789abcdef0123456789abcdef", "nope"})}
	}
	var q []string
	params := []func() string{
		func() string { return "patient=" + g.pick(patients) },
		func() string { return "patient=Patient/" + g.pick(patients) },
		func() string {
			return "agent=" + g.pick([]string{"Device/app", "Device/other", "Patient/" + g.pick(patients), "RelatedPerson/pat-q-proxy"})
		},
		func() string {
			return "entity=" + g.pick([]string{"Patient/" + g.pick(patients), "Observation/" + g.idOf("Observation")})
		},
		func() string { return "type=" + g.pick([]string{"rest", "110113"}) },
		func() string { return "subtype=" + g.pick([]string{"read", "search-type", "create", "login", "vread"}) },
		func() string { return "outcome=" + g.pick([]string{"0", "4", "8"}) },
		func() string {
			return "date=" + g.pick([]string{"ge2020", "lt2020", "ge" + time.Now().Format("2006-01-02")})
		},
		func() string { return "_sort=" + g.pick([]string{"date", "-date"}) },
	}
	for range g.rng.IntN(3) {
		q = append(q, params[g.rng.IntN(len(params))]())
	}
	q = append(q, "_count="+fmt.Sprint(1+g.rng.IntN(4)))
	return request{method: "GET", path: "/AuditEvent?" + strings.Join(q, "&")}
}
