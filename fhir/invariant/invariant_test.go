package invariant_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/fhir/invariant"
)

func TestEveryInvariantCompiles(t *testing.T) {
	for key, err := range invariant.NotCompiled() {
		t.Errorf("%s: %v", key, err)
	}
}

func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The findings of the issue that asked for invariants: each resource is
// structurally valid and breaks one invariant, which Check names with the
// element's path.
func TestInvariantFindings(t *testing.T) {
	cases := []struct {
		name, key, path, body string
	}{
		{"ref-1 local reference to nothing contained", "ref-1", "Observation.subject",
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"#nobody"}}`},
		{"dom-2 nested contained", "dom-2", "Patient",
			`{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","contained":[{"resourceType":"Organization","id":"p"}]}],"managingOrganization":{"reference":"#o"}}`},
		{"dom-3 contained not referenced", "dom-3", "Patient",
			`{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"x"}]}`},
		{"dom-4 contained with versionId", "dom-4", "Patient",
			`{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","meta":{"versionId":"1"}}],"managingOrganization":{"reference":"#o"}}`},
		{"txt-1 script in the narrative", "txt-1", "Patient.text.div",
			`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script>x</div>"}}`},
		{"txt-1 event handler", "txt-1", "Patient.text.div",
			`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p onclick=\"x()\">hi</p></div>"}}`},
		{"ext-1 extension without a value", "ext-1", "Patient.extension[0]",
			`{"resourceType":"Patient","extension":[{"url":"http://example.org/x"}]}`},
		{"ext-1 value and nested extensions", "ext-1", "Patient.extension[0]",
			`{"resourceType":"Patient","extension":[{"url":"http://example.org/x","valueString":"a","extension":[{"url":"y","valueString":"b"}]}]}`},
		{"ext-1 on a primitive's extension", "ext-1", "Patient.birthDate.extension[0]",
			`{"resourceType":"Patient","birthDate":"1970-01-01","_birthDate":{"extension":[{"url":"http://example.org/x"}]}}`},
		{"per-1 end before start", "per-1", "Patient.name[0].period",
			`{"resourceType":"Patient","name":[{"family":"x","period":{"start":"2020-01-02","end":"2020-01-01"}}]}`},
		{"con-4 abated but active", "con-4", "Condition",
			`{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"abatementDateTime":"2020-01-01"}`},
		{"con-5 entered-in-error with a clinical status", "con-5", "Condition",
			`{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"entered-in-error"}]}}`},
		{"pat-1 contact with only a gender", "pat-1", "Patient.contact[0]",
			`{"resourceType":"Patient","contact":[{"gender":"female"}]}`},
		{"ras-2 probability over 100", "ras-2", "RiskAssessment.prediction[0]",
			`{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/1"},"prediction":[{"probabilityDecimal":101}]}`},
		{"qty-3 unit code without system", "qty-3", "Observation.value",
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1,"code":"mg"}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := decode(t, tc.body)
			if _, issues, err := fhir.Validate([]byte(tc.body)); err != nil || len(issues) > 0 {
				t.Fatalf("not structurally valid, so not a test of invariants: %v %v", err, issues)
			}
			issues := invariant.Check(res)
			for _, is := range issues {
				if strings.HasPrefix(is.Diagnostics, tc.key+":") && is.Expression == tc.path && is.Severity == "error" {
					return
				}
			}
			t.Errorf("want %s at %s, got %v", tc.key, tc.path, issues)
		})
	}
}

// The same resources made valid pass: an invariant that refuses
// everything would pass the findings above.
func TestValidResourcesPass(t *testing.T) {
	for _, body := range []string{
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"contained":[{"resourceType":"Patient","id":"p"}],"subject":{"reference":"#p"}}`,
		`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p><b>Hi</b> <a href=\"http://example.org\">x</a></p></div>"}}`,
		`{"resourceType":"Patient","extension":[{"url":"http://example.org/x","extension":[{"url":"y","valueString":"b"}]}]}`,
		`{"resourceType":"Patient","name":[{"family":"x","period":{"start":"2020-01-01","end":"2020-01-01T10:00:00Z"}}]}`,
		`{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"resolved"}]},"abatementDateTime":"2020-01-01"}`,
		`{"resourceType":"Patient","contact":[{"gender":"female","name":{"family":"x"}}]}`,
		`{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/1"},"prediction":[{"probabilityDecimal":99.5}]}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1,"system":"http://unitsofmeasure.org","code":"mg"}}`,
	} {
		for _, is := range invariant.Check(decode(t, body)) {
			if is.Severity == "error" {
				t.Errorf("%s: %v", body, is)
			}
		}
	}
}

// Every resource of the Synthea sample (20 patients' bundles) is valid:
// an invariant the engine gets wrong, or a binding checked too strictly,
// would refuse real data.
func TestSyntheaDataPassesInvariants(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/synthea-bundles/*.json.gz")
	if len(files) == 0 {
		t.Fatal("no Synthea bundles")
	}
	checked := 0
	for _, f := range files {
		raw := gunzip(t, f)
		bundle := decode(t, string(raw))
		for _, is := range invariant.Check(bundle) {
			if is.Severity == "error" {
				t.Errorf("%s: %v", filepath.Base(f), is)
			}
		}
		entries, _ := bundle["entry"].([]any)
		checked += len(entries)
		for _, e := range entries {
			res, _ := json.Marshal(e.(map[string]any)["resource"])
			if _, issues, err := fhir.Validate(res); err != nil || len(issues) > 0 {
				t.Errorf("%s: not valid: %v %v", filepath.Base(f), err, issues)
			}
		}
	}
	t.Logf("%d resources in %d bundles pass every invariant", checked, len(files))
}

func gunzip(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := io.Copy(&b, z); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
