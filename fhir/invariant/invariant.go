// Package invariant checks a resource against the invariants of the R4
// resources and data types (their constraints), evaluated with the
// FHIRPath engine. The structural validator (fhir.Validate) runs first;
// invariants assume a structurally valid resource.
package invariant

import (
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
	w.visit(root, root.Type, root, root)
	return w.issues
}

type walker struct {
	issues []fhir.Issue
	env    fhirpath.Env
	seen   []string // keys checked on the current node
}

// visit checks the invariants of n (at instance path at) and then of its
// children. resource is %resource, root %rootResource.
func (w *walker) visit(n *fhirpath.Node, at string, resource, root *fhirpath.Node) {
	w.seen = w.seen[:0]
	w.check(n, byPath[n.Type], at, resource, root)
	if elem := n.ElementPath(); elem != "" && elem != n.Type {
		w.check(n, byPath[elem], at, resource, root)
	}
	children := n.Children()
	index := map[string]int{}
	for _, item := range children {
		child := item.(*fhirpath.Node)
		elem := child.ElementPath()
		name := elem[strings.LastIndexByte(elem, '.')+1:]
		name = strings.TrimSuffix(name, "[x]")
		childAt := at + "." + name
		if def, ok := fhir.Element(elem); ok && def.Max != 1 || elem == "Element.extension" {
			childAt = fmt.Sprintf("%s[%d]", childAt, index[elem])
			index[elem]++
		}
		childResource, childRoot := resource, root
		if fhir.IsResourceType(child.Type) {
			if strings.HasSuffix(elem, ".contained") {
				childResource = child // %rootResource stays the container
			} else {
				childResource, childRoot = child, child
			}
		}
		w.visit(child, childAt, childResource, childRoot)
	}
}

func (w *walker) check(n *fhirpath.Node, cs []constraint, at string, resource, root *fhirpath.Node) {
	for _, c := range cs {
		if slices.Contains(w.seen, c.key) {
			continue
		}
		w.seen = append(w.seen, c.key)
		w.env.Resource, w.env.RootResource = resource, root
		ok, err := c.expr.Predicate(fhirpath.Collection{n}, &w.env)
		switch {
		case err != nil:
			w.issues = append(w.issues, fhir.Issue{Severity: "error", Code: "invariant", Expression: at,
				Diagnostics: fmt.Sprintf("%s could not be evaluated: %v", c.key, err)})
		case !ok:
			w.issues = append(w.issues, fhir.Issue{Severity: c.severity, Code: "invariant", Expression: at,
				Diagnostics: c.key + ": " + c.human})
		}
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
