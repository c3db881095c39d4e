package questionnaire_test

import (
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/fhir/questionnaire"
)

const phq = `{"resourceType":"Questionnaire","status":"active","item":[
 {"linkId":"smoke","type":"boolean","text":"Do you smoke?","required":true},
 {"linkId":"packs","type":"integer","text":"Packs a day","enableWhen":[{"question":"smoke","operator":"=","answerBoolean":true}],"required":true},
 {"linkId":"mood","type":"choice","required":true,"answerOption":[
   {"valueCoding":{"system":"http://loinc.org","code":"LA6568-5","display":"Not at all"}},
   {"valueCoding":{"system":"http://loinc.org","code":"LA6569-3","display":"Several days"}}]},
 {"linkId":"meds","type":"string","repeats":true},
 {"linkId":"contact","type":"group","item":[{"linkId":"phone","type":"string","required":true}]},
 {"linkId":"note","type":"display","text":"Thank you"}]}`

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	m, err := fhir.DecodeResource([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func response(status, items string) string {
	return `{"resourceType":"QuestionnaireResponse","status":"` + status + `","item":[` + items + `]}`
}

const (
	noSmoke = `{"linkId":"smoke","answer":[{"valueBoolean":false}]}`
	mood    = `{"linkId":"mood","answer":[{"valueCoding":{"system":"http://loinc.org","code":"LA6569-3"}}]}`
	contact = `{"linkId":"contact","item":[{"linkId":"phone","answer":[{"valueString":"555"}]}]}`
)

func TestValidate(t *testing.T) {
	q := decode(t, phq)
	cases := []struct {
		name, qr, path, says string
	}{
		{"complete and valid", response("completed", noSmoke+","+mood+","+contact+`,{"linkId":"meds","answer":[{"valueString":"a"},{"valueString":"b"}]}`), "", ""},
		{"in progress may leave required items out", response("in-progress", noSmoke), "", ""},
		{"enabled follow-up answered", response("completed", `{"linkId":"smoke","answer":[{"valueBoolean":true}]},{"linkId":"packs","answer":[{"valueInteger":2}]},`+mood+","+contact), "", ""},
		{"required missing", response("completed", noSmoke+","+contact), "QuestionnaireResponse", `item "mood": is required`},
		{"required follow-up missing", response("completed", `{"linkId":"smoke","answer":[{"valueBoolean":true}]},`+mood+","+contact), "QuestionnaireResponse", `item "packs": is required`},
		{"disabled item answered", response("completed", noSmoke+`,{"linkId":"packs","answer":[{"valueInteger":2}]},`+mood+","+contact), "QuestionnaireResponse.item[1]", `item "packs": is not enabled`},
		{"wrong answer type", response("completed", `{"linkId":"smoke","answer":[{"valueString":"no"}]},`+mood+","+contact), "QuestionnaireResponse.item[0].answer[0]", `item "smoke": is a boolean question; valueString`},
		{"not an answer option", response("completed", noSmoke+`,{"linkId":"mood","answer":[{"valueCoding":{"system":"http://loinc.org","code":"LA0000-0"}}]},`+contact), "QuestionnaireResponse.item[1].answer[0]", `item "mood": the answer is not one of`},
		{"two answers to one that does not repeat", response("completed", `{"linkId":"smoke","answer":[{"valueBoolean":false},{"valueBoolean":true}]},`+mood+","+contact), "QuestionnaireResponse.item[0].answer[1]", `item "smoke": does not repeat`},
		{"unknown item", response("completed", noSmoke+","+mood+","+contact+`,{"linkId":"bogus","answer":[{"valueString":"x"}]}`), "QuestionnaireResponse.item[3]", `item "bogus": is not an item`},
		{"nested required missing", response("completed", noSmoke+","+mood+`,{"linkId":"contact","item":[]}`), "QuestionnaireResponse.item[2]", `item "phone": is required`},
		{"display answered", response("completed", noSmoke+","+mood+","+contact+`,{"linkId":"note","answer":[{"valueString":"x"}]}`), "QuestionnaireResponse.item[3]", `item "note": is a display`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			issues := questionnaire.Validate(q, decode(t, tc.qr))
			if tc.says == "" {
				if len(issues) > 0 {
					t.Errorf("want no issues, got %v", issues)
				}
				return
			}
			for _, is := range issues {
				if is.Expression == tc.path && strings.Contains(is.Diagnostics, tc.says) {
					return
				}
			}
			t.Errorf("want %q at %s, got %v", tc.says, tc.path, issues)
		})
	}
}
