package scopes

import "testing"

// FuzzParseScope: a scope parses or is refused, never panics; what parses
// prints as a scope that parses to the same grant.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"patient/*.rs", "user/Observation.cruds", "system/*.read", "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
		"patient/*.*", "launch/patient", "openid", "patient/Observation.rs?code=a&code=b", "user/Patient.x", "patient/.rs", "system/Patient.rs?_id=%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, ok := ParseResource(s)
		if !ok {
			return
		}
		again, ok := ParseResource(r.String())
		if !ok {
			t.Fatalf("%q printed as %q, which does not parse", s, r.String())
		}
		if again.Context != r.Context || again.Type != r.Type || again.Perm != r.Perm || again.String() != r.String() {
			t.Fatalf("%q: %+v then %+v", s, r, again)
		}
		ParseSet(s + " " + s)
	})
}
