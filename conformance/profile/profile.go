// Package profile validates resources against StructureDefinition
// profiles (US Core 5.0.1 is bundled): cardinalities, fixed and pattern
// values, slicing by value and pattern discriminators, bindings, the
// profile's own invariants, and must-support elements reported as
// information. The base R4 rules (fhir.Validate and fhir/invariant) are
// checked before; a profile only adds to them.
package profile

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/fhir/fhirpath"
)

// Profile is a compiled StructureDefinition with a snapshot.
type Profile struct {
	URL  string
	Name string
	Type string

	root     *element
	byID     map[string]*element
	children map[string][]*element // element id → its child elements, in snapshot order
	slices   map[string][]*element // element id → its slices, in snapshot order
}

type element struct {
	id, path    string
	sliceName   string
	min, max    int // max -1 for *
	types       []string
	profiles    []string // type profiles (an extension slice's definition)
	fixed       any      // fixed[x] value, nil if none
	pattern     any      // pattern[x] value, nil if none
	slicing     *slicing
	mustSupport bool
	binding     *binding
	constraints []constraint
}

type slicing struct {
	discriminators []discriminator
	closed         bool
}

type discriminator struct{ typ, path string }

type binding struct{ strength, valueSet string }

type constraint struct {
	key, severity, human string
	expr                 *fhirpath.Expression
}

// structureDefinition is the part of a StructureDefinition read here.
type structureDefinition struct {
	ResourceType string `json:"resourceType"`
	URL          string `json:"url"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	Snapshot     struct {
		Element []json.RawMessage `json:"element"`
	} `json:"snapshot"`
}

// Compile reads a StructureDefinition with a snapshot.
func Compile(raw []byte) (*Profile, error) {
	var sd structureDefinition
	if err := json.Unmarshal(raw, &sd); err != nil {
		return nil, fmt.Errorf("not a StructureDefinition: %w", err)
	}
	if sd.ResourceType != "StructureDefinition" || len(sd.Snapshot.Element) == 0 {
		return nil, fmt.Errorf("%s: a StructureDefinition with a snapshot is needed", sd.URL)
	}
	p := &Profile{URL: sd.URL, Name: sd.Name, Type: sd.Type, byID: map[string]*element{}, children: map[string][]*element{}, slices: map[string][]*element{}}
	base := baseConstraintKeys()
	for i, raw := range sd.Snapshot.Element {
		e, err := compileElement(raw, base)
		if err != nil {
			return nil, fmt.Errorf("%s element %d: %w", sd.URL, i, err)
		}
		p.byID[e.id] = e
		if i == 0 {
			p.root = e
			continue
		}
		// An id is the parent's id and a name, or the sliced element's id
		// and :sliceName.
		if e.sliceName != "" && strings.HasSuffix(e.id, ":"+e.sliceName) {
			sliced := strings.TrimSuffix(e.id, ":"+e.sliceName)
			p.slices[sliced] = append(p.slices[sliced], e)
			continue
		}
		dot := strings.LastIndexByte(e.id, '.')
		if dot < 0 {
			return nil, fmt.Errorf("%s: element %s has no parent", sd.URL, e.id)
		}
		parent := e.id[:dot]
		p.children[parent] = append(p.children[parent], e)
	}
	return p, nil
}

func compileElement(raw json.RawMessage, base map[string]bool) (*element, error) {
	var e struct {
		ID          string `json:"id"`
		Path        string `json:"path"`
		SliceName   string `json:"sliceName"`
		Min         int    `json:"min"`
		Max         string `json:"max"`
		MustSupport bool   `json:"mustSupport"`
		Type        []struct {
			Code    string   `json:"code"`
			Profile []string `json:"profile"`
		} `json:"type"`
		Slicing *struct {
			Discriminator []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"discriminator"`
			Rules string `json:"rules"`
		} `json:"slicing"`
		Binding *struct {
			Strength string `json:"strength"`
			ValueSet string `json:"valueSet"`
		} `json:"binding"`
		Constraint []struct {
			Key        string `json:"key"`
			Severity   string `json:"severity"`
			Human      string `json:"human"`
			Expression string `json:"expression"`
		} `json:"constraint"`
	}
	// The element's known members, and all of them by name for the
	// fixed[x] and pattern[x] whose type is in the name.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, err
	}
	el := &element{id: e.ID, path: e.Path, sliceName: e.SliceName, min: e.Min, max: -1, mustSupport: e.MustSupport}
	if e.Max != "*" {
		fmt.Sscanf(e.Max, "%d", &el.max)
	}
	for _, t := range e.Type {
		el.types = append(el.types, t.Code)
		el.profiles = append(el.profiles, t.Profile...)
	}
	if e.Slicing != nil {
		s := &slicing{closed: e.Slicing.Rules == "closed"}
		for _, d := range e.Slicing.Discriminator {
			s.discriminators = append(s.discriminators, discriminator{d.Type, d.Path})
		}
		el.slicing = s
	}
	if e.Binding != nil && e.Binding.ValueSet != "" {
		el.binding = &binding{e.Binding.Strength, strings.SplitN(e.Binding.ValueSet, "|", 2)[0]}
	}
	for k, v := range members {
		var target *any
		switch {
		case strings.HasPrefix(k, "fixed"):
			target = &el.fixed
		case strings.HasPrefix(k, "pattern"):
			target = &el.pattern
		default:
			continue
		}
		if err := decodeNumbers(v, target); err != nil {
			return nil, err
		}
	}
	for _, c := range e.Constraint {
		if base[c.Key] || c.Expression == "" {
			continue // the base specification's, checked for every resource
		}
		x, err := fhirpath.CompileR4(c.Expression)
		if err != nil {
			return nil, fmt.Errorf("constraint %s: %w", c.Key, err)
		}
		el.constraints = append(el.constraints, constraint{c.Key, c.Severity, c.Human, x})
	}
	return el, nil
}

func decodeNumbers(raw []byte, into *any) error {
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	return d.Decode(into)
}

// baseConstraintKeys are the invariants of the base specification (and
// ele-1), which every write already checks.
func baseConstraintKeys() map[string]bool {
	keys := map[string]bool{"ele-1": true}
	for _, c := range fhir.Constraints() {
		keys[c.Key] = true
	}
	return keys
}

// Validate checks a decoded resource against the profile. Issues of
// severity error make it non-conformant; information lists must-support
// elements it lacks. resolve finds the profiles that extension slices
// name (nil: such extensions are matched by url only).
func (p *Profile) Validate(res map[string]any, resolve func(url string) *Profile) []fhir.Issue {
	v := &validation{resolve: resolve}
	root := fhirpath.Resource(res)
	if root.Type != p.Type {
		return []fhir.Issue{{Severity: "error", Code: "invalid", Expression: root.Type,
			Diagnostics: fmt.Sprintf("profile %s is for %s resources", p.URL, p.Type)}}
	}
	v.node(p, p.root, root, root, root.Type)
	return v.issues
}

type validation struct {
	issues  []fhir.Issue
	resolve func(url string) *Profile
}

func (v *validation) add(severity, code, at, format string, args ...any) {
	v.issues = append(v.issues, fhir.Issue{Severity: severity, Code: code, Expression: at, Diagnostics: fmt.Sprintf(format, args...)})
}

// node checks one value against its element definition and then its
// children against theirs.
func (v *validation) node(p *Profile, el *element, n, resource *fhirpath.Node, at string) {
	v.value(el, n, resource, at)
	for _, child := range p.children[el.id] {
		name := child.path[strings.LastIndexByte(child.path, '.')+1:]
		values, err := n.Child(strings.TrimSuffix(name, "[x]"))
		if err != nil {
			continue // the base element model does not have it: not for this type
		}
		childAt := at + "." + strings.TrimSuffix(name, "[x]")
		v.cardinality(child, len(values), childAt)
		if len(values) == 0 {
			if child.mustSupport && child.sliceName == "" {
				v.add("information", "informational", childAt, "must-support element %s is absent", child.id)
			}
			continue
		}
		slicesOf := p.slices[child.id]
		assigned := make([]*element, len(values))
		if child.slicing != nil && len(slicesOf) > 0 {
			for i, item := range values {
				assigned[i] = v.sliceOf(p, child, slicesOf, item.(*fhirpath.Node))
			}
			for _, s := range slicesOf {
				count := 0
				for _, a := range assigned {
					if a == s {
						count++
					}
				}
				v.cardinality(s, count, childAt)
				if count == 0 && s.mustSupport {
					v.add("information", "informational", childAt, "must-support slice %s is absent", s.id)
				}
			}
		}
		for i, item := range values {
			itemAt := childAt
			if len(values) > 1 || repeats(child) {
				itemAt = fmt.Sprintf("%s[%d]", childAt, i)
			}
			vn := item.(*fhirpath.Node)
			target := child
			if assigned[i] != nil {
				target = assigned[i]
			} else if child.slicing != nil && child.slicing.closed {
				v.add("error", "structure", itemAt, "matches no slice of %s, whose slicing is closed", child.id)
			}
			if target != child {
				v.value(child, vn, resource, itemAt) // the sliced element's own rules hold too
			}
			v.node(p, target, vn, resource, itemAt)
			// An extension slice defined by its own profile.
			for _, url := range target.profiles {
				if ext := v.lookup(url); ext != nil && ext != p {
					v.node(ext, ext.root, vn, resource, itemAt)
				}
			}
		}
	}
}

func (v *validation) lookup(url string) *Profile {
	if v.resolve == nil {
		return nil
	}
	return v.resolve(url)
}

func repeats(el *element) bool { return el.max != 1 }

func (v *validation) cardinality(el *element, n int, at string) {
	if n < el.min {
		v.add("error", "required", at, "%s: minimum cardinality %d, found %d", el.id, el.min, n)
	}
	if el.max >= 0 && n > el.max {
		v.add("error", "structure", at, "%s: maximum cardinality %d, found %d", el.id, el.max, n)
	}
}

// value checks the rules of one element on one value.
func (v *validation) value(el *element, n, resource *fhirpath.Node, at string) {
	if strings.HasSuffix(el.path, "[x]") && len(el.types) > 0 && !slices.Contains(el.types, n.Type) {
		v.add("error", "structure", at, "%s: type %s is not allowed here (%s)", el.id, n.Type, strings.Join(el.types, ", "))
	}
	if el.fixed != nil && !reflect.DeepEqual(jsonOf(n), el.fixed) {
		v.add("error", "value", at, "%s: must be exactly the fixed value %s", el.id, brief(el.fixed))
	}
	if el.pattern != nil && !matchesPattern(jsonOf(n), el.pattern) {
		v.add("error", "value", at, "%s: must match the pattern %s", el.id, brief(el.pattern))
	}
	if el.binding != nil {
		v.bound(el, n, at)
	}
	for _, c := range el.constraints {
		ok, err := c.expr.Predicate(fhirpath.Collection{n}, &fhirpath.Env{Resource: resource})
		switch {
		case err != nil:
			v.add("error", "invariant", at, "%s could not be evaluated: %v", c.key, err)
		case !ok:
			v.add(c.severity, "invariant", at, "%s: %s", c.key, c.human)
		}
	}
}

// jsonOf is a node's JSON value (a primitive's value, or its object).
func jsonOf(n *fhirpath.Node) any { return n.Val }

// brief renders a fixed or pattern value for a message: these come from
// the profile, not the client, so they may be shown.
func brief(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// matchesPattern: every property of the pattern is in the value; each
// item of a pattern array matches some item of the value's array.
func matchesPattern(val, pattern any) bool {
	switch p := pattern.(type) {
	case map[string]any:
		m, ok := val.(map[string]any)
		if !ok {
			return false
		}
		for k, pv := range p {
			if !matchesPattern(m[k], pv) {
				return false
			}
		}
		return true
	case []any:
		arr, ok := val.([]any)
		if !ok {
			return false
		}
		for _, pi := range p {
			if !slices.ContainsFunc(arr, func(x any) bool { return matchesPattern(x, pi) }) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(val, pattern)
}

// bound checks a coded value against its binding: required bindings are
// errors, extensible ones warnings, where the value set is known offline.
func (v *validation) bound(el *element, n *fhirpath.Node, at string) {
	if el.binding.strength != "required" && el.binding.strength != "extensible" {
		return
	}
	if !fhir.ValueSetKnown(el.binding.valueSet) {
		return // a set Hearth cannot expand offline proves nothing
	}
	var codes []string
	switch val := n.Val.(type) {
	case string:
		codes = []string{val}
	case map[string]any:
		if c, ok := val["code"].(string); ok {
			codes = append(codes, c)
		}
		codings, _ := val["coding"].([]any)
		for _, item := range codings {
			if c, ok := item.(map[string]any)["code"].(string); ok {
				codes = append(codes, c)
			}
		}
	}
	if len(codes) == 0 || slices.ContainsFunc(codes, func(c string) bool { return fhir.CodeInValueSet(el.binding.valueSet, c) }) {
		return
	}
	severity := "error"
	if el.binding.strength == "extensible" {
		severity = "warning"
	}
	v.add(severity, "code-invalid", at, "%s: no code from the %s value set %s", el.id, el.binding.strength, el.binding.valueSet)
}

// sliceOf finds the slice a value belongs to by the slicing's
// discriminators, or nil.
func (v *validation) sliceOf(p *Profile, sliced *element, candidates []*element, n *fhirpath.Node) *element {
	for _, s := range candidates {
		if v.inSlice(p, sliced, s, n) {
			return s
		}
	}
	return nil
}

func (v *validation) inSlice(p *Profile, sliced, s *element, n *fhirpath.Node) bool {
	for _, d := range sliced.slicing.discriminators {
		if d.typ == "type" && d.path == "$this" {
			// Type slicing of a choice element (value[x]:valueQuantity).
			if !slices.Contains(s.types, n.Type) {
				return false
			}
			continue
		}
		want, isPattern, ok := expected(p, s, d.path)
		if !ok {
			return false // a discriminator this slice does not fix: unsupported
		}
		var got fhirpath.Collection
		if d.path == "$this" {
			got = fhirpath.Collection{n}
		} else {
			e, err := fhirpath.CompileR4(d.path)
			if err != nil {
				return false
			}
			if got, err = e.Evaluate(fhirpath.Collection{n}, nil); err != nil {
				return false
			}
		}
		if !slices.ContainsFunc(got, func(item any) bool {
			gn, ok := item.(*fhirpath.Node)
			if !ok {
				return false
			}
			if isPattern || d.typ == "pattern" {
				return matchesPattern(gn.Val, want)
			}
			return reflect.DeepEqual(gn.Val, want)
		}) {
			return false
		}
	}
	return true
}

// expected is the value a slice fixes at a discriminator's path: the
// fixed or pattern value of the slice's element there, or the url of an
// extension slice's profile.
func expected(p *Profile, s *element, path string) (any, bool, bool) {
	if path == "url" && len(s.profiles) > 0 {
		return s.profiles[0], false, true
	}
	id := s.id
	if path != "$this" {
		id += "." + path
	}
	e, ok := p.byID[id]
	if !ok {
		return nil, false, false
	}
	if e.fixed != nil {
		return e.fixed, false, true
	}
	if e.pattern != nil {
		return e.pattern, true, true
	}
	return nil, false, false
}
