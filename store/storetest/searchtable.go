package storetest

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// searchFixtures are the resources the search table runs against. Each
// exercises a parameter type, modifier or prefix; ids say what they are.
var searchFixtures = []string{
	`{"resourceType":"Patient","id":"pat-a","meta":{"tag":[{"system":"urn:tag","code":"vip"}],"profile":["http://example.org/StructureDefinition/p1"]},
	  "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Anna <b>Müller</b></div>"},
	  "identifier":[{"system":"urn:mrn","value":"A1"}],"active":true,"name":[{"family":"Müller","given":["Anna"]}],
	  "telecom":[{"system":"phone","value":"555-0001"}],"gender":"female","birthDate":"1980-05-14","deceasedBoolean":false,
	  "address":[{"city":"Boston"}],"generalPractitioner":[{"reference":"Practitioner/doc-1"}],"managingOrganization":{"reference":"Organization/org-1"}}`,
	`{"resourceType":"Patient","id":"pat-b","identifier":[{"system":"urn:mrn","value":"B2"},{"system":"urn:other","value":"X"}],
	  "name":[{"family":"Mueller","given":["Bob"]}],"gender":"male","birthDate":"1980","deceasedDateTime":"2020-01-01",
	  "address":[{"city":"Bostonia"}],"generalPractitioner":[{"reference":"Practitioner/doc-2"}]}`,
	`{"resourceType":"Patient","id":"pat-c","name":[{"family":"Smith","given":["Carol"]}],"gender":"other","birthDate":"2001-12-31",
	  "managingOrganization":{"reference":"Organization/org-2"}}`,
	`{"resourceType":"Practitioner","id":"doc-1","name":[{"family":"House","given":["Gregory"]}]}`,
	`{"resourceType":"Practitioner","id":"doc-2","name":[{"family":"Wilson"}]}`,
	`{"resourceType":"Organization","id":"org-1","name":"General Hospital","identifier":[{"system":"urn:org","value":"G1"}],"partOf":{"reference":"Organization/org-2"}}`,
	`{"resourceType":"Organization","id":"org-2","name":"Health System"}`,
	`{"resourceType":"Observation","id":"obs-1","status":"final","subject":{"reference":"Patient/pat-a"},"performer":[{"reference":"Practitioner/doc-1"}],
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
	  "code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic blood pressure"}]},
	  "effectiveDateTime":"2020-01-15T10:00:00Z","valueQuantity":{"value":120,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}`,
	`{"resourceType":"Observation","id":"obs-2","status":"preliminary","subject":{"reference":"Patient/pat-a"},
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
	  "code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}],"text":"Glucose"},
	  "effectivePeriod":{"start":"2020-02-01","end":"2020-02-03"},"valueQuantity":{"value":5.4,"unit":"mmol/L"}}`,
	`{"resourceType":"Observation","id":"obs-3","status":"final","subject":{"reference":"Patient/pat-b"},
	  "code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"effectiveDateTime":"2021-06-01",
	  "valueQuantity":{"value":150,"system":"http://unitsofmeasure.org","code":"mm[Hg]"},
	  "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":95,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`,
	`{"resourceType":"Observation","id":"obs-4","status":"final","subject":{"reference":"Patient/pat-c"},
	  "code":{"coding":[{"code":"x1"}]},"effectiveDateTime":"2019","valueString":"Positive result"}`,
	`{"resourceType":"Observation","id":"obs-5","status":"amended","subject":{"reference":"Patient/pat-b"},
	  "code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"effectiveDateTime":"2022-03-03T09:30:00+02:00",
	  "valueQuantity":{"value":100.5,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}`,
	`{"resourceType":"Observation","id":"obs-ext","status":"final","code":{"coding":[{"system":"urn:ext","code":"e"}]},"subject":{"reference":"http://elsewhere.example/fhir/Patient/pat-a"}}`,
	`{"resourceType":"Encounter","id":"enc-1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/pat-a"},"period":{"start":"2020-01-15"}}`,
	`{"resourceType":"List","id":"list-1","status":"current","mode":"working","entry":[{"item":{"reference":"Observation/obs-1"}},{"item":{"reference":"Observation/obs-3"}}]}`,
	`{"resourceType":"RiskAssessment","id":"ra-1","status":"final","subject":{"reference":"Patient/pat-a"},"prediction":[{"probabilityDecimal":0.8}]}`,
	`{"resourceType":"RiskAssessment","id":"ra-2","status":"final","subject":{"reference":"Patient/pat-b"},"prediction":[{"probabilityDecimal":0.25}]}`,
	`{"resourceType":"ValueSet","id":"vs-1","url":"http://example.org/fhir/ValueSet/a","status":"draft"}`,
	`{"resourceType":"ValueSet","id":"vs-2","url":"http://example.org/fhir/ValueSet/b/sub","status":"draft"}`,
	`{"resourceType":"Provenance","id":"prov-1","target":[{"reference":"Observation/obs-1"}],"recorded":"2020-01-15T10:00:00Z","agent":[{"who":{"reference":"Practitioner/doc-1"}}]}`,
}

// SearchCase is one row of the search table: a query and the ids it must
// return (in order when Ordered), or an error.
type SearchCase struct {
	Type        string
	Query       string
	Compartment string
	Want        []string
	Ordered     bool
	WantErr     bool
}

// SearchTable covers every parameter type, modifier and prefix Hearth
// supports; every backend must return exactly these ids.
var SearchTable = []SearchCase{
	// string: case- and accent-insensitive prefix; :exact; :contains; OR; AND; :missing
	{Type: "Patient", Query: "name=mul", Want: []string{"pat-a"}},
	{Type: "Patient", Query: "name=MÜLLER", Want: []string{"pat-a"}},
	{Type: "Patient", Query: "name=mu", Want: []string{"pat-a", "pat-b"}},
	{Type: "Patient", Query: "family:exact=Müller", Want: []string{"pat-a"}},
	{Type: "Patient", Query: "family:exact=müller", Want: nil},
	{Type: "Patient", Query: "name:contains=ell", Want: []string{"pat-b"}},
	{Type: "Patient", Query: "address-city=boston", Want: []string{"pat-a", "pat-b"}},
	{Type: "Patient", Query: "given=anna,carol", Want: []string{"pat-a", "pat-c"}},
	{Type: "Patient", Query: "name=mu&gender=male", Want: []string{"pat-b"}},
	{Type: "Patient", Query: "address:missing=true", Want: []string{"pat-c"}},
	{Type: "Patient", Query: "address:missing=false", Want: []string{"pat-a", "pat-b"}},
	{Type: "Organization", Query: "name=general", Want: []string{"org-1"}},
	// token: system|code, code, system|, |code, :not, :text, implicit code systems
	{Type: "Patient", Query: "identifier=urn:mrn|A1", Want: []string{"pat-a"}},
	{Type: "Patient", Query: "identifier=B2", Want: []string{"pat-b"}},
	{Type: "Patient", Query: "identifier=urn:mrn|", Want: []string{"pat-a", "pat-b"}},
	{Type: "Patient", Query: "identifier=|X", Want: nil},
	{Type: "Observation", Query: "code=|x1", Want: []string{"obs-4"}},
	{Type: "Patient", Query: "gender=female", Want: []string{"pat-a"}},
	{Type: "Patient", Query: "gender=http://hl7.org/fhir/administrative-gender|male", Want: []string{"pat-b"}},
	{Type: "Patient", Query: "gender:not=male", Want: []string{"pat-a", "pat-c"}},
	{Type: "Patient", Query: "active=true", Want: []string{"pat-a"}},
	{Type: "Patient", Query: "telecom=555-0001", Want: []string{"pat-a"}},
	{Type: "Observation", Query: "code=http://loinc.org|8480-6", Want: []string{"obs-1", "obs-3", "obs-5"}},
	{Type: "Observation", Query: "code:text=gluc", Want: []string{"obs-2"}},
	{Type: "Observation", Query: "code:text=pressure", Want: []string{"obs-1"}},
	{Type: "Observation", Query: "status=final,amended", Want: []string{"obs-1", "obs-3", "obs-4", "obs-5", "obs-ext"}},
	{Type: "Observation", Query: "category=laboratory", Want: []string{"obs-2"}},
	{Type: "Observation", Query: "code=8480-6&status:not=final", Want: []string{"obs-5"}},
	{Type: "Observation", Query: "status:not=final,amended", Want: []string{"obs-2"}},
	{Type: "Patient", Query: "_tag=urn:tag|vip", Want: []string{"pat-a"}},
	{Type: "Patient", Query: "_id=pat-a,pat-c", Want: []string{"pat-a", "pat-c"}},
	{Type: "Patient", Query: "_id:not=pat-a", Want: []string{"pat-b", "pat-c"}},
	// reference: Type/id, id, :Type, absolute URL, :missing, :identifier
	{Type: "Observation", Query: "subject=Patient/pat-a", Want: []string{"obs-1", "obs-2"}},
	{Type: "Observation", Query: "subject=pat-b", Want: []string{"obs-3", "obs-5"}},
	{Type: "Observation", Query: "patient=pat-c", Want: []string{"obs-4"}},
	{Type: "Observation", Query: "subject:Patient=pat-a", Want: []string{"obs-1", "obs-2"}},
	{Type: "Observation", Query: "subject=http://elsewhere.example/fhir/Patient/pat-a", Want: []string{"obs-ext"}},
	{Type: "Observation", Query: "code=urn:ext|e&subject=pat-a", Want: nil},
	// a token anchored on one patient (driven by the patient's own keys)
	{Type: "Observation", Query: "patient=pat-b&code=http://loinc.org|8480-6", Want: []string{"obs-3", "obs-5"}},
	{Type: "Observation", Query: "subject=Patient/pat-a&code=8480-6,urn:ext|e", Want: []string{"obs-1"}},
	{Type: "Observation", Query: "subject:Patient=pat-a&status=preliminary", Want: []string{"obs-2"}},
	{Type: "Observation", Query: "performer=Practitioner/doc-1&code=8480-6", Want: []string{"obs-1"}},
	{Type: "Observation", Query: "status=final", Compartment: "pat-b", Want: []string{"obs-3"}},
	{Type: "Observation", Query: "code=urn:ext|e", Compartment: "pat-a", Want: nil},
	{Type: "Observation", Query: "performer:missing=true", Want: []string{"obs-2", "obs-3", "obs-4", "obs-5", "obs-ext"}},
	{Type: "Organization", Query: "partof=Organization/org-2", Want: []string{"org-1"}},
	// chains, several levels
	{Type: "Observation", Query: "subject.name=smith", Want: []string{"obs-4"}},
	{Type: "Observation", Query: "subject:Patient.gender=male", Want: []string{"obs-3", "obs-5"}},
	{Type: "Observation", Query: "subject:Patient.organization.name=health", Want: []string{"obs-4"}},
	{Type: "Observation", Query: "subject:Patient.general-practitioner.name=house", Want: []string{"obs-1", "obs-2"}},
	{Type: "Patient", Query: "organization.partof.name=health", Want: []string{"pat-a"}},
	// reverse chains, nested
	{Type: "Patient", Query: "_has:Observation:patient:code=8480-6", Want: []string{"pat-a", "pat-b"}},
	{Type: "Patient", Query: "_has:Observation:subject:_has:List:item:_id=list-1", Want: []string{"pat-a", "pat-b"}},
	{Type: "Practitioner", Query: "_has:Observation:performer:status=final", Want: []string{"doc-1"}},
	// date: precision ranges and every prefix
	{Type: "Patient", Query: "birthdate=1980", Want: []string{"pat-a", "pat-b"}},
	{Type: "Patient", Query: "birthdate=1980-05", Want: []string{"pat-a"}},
	{Type: "Patient", Query: "birthdate=gt1980-06", Want: []string{"pat-b", "pat-c"}},
	{Type: "Patient", Query: "birthdate=lt1980-06", Want: []string{"pat-a", "pat-b"}},
	{Type: "Patient", Query: "birthdate=ge2001-12-31", Want: []string{"pat-c"}},
	{Type: "Patient", Query: "birthdate=le1980-05-14", Want: []string{"pat-a", "pat-b"}},
	{Type: "Patient", Query: "birthdate=sa1999", Want: []string{"pat-c"}},
	{Type: "Patient", Query: "birthdate=eb1981", Want: []string{"pat-a", "pat-b"}},
	{Type: "Patient", Query: "birthdate=ne1980", Want: []string{"pat-c"}},
	{Type: "Patient", Query: "birthdate=ge1980&birthdate=le1980", Want: []string{"pat-a", "pat-b"}},
	{Type: "Patient", Query: "death-date=2020", Want: []string{"pat-b"}},
	{Type: "Observation", Query: "date=2020-02-02", Want: nil},
	{Type: "Observation", Query: "date=2020-02", Want: []string{"obs-2"}},
	{Type: "Observation", Query: "date=ge2020-02-02", Want: []string{"obs-2", "obs-3", "obs-5"}},
	{Type: "Observation", Query: "date=2022-03-03T07:30:00Z", Want: []string{"obs-5"}},
	{Type: "Observation", Query: "date=2022-03-03T09:30:00+02:00", Want: []string{"obs-5"}},
	{Type: "Encounter", Query: "date=ge2030", Want: []string{"enc-1"}},
	{Type: "Patient", Query: "_lastUpdated=gt2000-01-01", Want: []string{"pat-a", "pat-b", "pat-c"}},
	{Type: "Patient", Query: "_lastUpdated=lt2000-01-01", Want: nil},
	// number: precision of the search value
	{Type: "RiskAssessment", Query: "probability=0.8", Want: []string{"ra-1"}},
	{Type: "RiskAssessment", Query: "probability=gt0.5", Want: []string{"ra-1"}},
	{Type: "RiskAssessment", Query: "probability=lt0.5", Want: []string{"ra-2"}},
	{Type: "RiskAssessment", Query: "probability=0.3", Want: []string{"ra-2"}},
	{Type: "RiskAssessment", Query: "probability=0.30", Want: nil},
	{Type: "RiskAssessment", Query: "probability=ne0.8", Want: []string{"ra-2"}},
	{Type: "RiskAssessment", Query: "probability=ge0.25,le0.1", Want: []string{"ra-1", "ra-2"}},
	// quantity: value with prefixes, system|code, ||unit, exponent precision, ap
	{Type: "Observation", Query: "value-quantity=120", Want: []string{"obs-1"}},
	{Type: "Observation", Query: "value-quantity=gt100", Want: []string{"obs-1", "obs-3", "obs-5"}},
	{Type: "Observation", Query: "value-quantity=120|http://unitsofmeasure.org|mm[Hg]", Want: []string{"obs-1"}},
	{Type: "Observation", Query: "value-quantity=5.4||mmol/L", Want: []string{"obs-2"}},
	{Type: "Observation", Query: "value-quantity=lt10|http://unitsofmeasure.org|mm[Hg]", Want: nil},
	{Type: "Observation", Query: "value-quantity=1e2", Want: []string{"obs-1", "obs-5"}},
	{Type: "Observation", Query: "value-quantity=ap110", Want: []string{"obs-1", "obs-5"}},
	// uri: exact, :below, :above
	{Type: "ValueSet", Query: "url=http://example.org/fhir/ValueSet/a", Want: []string{"vs-1"}},
	{Type: "ValueSet", Query: "url:below=http://example.org/fhir/ValueSet", Want: []string{"vs-1", "vs-2"}},
	{Type: "ValueSet", Query: "url:above=http://example.org/fhir/ValueSet/b/sub/deeper", Want: []string{"vs-2"}},
	{Type: "Patient", Query: "_profile=http://example.org/StructureDefinition/p1", Want: []string{"pat-a"}},
	// composite
	{Type: "Observation", Query: "code-value-quantity=http://loinc.org|8480-6$gt130", Want: []string{"obs-3"}},
	{Type: "Observation", Query: "code-value-quantity=8480-6$lt100", Want: nil},
	// ne applies to the number alone: within the unit, within the
	// composite's first part; a resource with one value has that one
	// unequal.
	{Type: "Observation", Query: "value-quantity=ne120|http://unitsofmeasure.org|mm[Hg]", Want: []string{"obs-3", "obs-5"}},
	{Type: "Observation", Query: "value-quantity=ne5.4||mmol/L", Want: nil},
	{Type: "Observation", Query: "value-quantity=ne120", Want: []string{"obs-2", "obs-3", "obs-5"}},
	{Type: "Observation", Query: "code-value-quantity=http://loinc.org|8480-6$ne120", Want: []string{"obs-3", "obs-5"}},
	{Type: "Observation", Query: "code-value-quantity=8480-6$ne150", Want: []string{"obs-1", "obs-5"}},
	{Type: "Observation", Query: "_lastUpdated=ne2020-01-01", Want: []string{"obs-1", "obs-2", "obs-3", "obs-4", "obs-5", "obs-ext"}},
	{Type: "Observation", Query: "_lastUpdated=ne2020-01-01&_lastUpdated=lt2021", Want: nil},
	{Type: "Observation", Query: "component-code-value-quantity=8462-4$95", Want: []string{"obs-3"}},
	{Type: "Observation", Query: "combo-code-value-quantity=8462-4$lt100", Want: []string{"obs-3"}},
	{Type: "Observation", Query: "code-value-string=x1$positive", Want: []string{"obs-4"}},
	// _text, _content, _list
	{Type: "Patient", Query: "_text=anna", Want: []string{"pat-a"}},
	{Type: "Observation", Query: "_content=positive", Want: []string{"obs-4"}},
	{Type: "Observation", Query: "_list=list-1", Want: []string{"obs-1", "obs-3"}},
	// _sort, several keys, descending; resources without a value last
	{Type: "Patient", Query: "_sort=birthdate", Want: []string{"pat-b", "pat-a", "pat-c"}, Ordered: true},
	{Type: "Patient", Query: "_sort=-birthdate", Want: []string{"pat-c", "pat-b", "pat-a"}, Ordered: true},
	{Type: "Patient", Query: "_sort=family", Want: []string{"pat-b", "pat-a", "pat-c"}, Ordered: true},
	{Type: "Patient", Query: "_sort=gender,-_id", Want: []string{"pat-a", "pat-b", "pat-c"}, Ordered: true},
	{Type: "Observation", Query: "_sort=-value-quantity", Want: []string{"obs-3", "obs-1", "obs-5", "obs-2", "obs-4", "obs-ext"}, Ordered: true},
	{Type: "Observation", Query: "_sort=date", Want: []string{"obs-4", "obs-1", "obs-2", "obs-3", "obs-5", "obs-ext"}, Ordered: true},
	{Type: "Observation", Query: "_sort=status,-date", Want: []string{"obs-5", "obs-3", "obs-1", "obs-4", "obs-ext", "obs-2"}, Ordered: true},
	// compartments
	{Type: "Observation", Compartment: "pat-a", Want: []string{"obs-1", "obs-2"}},
	{Type: "Observation", Query: "code=8480-6", Compartment: "pat-b", Want: []string{"obs-3", "obs-5"}},
	{Type: "Encounter", Compartment: "pat-a", Want: []string{"enc-1"}},
	{Type: "Patient", Compartment: "pat-a", Want: []string{"pat-a"}},
	{Type: "Practitioner", Compartment: "pat-a", Want: nil},
	// in any patient's compartment (a bulk export of all patients)
	{Type: "Observation", Compartment: fhir.AnyCompartment, Want: []string{"obs-1", "obs-2", "obs-3", "obs-4", "obs-5"}}, // not obs-ext: its patient is elsewhere
	{Type: "Observation", Query: "status=final", Compartment: fhir.AnyCompartment, Want: []string{"obs-1", "obs-3", "obs-4"}},
	{Type: "Practitioner", Compartment: fhir.AnyCompartment, Want: nil},
	// malformed or unsupported: refused, never answered wrongly
	{Type: "Patient", Query: "birthdate=notadate", WantErr: true},
	{Type: "Patient", Query: "foo=1", WantErr: true},
	{Type: "Patient", Query: "name:below=x", WantErr: true},
	{Type: "Observation", Query: "value-quantity=abc", WantErr: true},
	{Type: "Observation", Query: "subject=Foo/1", WantErr: true},
	{Type: "Observation", Query: "code:in=http://example.org/vs", WantErr: true},
	{Type: "Patient", Query: "_sort=nonsense", WantErr: true},
	{Type: "Patient", Query: "_filter=name eq x", WantErr: true},
	{Type: "Patient", Query: "_id:missing=true", WantErr: true},
	{Type: "Patient", Query: "_lastUpdated:missing=true", WantErr: true},
}

// loadSearchFixtures writes each fixture in its own transaction, so that a
// backend without multi-document transactions (MongoDB without a replica
// set) loads them too.
func loadSearchFixtures(t *testing.T, s store.Store) {
	t.Helper()
	for _, f := range searchFixtures {
		typ, id, err := fhir.ResourceHeader([]byte(f))
		if err != nil {
			t.Fatalf("fixture: %v", err)
		}
		err = s.Transact(ctx, func(tx store.Tx) error {
			_, _, err := tx.Update(ctx, store.Write{Type: typ, ID: id, Body: []byte(f)})
			return err
		})
		if err != nil {
			t.Fatalf("fixture %s/%s: %v", typ, id, err)
		}
	}
}

func testSearchTable(t *testing.T, s store.Store) {
	loadSearchFixtures(t, s)
	for _, tc := range SearchTable {
		name := tc.Type + "?" + tc.Query
		if tc.Compartment != "" {
			name = "Patient/" + tc.Compartment + "/" + name
		}
		t.Run(name, func(t *testing.T) {
			vals, err := url.ParseQuery(tc.Query)
			if err != nil {
				t.Fatal(err)
			}
			q, err := fhir.ParseSearch(tc.Type, vals, fhir.SearchOptions{DefaultCount: 100, MaxCount: 100, Strict: true})
			if err == nil {
				q.Compartment = tc.Compartment
			}
			var ids []string
			if err == nil {
				ids, err = s.SearchIDs(context.Background(), q, "", 0)
			}
			if tc.WantErr {
				if err == nil {
					t.Fatalf("want an error, got %v", ids)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.Ordered {
				ids = sortedCopy(ids)
			}
			if strings.Join(ids, ",") != strings.Join(sortedIfNeeded(tc.Want, tc.Ordered), ",") {
				t.Errorf("got %v, want %v", ids, tc.Want)
			}
			n, err := s.Count(context.Background(), q)
			if err != nil || n != len(tc.Want) {
				t.Errorf("count = %d (%v), want %d", n, err, len(tc.Want))
			}
		})
	}
}

func sortedCopy(xs []string) []string {
	out := append([]string(nil), xs...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func sortedIfNeeded(xs []string, ordered bool) []string {
	if ordered {
		return xs
	}
	return sortedCopy(xs)
}
