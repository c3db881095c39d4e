package interact

import (
	"context"
	"errors"
	"testing"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// FuzzBundleEntries: a batch or transaction body is refused with a Problem
// or parsed into entries that each name a resource type and a method Hearth
// carries out — never a panic, never an unexplained error.
func FuzzBundleEntries(f *testing.F) {
	for _, b := range []string{
		`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=a|b"}}]}`,
		`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?name=x&_count=2"}},{"request":{"method":"DELETE","url":"Patient/1"}}]}`,
		`{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"W10="},"request":{"method":"PATCH","url":"Patient/1"}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient?identifier=x|y","ifMatch":"W/\"2\""}}]}`,
		`{"resourceType":"Bundle","type":"searchset"}`, `[]`, `{"entry":null}`,
	} {
		f.Add([]byte(b))
	}
	s := New(closedForFuzz{}, Config{BaseURL: "http://h/fhir"}).Unrestricted(audit.Agent{})
	f.Fuzz(func(t *testing.T, body []byte) {
		typ, entries, err := s.Bundle(context.Background(), body, true)
		if err != nil {
			var pr *Problem
			if !errors.As(err, &pr) && !errors.Is(err, store.ErrTooCostly) && !errors.Is(err, errFuzzStore) {
				t.Fatalf("unexplained error %T: %v", err, err)
			}
			return
		}
		if typ != "batch" && typ != "transaction" {
			t.Fatalf("bundle type %q", typ)
		}
		for _, e := range entries {
			if e.Err != nil {
				continue
			}
			switch e.Method {
			case "GET", "POST", "PUT", "PATCH", "DELETE":
			default:
				t.Fatalf("entry method %q", e.Method)
			}
			if !fhir.IsResourceType(e.Type) {
				t.Fatalf("entry type %q", e.Type)
			}
		}
	})
}

// FuzzPatch: a JSON Patch document is refused or applies to a valid
// resource giving a resource that is valid or refused — never a panic.
func FuzzPatch(f *testing.F) {
	for _, p := range []string{`[{"op":"add","path":"/active","value":true}]`, `[{"op":"replace","path":"/name/0/family","value":"X"}]`,
		`[{"op":"remove","path":"/name"}]`, `[{"op":"test","path":"/id","value":"p"}]`, `[{"op":"move","from":"/name","path":"/x"}]`, `[{"op":"copy","from":"/id","path":"/id"}]`} {
		f.Add([]byte(p))
	}
	resource := []byte(`{"resourceType":"Patient","id":"p","name":[{"family":"Doe","given":["J"]}],"birthDate":"1980-02-29"}`)
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := DecodePatch(doc)
		if err != nil {
			return
		}
		out, err := p.Apply(resource) // unguarded: DecodePatch must have refused what would panic
		if err != nil {
			return
		}
		body, err := ParseResource(out, "Patient")
		if err == nil && body.Parsed == nil {
			t.Fatal("a valid patch result without its decoded form")
		}
	})
}

// closedForFuzz is a store that answers every call with an error: the
// bundle fuzz target exercises parsing, not storage.
type closedForFuzz struct{ closed }

var errFuzzStore = errors.New("no store in the fuzz test")

func (closedForFuzz) Transact(context.Context, func(store.Tx) error) error { return errFuzzStore }
