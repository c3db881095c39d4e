package conformance

import (
	"github.com/hearth-fhir/hearth/conformance/profile"
	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/fhir/invariant"
)

// Validate checks a client's resource JSON as $validate does: R4
// structure, invariants and required bindings, then each profile — the
// ones named, or else those the resource claims in meta.profile. It
// returns every issue found, errors, warnings and information; err is a
// body that is not JSON at all.
func Validate(raw []byte, wantType string, profiles []string, reg *profile.Registry) ([]fhir.Issue, error) {
	rt, parsed, issues, err := fhir.ValidateDecoded(raw)
	if err != nil {
		return nil, err
	}
	if rt != "" && rt != wantType {
		issues = append(issues, fhir.Issue{Severity: "error", Code: "invalid", Expression: "resourceType",
			Diagnostics: "resourceType " + fhir.QuoteSafe(rt) + " does not match the endpoint type " + wantType})
	}
	if len(issues) > 0 {
		return issues, nil // invariants assume a structurally valid resource
	}
	issues = append(issues, invariant.Check(parsed)...)
	if len(profiles) == 0 {
		return append(issues, reg.ValidateClaims(parsed)...), nil
	}
	for _, url := range profiles {
		p := reg.Lookup(url)
		if p == nil {
			issues = append(issues, fhir.Issue{Severity: "error", Code: "not-supported",
				Diagnostics: "profile " + fhir.QuoteSafe(url) + " is not known here (Hearth has the base R4 definitions and US Core 5.0.1)"})
			continue
		}
		issues = append(issues, p.Validate(parsed, reg.Lookup)...)
	}
	return issues, nil
}
