package fhir

import (
	"encoding/json"
	"sort"
)

// TokenKey is one token a resource can be found by: a search parameter code
// with a system and a code (or identifier value). System is "" when the
// element has none (a bare code, a boolean).
type TokenKey struct {
	Param  string
	System string
	Code   string
}

// ExtractTokens returns the token index entries of a resource, for every
// token search parameter of its type whose expression Hearth can evaluate.
// They are computed at write time and stored beside the resource.
func ExtractTokens(resourceType string, res map[string]any) []TokenKey {
	seen := map[TokenKey]bool{}
	for _, p := range SearchParams(resourceType) {
		if p.Type != "token" || p.Expression == "" || p.Code == "_id" {
			continue
		}
		pe, err := compilePath(p.Expression)
		if err != nil {
			continue
		}
		for _, n := range pe.Evaluate(resourceType, res) {
			for _, sc := range tokenValues(n) {
				seen[TokenKey{Param: p.Code, System: sc[0], Code: sc[1]}] = true
			}
		}
	}
	out := make([]TokenKey, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Param != b.Param {
			return a.Param < b.Param
		}
		if a.System != b.System {
			return a.System < b.System
		}
		return a.Code < b.Code
	})
	return out
}

// TokenParamSupported reports whether a token parameter of resourceType is
// indexed, so a search on it can be answered exactly.
func TokenParamSupported(resourceType, code string) bool {
	p, ok := SearchParam(resourceType, code)
	if !ok || p.Type != "token" || p.Expression == "" {
		return false
	}
	_, err := compilePath(p.Expression)
	return err == nil
}

// tokenValues lists the (system, code) pairs a node contributes to a token index.
func tokenValues(n Node) [][2]string {
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	switch v := n.Value.(type) {
	case map[string]any:
		switch n.Type {
		case "Coding":
			if c := str(v, "code"); c != "" {
				return [][2]string{{str(v, "system"), c}}
			}
		case "CodeableConcept":
			var out [][2]string
			codings, _ := v["coding"].([]any)
			for _, c := range codings {
				out = append(out, tokenValues(Node{Value: c, Type: "Coding"})...)
			}
			return out
		case "Identifier":
			if val := str(v, "value"); val != "" {
				return [][2]string{{str(v, "system"), val}}
			}
		case "ContactPoint":
			if val := str(v, "value"); val != "" {
				return [][2]string{{"", val}}
			}
		}
	case string:
		return [][2]string{{"", v}}
	case bool:
		if v {
			return [][2]string{{"", "true"}}
		}
		return [][2]string{{"", "false"}}
	case json.Number:
		return [][2]string{{"", v.String()}}
	}
	return nil
}
