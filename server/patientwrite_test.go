package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
)

// staffPatientProxy are a clinic system's, patient p1's and p1's
// mother's tokens.
var staffPatientProxy = fixedTokens{
	"staff": {Scopes: scopes.ParseSet("system/*.cruds"), ClientID: "ehr"},
	"pat":   {Patient: "p1", Scopes: scopes.ParseSet("patient/*.cruds"), ClientID: "app", Subject: "p1", FHIRUser: "Patient/p1"},
	"proxy": {Patient: "p1", Scopes: scopes.ParseSet("patient/*.cruds"), ClientID: "app", Subject: "mum", FHIRUser: "RelatedPerson/mum"},
}

// bloodPressure is a home blood pressure reading, with or without its
// diastolic component.
func bloodPressure(performer string, diastolic bool) string {
	comps := `{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":121,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}`
	if diastolic {
		comps += `,{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":79,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}`
	}
	return `{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],` +
		`"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"subject":{"reference":"Patient/p1"},"performer":[{"reference":"` + performer + `"}],` +
		`"effectiveDateTime":"2026-11-30T07:30:00Z","component":[` + comps + `]}`
}

// What a patient may write: the table of smart/access, over HTTP, with
// patient, proxy and staff tokens, on both backends.
func TestPatientWriteRules(t *testing.T) { onEachBackend(t, patientWriteRules) }

func patientWriteRules(t *testing.T, st store.Store) {
	ts, _ := tokenServer(t, st, interact.Config{}, staffPatientProxy)
	as := func(token, method, path, body string) response {
		return do(t, ts, method, path, body, withToken(token)...)
	}
	for _, r := range []struct{ path, body string }{
		{"/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`},
		{"/fhir/Observation/lab1", `{"resourceType":"Observation","id":"lab1","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"text":"pulse"},"subject":{"reference":"Patient/p1"},"performer":[{"reference":"Practitioner/dr"}]}`},
		{"/fhir/MedicationRequest/mr1", `{"resourceType":"MedicationRequest","id":"mr1","status":"active","intent":"order","medicationCodeableConcept":{"text":"metformin"},"subject":{"reference":"Patient/p1"}}`},
	} {
		if got := as("staff", "PUT", r.path, r.body); got.status != 201 {
			t.Fatalf("staff PUT %s: %d %s", r.path, got.status, got.body)
		}
	}
	reading := func(performer string) string {
		return `{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],` +
			`"code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}]},"subject":{"reference":"Patient/p1"},"performer":[{"reference":"` + performer + `"}],"effectiveDateTime":"2026-11-30T07:30:00Z",` +
			`"valueQuantity":{"value":104,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"}}`
	}
	// Allowed: own readings, messages, renewal requests — each tagged and
	// with a Provenance naming the user (and the patient a proxy acts for).
	allowed := []struct{ token, typ, body, provenance string }{
		{"pat", "Observation", reading("Patient/p1"), `"who":{"reference":"Patient/p1"}`},
		{"pat", "Observation", bloodPressure("Patient/p1", true), `"who":{"reference":"Patient/p1"}`},
		{"proxy", "Observation", reading("RelatedPerson/mum"), `"onBehalfOf":{"reference":"Patient/p1"}`},
		{"pat", "Communication", `{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/p1"},"sender":{"reference":"Patient/p1"},"recipient":[{"reference":"Practitioner/dr"}],"payload":[{"contentString":"question"}]}`, `"who":{"reference":"Patient/p1"}`},
		{"pat", "MedicationRequest", `{"resourceType":"MedicationRequest","status":"active","intent":"proposal","medicationCodeableConcept":{"text":"metformin"},"subject":{"reference":"Patient/p1"},"requester":{"reference":"Patient/p1"},"basedOn":[{"reference":"MedicationRequest/mr1"}]}`, `"code":"CREATE"`},
	}
	var mine, renewal string
	for _, a := range allowed {
		r := as(a.token, "POST", "/fhir/"+a.typ, a.body)
		if r.status != 201 || !strings.Contains(string(r.body), `"code":"patient","system":"`+access.AuthoredSystem+`"`) {
			t.Fatalf("%s creating a %s: %d %s", a.token, a.typ, r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		if mine == "" {
			mine = id
		}
		if a.typ == "MedicationRequest" {
			renewal = id
		}
		prov := as("staff", "GET", "/fhir/Provenance?target="+a.typ+"/"+id, "")
		if !strings.Contains(string(prov.body), a.provenance) || !strings.Contains(string(prov.body), a.typ+"/"+id+"/_history/1") {
			t.Errorf("Provenance of %s/%s: %s", a.typ, id, prov.body)
		}
	}
	// Refused, each with a 403 saying why; nothing is written.
	refused := []struct{ token, method, path, body, why string }{
		{"pat", "POST", "/fhir/Observation", strings.Replace(reading("Patient/p1"), "vital-signs", "laboratory", 1), "home reading"},
		{"pat", "POST", "/fhir/Observation", reading("Practitioner/dr"), "Observation.performer must be the token's user"},
		{"proxy", "POST", "/fhir/Observation", reading("Patient/p1"), "RelatedPerson/mum"},
		{"pat", "POST", "/fhir/MedicationRequest", `{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/p1"},"requester":{"reference":"Patient/p1"}}`, "intent proposal"},
		{"pat", "POST", "/fhir/Observation", strings.Replace(reading("Patient/p1"), `"code":"mg/dL"`, `"code":"mmol/L"`, 1), "valueQuantity in UCUM (mg/dL)"},
		{"pat", "POST", "/fhir/Observation", strings.Replace(reading("Patient/p1"), `"effectiveDateTime":"2026-11-30T07:30:00Z",`, "", 1), "says when it was taken"},
		{"pat", "POST", "/fhir/Observation", strings.Replace(reading("Patient/p1"), "2339-0", "2345-7", 1), "a vital sign coded in LOINC"},
		{"pat", "POST", "/fhir/Observation", bloodPressure("Patient/p1", false), "systolic (8480-6) and diastolic (8462-4)"},
		{"pat", "POST", "/fhir/Condition", `{"resourceType":"Condition","subject":{"reference":"Patient/p1"},"code":{"text":"x"}}`, "may not write Condition"},
		{"pat", "PUT", "/fhir/Observation/lab1", strings.Replace(reading("Patient/p1"), `{"resourceType":"Observation",`, `{"resourceType":"Observation","id":"lab1",`, 1), "written by the care team"},
		{"pat", "DELETE", "/fhir/Observation/lab1", "", "written by the care team"},
		{"pat", "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","gender":"male"}`, "may not write Patient"},
	}
	for _, r := range refused {
		got := as(r.token, r.method, r.path, r.body)
		if got.status != 403 || !strings.Contains(string(got.body), r.why) {
			t.Errorf("%s %s %s: %d %s, want 403 saying %q", r.token, r.method, r.path, got.status, got.body, r.why)
		}
	}
	// Staff deny the renewal request; the patient sees the answer.
	denied := as("staff", "GET", "/fhir/MedicationRequest/"+renewal, "")
	body := strings.Replace(string(denied.body), `"status":"active"`, `"status":"cancelled","statusReason":{"text":"Please book a visit first"}`, 1)
	if r := as("staff", "PUT", "/fhir/MedicationRequest/"+renewal, body); r.status != 200 {
		t.Fatalf("staff answering the renewal request: %d %s", r.status, r.body)
	}
	if r := as("pat", "GET", "/fhir/MedicationRequest?intent=proposal", ""); !strings.Contains(string(r.body), `"status":"cancelled"`) || !strings.Contains(string(r.body), "book a visit") {
		t.Errorf("the patient's view of the answer: %s", r.body)
	}
	// A renewal of a prescription that is not the patient's is a 400.
	if r := as("pat", "POST", "/fhir/MedicationRequest", `{"resourceType":"MedicationRequest","status":"active","intent":"proposal","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/p1"},"requester":{"reference":"Patient/p1"},"basedOn":[{"reference":"MedicationRequest/nope"}]}`); r.status != 400 || !strings.Contains(string(r.body), "is not one of this patient's") {
		t.Errorf("renewing an unknown prescription: %d %s", r.status, r.body)
	}
	if r := as("staff", "GET", "/fhir/Observation/lab1", ""); !strings.Contains(r.header.Get("ETag"), `"1"`) {
		t.Errorf("the care team's observation changed: %s", r.header.Get("ETag"))
	}
	// The patient changes and deletes what they wrote.
	if r := as("pat", "PUT", "/fhir/Observation/"+mine, strings.Replace(reading("Patient/p1"), `{"resourceType":"Observation",`, `{"resourceType":"Observation","id":"`+mine+`",`, 1)); r.status != 200 {
		t.Errorf("updating their own reading: %d %s", r.status, r.body)
	}
	if r := as("pat", "DELETE", "/fhir/Observation/"+mine, ""); r.status != 200 && r.status != 204 {
		t.Errorf("deleting their own reading: %d %s", r.status, r.body)
	}
	// Many readings in one batch; the clinician finds them as any other
	// vital signs.
	entries := make([]string, 50)
	for i := range entries {
		entries[i] = `{"resource":` + strings.Replace(reading("Patient/p1"), "104", fmt.Sprint(80+i), 1) + `,"request":{"method":"POST","url":"Observation"}}`
	}
	batch := as("pat", "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[`+strings.Join(entries, ",")+`]}`)
	if batch.status != 200 || strings.Count(string(batch.body), `"status":"201 Created"`) != 50 {
		t.Errorf("a batch of 50 readings: %d %.300s", batch.status, batch.body)
	}
	if r := as("staff", "GET", "/fhir/Observation?patient=p1&category=vital-signs&_tag="+access.AuthoredSystem+"|patient&_summary=count", ""); !strings.Contains(string(r.body), `"total":52`) { // 3 readings, one deleted, and 50
		t.Errorf("the clinician's search of patient-reported vital signs: %s", r.body)
	}
	// Staff write what they like.
	if r := as("staff", "POST", "/fhir/Condition", `{"resourceType":"Condition","subject":{"reference":"Patient/p1"},"code":{"text":"x"}}`); r.status != 201 {
		t.Errorf("staff writing a Condition: %d %s", r.status, r.body)
	}
}

// A patient's QuestionnaireResponse is checked against the questionnaire
// the clinic published: a mismatch is a 400 naming the item's linkId.
func TestQuestionnaireResponsesAreChecked(t *testing.T) { onEachBackend(t, questionnaireResponses) }

func questionnaireResponses(t *testing.T, st store.Store) {
	ts, _ := tokenServer(t, st, interact.Config{}, staffPatientProxy)
	do(t, ts, "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`, withToken("staff")...)
	if r := do(t, ts, "PUT", "/fhir/Questionnaire/intake", `{"resourceType":"Questionnaire","id":"intake","url":"http://clinic.example/q/intake","status":"active","item":[
		{"linkId":"smoke","type":"boolean","required":true},{"linkId":"packs","type":"integer","enableWhen":[{"question":"smoke","operator":"=","answerBoolean":true}]}]}`, withToken("staff")...); r.status != 201 {
		t.Fatalf("questionnaire: %d %s", r.status, r.body)
	}
	qr := func(ref, items string) string {
		if items != "" {
			items = `,"item":[` + items + `]`
		}
		return `{"resourceType":"QuestionnaireResponse","questionnaire":"` + ref + `","status":"completed","subject":{"reference":"Patient/p1"},"author":{"reference":"Patient/p1"}` + items + `}`
	}
	for _, c := range []struct{ name, body, says string }{
		{"required missing", qr("http://clinic.example/q/intake", ""), `item \"smoke\": is required`},
		{"disabled item answered", qr("http://clinic.example/q/intake", `{"linkId":"smoke","answer":[{"valueBoolean":false}]},{"linkId":"packs","answer":[{"valueInteger":3}]}`), `item \"packs\": is not enabled`},
		{"wrong type, by local reference", qr("Questionnaire/intake", `{"linkId":"smoke","answer":[{"valueInteger":1}]}`), `item \"smoke\": is a boolean question`},
	} {
		if r := do(t, ts, "POST", "/fhir/QuestionnaireResponse", c.body, withToken("pat")...); r.status != 400 || !strings.Contains(string(r.body), c.says) {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
	}
	if r := do(t, ts, "POST", "/fhir/QuestionnaireResponse", qr("http://clinic.example/q/intake|", `{"linkId":"smoke","answer":[{"valueBoolean":true}]},{"linkId":"packs","answer":[{"valueInteger":1}]}`), withToken("pat")...); r.status != 201 {
		t.Errorf("a valid response: %d %s", r.status, r.body)
	}
}

// Billing: the patient reads their own accounts, statements and claims;
// the paperless-billing preference is a Consent they write.
func TestBillingAndPaperlessPreference(t *testing.T) { onEachBackend(t, billing) }

func billing(t *testing.T, st store.Store) {
	ts, _ := tokenServer(t, st, interact.Config{}, staffPatientProxy)
	staff := func(method, path, body string) response { return do(t, ts, method, path, body, withToken("staff")...) }
	for _, r := range []struct{ path, body string }{
		{"/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`},
		{"/fhir/Patient/p2", `{"resourceType":"Patient","id":"p2"}`},
		{"/fhir/Account/acct1", `{"resourceType":"Account","id":"acct1","status":"active","subject":[{"reference":"Patient/p1"}],"name":"Guarantor account"}`},
		{"/fhir/Account/acct2", `{"resourceType":"Account","id":"acct2","status":"active","subject":[{"reference":"Patient/p2"}]}`},
		{"/fhir/Invoice/inv1", `{"resourceType":"Invoice","id":"inv1","status":"issued","subject":{"reference":"Patient/p1"},"account":{"reference":"Account/acct1"},"totalGross":{"value":120.5,"currency":"USD"}}`},
		{"/fhir/DocumentReference/stmt1", `{"resourceType":"DocumentReference","id":"stmt1","status":"current","type":{"text":"Billing statement"},"subject":{"reference":"Patient/p1"},"content":[{"attachment":{"contentType":"application/pdf","data":"JVBERi0xLjQK","title":"Statement November 2026"}}]}`},
	} {
		if got := staff("PUT", r.path, r.body); got.status != 201 {
			t.Fatalf("PUT %s: %d %s", r.path, got.status, got.body)
		}
	}
	for path, want := range map[string]int{"/fhir/Account/acct1": 200, "/fhir/Invoice/inv1": 200, "/fhir/DocumentReference/stmt1": 200, "/fhir/Account/acct2": 404} {
		if r := do(t, ts, "GET", path, "", withToken("pat")...); r.status != want {
			t.Errorf("patient reading %s: %d, want %d", path, r.status, want)
		}
	}
	paperless := `{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
		`"category":[{"coding":[{"system":"http://hearth-fhir.org/CodeSystem/preference","code":"paperless-billing"}]}],"patient":{"reference":"Patient/p1"},` +
		`"policyRule":{"text":"Statements by e-mail only"},"provision":{"type":"permit"}}`
	if r := do(t, ts, "POST", "/fhir/Consent", paperless, withToken("pat")...); r.status != 201 {
		t.Fatalf("the paperless preference: %d %s", r.status, r.body)
	}
	if r := staff("GET", "/fhir/Consent?patient=p1&category=http://hearth-fhir.org/CodeSystem/preference|paperless-billing&status=active", ""); !strings.Contains(string(r.body), `"total":1`) {
		t.Errorf("billing's search of paperless patients: %s", r.body)
	}
	if r := do(t, ts, "POST", "/fhir/Consent", strings.Replace(paperless, "Patient/p1", "Patient/p2", 1), withToken("pat")...); r.status != 403 {
		t.Errorf("a preference for another patient: %d %s", r.status, r.body)
	}
}

// Messages: the patient writes to the care team with an attachment, the
// clinician replies, the reply is in the patient's inbox and unread until
// the patient marks it read — the one change they may make to it.
func TestMessages(t *testing.T) { onEachBackend(t, messages) }

func messages(t *testing.T, st store.Store) {
	ts, _ := tokenServer(t, st, interact.Config{}, staffPatientProxy)
	pat := func(method, path, body string) response { return do(t, ts, method, path, body, withToken("pat")...) }
	do(t, ts, "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`, withToken("staff")...)
	msg := func(attachment string) string {
		return `{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/p1"},"sender":{"reference":"Patient/p1"},"recipient":[{"reference":"Practitioner/dr"}],` +
			`"sent":"2026-12-01T08:00:00Z","payload":[{"contentString":"My rash is back"}` + attachment + `]}`
	}
	photo := `,{"contentAttachment":{"contentType":"image/jpeg","data":"/9j/4AAQSkZJRg==","title":"rash.jpg"}}`
	r := pat("POST", "/fhir/Communication", msg(photo))
	if r.status != 201 {
		t.Fatalf("the patient's message: %d %s", r.status, r.body)
	}
	question := r.json(t)["id"].(string)
	for name, body := range map[string]string{
		"an executable": msg(`,{"contentAttachment":{"contentType":"application/x-msdownload","data":"TVo="}}`),
		"a link":        msg(`,{"contentAttachment":{"contentType":"image/jpeg","url":"http://elsewhere.example/x.jpg"}}`),
		"6 MB":          msg(`,{"contentAttachment":{"contentType":"application/pdf","data":"` + strings.Repeat("A", 8<<20) + `"}}`),
	} {
		if r := pat("POST", "/fhir/Communication", body); r.status != 403 {
			t.Errorf("an attachment that is %s: %d %.200s", name, r.status, r.body)
		}
	}
	reply := `{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/p1"},"sender":{"reference":"Practitioner/dr"},"recipient":[{"reference":"Patient/p1"}],` +
		`"inResponseTo":[{"reference":"Communication/` + question + `"}],"sent":"2026-12-01T10:00:00Z","payload":[{"contentString":"Please come in tomorrow"}]}`
	r = do(t, ts, "POST", "/fhir/Communication", reply, withToken("staff")...)
	if r.status != 201 {
		t.Fatalf("the reply: %d %s", r.status, r.body)
	}
	answer := r.json(t)["id"].(string)
	if got := ids(t, pat("GET", "/fhir/Communication?recipient=Patient/p1&received:missing=true", "")); got != "Communication/"+answer {
		t.Errorf("unread in the inbox: %q", got)
	}
	current := pat("GET", "/fhir/Communication/"+answer, "")
	edited := strings.Replace(string(current.body), "Please come in tomorrow", "Never mind", 1)
	if r := pat("PUT", "/fhir/Communication/"+answer, edited); r.status != 403 {
		t.Errorf("the patient editing the clinician's message: %d %s", r.status, r.body)
	}
	read := strings.Replace(string(current.body), `"sent":"2026-12-01T10:00:00Z"`, `"sent":"2026-12-01T10:00:00Z","received":"2026-12-01T12:00:00Z"`, 1)
	if r := pat("PUT", "/fhir/Communication/"+answer, read); r.status != 200 {
		t.Fatalf("marking the reply read: %d %s", r.status, r.body)
	}
	if got := ids(t, pat("GET", "/fhir/Communication?recipient=Patient/p1&received:missing=true", "")); got != "" {
		t.Errorf("unread after reading: %q", got)
	}
}
