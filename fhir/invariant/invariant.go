// Package invariant checks a resource against the invariants of the R4
// resources and data types (their constraints), evaluated with the
// FHIRPath engine. The structural validator (fhir.Validate) runs first;
// invariants assume a structurally valid resource.
package invariant

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/fhir/fhirpath"
)

type constraint struct {
	key, severity, human string
	expr                 *fhirpath.Expression
}

var (
	compileOnce sync.Once
	byPath      map[string][]constraint // element path or type → its invariants
	notCompiled map[string]error        // constraint key → why it does not compile
)

// skippedKeys are R4 invariants Hearth does not evaluate, with the reason.
var skippedKeys = map[string]string{}

func compileAll() {
	byPath = map[string][]constraint{}
	notCompiled = map[string]error{}
	for _, c := range fhir.Constraints() {
		if _, skip := skippedKeys[c.Key]; skip {
			continue
		}
		e, err := fhirpath.CompileR4(c.Expression)
		if err != nil {
			notCompiled[c.Key] = err
			continue
		}
		byPath[c.Path] = append(byPath[c.Path], constraint{c.Key, c.Severity, c.Human, e})
	}
}

// NotCompiled lists the invariants whose expressions the engine cannot
// compile, by key; a test keeps it empty.
func NotCompiled() map[string]error {
	compileOnce.Do(compileAll)
	return notCompiled
}

// Check evaluates every invariant that applies to the resource and its
// elements, contained resources and bundle entries included. Errors are
// issues with severity error (the resource is invalid), warnings with
// severity warning.
func Check(res map[string]any) []fhir.Issue {
	compileOnce.Do(compileAll)
	root := fhirpath.Resource(res)
	w := &walker{}
	if root.Type == "Bundle" {
		w.env.Resolve = bundleResolver(res)
	}
	w.visit(root, &step{name: root.Type, index: -1}, root, root)
	// The walk visits properties in no set order; the answer has one.
	slices.SortStableFunc(w.issues, func(a, b fhir.Issue) int {
		return cmp.Or(strings.Compare(a.Expression, b.Expression), strings.Compare(a.Diagnostics, b.Diagnostics))
	})
	return w.issues
}

type walker struct {
	issues []fhir.Issue
	env    fhirpath.Env
}

// step is one segment of an instance path (Patient.name[0].period),
// rendered only when an issue needs it: most nodes have none.
type step struct {
	parent *step
	name   string
	index  int // -1: not a repeating element
}

func (s *step) String() string {
	var b strings.Builder
	var write func(s *step)
	write = func(s *step) {
		if s.parent != nil {
			write(s.parent)
			b.WriteByte('.')
		}
		b.WriteString(s.name)
		if s.index >= 0 {
			fmt.Fprintf(&b, "[%d]", s.index)
		}
	}
	write(s)
	return b.String()
}

// visit checks the invariants of n (at instance path at) and then of its
// children. resource is %resource, root %rootResource.
func (w *walker) visit(n *fhirpath.Node, at *step, resource, root *fhirpath.Node) {
	for _, c := range constraintsOf(n.Type, n.ElementPath()) {
		w.check(n, c, at, resource, root)
	}
	lastElem, index := "", 0
	for _, item := range n.UnorderedChildren() {
		child := item.(*fhirpath.Node)
		elem := child.ElementPath()
		if elem != lastElem {
			lastElem, index = elem, 0
		}
		seg := segmentOf(elem)
		childAt := &step{parent: at, name: seg.name, index: -1}
		if seg.repeats {
			childAt.index = index
			index++
		}
		childResource, childRoot := resource, root
		if fhir.IsResourceType(child.Type) {
			if seg.contained {
				childResource = child // %rootResource stays the container
			} else {
				childResource, childRoot = child, child
			}
		}
		w.visit(child, childAt, childResource, childRoot)
	}
}

// segment is what the walker needs of an element path, worked out once.
type segment struct {
	name      string // the FHIRPath name ("value" for value[x])
	repeats   bool
	contained bool
}

var segments sync.Map // element path → segment

func segmentOf(elem string) segment {
	if s, ok := segments.Load(elem); ok {
		return s.(segment)
	}
	name := strings.TrimSuffix(elem[strings.LastIndexByte(elem, '.')+1:], "[x]")
	def, ok := fhir.Element(elem)
	s := segment{name: name, repeats: ok && def.Max != 1 || elem == "Element.extension", contained: strings.HasSuffix(elem, ".contained")}
	segments.Store(elem, s)
	return s
}

// constraintsOf are the invariants of a node of type typ that is a value
// of element elem: the type's own and the element's, each key once.
var constraintSets sync.Map // [2]string → []constraint

func constraintsOf(typ, elem string) []constraint {
	key := [2]string{typ, elem}
	if cs, ok := constraintSets.Load(key); ok {
		return cs.([]constraint)
	}
	var cs []constraint
	seen := map[string]bool{}
	for _, path := range []string{typ, elem} {
		for _, c := range byPath[path] {
			if !seen[c.key] {
				seen[c.key] = true
				cs = append(cs, c)
			}
		}
	}
	constraintSets.Store(key, cs)
	return cs
}

func (w *walker) check(n *fhirpath.Node, c constraint, at *step, resource, root *fhirpath.Node) {
	w.env.Resource, w.env.RootResource = resource, root
	ok, err := c.expr.Predicate(fhirpath.Collection{n}, &w.env)
	switch {
	case err != nil:
		w.issues = append(w.issues, fhir.Issue{Severity: "error", Code: "invariant", Expression: at.String(),
			Diagnostics: fmt.Sprintf("%s could not be evaluated: %v", c.key, err)})
	case !ok:
		w.issues = append(w.issues, fhir.Issue{Severity: c.severity, Code: "invariant", Expression: at.String(),
			Diagnostics: c.key + ": " + c.human})
	}
}

// bundleResolver resolves references between a bundle's entries: by
// fullUrl, and by Type/id for entries whose fullUrl ends so.
func bundleResolver(bundle map[string]any) func(string) (*fhirpath.Node, bool) {
	byURL := map[string]map[string]any{}
	entries, _ := bundle["entry"].([]any)
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		res, _ := entry["resource"].(map[string]any)
		if res == nil {
			continue
		}
		if u, _ := entry["fullUrl"].(string); u != "" {
			byURL[u] = res
		}
		rt, _ := res["resourceType"].(string)
		id, _ := res["id"].(string)
		if rt != "" && id != "" {
			byURL[rt+"/"+id] = res
		}
	}
	return func(ref string) (*fhirpath.Node, bool) {
		res, ok := byURL[ref]
		if !ok {
			return nil, false
		}
		return fhirpath.Resource(res), true
	}
}
