package fhirpath

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hearth-fhir/hearth/fhir"
)

// Node is one element of a FHIR resource as FHIRPath sees it: the
// client's decoded JSON (never a struct, which would drop what it does not
// know) and the FHIR type the element model gives it.
type Node struct {
	// Val is the JSON value: map[string]any for a complex element or a
	// resource, string, json.Number or bool for a primitive, nil for a
	// primitive present only through its extensions.
	Val any
	// Ext is a primitive's "_name" object: its id and extensions.
	Ext map[string]any
	// Type is the FHIR type: "HumanName", "code", "Patient", "BackboneElement".
	Type string
	// def is the element path whose children this node has when that is not
	// Type: a backbone element ("Patient.contact").
	def string
	// elem is the path of the element definition it is a value of
	// ("Patient.name", "Observation.value[x]"); "" for a root.
	elem string
	// Where the value sits in its parent object, for FHIRPath Patch: the
	// property and, in an array, the position (-1 for a single value).
	parent map[string]any
	key    string
	index  int
}

// ElementPath is the path of the element definition the node is a value
// of ("Patient.contact.name"), or "" for the root resource.
func (n *Node) ElementPath() string { return n.elem }

// Child is the node's values of the FHIRPath name (value finds
// valueQuantity); an error for a name its type does not have.
func (n *Node) Child(name string) (Collection, error) { return n.member(name, nil) }

// Children lists the node's child nodes, properties in name order.
func (n *Node) Children() Collection { return n.children(nil) }

// UnorderedChildren lists the node's child nodes, the values of each
// property together but the properties in no set order: for walkers that
// visit every child and need no order (the invariant check).
func (n *Node) UnorderedChildren() Collection { return n.childrenOf(nil, false) }

// Resource wraps a decoded resource as the root of an evaluation.
func Resource(res map[string]any) *Node {
	rt, _ := res["resourceType"].(string)
	return &Node{Val: res, Type: rt}
}

func (n *Node) typePath() string {
	if n.def != "" {
		return n.def
	}
	return n.Type
}

func (n *Node) object() (map[string]any, bool) {
	m, ok := n.Val.(map[string]any)
	return m, ok
}

// UnknownElementError is navigation to a name the element model does not
// have: a misspelt path, which FHIRPath calls a semantic error.
type UnknownElementError struct{ Type, Name string }

func (e *UnknownElementError) Error() string {
	return fmt.Sprintf("%s has no element %s", e.Type, e.Name)
}

// member is the FHIRPath child name of n: "value" finds valueQuantity;
// "given" gives each of the values with their extensions.
func (n *Node) member(name string, out Collection) (Collection, error) {
	obj, isObj := n.object()
	if !isObj {
		// A primitive's children are those of Element, kept in "_name".
		switch name {
		case "extension":
			return appendValues(out, n.Ext, name, "Extension", "", "Element.extension"), nil
		case "id":
			return appendValues(out, n.Ext, name, "string", "", "Element.id"), nil
		}
		if isKnownType(n.Type) {
			return out, &UnknownElementError{n.Type, name}
		}
		return out, nil
	}
	m := lookupMember(n.typePath(), name)
	switch {
	case m.unknown:
		return out, &UnknownElementError{n.Type, name}
	case m.choices != nil:
		for _, c := range m.choices {
			if _, ok := obj[c.key]; ok || obj[c.extKey] != nil {
				out = appendValues(out, obj, c.key, c.typ, "", m.elem)
			}
		}
		return out, nil
	}
	return appendValues(out, obj, name, m.typ, m.childDef, m.elem), nil
}

// memberInfo is what a FHIRPath name means on a type path, worked out once.
type memberInfo struct {
	typ, childDef, elem string
	choices             []choiceKey // a choice element's JSON names
	unknown             bool        // the model has no such element
}

type choiceKey struct{ key, extKey, typ string }

type memberKey struct{ base, name string }

var members sync.Map // memberKey → *memberInfo

func lookupMember(base, name string) *memberInfo {
	k := memberKey{base, name}
	if m, ok := members.Load(k); ok {
		return m.(*memberInfo)
	}
	m := &memberInfo{}
	if def, ok := fhir.Element(base + "." + name); ok {
		m.typ, m.childDef = childType(def, base)
		m.elem = def.Path
	} else if def, ok := fhir.Element(base + "." + name + "[x]"); ok {
		m.elem = def.Path
		m.choices = []choiceKey{}
		for _, t := range def.Types {
			key := name + strings.ToUpper(t[:1]) + t[1:]
			m.choices = append(m.choices, choiceKey{key, "_" + key, t})
		}
	} else if fhir.HasChildren(base) {
		m.unknown = true
	}
	// Otherwise a type the model does not know (an unknown resource
	// type): the JSON is followed as it is.
	members.Store(k, m)
	return m
}

// childType is the FHIR type of def's values and the path their own
// children are defined under when it is not the type.
func childType(def *fhir.ElementDef, parent string) (typ, childDef string) {
	if def.ContentRef != "" {
		ref, ok := fhir.Element(def.ContentRef)
		if ok && len(ref.Types) == 1 {
			typ = ref.Types[0]
		}
		return typ, def.ContentRef
	}
	if len(def.Types) != 1 {
		return "", ""
	}
	typ = def.Types[0]
	switch {
	case typ == "BackboneElement" || typ == "Element" && fhir.HasChildren(def.Path):
		return typ, def.Path
	case typ == "string" && strings.HasSuffix(def.Path, ".id") && !strings.Contains(parent, "."):
		// Resource.id is an id (R4 writes its type as System.String).
		if t, ok := fhir.LookupType(parent); ok && t.Kind == fhir.KindResource {
			return "id", ""
		}
	}
	return typ, ""
}

// appendValues adds the values of parent[key] (one or an array) with
// their primitive extensions ("_key", mirrored in shape) as nodes of type
// typ.
func appendValues(out Collection, parent map[string]any, key, typ, def, elem string) Collection {
	v, ext := parent[key], parent["_"+key]
	at := location{parent, key, -1}
	if arr, ok := v.([]any); ok {
		exts, _ := ext.([]any)
		for i, item := range arr {
			var e any
			if i < len(exts) {
				e = exts[i]
			}
			at.index = i
			out = appendValue(out, item, e, typ, def, elem, at)
		}
		return out
	}
	if v == nil {
		if exts, ok := ext.([]any); ok {
			for i, e := range exts {
				at.index = i
				out = appendValue(out, nil, e, typ, def, elem, at)
			}
			return out
		}
	}
	return appendValue(out, v, ext, typ, def, elem, at)
}

// location is where a value sits: parent[key], or parent[key][index].
type location struct {
	parent map[string]any
	key    string
	index  int
}

func appendValue(out Collection, v, ext any, typ, def, elem string, at location) Collection {
	e, _ := ext.(map[string]any)
	if v == nil && e == nil {
		return out
	}
	if typ == "Resource" || typ == "" {
		if m, ok := v.(map[string]any); ok {
			if rt, ok := m["resourceType"].(string); ok {
				typ, def = rt, ""
			}
		}
	}
	if typ == "" {
		typ = jsonType(v)
	}
	return append(out, &Node{Val: v, Ext: e, Type: typ, def: def, elem: elem, parent: at.parent, key: at.key, index: at.index})
}

// jsonType is a guess at the type of a value the model does not describe.
func jsonType(v any) string {
	switch v := v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		if strings.ContainsAny(string(v), ".eE") {
			return "decimal"
		}
		return "integer"
	}
	return "Element"
}

func isKnownType(name string) bool {
	_, ok := fhir.LookupType(name)
	return ok
}

// children is every child node of n, properties in name order.
func (n *Node) children(out Collection) Collection { return n.childrenOf(out, true) }

func (n *Node) childrenOf(out Collection, sorted bool) Collection {
	obj, ok := n.object()
	if !ok {
		out = appendValues(out, n.Ext, "extension", "Extension", "", "Element.extension")
		return appendValues(out, n.Ext, "id", "string", "", "Element.id")
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		if k == "resourceType" || strings.HasPrefix(k, "_") {
			continue
		}
		keys = append(keys, k)
	}
	// Properties present only by their extensions ("_given" alone).
	for k := range obj {
		if strings.HasPrefix(k, "_") && obj[k[1:]] == nil {
			keys = append(keys, k[1:])
		}
	}
	if sorted {
		slices.Sort(keys)
	}
	base := n.typePath()
	for _, k := range keys {
		def, typ, ok := fhir.ChildElement(base, k)
		childDef, elem := "", ""
		if ok {
			elem = def.Path
			if !strings.HasSuffix(def.Path, "[x]") {
				typ, childDef = childType(def, base)
			}
		}
		out = appendValues(out, obj, k, typ, childDef, elem)
	}
	return out
}

// system is the System value of a FHIR primitive or Quantity node, or nil
// when it has none (a complex node, or a primitive with only extensions).
func (n *Node) system() any {
	switch v := n.Val.(type) {
	case bool:
		return v
	case json.Number:
		switch n.Type {
		case "integer", "positiveInt", "unsignedInt", "integer64":
			if i, err := v.Int64(); err == nil {
				return i
			}
		}
		d, err := parseDecimal(string(v))
		if err != nil {
			return nil
		}
		return d
	case string:
		switch n.Type {
		case "date":
			if t, ok := parseTemporal(v, KindDate); ok {
				return t
			}
		case "dateTime", "instant":
			if t, ok := parseTemporal(v, KindDateTime); ok {
				return t
			}
		case "time":
			if t, ok := parseTemporal(v, KindTime); ok {
				return t
			}
		}
		return v
	case map[string]any:
		if isQuantityType(n.Type) {
			return quantityOf(v)
		}
	}
	return nil
}

func isQuantityType(t string) bool {
	switch t {
	case "Quantity", "Age", "Distance", "Duration", "Count", "SimpleQuantity", "MoneyQuantity":
		return true
	}
	return false
}

func quantityOf(m map[string]any) any {
	n, ok := m["value"].(json.Number)
	if !ok {
		return nil
	}
	d, err := parseDecimal(string(n))
	if err != nil {
		return nil
	}
	unit, _ := m["code"].(string)
	if unit == "" {
		unit, _ = m["unit"].(string)
	}
	return Quantity{Value: d, Unit: unit}
}
