package fhir

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Node is one value found by evaluating a path: the decoded JSON value and
// its FHIR type, known from the element model as the path is walked.
type Node struct {
	Value    any
	Type     string      // type code: "CodeableConcept", "code", "Reference", …
	TypePath string      // where the node's children are defined
	Def      *ElementDef // the element the node was found in; nil for a resource
}

// pathExpr is a compiled search-parameter expression: a union of paths.
type pathExpr struct {
	alts []pathAlt
}

type pathAlt struct {
	root  string
	steps []pathStep
}

type pathStep struct {
	name     string // element name to navigate to; "" for a filter only
	index    int    // -1 unless [n]
	ofType   string // keep only nodes of this type (as/ofType)
	resolve  string // where(resolve() is T): keep references to T
	eqField  string // where(field = 'value')
	eqValue  string
	function bool // an unsupported function: the expression cannot be evaluated
}

var (
	exprCache sync.Map // string → *pathExpr or error
)

// compilePath compiles the subset of FHIRPath used by R4 and US Core search
// parameter expressions: unions, navigation, choice types, indexes, `as`,
// `ofType()`, `where(resolve() is T)` and `where(x = 'literal')`. Anything
// else is reported as unsupported so that a search on it is refused instead
// of answered wrongly.
func compilePath(expr string) (*pathExpr, error) {
	if v, ok := exprCache.Load(expr); ok {
		if err, isErr := v.(error); isErr {
			return nil, err
		}
		return v.(*pathExpr), nil
	}
	pe, err := compilePathUncached(expr)
	if err != nil {
		exprCache.Store(expr, err)
		return nil, err
	}
	exprCache.Store(expr, pe)
	return pe, nil
}

func compilePathUncached(expr string) (*pathExpr, error) {
	pe := &pathExpr{}
	for _, part := range splitTop(expr, '|') {
		alt, err := compileAlt(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("expression %q: %w", expr, err)
		}
		pe.alts = append(pe.alts, alt)
	}
	return pe, nil
}

func compileAlt(s string) (pathAlt, error) {
	for strings.HasPrefix(s, "(") && matchingParen(s, 0) == len(s)-1 {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	var asType string
	if i := strings.LastIndex(s, " as "); i > 0 && !strings.Contains(s[i:], "(") {
		asType = strings.TrimSpace(s[i+4:])
		s = strings.TrimSpace(s[:i])
		for strings.HasPrefix(s, "(") && matchingParen(s, 0) == len(s)-1 {
			s = strings.TrimSpace(s[1 : len(s)-1])
		}
	}
	segs := splitTop(s, '.')
	if len(segs) == 0 || strings.ContainsAny(segs[0], "() '=") {
		return pathAlt{}, fmt.Errorf("unsupported start %q", s)
	}
	alt := pathAlt{root: segs[0]}
	for _, seg := range segs[1:] {
		step := pathStep{index: -1}
		switch {
		case strings.HasPrefix(seg, "where(resolve() is ") && strings.HasSuffix(seg, ")"):
			step.resolve = strings.TrimSuffix(strings.TrimPrefix(seg, "where(resolve() is "), ")")
		case strings.HasPrefix(seg, "where(") && strings.HasSuffix(seg, ")"):
			cond := seg[len("where(") : len(seg)-1]
			kv := strings.SplitN(cond, "=", 2)
			if len(kv) != 2 || strings.ContainsAny(kv[0], "()!<>") {
				return pathAlt{}, fmt.Errorf("unsupported filter %q", seg)
			}
			val := strings.TrimSpace(kv[1])
			if !strings.HasPrefix(val, "'") || !strings.HasSuffix(val, "'") {
				return pathAlt{}, fmt.Errorf("unsupported filter %q", seg)
			}
			step.eqField = strings.TrimSpace(kv[0])
			step.eqValue = strings.Trim(val, "'")
		case strings.HasPrefix(seg, "as(") || strings.HasPrefix(seg, "ofType("):
			step.ofType = seg[strings.IndexByte(seg, '(')+1 : len(seg)-1]
		case strings.ContainsAny(seg, "() '="):
			return pathAlt{}, fmt.Errorf("unsupported step %q", seg)
		default:
			name := seg
			if i := strings.IndexByte(seg, '['); i > 0 && strings.HasSuffix(seg, "]") {
				name = seg[:i]
				if _, err := fmt.Sscanf(seg[i+1:len(seg)-1], "%d", &step.index); err != nil {
					return pathAlt{}, fmt.Errorf("unsupported index %q", seg)
				}
			}
			step.name = name
		}
		alt.steps = append(alt.steps, step)
	}
	if asType != "" {
		alt.steps = append(alt.steps, pathStep{index: -1, ofType: asType})
	}
	return alt, nil
}

// splitTop splits s at sep where sep is outside parentheses and quotes.
func splitTop(s string, sep byte) []string {
	var out []string
	depth, start, quoted := 0, 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == sep && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func matchingParen(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// evaluateFrom evaluates an expression relative to a node, as composite
// components are ("code", "value.ofType(Quantity)").
func (pe *pathExpr) evaluateFrom(n Node) []Node {
	var out []Node
	for _, alt := range pe.alts {
		nodes := children(n, alt.root)
		for _, st := range alt.steps {
			nodes = st.apply(nodes)
			if len(nodes) == 0 {
				break
			}
		}
		out = append(out, nodes...)
	}
	return out
}

// Evaluate returns the nodes an expression selects in a decoded resource.
func (pe *pathExpr) Evaluate(resourceType string, res map[string]any) []Node {
	var out []Node
	for _, alt := range pe.alts {
		if alt.root != resourceType && alt.root != "Resource" && alt.root != "DomainResource" {
			continue
		}
		nodes := []Node{{Value: res, Type: resourceType, TypePath: resourceType}}
		for _, st := range alt.steps {
			nodes = st.apply(nodes)
			if len(nodes) == 0 {
				break
			}
		}
		out = append(out, nodes...)
	}
	return out
}

func (st pathStep) apply(in []Node) []Node {
	var out []Node
	switch {
	case st.name != "":
		for _, n := range in {
			out = append(out, children(n, st.name)...)
		}
		if st.index >= 0 {
			if st.index < len(out) {
				return out[st.index : st.index+1]
			}
			return nil
		}
	case st.ofType != "":
		for _, n := range in {
			// FHIRPath names types in either case: ofType(DateTime), as Quantity.
			if strings.EqualFold(n.Type, st.ofType) {
				out = append(out, n)
			}
		}
	case st.resolve != "":
		for _, n := range in {
			obj, _ := n.Value.(map[string]any)
			ref, _ := obj["reference"].(string)
			if refType(ref) == st.resolve {
				out = append(out, n)
			}
		}
	case st.eqField != "":
		for _, n := range in {
			obj, _ := n.Value.(map[string]any)
			if v, _ := obj[st.eqField].(string); v == st.eqValue {
				out = append(out, n)
			}
		}
	}
	return out
}

// refType returns the resource type a literal reference points at.
func refType(ref string) string {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2]
}

// children navigates from n to its element name, flattening arrays and
// expanding choice elements (value → valueQuantity, valueString, …).
func children(n Node, name string) []Node {
	obj, ok := n.Value.(map[string]any)
	if !ok {
		return nil
	}
	kids := childrenOf[n.TypePath]
	var out []Node
	add := func(key string, c child) {
		typePath := c.typ
		switch {
		case c.def.ContentRef != "":
			typePath = c.def.ContentRef
		case c.typ == "BackboneElement" || c.typ == "Element":
			typePath = c.def.Path
		}
		switch v := obj[key].(type) {
		case nil:
		case []any:
			for _, item := range v {
				if item != nil {
					out = append(out, Node{Value: item, Type: c.typ, TypePath: typePath, Def: c.def})
				}
			}
		default:
			out = append(out, Node{Value: v, Type: c.typ, TypePath: typePath, Def: c.def})
		}
	}
	if c, ok := kids[name]; ok {
		// A plain element, or one type of a choice named directly (valueDateTime).
		add(name, c)
		return out
	}
	if _, isChoiceElem := elementByPath[n.TypePath+"."+name+"[x]"]; isChoiceElem {
		for key := range obj {
			if c, ok := kids[key]; ok && c.name == name {
				add(key, c)
			}
		}
	}
	// A resource in Bundle.entry.resource or contained: its own type.
	if len(out) == 1 && out[0].Type == "Resource" {
		if m, ok := out[0].Value.(map[string]any); ok {
			rt, _ := m["resourceType"].(string)
			out[0].Type, out[0].TypePath = rt, rt
		}
	}
	return out
}

// DecodeResource decodes a resource for evaluation, keeping numbers exact.
func DecodeResource(body []byte) (map[string]any, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}
