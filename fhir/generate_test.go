package fhir

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates r4_gen.go from the definitions and
// fails if the committed file differs: generated code must be reproducible.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generator")
	}
	out := filepath.Join(t.TempDir(), "r4_gen.go")
	cmd := exec.Command("go", "run", "./internal/r4gen", "-in", "definitions", "-out", out)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("generator: %v", err)
	}
	want, err := os.ReadFile("r4_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("r4_gen.go is stale: run go generate ./fhir")
	}
}

func TestModelKnowsR4(t *testing.T) {
	// R4's 145 plus what the definitions package backports (SubscriptionStatus).
	if n := len(ResourceTypes()); n < 145 || n > 148 {
		t.Errorf("%d concrete resource types, want about R4's 145", n)
	}
	if IsResourceType("DomainResource") || !IsResourceType("Patient") {
		t.Error("abstract types must not count as resource types")
	}
	if e, ok := Element("Observation.value[x]"); !ok || len(e.Types) != 11 {
		t.Errorf("Observation.value[x] = %+v", e)
	}
	if e, ok := Element("Patient.gender"); !ok || e.ValueSet != "http://hl7.org/fhir/ValueSet/administrative-gender" {
		t.Errorf("Patient.gender binding = %+v", e)
	}
	if p, ok := LookupSearchParam("Observation", "code"); !ok || p.Type != "token" || !strings.Contains(p.Expression, "| Observation.code |") {
		t.Errorf("Observation code = %+v", p)
	}
	if p, ok := LookupSearchParam("Patient", "_id"); !ok || p.Type != "token" {
		t.Errorf("Patient _id = %+v", p)
	}
	if p, ok := LookupSearchParam("Patient", "race"); !ok || p.URL != "http://hl7.org/fhir/us/core/SearchParameter/us-core-race" {
		t.Errorf("US Core race = %+v", p)
	}
	if ps := PatientCompartmentParams("Observation"); len(ps) == 0 {
		t.Error("Observation is in the Patient compartment")
	}
	if ps := PatientCompartmentParams("Organization"); ps != nil {
		t.Errorf("Organization is not in the Patient compartment: %v", ps)
	}
}
