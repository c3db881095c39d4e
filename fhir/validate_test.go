package fhir

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateReportsPathOfEachProblem(t *testing.T) {
	cases := []struct {
		name string
		body string
		want []string // "expression: fragment of diagnostics"
	}{
		{"valid patient", `{"resourceType":"Patient","id":"a.b-1","active":true,"gender":"female","birthDate":"1980-02-29","name":[{"family":"Doe","given":["J"]}],"_birthDate":{"extension":[{"url":"http://example.org/x","valueString":"y"}]}}`, nil},
		{"unknown element", `{"resourceType":"Patient","foo":1}`, []string{"Patient.foo: unknown element"}},
		{"wrong json type", `{"resourceType":"Patient","active":"true"}`, []string{"Patient.active: must be a JSON boolean"}},
		{"bad date", `{"resourceType":"Patient","birthDate":"1980-13-01"}`, []string{"Patient.birthDate: is not a valid date"}},
		{"impossible date", `{"resourceType":"Patient","birthDate":"1981-02-29"}`, []string{"Patient.birthDate: is not a real calendar date"}},
		{"bad instant", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"issued":"2020-01-01"}`, []string{"Observation.issued: is not a valid instant"}},
		{"bad decimal", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"1.5"}}`, []string{"Observation.valueQuantity.value: must be a JSON number"}},
		{"bad uri", `{"resourceType":"Patient","implicitRules":"a b"}`, []string{"Patient.implicitRules: is not a valid uri"}},
		{"bad code", `{"resourceType":"Patient","gender":"robot"}`, []string{"Patient.gender: code is not in the required value set"}},
		{"bad id", `{"resourceType":"Patient","id":"has space"}`, []string{"Patient.id: id must be"}},
		{"array for single", `{"resourceType":"Patient","gender":["male"]}`, []string{"Patient.gender: must be a single value"}},
		{"single for array", `{"resourceType":"Patient","name":{"family":"x"}}`, []string{"Patient.name: must be an array"}},
		{"required missing", `{"resourceType":"Observation","code":{"text":"x"}}`, []string{"Observation.status: required element is missing"}},
		{"unknown choice type", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueFoo":1}`, []string{"Observation.valueFoo: unknown element"}},
		{"contained resource", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"contained":[{"resourceType":"Patient","id":"p","gender":"x"}]}`, []string{"Observation.contained[0].gender: code is not in"}},
		{"contained resource without id", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","name":"x"}]}`, []string{"Patient.contained[0].id: a contained resource must have an id"}},
		// Required bindings on CodeableConcept and Coding.
		{"required CodeableConcept binding", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"sleeping"}]}}`,
			[]string{"Condition.clinicalStatus.coding[0].code: code is not in the required value set http://hl7.org/fhir/ValueSet/condition-clinical"}},
		{"required CodeableConcept binding, other system only", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://snomed.info/sct","code":"55561003"}]}}`,
			[]string{"Condition.clinicalStatus: a coding from the required value set"}},
		{"required CodeableConcept binding, text only", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"text":"active"}}`,
			[]string{"Condition.clinicalStatus: a coding from the required value set"}},
		{"required CodeableConcept binding with a translation", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://snomed.info/sct","code":"55561003"},{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"relapse"}]}}`, nil},
		{"backbone element", `{"resourceType":"Patient","contact":[{"gender":"x"}]}`, []string{"Patient.contact[0].gender: code is not in"}},
		{"recursive content reference", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"2","type":"nope"}]}]}`, []string{"Questionnaire.item[0].item[0].type: code is not in"}},
		{"unknown resource type", `{"resourceType":"Patinet"}`, []string{"resourceType: unknown resource type"}},
		{"empty string", `{"resourceType":"Patient","name":[{"family":""}]}`, []string{"Patient.name[0].family: must not be an empty string"}},
		{"primitive extension on non-primitive", `{"resourceType":"Patient","_name":{}}`, []string{"Patient._name: unknown element"}},
		{"integer range", `{"resourceType":"Patient","multipleBirthInteger":3000000000}`, []string{"Patient.multipleBirthInteger: is out of range"}},
		// A choice element is one element: one type of it.
		{"choice given twice", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1},"valueString":"x"}`,
			[]string{"Observation.valueString: valueQuantity and valueString are the one element value[x]"}},
		{"choice given twice (boolean, integer)", `{"resourceType":"Patient","multipleBirthBoolean":true,"multipleBirthInteger":2}`,
			[]string{"Patient.multipleBirthInteger: multipleBirthBoolean and multipleBirthInteger are the one element multipleBirth[x]"}},
		{"choice given twice (medication)", `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/p"},"medicationCodeableConcept":{"text":"x"},"medicationReference":{"reference":"Medication/m"}}`,
			[]string{"MedicationRequest.medicationReference: medicationCodeableConcept and medicationReference are the one element medication[x]"}},
		{"choice and another type's extension", `{"resourceType":"Patient","multipleBirthBoolean":true,"_multipleBirthInteger":{"id":"x"}}`,
			[]string{"Patient.multipleBirthBoolean: multipleBirthInteger and multipleBirthBoolean are the one element multipleBirth[x]"}},
		{"choice with its own extension", `{"resourceType":"Patient","multipleBirthBoolean":true,"_multipleBirthBoolean":{"id":"x"}}`, nil},
		{"primitive extension not an object", `{"resourceType":"Patient","birthDate":"2000-01-01","_birthDate":"x"}`, []string{"Patient._birthDate: must be a JSON object"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, issues, err := Validate([]byte(tc.body))
			if err != nil {
				t.Fatalf("parse error: %v", err)
			}
			if len(issues) != len(tc.want) {
				t.Fatalf("got %d issues %v, want %v", len(issues), issues, tc.want)
			}
			for i, want := range tc.want {
				if !strings.HasPrefix(issues[i].Error(), want) {
					t.Errorf("issue %d = %q, want prefix %q", i, issues[i].Error(), want)
				}
			}
		})
	}
}

func TestValidateDoesNotEchoValues(t *testing.T) {
	_, issues, _ := Validate([]byte(`{"resourceType":"Patient","gender":"SECRET-VALUE","birthDate":"SECRET-DATE"}`))
	for _, is := range issues {
		if strings.Contains(is.Error(), "SECRET") {
			t.Errorf("issue repeats the client's value: %q", is.Error())
		}
	}
}

func TestValidateRejectsNonJSON(t *testing.T) {
	for _, body := range []string{``, `[1]`, `{"a":`, `{} {}`, `"x"`} {
		_, _, err := Validate([]byte(body))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Validate(%q) err = %v, want ParseError", body, err)
		}
	}
}
