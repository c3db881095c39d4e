package fhirpath

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/hearth-fhir/hearth/fhir"
)

// Env is what an evaluation may use besides its input: variables (%name),
// the clock for now() and today(), and resolve() of references.
type Env struct {
	// Vars are the %variables the expression may name, beyond those
	// FHIRPath defines (%resource, %context, %ucum, %sct, %loinc, …).
	Vars map[string]Collection
	// Now is the instant now() and today() give; zero means time.Now().
	Now time.Time
	// Resolve finds the resource a reference names, for resolve(); nil
	// resolves nothing. It is given the reference string.
	Resolve func(ref string) (*Node, bool)
	// Trace receives trace() output; nil drops it.
	Trace func(name string, c Collection)
	// Resource is %resource when the input is not itself the resource (an
	// invariant of a data type evaluated on an element of a resource).
	Resource *Node
	// RootResource is %rootResource: the resource that contains Resource
	// when that is a contained one; nil means Resource.
	RootResource *Node
}

// EvalError is a failure while evaluating: a singleton expected and a
// collection given, or operands of the wrong types.
type EvalError struct{ Msg string }

func (e *EvalError) Error() string { return "FHIRPath: " + e.Msg }

func errorf(format string, args ...any) error { return &EvalError{fmt.Sprintf(format, args...)} }

// Evaluate runs the expression on input (usually one resource node).
func (e *Expression) Evaluate(input Collection, env *Env) (Collection, error) {
	if env == nil {
		env = &Env{}
	}
	c := &ctx{env: env, root: input}
	if len(input) == 1 {
		c.this = input[0]
	}
	c.resource, c.rootResource = input, input
	if env.Resource != nil {
		c.resource, c.rootResource = Collection{env.Resource}, Collection{env.Resource}
	}
	if env.RootResource != nil {
		c.rootResource = Collection{env.RootResource}
	}
	c.r4 = e.r4
	if env.Now.IsZero() {
		c.now = time.Now()
	} else {
		c.now = env.Now
	}
	return e.root.eval(c, input)
}

// Predicate evaluates the expression as an invariant: true when it gives
// true, false when false; empty counts as true (nothing to violate), as
// the FHIR validator treats it.
func (e *Expression) Predicate(input Collection, env *Env) (bool, error) {
	out, err := e.Evaluate(input, env)
	if err != nil {
		return false, err
	}
	if len(out) == 0 {
		return true, nil
	}
	b, ok := singletonBool(out)
	if !ok {
		return false, errorf("%s gives %d items, not a boolean", e.src, len(out))
	}
	return b, nil
}

type ctx struct {
	env          *Env
	root         Collection
	resource     Collection
	rootResource Collection
	r4           bool
	this         any
	index        int64
	total        Collection
	now          time.Time
}

// with is the context of a lambda's body for one item.
func (c *ctx) with(item any, index int) *ctx {
	n := *c
	n.this = item
	n.index = int64(index)
	return &n
}

type expr interface {
	eval(c *ctx, focus Collection) (Collection, error)
}

type literal struct{ val Collection }

func (l *literal) eval(*ctx, Collection) (Collection, error) { return l.val, nil }

type variable struct{ name string }

// wellKnown are the %variables FHIR defines.
var wellKnown = map[string]string{
	"%ucum": "http://unitsofmeasure.org", "%sct": "http://snomed.info/sct", "%loinc": "http://loinc.org",
}

func (v *variable) eval(c *ctx, _ Collection) (Collection, error) {
	switch v.name {
	case "$this":
		if c.this == nil {
			return nil, nil
		}
		return Collection{c.this}, nil
	case "$index":
		return Collection{c.index}, nil
	case "$total":
		return c.total, nil
	case "%context":
		return c.root, nil
	case "%rootResource":
		return c.rootResource, nil
	case "%resource":
		return c.resource, nil
	}
	if s, ok := wellKnown[v.name]; ok {
		return Collection{s}, nil
	}
	if vs, ok := strings.CutPrefix(v.name, "%vs-"); ok {
		return Collection{"http://hl7.org/fhir/ValueSet/" + vs}, nil
	}
	if ext, ok := strings.CutPrefix(v.name, "%ext-"); ok {
		return Collection{"http://hl7.org/fhir/StructureDefinition/" + ext}, nil
	}
	if val, ok := c.env.Vars[v.name[1:]]; ok {
		return val, nil
	}
	return nil, errorf("unknown variable %s", v.name)
}

// member is navigation to a child by name; with no target it applies to
// the focus, where a type name selects the focus itself (Patient.name).
type member struct {
	target expr
	name   string
}

func (m *member) eval(c *ctx, focus Collection) (Collection, error) {
	input := focus
	if m.target != nil {
		var err error
		if input, err = m.target.eval(c, focus); err != nil {
			return nil, err
		}
	} else if isTypeName(m.name) {
		var out Collection
		for _, item := range input {
			if n, ok := item.(*Node); ok && n.Type == m.name {
				out = append(out, n)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	var out Collection
	var unknown error
	known := false
	for _, item := range input {
		switch v := item.(type) {
		case *Node:
			var err error
			if out, err = v.member(m.name, out); err != nil {
				unknown = err
				continue
			}
			known = true
		case TypeInfo:
			switch m.name {
			case "name":
				out = append(out, v.Name)
			case "namespace":
				out = append(out, v.Namespace)
			}
		}
	}
	// A name no item can have is a misspelt path; in a mixed collection
	// (descendants()) the name belongs to some items only.
	if unknown != nil && !known && !c.r4 {
		return nil, unknown
	}
	return out, nil
}

// isTypeName reports whether a name can be a resource type at the start
// of a path: Patient, not name.
func isTypeName(name string) bool {
	return name != "" && name[0] >= 'A' && name[0] <= 'Z' && fhir.IsResourceType(name) || name == "Resource" || name == "DomainResource"
}

type indexer struct{ x, index expr }

func (ix *indexer) eval(c *ctx, focus Collection) (Collection, error) {
	in, err := ix.x.eval(c, focus)
	if err != nil {
		return nil, err
	}
	idx, err := ix.index.eval(c, Collection{c.this})
	if err != nil {
		return nil, err
	}
	if len(idx) == 0 {
		return nil, nil
	}
	i, ok := singleInteger(idx)
	if !ok {
		return nil, errorf("an index must be one integer")
	}
	if i < 0 || i >= int64(len(in)) {
		return nil, nil
	}
	return Collection{in[i]}, nil
}

type unaryOp struct {
	op string
	x  expr
}

func (u *unaryOp) eval(c *ctx, focus Collection) (Collection, error) {
	v, err := u.x.eval(c, focus)
	if err != nil || len(v) == 0 || u.op == "+" {
		return v, err
	}
	if len(v) > 1 {
		return nil, errorf("- needs one value, not %d", len(v))
	}
	switch x := system(v[0]).(type) {
	case int64:
		return Collection{-x}, nil
	case decimal.Decimal:
		return Collection{x.Neg()}, nil
	case Quantity:
		return Collection{Quantity{x.Value.Neg(), x.Unit}}, nil
	}
	return nil, errorf("- cannot negate %s", typeName(v[0]))
}

// typeSpec is a type named in is, as or ofType.
type typeSpec struct{ namespace, name string }

var systemTypes = map[string]bool{
	"Boolean": true, "String": true, "Integer": true, "Decimal": true, "Date": true,
	"DateTime": true, "Time": true, "Quantity": true, "Any": true,
}

// resolve settles the namespace of an unqualified name: FHIR types first
// (Quantity is FHIR's), then System's.
func (ts typeSpec) resolve() (typeSpec, error) {
	switch ts.namespace {
	case "FHIR":
		if !isKnownType(ts.name) && ts.name != "Resource" {
			return ts, errorf("unknown type FHIR.%s", ts.name)
		}
		return ts, nil
	case "System":
		return ts, nil // System.Patient is simply never matched
	case "":
		if isKnownType(ts.name) {
			return typeSpec{"FHIR", ts.name}, nil
		}
		if systemTypes[ts.name] {
			return typeSpec{"System", ts.name}, nil
		}
		return ts, errorf("unknown type %s", ts.name)
	}
	return ts, errorf("unknown type namespace %s", ts.namespace)
}

// is reports whether item is of the type; exact leaves out subtypes (as
// and ofType take code as not a string, as the R4 test suite expects).
func (ts typeSpec) is(item any, exact bool) (bool, error) {
	r, err := ts.resolve()
	if err != nil {
		return false, err
	}
	n, isNode := item.(*Node)
	if r.namespace == "System" {
		if isNode {
			return false, nil
		}
		return TypeOf(item).Name == r.name || r.name == "Any", nil
	}
	if !isNode {
		return false, nil
	}
	if n.Type == r.name {
		return true, nil
	}
	if exact {
		return false, nil
	}
	for t := n.Type; t != ""; {
		def, ok := fhir.LookupType(t)
		if !ok {
			return false, nil
		}
		if def.Base == r.name {
			return true, nil
		}
		t = def.Base
	}
	return false, nil
}

type typeOp struct {
	op  string
	x   expr
	typ typeSpec
}

func (t *typeOp) eval(c *ctx, focus Collection) (Collection, error) {
	in, err := t.x.eval(c, focus)
	if err != nil || len(in) == 0 {
		return nil, err
	}
	if t.op == "as" && c.r4 {
		var out Collection
		for _, item := range in {
			ok, err := t.typ.is(item, true)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, item)
			}
		}
		return out, nil
	}
	if len(in) > 1 {
		return nil, errorf("%s needs one value, not %d", t.op, len(in))
	}
	ok, err := t.typ.is(in[0], t.op == "as")
	if err != nil {
		return nil, err
	}
	if t.op == "is" {
		return Collection{ok}, nil
	}
	if ok {
		return in, nil
	}
	return nil, nil
}

// call is a function applied to its target, or to the focus.
type call struct {
	target expr
	name   string
	fn     *function
	args   []expr
	typ    typeSpec // is(), as(), ofType()
}

func (f *call) eval(c *ctx, focus Collection) (Collection, error) {
	input := focus
	if f.target != nil {
		var err error
		if input, err = f.target.eval(c, focus); err != nil {
			return nil, err
		}
	}
	out, err := f.fn.impl(c, f, input)
	if err != nil {
		var ee *EvalError
		if !errors.As(err, &ee) {
			return nil, err
		}
		return nil, errorf("%s(): %s", f.name, strings.TrimPrefix(ee.Msg, f.name+"(): "))
	}
	return out, nil
}

// arg evaluates argument i as a plain (not per-item) value: relative to
// $this, as FHIRPath evaluates the arguments of a function.
func (f *call) arg(c *ctx, i int) (Collection, error) {
	var focus Collection
	if c.this != nil {
		focus = Collection{c.this}
	}
	return f.args[i].eval(c, focus)
}

// lambda evaluates argument i for one item of the input, as where() and
// select() do.
func (f *call) lambda(c *ctx, i int, item any, index int) (Collection, error) {
	return f.args[i].eval(c.with(item, index), Collection{item})
}

// singletonBool is a collection as a Boolean: one boolean, or one item of
// any other type (which counts as true).
func singletonBool(in Collection) (bool, bool) {
	if len(in) != 1 {
		return false, false
	}
	if b, ok := system(in[0]).(bool); ok {
		return b, true
	}
	return true, true
}

func singleInteger(in Collection) (int64, bool) {
	if len(in) != 1 {
		return 0, false
	}
	i, ok := system(in[0]).(int64)
	return i, ok
}

func singleString(in Collection) (string, bool) {
	if len(in) != 1 {
		return "", false
	}
	s, ok := system(in[0]).(string)
	return s, ok
}

// resolveReference finds the resource a reference names: a contained
// resource (#id) of %resource, or what the Env's Resolve finds.
func (c *ctx) resolveReference(ref string) (*Node, bool) {
	if id, ok := strings.CutPrefix(ref, "#"); ok {
		for _, r := range c.resource {
			n, ok := r.(*Node)
			if !ok {
				continue
			}
			m, _ := n.object()
			contained, _ := m["contained"].([]any)
			for _, x := range contained {
				if cm, ok := x.(map[string]any); ok && cm["id"] == id {
					return Resource(cm), true
				}
			}
		}
		return nil, false
	}
	if c.env.Resolve == nil {
		return nil, false
	}
	return c.env.Resolve(ref)
}
