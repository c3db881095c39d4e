package access

import (
	"encoding/base64"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/smart/scopes"
)

// What a patient's or proxy's token may write: one table, enforced here
// for every write path (the guard's transaction writes) and printed in
// the README. The resource must belong to the token's patient's record
// alone (checked before, in writable). Everything a patient writes is
// marked as patient-authored (the door stamps AuthoredSystem|patient and
// records a Provenance); a patient never updates or deletes what a
// clinician wrote: only patient-authored resources.
//
// A type not in the table is refused for create, update and delete.

// AuthoredSystem tags what a patient or proxy wrote.
const (
	AuthoredSystem  = "http://hearth-fhir.org/CodeSystem/authored-by"
	AuthoredPatient = "patient"
)

type patientWrite struct {
	create, update, delete bool
	// author is the element that must name the token's user (fhirUser),
	// as a reference; "" when none does.
	author string
	// check is the type's own rule on the body, "" when it holds.
	check func(res map[string]any) string
}

// PatientWriteRule is one row of the table, as the README and the
// CapabilityStatement describe it.
type PatientWriteRule struct {
	Type                   string
	Create, Update, Delete bool
	Author                 string // the element that must name the user
	Rule                   string // the type's own rule, in words
}

var patientWrites = map[string]patientWrite{
	"Observation": {create: true, update: true, delete: true, author: "performer",
		check: func(res map[string]any) string {
			if !hasCoding(res["category"], "vital-signs", "survey") {
				return "a patient's Observation is a home reading: category vital-signs (or survey)"
			}
			if !slices.Contains([]string{"preliminary", "final", "amended", "entered-in-error"}, str(res, "status")) {
				return "a patient's Observation has status preliminary, final, amended or entered-in-error"
			}
			if hasCoding(res["category"], "vital-signs") {
				return vitalSignShape(res)
			}
			return ""
		}},
	"Communication": {create: true, update: true, author: "sender",
		check: func(res map[string]any) string {
			for _, r := range fhir.AsList(res["recipient"]) {
				ref, _ := r.(map[string]any)["reference"].(string)
				t := fhir.ParseReference(ref).Type
				if !slices.Contains([]string{"Practitioner", "PractitionerRole", "Organization", "CareTeam"}, t) {
					return "a patient's message goes to a Practitioner, PractitionerRole, Organization or CareTeam"
				}
			}
			return attachmentsAllowed(res)
		}},
	"QuestionnaireResponse": {create: true, update: true, delete: true, author: "author"},
	"Appointment": {create: true, update: true,
		check: func(res map[string]any) string {
			if !slices.Contains([]string{"proposed", "pending", "booked", "cancelled"}, str(res, "status")) {
				return "a patient's Appointment is proposed, pending, booked or cancelled"
			}
			return ""
		}},
	"MedicationRequest": {create: true, author: "requester",
		check: func(res map[string]any) string {
			if str(res, "intent") != "proposal" {
				return "a patient's MedicationRequest is a renewal request: intent proposal"
			}
			if len(fhir.AsList(res["basedOn"])) == 0 {
				return "a renewal request is basedOn the MedicationRequest it renews"
			}
			return ""
		}},
	"Task":    {create: true, update: true, author: "requester"},
	"Consent": {create: true, update: true},
}

// PatientWriteRules lists the table, by type.
func PatientWriteRules() []PatientWriteRule {
	var out []PatientWriteRule
	for typ, w := range patientWrites {
		out = append(out, PatientWriteRule{Type: typ, Create: w.create, Update: w.update, Delete: w.delete, Author: w.author, Rule: ruleText[typ]})
	}
	slices.SortFunc(out, func(a, b PatientWriteRule) int { return strings.Compare(a.Type, b.Type) })
	return out
}

var ruleText = map[string]string{
	"Observation":           "home readings: category vital-signs (a LOINC vital sign in its UCUM units, when taken) or survey; status preliminary, final, amended or entered-in-error",
	"Communication":         "messages to a Practitioner, PractitionerRole, Organization or CareTeam, attachments (PDF, image, text) at most 5 MB; the recipient may mark the care team's message read (received)",
	"QuestionnaireResponse": "",
	"Appointment":           "status proposed, pending, booked or cancelled",
	"MedicationRequest":     "renewal requests only: intent proposal, basedOn the MedicationRequest renewed",
	"Task":                  "",
	"Consent":               "preferences, such as paperless billing",
}

// patientMayWrite applies the table to a write of a patient-bound token:
// res is what is to be stored, decoded (nil for a delete), cur the current
// version (nil for a create).
func (p *Policy) patientMayWrite(typ string, perm scopes.Perm, res map[string]any, cur []byte) error {
	rule, ok := patientWrites[typ]
	switch {
	case !ok:
		return fmt.Errorf("a patient's or proxy's token may not write %s resources: %w", typ, ErrForbidden)
	case perm&scopes.Create != 0 && cur == nil && !rule.create,
		perm&scopes.Update != 0 && cur != nil && !rule.update,
		perm&scopes.Delete != 0 && !rule.delete:
		return fmt.Errorf("a patient's or proxy's token may not %s %s resources: %w", verb(perm, cur), typ, ErrForbidden)
	}
	if cur != nil {
		old, err := fhir.DecodeResource(cur)
		if err != nil {
			return err
		}
		if !PatientAuthored(old) {
			if typ == "Communication" && res != nil && p.marksRead(old, res) {
				return nil // the recipient saying a message was read
			}
			return fmt.Errorf("%s/%s was written by the care team; a patient's or proxy's token changes only what a patient wrote: %w", typ, str(old, "id"), ErrForbidden)
		}
	}
	if res == nil {
		return nil
	}
	if rule.author != "" && !names(res[rule.author], p.FHIRUser) {
		return fmt.Errorf("%s.%s must be the token's user, %s: %w", typ, rule.author, p.FHIRUser, ErrForbidden)
	}
	if rule.check != nil {
		if why := rule.check(res); why != "" {
			return fmt.Errorf("%s: %w", why, ErrForbidden)
		}
	}
	return nil
}

func verb(perm scopes.Perm, cur []byte) string {
	switch {
	case perm&scopes.Delete != 0:
		return "delete"
	case cur != nil:
		return "update"
	}
	return "create"
}

// PatientAuthored reports whether a resource carries the patient-authored
// tag.
func PatientAuthored(res map[string]any) bool {
	meta, _ := res["meta"].(map[string]any)
	for _, t := range fhir.AsList(meta["tag"]) {
		tm, _ := t.(map[string]any)
		if tm["system"] == AuthoredSystem && tm["code"] == AuthoredPatient {
			return true
		}
	}
	return false
}

// names reports whether a Reference (or a list of them) names user.
func names(v any, user string) bool {
	if user == "" {
		return false
	}
	for _, r := range fhir.AsList(v) {
		m, _ := r.(map[string]any)
		ref, _ := m["reference"].(string)
		if ref == user || strings.HasSuffix(ref, "/"+user) {
			return true
		}
	}
	return false
}

func hasCoding(v any, codes ...string) bool {
	for _, cc := range fhir.AsList(v) {
		m, _ := cc.(map[string]any)
		for _, c := range fhir.AsList(m["coding"]) {
			cm, _ := c.(map[string]any)
			if slices.Contains(codes, str(cm, "code")) {
				return true
			}
		}
	}
	return false
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// vitalSigns are the home readings a patient records, by LOINC code,
// with the UCUM units each is measured in: US Core's vital signs.
var vitalSigns = map[string][]string{
	"2339-0":  {"mg/dL"},              // glucose in blood
	"15074-8": {"mmol/L"},             // glucose in blood, molar
	"29463-7": {"kg", "g", "[lb_av]"}, // body weight
	"8302-2":  {"cm", "m", "[in_i]"},  // body height
	"39156-5": {"kg/m2"},              // body mass index
	"8867-4":  {"/min"},               // heart rate
	"9279-1":  {"/min"},               // respiratory rate
	"2708-6":  {"%"},                  // oxygen saturation in arterial blood
	"59408-5": {"%"},                  // oxygen saturation by pulse oximetry
	"8310-5":  {"Cel", "[degF]"},      // body temperature
	"85354-9": nil,                    // blood pressure panel: its components
}

// bloodPressure are the components of a blood pressure panel.
var bloodPressure = map[string]bool{"8480-6": true, "8462-4": true}

const loinc, ucum = "http://loinc.org", "http://unitsofmeasure.org"

// vitalSignShape checks a home reading the way US Core's vital signs
// shape them: a LOINC vital sign, measured when (effective[x]), a value in
// one of its UCUM units — or, for blood pressure, systolic and diastolic
// components in mm[Hg].
func vitalSignShape(res map[string]any) string {
	code, ok := loincCode(res["code"])
	units, known := vitalSigns[code]
	if !ok || !known {
		return "a home reading is a vital sign coded in LOINC (glucose, blood pressure, weight, height, BMI, heart or respiratory rate, SpO₂, temperature)"
	}
	if res["effectiveDateTime"] == nil && res["effectivePeriod"] == nil && res["effectiveInstant"] == nil {
		return "a home reading says when it was taken (effectiveDateTime)"
	}
	if code == "85354-9" {
		seen := map[string]bool{}
		for _, c := range fhir.AsList(res["component"]) {
			cm, _ := c.(map[string]any)
			cc, _ := loincCode(cm["code"])
			if !bloodPressure[cc] || !quantityIn(cm["valueQuantity"], "mm[Hg]") {
				return "a blood pressure reading has systolic (8480-6) and diastolic (8462-4) components in mm[Hg]"
			}
			seen[cc] = true
		}
		if len(seen) != 2 {
			return "a blood pressure reading has systolic (8480-6) and diastolic (8462-4) components in mm[Hg]"
		}
		return ""
	}
	if res["dataAbsentReason"] != nil {
		return ""
	}
	if !quantityIn(res["valueQuantity"], units...) {
		return fmt.Sprintf("a %s reading is a valueQuantity in UCUM (%s)", code, strings.Join(units, ", "))
	}
	return ""
}

func loincCode(cc any) (string, bool) {
	m, _ := cc.(map[string]any)
	for _, c := range fhir.AsList(m["coding"]) {
		cm, _ := c.(map[string]any)
		if str(cm, "system") == loinc {
			return str(cm, "code"), true
		}
	}
	return "", false
}

func quantityIn(q any, units ...string) bool {
	m, _ := q.(map[string]any)
	return m != nil && m["value"] != nil && str(m, "system") == ucum && slices.Contains(units, str(m, "code"))
}

// marksRead reports whether body is the care team's message old, sent to
// the token's patient or user, with only its received time added: how a
// patient marks a message read.
func (p *Policy) marksRead(old, res map[string]any) bool {
	if res["received"] == nil || old["received"] != nil {
		return false
	}
	if !names(old["recipient"], "Patient/"+p.Patient) && !names(old["recipient"], p.FHIRUser) {
		return false
	}
	// Compared without meta and received; res is the body about to be
	// stored, so it is not changed: copies of the top level are.
	strip := func(m map[string]any) map[string]any {
		c := maps.Clone(m)
		delete(c, "meta")
		delete(c, "received")
		return c
	}
	return reflect.DeepEqual(strip(old), strip(res))
}

// Attachments of a patient's message: what a portal accepts.
const maxAttachmentBytes = 5 << 20

var attachmentTypes = []string{"application/pdf", "image/jpeg", "image/png", "image/heic", "text/plain"}

// attachmentsAllowed: a message's attachments carry their data (no
// links elsewhere), of a type a portal accepts, at most 5 MB each.
func attachmentsAllowed(res map[string]any) string {
	for _, pl := range fhir.AsList(res["payload"]) {
		m, _ := pl.(map[string]any)
		a, ok := m["contentAttachment"].(map[string]any)
		if !ok {
			continue
		}
		data, _ := a["data"].(string)
		switch {
		case data == "":
			return "an attachment a patient sends carries its data"
		case !slices.Contains(attachmentTypes, str(a, "contentType")):
			return "an attachment is a PDF, a JPEG, PNG or HEIC image, or plain text"
		case base64.StdEncoding.DecodedLen(len(data)) > maxAttachmentBytes:
			return fmt.Sprintf("an attachment is at most %d MB", maxAttachmentBytes>>20)
		}
	}
	return ""
}
