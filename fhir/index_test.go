package fhir

import (
	"strings"
	"testing"
	"unicode/utf8"
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

// TestNarrativeText: _text indexes the words of the narrative: markup
// dropped (a tag separates words), the common entities decoded, white space
// collapsed, case folded.
func TestNarrativeText(t *testing.T) {
	for div, want := range map[string]string{
		`<div xmlns="http://www.w3.org/1999/xhtml"><p>Severe  <b>Peanut</b>Allergy</p></div>`: "severe peanut allergy",
		`<div>Tom &amp; Jerry&nbsp;&lt;3 &gt; &quot;x&quot; &copy; a&b</div>`:                 "tom & jerry <3 > \"x\" &copy; a&b",
		"<div>\n\t line one<br/>line\u00a0two </div>":                                         "line one line two",
		`<div>a > b</div>`:       "a b",
		`<div></div>`:            "",
		`<div>Ærø Ünïcode</div>`: "ærø unicode",
	} {
		ix := Extract("Patient", map[string]any{"resourceType": "Patient", "text": map[string]any{"status": "generated", "div": div}})
		got := ""
		for _, s := range ix.Strings {
			if s.Param == "_text" {
				got = s.Norm
			}
		}
		if got != want {
			t.Errorf("%q: _text %q, want %q", div, got, want)
		}
	}
}

// TestNarrativeTextIsBounded: a narrative of megabytes indexes its first
// MaxNarrativeText bytes of words, cut between characters.
func TestNarrativeTextIsBounded(t *testing.T) {
	div := "<div>" + strings.Repeat("é ", 1<<20) + "</div>"
	got := narrativeText(div)
	if len(got) > MaxNarrativeText || len(got) < MaxNarrativeText-8 || !utf8.ValidString(got) || !strings.HasPrefix(got, "é é") {
		t.Errorf("narrative text of %d bytes (valid UTF-8: %v)", len(got), utf8.ValidString(got))
	}
}
