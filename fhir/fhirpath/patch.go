package fhirpath

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
)

// Patch is a FHIRPath Patch (fhirpatch.html): a Parameters resource of
// operations — add, insert, delete, replace, move — each addressed by a
// FHIRPath expression.
type Patch struct {
	ops []patchOp
}

type patchOp struct {
	kind        string // add | insert | delete | replace | move
	pathText    string
	path        *Expression
	name        string
	value       *patchValue
	index       int
	source      int
	destination int
}

// patchValue is an operation's value: a typed value (valueString …) or an
// anonymous complex value made of parts.
type patchValue struct {
	typ   string // FHIR type of a typed value: string, CodeableConcept
	json  any    // the typed value as JSON
	ext   any    // its primitive extension (_valueString), if any
	parts []namedValue
}

type namedValue struct {
	name  string
	value *patchValue
}

// PatchError is a patch that is malformed or cannot apply to the resource.
// Its message names operations and paths, never resource values.
type PatchError struct{ Msg string }

func (e *PatchError) Error() string { return e.Msg }

func patchErrorf(format string, args ...any) error {
	return &PatchError{fmt.Sprintf(format, args...)}
}

// ParsePatch reads a FHIRPath Patch from a decoded Parameters resource
// (numbers as json.Number), compiling each path.
func ParsePatch(params map[string]any) (*Patch, error) {
	if params["resourceType"] != "Parameters" {
		return nil, patchErrorf("a FHIRPath Patch is a Parameters resource")
	}
	list, _ := params["parameter"].([]any)
	p := &Patch{}
	for i, item := range list {
		param, _ := item.(map[string]any)
		if param["name"] != "operation" {
			return nil, patchErrorf("parameter %d: a FHIRPath Patch has only parameters named operation", i)
		}
		op, err := parseOp(param)
		if err != nil {
			return nil, patchErrorf("operation %d: %v", i, err)
		}
		p.ops = append(p.ops, op)
	}
	return p, nil
}

func parseOp(param map[string]any) (patchOp, error) {
	var op patchOp
	parts, _ := param["part"].([]any)
	seen := map[string]bool{}
	for _, item := range parts {
		part, _ := item.(map[string]any)
		name, _ := part["name"].(string)
		if seen[name] {
			return op, fmt.Errorf("part %s is given twice", name)
		}
		seen[name] = true
		var ok bool
		switch name {
		case "type":
			op.kind, ok = part["valueCode"].(string)
		case "path":
			op.pathText, ok = part["valueString"].(string)
		case "name":
			op.name, ok = part["valueString"].(string)
		case "index", "source", "destination":
			var n int
			n, ok = intPart(part)
			switch name {
			case "index":
				op.index = n
			case "source":
				op.source = n
			default:
				op.destination = n
			}
		case "value":
			var err error
			if op.value, err = parseValue(part); err != nil {
				return op, err
			}
			ok = true
		default:
			return op, fmt.Errorf("unknown part %q", name)
		}
		if !ok {
			return op, fmt.Errorf("part %s has the wrong type", name)
		}
	}
	var need []string
	switch op.kind {
	case "add":
		need = []string{"path", "name", "value"}
	case "insert":
		need = []string{"path", "index", "value"}
	case "delete":
		need = []string{"path"}
	case "replace":
		need = []string{"path", "value"}
	case "move":
		need = []string{"path", "source", "destination"}
	case "":
		return op, fmt.Errorf("type is missing")
	default:
		return op, fmt.Errorf("unknown type %q (add, insert, delete, replace or move)", op.kind)
	}
	for _, n := range need {
		if !seen[n] {
			return op, fmt.Errorf("%s needs a %s part", op.kind, n)
		}
	}
	e, err := Compile(op.pathText)
	if err != nil {
		return op, fmt.Errorf("path: %v", err)
	}
	op.path = e
	return op, nil
}

func intPart(part map[string]any) (int, bool) {
	n, ok := part["valueInteger"].(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return int(i), err == nil && i >= 0
}

// parseValue reads a value part: one value[x], or parts of an anonymous
// complex value.
func parseValue(part map[string]any) (*patchValue, error) {
	if sub, ok := part["part"].([]any); ok {
		v := &patchValue{}
		for _, item := range sub {
			p, _ := item.(map[string]any)
			name, _ := p["name"].(string)
			if name == "" {
				return nil, fmt.Errorf("a part of a value has no name")
			}
			pv, err := parseValue(p)
			if err != nil {
				return nil, err
			}
			v.parts = append(v.parts, namedValue{name, pv})
		}
		return v, nil
	}
	for k, val := range part {
		typ, ok := strings.CutPrefix(k, "value")
		if !ok || typ == "" {
			continue
		}
		if lower := strings.ToLower(typ[:1]) + typ[1:]; isPrimitiveType(lower) {
			typ = lower
		}
		return &patchValue{typ: typ, json: val, ext: part["_"+k]}, nil
	}
	return nil, fmt.Errorf("a value part has no value")
}

func isPrimitiveType(name string) bool {
	t, ok := fhir.LookupType(name)
	return ok && t.Kind == fhir.KindPrimitive
}

// Apply patches a resource's JSON and returns the patched JSON.
func (p *Patch) Apply(doc []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var res map[string]any
	if err := d.Decode(&res); err != nil {
		return nil, patchErrorf("the resource is not JSON")
	}
	if err := p.ApplyTo(res); err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

// ApplyTo patches a decoded resource in place, operation by operation.
func (p *Patch) ApplyTo(res map[string]any) error {
	for i, op := range p.ops {
		if err := op.apply(res); err != nil {
			return patchErrorf("operation %d (%s at %s): %v", i, op.kind, op.pathText, err)
		}
	}
	prune(res)
	return nil
}

// prune removes the objects and arrays a delete left empty: FHIR has no
// empty elements.
func prune(obj map[string]any) {
	for k, v := range obj {
		switch x := v.(type) {
		case map[string]any:
			if prune(x); len(x) == 0 {
				delete(obj, k)
			}
		case []any:
			kept := x[:0]
			for _, item := range x {
				if m, ok := item.(map[string]any); ok {
					if prune(m); len(m) == 0 {
						continue
					}
				}
				kept = append(kept, item)
			}
			if len(kept) == 0 {
				delete(obj, k)
			} else {
				obj[k] = kept
			}
		}
	}
}

func (op patchOp) apply(res map[string]any) error {
	found, err := op.path.Evaluate(Collection{Resource(res)}, nil)
	if err != nil {
		return err
	}
	nodes := make([]*Node, 0, len(found))
	for _, item := range found {
		n, ok := item.(*Node)
		if !ok {
			return fmt.Errorf("the path gives a value computed by the expression, not an element of the resource")
		}
		nodes = append(nodes, n)
	}
	switch op.kind {
	case "add":
		return op.add(nodes)
	case "delete":
		if len(nodes) == 0 {
			return nil // nothing there: nothing to delete
		}
		if len(nodes) > 1 {
			return fmt.Errorf("the path gives %d elements; delete removes one", len(nodes))
		}
		return removeAt(nodes[0])
	case "replace":
		if len(nodes) != 1 {
			return fmt.Errorf("the path gives %d elements; replace needs one", len(nodes))
		}
		n := nodes[0]
		if n.parent == nil {
			return fmt.Errorf("the resource itself cannot be replaced")
		}
		v, err := op.value.build(elementTypePath(n))
		if err != nil {
			return err
		}
		setAt(n.parent, n.key, n.index, v)
		setExtAt(n.parent, n.key, n.index, op.value.ext)
		return nil
	}
	// insert and move act on a list: the values of one repeating element.
	list, err := oneList(nodes)
	if err != nil {
		return err
	}
	arr := list.parent[list.key].([]any)
	if op.kind == "insert" {
		if op.index > len(arr) {
			return fmt.Errorf("index %d is beyond the list's %d items", op.index, len(arr))
		}
		v, err := op.value.build(elementTypePath(list))
		if err != nil {
			return err
		}
		list.parent[list.key] = slices.Insert(arr, op.index, v)
		if exts, ok := list.parent["_"+list.key].([]any); ok {
			list.parent["_"+list.key] = slices.Insert(exts, op.index, op.value.ext)
		}
		return nil
	}
	if op.source >= len(arr) || op.destination >= len(arr) {
		return fmt.Errorf("source %d or destination %d is beyond the list's %d items", op.source, op.destination, len(arr))
	}
	list.parent[list.key] = move(arr, op.source, op.destination)
	if exts, ok := list.parent["_"+list.key].([]any); ok && len(exts) == len(arr) {
		list.parent["_"+list.key] = move(exts, op.source, op.destination)
	}
	return nil
}

func move(arr []any, from, to int) []any {
	v := arr[from]
	arr = slices.Delete(arr, from, from+1)
	return slices.Insert(arr, to, v)
}

// oneList checks the nodes are the whole of one repeating element.
func oneList(nodes []*Node) (*Node, error) {
	if len(nodes) == 0 {
		return nil, fmt.Errorf("no content found at the path")
	}
	first := nodes[0]
	for _, n := range nodes {
		if n.parent == nil || n.index < 0 || n.key != first.key || !sameMap(n.parent, first.parent) {
			return nil, fmt.Errorf("the path does not give the items of one list")
		}
	}
	return first, nil
}

// sameMap reports whether a and b are the one map (maps do not compare
// with ==; the same parent is the same map header).
func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func (op patchOp) add(nodes []*Node) error {
	if len(nodes) != 1 {
		if len(nodes) == 0 {
			return fmt.Errorf("no content found at the path when adding")
		}
		return fmt.Errorf("the path gives %d elements; add needs one to add to", len(nodes))
	}
	n := nodes[0]
	obj, ok := n.object()
	if !ok {
		return fmt.Errorf("the path gives a primitive, which has no element %s", op.name)
	}
	m := lookupMember(n.typePath(), op.name)
	if m.unknown {
		return fmt.Errorf("%s has no element %s", n.Type, op.name)
	}
	key, typePath := op.name, m.childDef
	if typePath == "" {
		typePath = m.typ
	}
	if m.choices != nil {
		key = ""
		for _, c := range m.choices {
			if strings.EqualFold(c.typ, op.value.typ) {
				key, typePath = c.key, c.typ
			}
		}
		if key == "" {
			return fmt.Errorf("%s[x] cannot be a %s", op.name, op.value.typ)
		}
	}
	v, err := op.value.build(typePath)
	if err != nil {
		return err
	}
	def, _ := fhir.Element(m.elem)
	if def != nil && def.Max != 1 {
		arr, _ := obj[key].([]any)
		obj[key] = append(arr, v)
		if exts, ok := obj["_"+key].([]any); ok {
			obj["_"+key] = append(exts, op.value.ext)
		}
		return nil
	}
	if _, exists := obj[key]; exists {
		return fmt.Errorf("%s already has a value; use replace", op.name)
	}
	obj[key] = v
	if op.value.ext != nil {
		obj["_"+key] = op.value.ext
	}
	return nil
}

// build makes the JSON of a value; typePath is where the element model
// of an anonymous value's parts is found.
func (v *patchValue) build(typePath string) (any, error) {
	if v.parts == nil {
		return v.json, nil
	}
	obj := map[string]any{}
	for _, p := range v.parts {
		m := lookupMember(typePath, p.name)
		if m.unknown {
			return nil, fmt.Errorf("%s has no element %s", typePath, p.name)
		}
		childPath := m.childDef
		if childPath == "" {
			childPath = m.typ
		}
		val, err := p.value.build(childPath)
		if err != nil {
			return nil, err
		}
		key := p.name
		if m.choices != nil && p.value.typ != "" {
			key = p.name + strings.ToUpper(p.value.typ[:1]) + p.value.typ[1:]
		}
		if def, ok := fhir.Element(m.elem); ok && def.Max != 1 {
			arr, _ := obj[key].([]any)
			obj[key] = append(arr, val)
			continue
		}
		obj[key] = val
	}
	return obj, nil
}

// elementTypePath is where the children of n's element are defined.
func elementTypePath(n *Node) string { return n.typePath() }

// removeAt deletes the value n from its parent, with its extensions.
func removeAt(n *Node) error {
	if n.parent == nil {
		return fmt.Errorf("the resource itself cannot be deleted")
	}
	if n.index < 0 {
		delete(n.parent, n.key)
		delete(n.parent, "_"+n.key)
		return nil
	}
	for _, k := range []string{n.key, "_" + n.key} {
		arr, ok := n.parent[k].([]any)
		if !ok || n.index >= len(arr) {
			continue
		}
		arr = slices.Delete(arr, n.index, n.index+1)
		if len(arr) == 0 {
			delete(n.parent, k)
		} else {
			n.parent[k] = arr
		}
	}
	return nil
}

func setAt(parent map[string]any, key string, index int, v any) {
	if index < 0 {
		parent[key] = v
		return
	}
	if arr, ok := parent[key].([]any); ok && index < len(arr) {
		arr[index] = v
	}
}

// setExtAt replaces a primitive's extensions along with its value.
func setExtAt(parent map[string]any, key string, index int, ext any) {
	k := "_" + key
	if index < 0 {
		if ext == nil {
			delete(parent, k)
		} else {
			parent[k] = ext
		}
		return
	}
	if arr, ok := parent[k].([]any); ok && index < len(arr) {
		arr[index] = ext
	}
}
