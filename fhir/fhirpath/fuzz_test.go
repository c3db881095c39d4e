package fhirpath_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/hearth-fhir/hearth/fhir/fhirpath"
)

// FuzzFHIRPath compiles and evaluates arbitrary expressions on a patient:
// neither may panic, and an expression either compiles or is a
// SyntaxError. The HL7 suite's expressions are the seeds.
func FuzzFHIRPath(f *testing.F) {
	raw, err := os.ReadFile("testdata/tests-fhir-r4.json")
	if err != nil {
		f.Fatal(err)
	}
	var s suite
	if err := json.Unmarshal(raw, &s); err != nil {
		f.Fatal(err)
	}
	for _, g := range s.Groups {
		for _, tc := range g.Tests {
			f.Add(tc.Expression)
		}
	}
	patient := loadInput(f, "patient-example.json")
	f.Fuzz(func(t *testing.T, src string) {
		e, err := fhirpath.Compile(src)
		if err != nil {
			if _, ok := err.(*fhirpath.SyntaxError); !ok {
				t.Fatalf("compile error of type %T: %v", err, err)
			}
			return
		}
		_, _ = e.Evaluate(fhirpath.Collection{fhirpath.Resource(patient)}, nil)
	})
}
