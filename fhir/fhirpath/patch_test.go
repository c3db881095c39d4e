package fhirpath_test

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/hearth-fhir/hearth/fhir/fhirpath"
)

// The HL7 FHIRPath Patch test cases (testdata/patch/fhir-patch-tests.json,
// from FHIR/fhir-test-cases r4/patch): each input patched by its diff
// gives its output, or the error the case expects.
func TestHL7FHIRPathPatchSuite(t *testing.T) {
	raw, err := os.ReadFile("testdata/patch/fhir-patch-tests.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	passed := 0
	for _, c := range cases {
		var name string
		_ = json.Unmarshal(c["name"], &name)
		t.Run(name, func(t *testing.T) {
			input, diff := decodeJSON(t, c["input"]), decodeJSON(t, c["diff"])
			p, err := fhirpath.ParsePatch(diff)
			if err == nil {
				err = p.ApplyTo(input)
			}
			if _, wantError := c["error"]; wantError {
				if err == nil {
					t.Fatalf("want an error, got %v", input)
				}
				passed++
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(input)
			if want := decodeJSON(t, c["output"]); !reflect.DeepEqual(decodeJSON(t, got), want) {
				t.Fatalf("got  %s\nwant %s", got, c["output"])
			}
			passed++
		})
	}
	t.Logf("HL7 FHIRPath Patch suite: %d of %d cases pass", passed, len(cases))
}

func decodeJSON(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}
