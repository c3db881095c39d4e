package fhir

import (
	"testing"
)

func TestExtractTokens(t *testing.T) {
	body := `{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}]},"identifier":[{"system":"urn:s","value":"v1"}],"valueCodeableConcept":{"coding":[{"system":"urn:x","code":"pos"}]},"subject":{"reference":"Patient/1"}}`
	res, err := DecodeResource([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	got := map[TokenKey]bool{}
	for _, k := range ExtractTokens("Observation", res) {
		got[k] = true
	}
	for _, want := range []TokenKey{
		{"category", "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", ""},
		{"code", "http://loinc.org", "2339-0", ""},
		{"combo-code", "http://loinc.org", "2339-0", ""},
		{"identifier", "urn:s", "v1", ""},
		{"status", "http://hl7.org/fhir/observation-status", "final", ""},
		{"value-concept", "urn:x", "pos", ""},
	} {
		if !got[want] {
			t.Errorf("missing %+v in %v", want, got)
		}
	}
}

func TestEveryBaseExpressionCompilesOrIsRefused(t *testing.T) {
	n, failed := 0, 0
	for _, p := range generatedSearchParams {
		if p.Expression == "" {
			continue
		}
		n++
		if _, err := compilePath(p.Expression); err != nil {
			failed++
		}
	}
	// Most expressions are plain paths; the few that are not are refused,
	// never evaluated wrongly. This guards against a parser regression.
	if failed*10 > n {
		t.Errorf("%d of %d search expressions unsupported", failed, n)
	}
	t.Logf("%d of %d search expressions supported", n-failed, n)
}
