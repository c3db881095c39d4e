package invariant_test

import (
	"testing"

	"github.com/hearth-fhir/hearth/fhir/fhirpath"
	"github.com/hearth-fhir/hearth/fhir/invariant"
)

// syntheaResource is the first resource of the given type in a Synthea
// bundle: real data of a typical size.
func syntheaResource(b *testing.B, typ string) map[string]any {
	b.Helper()
	bundle := decode(b, string(gunzip(b, "../../testdata/synthea-bundles/Abdul_Koepp_e925b0f3-8006-43f6-aa31-94bd215e55e7.json.gz")))
	for _, e := range bundle["entry"].([]any) {
		res := e.(map[string]any)["resource"].(map[string]any)
		if res["resourceType"] == typ {
			return res
		}
	}
	b.Fatalf("no %s", typ)
	return nil
}

// BenchmarkCheck is every invariant of a resource, as each write pays.
func BenchmarkCheck(b *testing.B) {
	for _, typ := range []string{"Patient", "Observation", "Encounter", "ExplanationOfBenefit"} {
		res := syntheaResource(b, typ)
		b.Run(typ, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				invariant.Check(res)
			}
		})
	}
}

// BenchmarkInvariant is one compiled invariant on a typical resource.
func BenchmarkInvariant(b *testing.B) {
	res := syntheaResource(b, "Patient")
	for _, tc := range []struct{ name, expr string }{
		{"pat-1", "contact.all(name.exists() or telecom.exists() or address.exists() or organization.exists())"},
		{"dom-3", "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()"},
	} {
		e, err := fhirpath.CompileR4(tc.expr)
		if err != nil {
			b.Fatal(err)
		}
		in := fhirpath.Collection{fhirpath.Resource(res)}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Predicate(in, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
