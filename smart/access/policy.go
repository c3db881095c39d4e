// Package access enforces what a SMART token may see and change, at the
// data layer: Guard wraps a store.Store so that every path the FHIR API
// takes to the data — read, vread, search, includes, chains, _has,
// history, bundles, $everything, paging — passes through one policy.
package access

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/smart/scopes"
)

// ErrForbidden is returned when the token's scopes do not cover an
// interaction (a 403). Resources the token may not see are reported as not
// found instead, so that their existence does not leak.
var ErrForbidden = errors.New("forbidden by the access token's scopes")

// Policy is what one access token carries.
type Policy struct {
	// Patient, when set, confines the token to that Patient's compartment
	// and to shared directory data (practitioners, organisations,
	// medications …). Tokens issued to users always have one; only
	// backend-service (system/) tokens may have none.
	Patient string
	// Scopes are the granted resource scopes.
	Scopes scopes.Set
	// WithholdSensitive leaves out, as if absent, every resource labelled
	// restricted or sensitive (sensitiveLabels): set for a proxy's token
	// once the patient is old enough to have confidential care of their
	// own, decided at each request.
	WithholdSensitive bool
	// ClientID and Subject identify the token for audit; FHIRUser is the
	// resource that is the user ("Patient/x", "RelatedPerson/y").
	ClientID string
	Subject  string
	FHIRUser string
}

// shared are the types that carry no patient's data and that a
// patient-bound token may read: the directory and definitional resources an
// app needs to render a record.
var shared = map[string]bool{
	"Practitioner": true, "PractitionerRole": true, "Organization": true, "Location": true,
	"Medication": true, "MedicationKnowledge": true, "Substance": true, "HealthcareService": true,
	"Endpoint": true, "OrganizationAffiliation": true, "ValueSet": true, "CodeSystem": true,
	"ConceptMap": true, "NamingSystem": true, "StructureDefinition": true, "SearchParameter": true,
	"OperationDefinition": true, "CapabilityStatement": true, "ImplementationGuide": true,
	"Questionnaire": true, "Library": true, "PlanDefinition": true, "ActivityDefinition": true,
	"Schedule": true, "Slot": true, // the clinic's calendar: which times are free, never whose they are
	"ObservationDefinition": true, "SpecimenDefinition": true,
}

// kind says how a patient-bound token relates to a resource type.
type kind int

const (
	compartmentData kind = iota // visible when in the patient's compartment
	sharedData                  // readable by anyone with the scope, never writable
	outside                     // not visible to a patient-bound token at all
)

func (p *Policy) kindOf(typ string) kind {
	switch {
	case fhir.IsPatientData(typ):
		return compartmentData
	case shared[typ]:
		return sharedData
	}
	return outside
}

// grant returns the scope grant for typ and perm, or ErrForbidden.
func (p *Policy) grant(typ string, perm scopes.Perm) (scopes.Grant, error) {
	g := p.Scopes.For(typ, perm)
	if !g.Allowed {
		return g, ErrForbidden
	}
	if p.Patient != "" && p.kindOf(typ) == outside {
		return g, ErrForbidden
	}
	if p.Patient != "" && p.kindOf(typ) == sharedData && perm&(scopes.Create|scopes.Update|scopes.Delete) != 0 {
		return g, ErrForbidden
	}
	return g, nil
}

// Searchable reports whether the policy lets typ be searched at all (a
// bulk export leaves out the types it may not search).
func (p *Policy) Searchable(typ string) bool {
	_, err := p.grant(typ, scopes.Search)
	return err == nil
}

// readable is grant for reading, where either r or s scopes let a type be
// seen as an included or $everything resource.
func (p *Policy) readable(typ string) (scopes.Grant, bool) {
	for _, perm := range []scopes.Perm{scopes.Read, scopes.Search} {
		if g, err := p.grant(typ, perm); err == nil {
			return g, true
		}
	}
	return scopes.Grant{}, false
}

// constraintParams turns granular constraints into extra search conditions:
// one constraint is ANDed in as is; several constraints on one and the same
// parameter become one OR of their values. Other combinations cannot be
// expressed as one search and are refused rather than answered loosely.
func constraintParams(typ string, constraints []url.Values) ([]*fhir.SearchParam, error) {
	if len(constraints) == 0 {
		return nil, nil
	}
	merged := url.Values{}
	if len(constraints) == 1 {
		merged = constraints[0]
	} else {
		var name string
		for _, c := range constraints {
			if len(c) != 1 {
				return nil, ErrForbidden
			}
			for k, vs := range c {
				if name != "" && k != name {
					return nil, ErrForbidden
				}
				name = k
				merged[k] = append(merged[k], vs...)
			}
		}
		merged = url.Values{name: {strings.Join(merged[name], ",")}}
	}
	q, err := fhir.ParseSearch(typ, merged, fhir.SearchOptions{Strict: true})
	if err != nil {
		return nil, ErrForbidden
	}
	return q.Params, nil
}

// AuditView is what of the audit trail a policy may see with perm: all of
// it (""), for a backend service's system/AuditEvent scopes, or the
// records about one patient, for that patient's own token. A proxy does
// not see the access log of the patient it acts for: it would show the
// proxy to itself and the patient's other accesses to the proxy.
func (p *Policy) AuditView(perm scopes.Perm) (patient string, err error) {
	if _, err := p.grant("AuditEvent", perm); err != nil {
		return "", err
	}
	if p.Patient == "" {
		return "", nil
	}
	if p.FHIRUser != "Patient/"+p.Patient {
		return "", fmt.Errorf("only the patient sees who accessed their record, not a proxy: %w", ErrForbidden)
	}
	return p.Patient, nil
}
