package fhir

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Issue is one problem found in a client's resource. Diagnostics never
// repeat the offending value: it may be PHI.
type Issue struct {
	Severity    string // fatal | error | warning | information
	Code        string // an IssueType code: structure, value, required, invalid, …
	Expression  string // FHIRPath of the element, e.g. "Patient.birthDate"
	Diagnostics string
}

// SplitIssues separates the issues that make a resource invalid (error,
// fatal) from the others (warnings, information).
func SplitIssues(issues []Issue) (errs, others []Issue) {
	for _, is := range issues {
		if is.Severity == "error" || is.Severity == "fatal" {
			errs = append(errs, is)
		} else {
			others = append(others, is)
		}
	}
	return errs, others
}

func (i Issue) Error() string {
	if i.Expression == "" {
		return i.Diagnostics
	}
	return i.Expression + ": " + i.Diagnostics
}

// child is what a JSON property name of an object resolves to.
type child struct {
	def  *ElementDef
	typ  string // the concrete type; for a choice, the type the name selects
	name string // the JSON name the element definition gives (no [x])
}

var (
	childrenOf     = map[string]map[string]child{} // type path → JSON name → child
	requiredOf     = map[string][]*ElementDef{}    // type path → elements with min ≥ 1
	primitiveRegex = map[string]*regexp.Regexp{}
)

func init() {
	for i := range generatedElements {
		e := &generatedElements[i]
		dot := strings.LastIndexByte(e.Path, '.')
		parent, name := e.Path[:dot], e.Path[dot+1:]
		m := childrenOf[parent]
		if m == nil {
			m = map[string]child{}
			childrenOf[parent] = m
		}
		if isChoice(name) {
			base := strings.TrimSuffix(name, "[x]")
			for _, t := range e.Types {
				m[base+strings.ToUpper(t[:1])+t[1:]] = child{def: e, typ: t, name: base}
			}
		} else {
			typ := ""
			if len(e.Types) == 1 {
				typ = e.Types[0]
			}
			m[name] = child{def: e, typ: typ, name: name}
		}
		if e.Min > 0 {
			requiredOf[parent] = append(requiredOf[parent], e)
		}
	}
	for t, re := range generatedPrimitiveRegex {
		primitiveRegex[t] = regexp.MustCompile(`^(?:` + re + `)$`)
	}
}

// ParseError is returned when the body is not JSON at all.
type ParseError struct{ Msg string }

func (e *ParseError) Error() string { return e.Msg }

// Validate checks a client's resource JSON against the R4 element model. It
// returns the resource type found in the body and the issues; an empty list
// means the resource is structurally valid. The body itself is not changed.
func Validate(body []byte) (string, []Issue, error) {
	rt, _, issues, err := ValidateDecoded(body)
	return rt, issues, err
}

// ValidateDecoded is Validate that also returns the decoded resource
// (numbers as json.Number), so that a caller can index it without decoding
// it again.
func ValidateDecoded(body []byte) (string, map[string]any, []Issue, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return "", nil, nil, &ParseError{Msg: "body is not valid JSON: " + jsonErrorText(err)}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", nil, nil, &ParseError{Msg: "body is not a JSON object"}
	}
	var val validator
	rt := val.resource(obj, "")
	return rt, obj, val.result(), nil
}

type validator struct {
	issues []Issue
	more   int      // issues found beyond MaxIssues
	chosen []choice // the choice elements of the objects being validated (choose)
}

// MaxIssues bounds the issues one validation reports: the first ones and a
// count of the rest, so that a small body of many faults cannot answer with
// an OperationOutcome many times its size.
const MaxIssues = 100

func (v *validator) add(code, path, format string, args ...any) {
	if len(v.issues) >= MaxIssues {
		v.more++
		return
	}
	v.issues = append(v.issues, Issue{Severity: "error", Code: code, Expression: path, Diagnostics: fmt.Sprintf(format, args...)})
}

// result is the issues, with the count of those left out as a last one.
func (v *validator) result() []Issue {
	if v.more == 0 {
		return v.issues
	}
	return append(v.issues, Issue{Severity: "error", Code: "too-costly", Diagnostics: fmt.Sprintf("%d more issues are not listed", v.more)})
}

// resource validates an object that should be a resource; prefix is the path
// of the element holding it ("" at the top).
func (v *validator) resource(obj map[string]any, prefix string) string {
	rt, _ := obj["resourceType"].(string)
	where := prefix
	if where == "" {
		where = "resourceType"
	}
	if rt == "" {
		v.add("required", where, "resourceType is missing")
		return ""
	}
	if !IsResourceType(rt) {
		v.add("value", where, "unknown resource type")
		return rt
	}
	path := rt
	if prefix != "" {
		path = prefix
	}
	if id, ok := obj["id"]; ok {
		s, isString := id.(string)
		switch {
		case !isString || !primitiveRegex["id"].MatchString(s):
			v.add("value", path+".id", "id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'")
		case s == "." || s == "..":
			v.add("value", path+".id", "id must not be . or .., which clients resolve as path segments")
		}
	}
	v.object(obj, rt, path, true)
	return rt
}

// object validates the properties of a JSON object whose element definitions
// live under typePath; path is the instance path used in messages.
func (v *validator) object(obj map[string]any, typePath, path string, isResource bool) {
	if len(obj) == 0 {
		v.add("structure", path, "object must not be empty")
		return
	}
	children := childrenOf[typePath]
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	present := map[string]bool{}
	// The choice elements of this object, as choose notes them.
	mark := len(v.chosen)
	defer func() { v.chosen = v.chosen[:mark] }()
	for _, k := range keys {
		val := obj[k]
		if isResource && (k == "resourceType" || k == "id") {
			continue
		}
		if strings.HasPrefix(k, "_") {
			c, ok := children[k[1:]]
			if !ok || !isPrimitive(c.typ) {
				v.add("structure", path+"."+k, "unknown element")
				continue
			}
			present[c.def.Path] = true
			if c.name != k[1:] {
				v.choose(mark, c, k[1:], path+"."+k)
			}
			v.primitiveExtension(val, c, path+"."+k[1:], obj[k[1:]])
			continue
		}
		c, ok := children[k]
		if !ok {
			v.add("structure", path+"."+k, "unknown element")
			continue
		}
		present[c.def.Path] = true
		at := path + "." + k
		v.choose(mark, c, k, at)
		v.element(val, c, at, obj["_"+k] != nil)
	}
	for _, req := range requiredOf[typePath] {
		if !present[req.Path] {
			name := req.Path[strings.LastIndexByte(req.Path, '.')+1:]
			v.add("required", path+"."+strings.TrimSuffix(name, "[x]"), "required element is missing (minimum cardinality %d)", req.Min)
		}
	}
}

// choose notes the JSON name a choice element (value[x]) is given as in
// the object whose choices start at v.chosen[from]: one element, so one
// type of it. A stack on the validator, not a map per object: every
// Extension has a value[x], and a map each cost 8% of validating a
// patient.
func (v *validator) choose(from int, c child, name, at string) {
	if c.name == name {
		return // not a choice element
	}
	for _, ch := range v.chosen[from:] {
		if ch.def == c.def {
			if ch.name != name {
				v.add("structure", at, "%s and %s are the one element %s[x]: give one of them", ch.name, name, c.name)
			}
			return
		}
	}
	v.chosen = append(v.chosen, choice{c.def, name})
}

// choice is a choice element and the JSON name it was given as.
type choice struct {
	def  *ElementDef
	name string
}

// element validates the value of one property against cardinality and type.
func (v *validator) element(val any, c child, path string, hasExtension bool) {
	repeats := c.def.Max != 1
	arr, isArray := val.([]any)
	switch {
	case repeats && !isArray:
		v.add("structure", path, "must be an array (the element repeats)")
		return
	case !repeats && isArray:
		v.add("structure", path, "must be a single value, not an array")
		return
	case !repeats:
		v.value(val, c, path, hasExtension)
		return
	}
	if len(arr) == 0 {
		v.add("structure", path, "array must not be empty")
		return
	}
	if c.def.Max > 1 && len(arr) > c.def.Max {
		v.add("structure", path, "at most %d values are allowed", c.def.Max)
	}
	for i, item := range arr {
		v.value(item, c, fmt.Sprintf("%s[%d]", path, i), hasExtension)
	}
}

// value validates one value of an element.
func (v *validator) value(val any, c child, path string, hasExtension bool) {
	if val == nil {
		// null is only allowed as an array placeholder paired with _element.
		if !hasExtension {
			v.add("structure", path, "null is not allowed here")
		}
		return
	}
	typ := c.typ
	switch {
	case c.def.ContentRef != "":
		obj, ok := val.(map[string]any)
		if !ok {
			v.add("structure", path, "must be a JSON object")
			return
		}
		v.object(obj, c.def.ContentRef, path, false)
	case typ == "BackboneElement" || typ == "Element" && len(childrenOf[c.def.Path]) > 0:
		obj, ok := val.(map[string]any)
		if !ok {
			v.add("structure", path, "must be a JSON object")
			return
		}
		v.object(obj, c.def.Path, path, false)
	case typ == "Resource":
		obj, ok := val.(map[string]any)
		if !ok {
			v.add("structure", path, "must be a resource (a JSON object)")
			return
		}
		v.resource(obj, path)
		// References reach a contained resource by #id only (references.html).
		if _, hasID := obj["id"]; !hasID && strings.HasSuffix(c.def.Path, ".contained") {
			v.add("required", path+".id", "a contained resource must have an id: references reach it as #id")
		}
	case isPrimitive(typ) || typ == "xhtml":
		v.primitive(val, typ, path)
		if s, ok := val.(string); ok && c.def.ValueSet != "" && !codeAllowed(c.def.ValueSet, s) {
			v.add("code-invalid", path, "code is not in the required value set %s", c.def.ValueSet)
		}
	default:
		obj, ok := val.(map[string]any)
		if !ok {
			v.add("structure", path, "must be a JSON object (%s)", typ)
			return
		}
		v.object(obj, typ, path, false)
		if c.def.ValueSet != "" {
			v.requiredBinding(obj, typ, c.def, path)
		}
	}
}

// requiredBinding checks a Coding or CodeableConcept bound with required
// strength: a Coding must be from the value set; a CodeableConcept needs
// at least one coding from it (others may translate it). Value sets that
// could not be expanded offline, or that draw on several code systems,
// are checked by code only where the system is theirs.
func (v *validator) requiredBinding(obj map[string]any, typ string, def *ElementDef, path string) {
	inSet := func(c map[string]any) (fromSystem, ok bool) {
		system, _ := c["system"].(string)
		code, _ := c["code"].(string)
		if def.CodeSystem == "" {
			return true, codeAllowed(def.ValueSet, code)
		}
		return system == def.CodeSystem, system == def.CodeSystem && codeAllowed(def.ValueSet, code)
	}
	if typ == "Coding" {
		if from, ok := inSet(obj); !ok {
			if from {
				v.add("code-invalid", path+".code", "code is not in the required value set %s", def.ValueSet)
			} else {
				v.add("code-invalid", path, "the coding must be from the required value set %s (system %s)", def.ValueSet, def.CodeSystem)
			}
		}
		return
	}
	codings, _ := obj["coding"].([]any)
	for i, item := range codings {
		c, _ := item.(map[string]any)
		from, ok := inSet(c)
		if ok {
			return
		}
		if from {
			v.add("code-invalid", fmt.Sprintf("%s.coding[%d].code", path, i), "code is not in the required value set %s", def.ValueSet)
			return
		}
	}
	if _, known := valueSetCodes[def.ValueSet]; !known && def.CodeSystem == "" {
		return // a set that could not be expanded proves nothing
	}
	v.add("code-invalid", path, "a coding from the required value set %s is needed (system %s)", def.ValueSet, def.CodeSystem)
}

// primitiveExtension validates "_element": the id and extensions of a
// primitive, mirrored in shape (array or not) on the value's own property.
func (v *validator) primitiveExtension(val any, c child, path string, sibling any) {
	check := func(item any, p string) {
		if item == nil {
			return
		}
		obj, ok := item.(map[string]any)
		if !ok {
			v.add("structure", underscored(p), "must be a JSON object (id and extension of a primitive)")
			return
		}
		v.object(obj, "Element", p, false)
	}
	if c.def.Max != 1 {
		arr, ok := val.([]any)
		if !ok {
			v.add("structure", path, "extensions of a repeating primitive must be an array")
			return
		}
		if sib, ok := sibling.([]any); ok && len(sib) != len(arr) {
			v.add("structure", path, "value and extension arrays must have the same length")
		}
		for i, item := range arr {
			check(item, fmt.Sprintf("%s[%d]", path, i))
		}
		return
	}
	check(val, path)
}

// underscored is the path of a primitive's "_element" property:
// Patient.birthDate → Patient._birthDate.
func underscored(path string) string {
	i := strings.LastIndexByte(path, '.')
	return path[:i+1] + "_" + path[i+1:]
}

func isPrimitive(typ string) bool {
	t, ok := typesByName[typ]
	return ok && t.Kind == KindPrimitive
}

// primitive checks a primitive value's JSON type and lexical format.
func (v *validator) primitive(val any, typ, path string) {
	switch typ {
	case "boolean":
		if _, ok := val.(bool); !ok {
			v.add("value", path, "must be a JSON boolean")
		}
		return
	case "integer", "positiveInt", "unsignedInt", "decimal":
		n, ok := val.(json.Number)
		if !ok {
			v.add("value", path, "must be a JSON number (%s)", typ)
			return
		}
		if !primitiveRegex[typ].MatchString(string(n)) {
			v.add("value", path, "is not a valid %s", typ)
			return
		}
		if typ != "decimal" {
			if _, err := strconv.ParseInt(string(n), 10, 32); err != nil {
				v.add("value", path, "is out of range for a 32-bit %s", typ)
			}
			return
		}
		// A decimal beyond float64 could be stored but never found by a
		// search: refuse it rather than keep what no query can match.
		if f, err := strconv.ParseFloat(string(n), 64); err != nil || math.IsInf(f, 0) {
			v.add("value", path, "is beyond the range of decimals Hearth can search (about ±1.8e308)")
		}
		return
	}
	s, ok := val.(string)
	if !ok {
		v.add("value", path, "must be a JSON string (%s)", typ)
		return
	}
	if !utf8.ValidString(s) {
		v.add("value", path, "is not valid UTF-8")
		return
	}
	if typ == "xhtml" {
		if strings.TrimSpace(s) == "" || !strings.HasPrefix(strings.TrimSpace(s), "<div") {
			v.add("value", path, "narrative must be an XHTML <div> element")
		}
		return
	}
	if re := primitiveRegex[typ]; re != nil && !re.MatchString(s) {
		if s == "" {
			v.add("value", path, "must not be an empty string")
		} else {
			v.add("value", path, "is not a valid %s", typ)
		}
		return
	}
	switch typ {
	case "date", "dateTime", "instant":
		if !realCalendarDate(s) {
			v.add("value", path, "is not a real calendar date")
		}
	}
}

// realCalendarDate rejects dates the regular expression lets through, such
// as 2023-02-30.
func realCalendarDate(s string) bool {
	if len(s) < 10 {
		return true
	}
	_, err := time.Parse("2006-01-02", s[:10])
	return err == nil
}
