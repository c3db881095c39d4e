// Package fhir holds Hearth's knowledge of FHIR R4: resource and data types,
// the element model, validation of client JSON against it, search parameter
// definitions, the Patient compartment, and helpers for the resources the
// server writes itself. It imports no other Hearth package.
package fhir

//go:generate go run ./internal/r4gen -in definitions -out r4_gen.go

import (
	"sort"
	"strings"
)

// Version is the FHIR version Hearth serves.
const Version = "4.0.1"

// TypeKind says whether a type is a primitive, a complex data type or a resource.
type TypeKind int

const (
	KindPrimitive TypeKind = iota
	KindComplex
	KindResource
)

// TypeDef is one StructureDefinition of the base specification.
type TypeDef struct {
	Name     string
	Kind     TypeKind
	Abstract bool
	Base     string
}

// ElementDef is one element of a type's snapshot, as the validator needs it.
type ElementDef struct {
	Path       string   // "Patient.contact.name"; choice elements end in "[x]"
	Min        int      // minimum cardinality
	Max        int      // maximum cardinality, -1 for unbounded
	Types      []string // type codes; several for a choice element
	Targets    []string // allowed target types of a Reference
	ContentRef string   // path whose definition this element reuses
	Summary    bool
	Modifier   bool
	ValueSet   string // value set a code element is bound to with required strength
	CodeSystem string // the one code system that value set draws from, if it is one
}

// Constraint is an invariant of an element definition: a FHIRPath
// expression every instance of the element must satisfy.
type Constraint struct {
	Path       string // element path; a type's root ("Period") for the type's own
	Key        string // "per-1"
	Severity   string // error | warning
	Human      string
	Expression string
}

// Constraints lists the invariants of the R4 resources and data types,
// other than ele-1, which Validate enforces as structure.
func Constraints() []Constraint { return generatedConstraints }

// SearchComponent is one part of a composite search parameter.
type SearchComponent struct {
	Definition string
	Expression string
}

// SearchParamDef is a SearchParameter of the base specification or US Core.
type SearchParamDef struct {
	Code       string
	URL        string
	Base       []string
	Type       string
	Expression string
	Targets    []string
	Components []SearchComponent
}

var (
	typesByName   = map[string]*TypeDef{}
	elementByPath = map[string]*ElementDef{}
	resourceNames []string
	valueSetCodes = map[string]map[string]bool{}
	paramsByType  = map[string]map[string]*SearchParamDef{}
)

func init() {
	for i := range generatedTypes {
		t := &generatedTypes[i]
		typesByName[t.Name] = t
		if t.Kind == KindResource && !t.Abstract {
			resourceNames = append(resourceNames, t.Name)
		}
	}
	sort.Strings(resourceNames)
	for i := range generatedElements {
		e := &generatedElements[i]
		elementByPath[e.Path] = e
	}
	for url, codes := range generatedValueSets {
		set := make(map[string]bool, len(codes))
		for _, c := range codes {
			set[c] = true
		}
		valueSetCodes[url] = set
	}
	for i := range generatedSearchParams {
		p := &generatedSearchParams[i]
		for _, base := range p.Base {
			m := paramsByType[base]
			if m == nil {
				m = map[string]*SearchParamDef{}
				paramsByType[base] = m
			}
			// The base specification comes first in the generated list; a
			// US Core parameter with the same code does not replace it.
			if _, dup := m[p.Code]; !dup {
				m[p.Code] = p
			}
		}
	}
}

// IsResourceType reports whether name is a concrete R4 resource type.
func IsResourceType(name string) bool {
	t, ok := typesByName[name]
	return ok && t.Kind == KindResource && !t.Abstract
}

// ResourceTypes lists the concrete R4 resource types in alphabetical order.
func ResourceTypes() []string { return append([]string(nil), resourceNames...) }

// LookupType returns the definition of a type by name.
func LookupType(name string) (*TypeDef, bool) {
	t, ok := typesByName[name]
	return t, ok
}

// Element returns the definition of the element at path, following the
// content references of recursive structures (Questionnaire.item.item).
func Element(path string) (*ElementDef, bool) {
	e, ok := elementByPath[path]
	return e, ok
}

// LookupSearchParam returns the search parameter code of resourceType, including
// the parameters every resource has (_id, _lastUpdated, …).
func LookupSearchParam(resourceType, code string) (*SearchParamDef, bool) {
	if p, ok := paramsByType[resourceType][code]; ok {
		return p, true
	}
	if p, ok := paramsByType["DomainResource"][code]; ok {
		return p, true
	}
	p, ok := paramsByType["Resource"][code]
	return p, ok
}

// SearchParams lists the search parameters of resourceType, sorted by code,
// including those inherited from Resource and DomainResource.
func SearchParams(resourceType string) []*SearchParamDef {
	seen := map[string]*SearchParamDef{}
	for _, t := range []string{"Resource", "DomainResource", resourceType} {
		for code, p := range paramsByType[t] {
			seen[code] = p
		}
	}
	out := make([]*SearchParamDef, 0, len(seen))
	for _, p := range seen {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// PatientCompartmentParams names the search parameters that link a resource of
// the given type to a Patient compartment; nil if the type is never in one.
func PatientCompartmentParams(resourceType string) []string {
	return generatedPatientCompartment[resourceType]
}

// IsPatientData reports whether resources of the type can be a patient's
// data: the Patient itself, or a type of the Patient compartment.
func IsPatientData(resourceType string) bool {
	return resourceType == "Patient" || PatientCompartmentParams(resourceType) != nil
}

// codeAllowed reports whether code is in the value set; true when the set is
// unknown or could not be expanded, because an unexpanded set proves nothing.
func codeAllowed(valueSet, code string) bool {
	set, ok := valueSetCodes[valueSet]
	if !ok {
		return true
	}
	return set[code]
}

// ValueSetKnown reports whether Hearth has the codes of a value set
// (one bound with required strength in R4 and expandable offline).
func ValueSetKnown(url string) bool {
	_, ok := valueSetCodes[url]
	return ok
}

// CodeInValueSet reports whether code is in a known value set.
func CodeInValueSet(url, code string) bool { return valueSetCodes[url][code] }

// isChoice reports whether an element path is a choice element (value[x]).
func isChoice(path string) bool { return strings.HasSuffix(path, "[x]") }

// ChildElement resolves a JSON property name of an object whose element
// definitions live under typePath ("Patient", "Patient.contact") to its
// definition and concrete type: valueQuantity gives Observation.value[x]
// and Quantity. The FHIRPath engine navigates by it.
func ChildElement(typePath, jsonName string) (def *ElementDef, typ string, ok bool) {
	c, ok := childrenOf[typePath][jsonName]
	return c.def, c.typ, ok
}

// HasChildren reports whether typePath names an element model with
// children of its own: a type, or a backbone element's path.
func HasChildren(typePath string) bool { return len(childrenOf[typePath]) > 0 }
