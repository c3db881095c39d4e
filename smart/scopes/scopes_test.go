package scopes

import (
	"testing"
)

func TestParseResource(t *testing.T) {
	cases := []struct {
		in   string
		ok   bool
		perm Perm
		out  string
	}{
		{"patient/Observation.rs", true, Read | Search, "patient/Observation.rs"},
		{"patient/*.read", true, Read | Search, "patient/*.read"},
		{"user/Observation.write", true, Create | Update | Delete, "user/Observation.write"},
		{"system/*.*", true, All, "system/*.*"},
		{"patient/Observation.cruds", true, All, "patient/Observation.cruds"},
		{"patient/Observation.r", true, Read, "patient/Observation.r"},
		{"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", true, Read | Search,
			"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"},
		{"patient/Observation.dus", false, 0, ""}, // out of order
		{"patient/Observation.rr", false, 0, ""},
		{"patient/Observation.x", false, 0, ""},
		{"patient/Observation.", false, 0, ""},
		{"patient/Robot.rs", false, 0, ""},
		{"launch/patient", false, 0, ""},
		{"openid", false, 0, ""},
		{"admin/Observation.rs", false, 0, ""},
		{"patient/Observation.read?category=x", false, 0, ""},
	}
	for _, c := range cases {
		r, ok := ParseResource(c.in)
		if ok != c.ok {
			t.Errorf("%s: ok=%v want %v", c.in, ok, c.ok)
			continue
		}
		if !ok {
			continue
		}
		if r.Perm != c.perm || r.String() != c.out {
			t.Errorf("%s: perm=%s string=%s, want %s %s", c.in, r.Perm, r, c.perm, c.out)
		}
	}
}

func TestSetFor(t *testing.T) {
	s := ParseSet("openid launch/patient patient/Patient.rs patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs user/Condition.read")
	if g := s.For("Patient", Read); !g.Allowed || g.Constraints != nil {
		t.Errorf("Patient read: %+v", g)
	}
	if g := s.For("Patient", Create); g.Allowed {
		t.Errorf("Patient create allowed: %+v", g)
	}
	if g := s.For("Observation", Search); !g.Allowed || len(g.Constraints) != 2 {
		t.Errorf("Observation search: %+v", g)
	}
	if g := s.For("Condition", Search); !g.Allowed || g.Constraints != nil {
		t.Errorf("Condition search: %+v", g)
	}
	if g := s.For("Encounter", Read); g.Allowed {
		t.Errorf("Encounter read allowed: %+v", g)
	}
	wild := ParseSet("patient/*.rs patient/Observation.rs?category=laboratory")
	if g := wild.For("Observation", Read); !g.Allowed || g.Constraints != nil {
		t.Errorf("a whole-type scope wins over a granular one: %+v", g)
	}
}
