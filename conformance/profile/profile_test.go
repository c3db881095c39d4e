package profile_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/conformance/profile"
	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/fhir/invariant"
)

const usCore = "http://hl7.org/fhir/us/core/StructureDefinition/"

func registry(t *testing.T) *profile.Registry {
	t.Helper()
	r, err := profile.USCore()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func example(t *testing.T, name string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile("../kit/uscore/" + name)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

var examples = []struct{ file, profile string }{
	{"patient.json", "us-core-patient"},
	{"blood-pressure.json", "us-core-blood-pressure"},
	{"medicationrequest.json", "us-core-medicationrequest"},
	{"implantable-device.json", "us-core-implantable-device"},
}

// The examples conform: to R4 and to their US Core profile.
func TestUSCoreExamplesConform(t *testing.T) {
	reg := registry(t)
	for _, ex := range examples {
		res := example(t, ex.file)
		raw, _ := json.Marshal(res)
		if _, issues, err := fhir.Validate(raw); err != nil || len(issues) > 0 {
			t.Errorf("%s is not valid R4: %v %v", ex.file, err, issues)
		}
		if errs, _ := fhir.SplitIssues(invariant.Check(res)); len(errs) > 0 {
			t.Errorf("%s breaks R4 invariants: %v", ex.file, errs)
		}
		p := reg.Lookup(usCore + ex.profile)
		if p == nil {
			t.Fatalf("no profile %s", ex.profile)
		}
		if errs, _ := fhir.SplitIssues(p.Validate(res, reg.Lookup)); len(errs) > 0 {
			t.Errorf("%s does not conform to %s: %v", ex.file, ex.profile, errs)
		}
	}
}

// Each mutation breaks one rule of the profile, and the issue names the
// element where it is broken.
func TestUSCoreMutationsFail(t *testing.T) {
	reg := registry(t)
	cases := []struct {
		name, file, profile string
		mutate              func(m map[string]any)
		path, says          string
	}{
		{"gender missing (1..1)", "patient.json", "us-core-patient",
			func(m map[string]any) { delete(m, "gender") }, "Patient.gender", "minimum cardinality 1"},
		{"identifier without system", "patient.json", "us-core-patient",
			func(m map[string]any) { delete(m["identifier"].([]any)[0].(map[string]any), "system") }, "Patient.identifier[0].system", "minimum cardinality 1"},
		{"race without its text", "patient.json", "us-core-patient",
			func(m map[string]any) {
				race := m["extension"].([]any)[0].(map[string]any)
				race["extension"] = race["extension"].([]any)[:2]
			}, "Patient.extension[0].extension", "Extension.extension:text: minimum cardinality 1"},
		{"race category not a Coding", "patient.json", "us-core-patient",
			func(m map[string]any) {
				omb := m["extension"].([]any)[0].(map[string]any)["extension"].([]any)[0].(map[string]any)
				delete(omb, "valueCoding")
				omb["valueString"] = "White"
			}, "Patient.extension[0].extension[0].value", "type string is not allowed"},
		{"name with neither family nor given", "patient.json", "us-core-patient",
			func(m map[string]any) { m["name"] = []any{map[string]any{"text": "Amy"}} }, "Patient", "us-core-6"},
		{"no diastolic component", "blood-pressure.json", "us-core-blood-pressure",
			func(m map[string]any) { m["component"] = m["component"].([]any)[:1] }, "Observation.component", "diastolic: minimum cardinality 1"},
		{"systolic in the wrong unit", "blood-pressure.json", "us-core-blood-pressure",
			func(m map[string]any) {
				q := m["component"].([]any)[0].(map[string]any)["valueQuantity"].(map[string]any)
				q["code"] = "kPa"
			}, "Observation.component[0].value.code", "fixed value \"mm[Hg]\""},
		{"not a blood pressure code", "blood-pressure.json", "us-core-blood-pressure",
			func(m map[string]any) {
				m["code"] = map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "8867-4"}}}
			}, "Observation.code", "must match the pattern"},
		{"no vital-signs category", "blood-pressure.json", "us-core-blood-pressure",
			func(m map[string]any) {
				m["category"] = []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}}}}
			}, "Observation.category", "VSCat: minimum cardinality 1"},
		{"no effective time", "blood-pressure.json", "us-core-blood-pressure",
			func(m map[string]any) { delete(m, "effectiveDateTime") }, "Observation.effective", "minimum cardinality 1"},
		{"no requester", "medicationrequest.json", "us-core-medicationrequest",
			func(m map[string]any) { delete(m, "requester") }, "MedicationRequest.requester", "minimum cardinality 1"},
		{"no device type", "implantable-device.json", "us-core-implantable-device",
			func(m map[string]any) { delete(m, "type") }, "Device.type", "minimum cardinality 1"},
		{"two UDI carriers", "implantable-device.json", "us-core-implantable-device",
			func(m map[string]any) {
				u := m["udiCarrier"].([]any)
				m["udiCarrier"] = append(u, u[0])
			}, "Device.udiCarrier", "maximum cardinality 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := example(t, tc.file)
			tc.mutate(res)
			issues, _ := fhir.SplitIssues(reg.Lookup(usCore+tc.profile).Validate(res, reg.Lookup))
			for _, is := range issues {
				if is.Expression == tc.path && strings.Contains(is.Diagnostics, tc.says) {
					return
				}
			}
			t.Errorf("want an error at %s saying %q, got %v", tc.path, tc.says, issues)
		})
	}
}

// Must-support elements the instance lacks are reported as information.
func TestMustSupportIsInformation(t *testing.T) {
	reg := registry(t)
	res := example(t, "patient.json")
	delete(res, "birthDate")
	for _, is := range reg.Lookup(usCore+"us-core-patient").Validate(res, reg.Lookup) {
		if is.Severity == "information" && is.Expression == "Patient.birthDate" && strings.Contains(is.Diagnostics, "must-support") {
			return
		}
	}
	t.Error("no information about the absent must-support birthDate")
}
