package fhir

import (
	"net/url"
	"testing"
)

// FuzzParseSearch: any query string parses or is refused with a
// SearchError (never a panic, never another error), within the documented
// limits; what parses parses again, the same, from its canonical form.
func FuzzParseSearch(f *testing.F) {
	for _, q := range []string{
		"name=smith&birthdate=ge1980&_sort=-birthdate&_count=5",
		"code=http://loinc.org|8302-2&value-quantity=gt150|http://unitsofmeasure.org|cm&_include=Observation:subject",
		"subject:Patient.organization.name=General&_has:Provenance:target:agent=Practitioner/x",
		"_has:Observation:patient:_has:Provenance:target:agent=x",
		"code-value-quantity=http://loinc.org|8331-1$ne37.2&_total=accurate",
		"_id=a,b,c&_lastUpdated=ne2020-01-01&_summary=count",
		"identifier:not=urn:mrn|42&gender:missing=true&name:contains=ann&_elements=id,name",
		"date=sa2019-01-01T10:00:00Z&_security:not=http://x|R&_list=l1&_revinclude:iterate=*",
	} {
		f.Add("Observation", q)
		f.Add("Patient", q)
	}
	f.Fuzz(func(t *testing.T, typ, raw string) {
		if !IsResourceType(typ) {
			return
		}
		vals, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		opts := SearchOptions{DefaultCount: 10, MaxCount: 100, Strict: true}
		q, err := ParseSearch(typ, vals, opts)
		if err != nil {
			if _, ok := err.(*SearchError); !ok {
				t.Fatalf("%s?%s: error %T %v is not a SearchError", typ, raw, err, err)
			}
			return
		}
		if len(q.Params) > MaxConditions || len(q.Sort) > MaxSortKeys || len(q.Includes)+len(q.RevIncludes) > MaxIncludes {
			t.Fatalf("%s?%s: past the limits: %d params, %d sort keys", typ, raw, len(q.Params), len(q.Sort))
		}
		for _, p := range q.Params {
			if len(p.Values) > MaxValues {
				t.Fatalf("%s?%s: %d values", typ, raw, len(p.Values))
			}
		}
		again, err := ParseSearch(typ, q.Canonical, opts)
		if err != nil {
			t.Fatalf("%s?%s: the canonical form %s does not parse: %v", typ, raw, q.Canonical.Encode(), err)
		}
		if len(again.Params) != len(q.Params) || len(again.Sort) != len(q.Sort) {
			t.Fatalf("%s?%s: the canonical form parses differently", typ, raw)
		}
	})
}

// FuzzReferences: reference parsing and conditional-reference detection
// never panic, and a local Type/id reads back as itself.
func FuzzReferences(f *testing.F) {
	for _, r := range []string{"Patient/123", "Patient/123/_history/2", "http://example.org/fhir/Observation/x", "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
		"Organization?identifier=urn:org|O1", "#contained", "Patient?", "?x=1", "Patient/..", "http://hl7.org/fhir/ValueSet/x|4.0.1"} {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		k := ParseReference(ref)
		if k.Type != "" && k.ID != "" && ref == k.Type+"/"+k.ID && (!IsResourceType(k.Type) || !ValidID(k.ID)) {
			t.Fatalf("%q parsed to %s/%s, which is not a local reference", ref, k.Type, k.ID)
		}
		IsConditionalReference(ref)
	})
}
