// Package match evaluates a FHIR search against one resource's index keys
// (fhir.Index) in memory, with the semantics of the embedded store's SQL:
// a backend whose database cannot express a condition exactly (MongoDB
// without $elemMatch, say) narrows candidates in the database and decides
// here, so it is never answered loosely.
package match

import (
	"bytes"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
)

// Candidate is one current resource.
type Candidate struct {
	ID          string
	LastUpdated int64 // Unix ms
	Index       *fhir.Index
	JSON        []byte // for _content
}

// Resolver answers, for a parameter that needs other resources, a set:
// for a chain, the "Type/id" of the referenced resources that match the
// inner condition; for _has and _list, the ids of the candidate type that
// qualify.
type Resolver func(typ string, p *fhir.SearchParam) (map[string]bool, error)

// Query is a search prepared for matching.
type Query struct {
	q    *fhir.SearchQuery
	sets map[*fhir.SearchParam]map[string]bool
	now  time.Time
}

// Prepare resolves the parts of q that need other resources.
func Prepare(q *fhir.SearchQuery, resolve Resolver) (*Query, error) {
	m := &Query{q: q, sets: map[*fhir.SearchParam]map[string]bool{}, now: time.Now()}
	for _, p := range q.Params {
		if p.Chain != nil || p.Has != nil || p.Name == "_list" {
			set, err := resolve(q.Type, p)
			if err != nil {
				return nil, err
			}
			m.sets[p] = set
		}
	}
	return m, nil
}

// Match reports whether c satisfies every parameter (and the compartment).
func (m *Query) Match(c *Candidate) bool {
	switch m.q.Compartment {
	case "":
	case fhir.AnyCompartment:
		if len(c.Index.Compartments) == 0 {
			return false
		}
	default:
		if !contains(c.Index.Compartments, m.q.Compartment) {
			return false
		}
	}
	for _, p := range m.q.Params {
		if !m.param(p, c) {
			return false
		}
	}
	return true
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func (m *Query) param(p *fhir.SearchParam, c *Candidate) bool {
	ix := c.Index
	switch {
	case p.Has != nil, p.Name == "_list":
		return m.sets[p][c.ID]
	case p.Chain != nil:
		set := m.sets[p]
		for _, r := range ix.Refs {
			if r.Param == p.Name && r.ID != "" && set[r.Type+"/"+r.ID] {
				return true
			}
		}
		return false
	}
	switch p.Name {
	case "_id":
		hit := false
		for _, v := range p.Values {
			if v.Code == c.ID {
				hit = true
			}
		}
		return hit != (p.Modifier == "not")
	case "_lastUpdated":
		for _, v := range p.Values {
			if eq, _, ne := v.NotEqual(); ne {
				// One value per resource: no value equal is this one unequal.
				if !m.rangeMatch(eq, c.LastUpdated, c.LastUpdated) {
					return true
				}
				continue
			}
			if m.rangeMatch(v, c.LastUpdated, c.LastUpdated) {
				return true
			}
		}
		return false
	case "_text":
		for _, v := range p.Values {
			for _, s := range ix.Strings {
				if s.Param == "_text" && strings.Contains(s.Norm, v.Str) {
					return true
				}
			}
		}
		return false
	case "_content":
		lower := bytes.ToLower(c.JSON)
		for _, v := range p.Values {
			if bytes.Contains(lower, []byte(v.Str)) {
				return true
			}
		}
		return false
	}
	if p.Modifier == "missing" {
		return has(ix, p) != p.Values[0].Missing
	}
	for i := range p.Values {
		if p.Values[i].IsNotEqual() {
			return m.notEqual(p, c)
		}
	}
	any := false
	for _, v := range p.Values {
		if m.anyValue(p, v, ix) {
			any = true
			break
		}
	}
	if p.Modifier == "not" {
		return !any
	}
	return any
}

// notEqual: for ne values, the resource has a value in the value's scope
// (a quantity's unit, a composite's first part) and none equal to it.
func (m *Query) notEqual(p *fhir.SearchParam, c *Candidate) bool {
	for _, v := range p.Values {
		if eq, scope, ne := v.NotEqual(); ne {
			if m.anyValue(p, scope, c.Index) && !m.anyValue(p, eq, c.Index) {
				return true
			}
			continue
		}
		if m.anyValue(p, v, c.Index) {
			return true
		}
	}
	return false
}

// has reports whether the resource has any key for the parameter.
func has(ix *fhir.Index, p *fhir.SearchParam) bool {
	n := p.Name
	switch p.Type {
	case "string":
		for _, k := range ix.Strings {
			if k.Param == n {
				return true
			}
		}
	case "token":
		for _, k := range ix.Tokens {
			if k.Param == n {
				return true
			}
		}
	case "reference":
		for _, k := range ix.Refs {
			if k.Param == n {
				return true
			}
		}
	case "date":
		for _, k := range ix.Dates {
			if k.Param == n {
				return true
			}
		}
	case "number":
		for _, k := range ix.Numbers {
			if k.Param == n {
				return true
			}
		}
	case "quantity":
		for _, k := range ix.Quantities {
			if k.Param == n {
				return true
			}
		}
	case "uri":
		for _, k := range ix.URIs {
			if k.Param == n {
				return true
			}
		}
	case "composite":
		for _, k := range ix.Composites {
			if k.Param == n {
				return true
			}
		}
	}
	return false
}

// anyValue reports whether some key of the parameter matches value v.
func (m *Query) anyValue(p *fhir.SearchParam, v fhir.SearchValue, ix *fhir.Index) bool {
	n := p.Name
	switch p.Type {
	case "string":
		for _, k := range ix.Strings {
			if k.Param != n {
				continue
			}
			switch p.Modifier {
			case "exact":
				if k.Exact == v.Str {
					return true
				}
			case "contains":
				if strings.Contains(k.Norm, v.Str) {
					return true
				}
			default:
				if strings.HasPrefix(k.Norm, v.Str) {
					return true
				}
			}
		}
	case "token":
		for _, k := range ix.Tokens {
			if k.Param != n {
				continue
			}
			if p.Modifier == "text" {
				if strings.HasPrefix(k.Text, v.Str) || strings.Contains(k.Text, " "+v.Str) {
					return true
				}
				continue
			}
			if tokenMatch(v, k.System, k.Code) {
				return true
			}
		}
	case "uri":
		for _, k := range ix.URIs {
			if k.Param != n {
				continue
			}
			switch p.Modifier {
			case "below":
				if strings.HasPrefix(k.URI, v.Str) {
					return true
				}
			case "above":
				if k.URI != "" && strings.HasPrefix(v.Str, k.URI) {
					return true
				}
			default:
				if k.URI == v.Str {
					return true
				}
			}
		}
	case "date":
		for _, k := range ix.Dates {
			if k.Param == n && m.rangeMatch(v, k.Lo, k.Hi) {
				return true
			}
		}
	case "number":
		for _, k := range ix.Numbers {
			if k.Param == n && numberMatch(v, k.Value) {
				return true
			}
		}
	case "quantity":
		for _, k := range ix.Quantities {
			if k.Param == n && quantityMatch(v, k.Value, k.System, k.Code, k.Unit) {
				return true
			}
		}
	case "reference":
		for _, k := range ix.Refs {
			if k.Param != n {
				continue
			}
			switch {
			case p.Modifier == "identifier":
				if tokenMatch(v, k.IdentSystem, k.IdentValue) {
					return true
				}
			case v.RefURL != "":
				if k.URL == v.RefURL {
					return true
				}
			case v.RefType != "":
				if k.ID == v.RefID && k.Type == v.RefType {
					return true
				}
			default:
				if k.ID == v.RefID {
					return true
				}
			}
		}
	case "composite":
		for _, k := range ix.Composites {
			if k.Param == n && m.compositeMatch(v, k) {
				return true
			}
		}
	}
	return false
}

func tokenMatch(v fhir.SearchValue, system, code string) bool {
	switch {
	case v.AnySystem:
		return code == v.Code
	case v.Code == "":
		return system == v.System
	default:
		return code == v.Code && system == v.System
	}
}

// rangeMatch compares a date prefix with a stored closed range [lo, hi].
func (m *Query) rangeMatch(v fhir.SearchValue, lo, hi int64) bool {
	switch v.Prefix {
	case fhir.AnyValue:
		return true
	case "gt":
		return hi > v.Hi
	case "lt":
		return lo < v.Lo
	case "ge":
		return hi > v.Hi || (lo >= v.Lo && hi <= v.Hi)
	case "le":
		return lo < v.Lo || (lo >= v.Lo && hi <= v.Hi)
	case "sa":
		return lo > v.Hi
	case "eb":
		return hi < v.Lo
	case "ap":
		d := int64(math.Abs(float64(m.now.UnixMilli()-v.Lo)) * 0.1)
		return lo <= v.Hi+d && hi >= v.Lo-d
	default:
		return lo >= v.Lo && hi <= v.Hi
	}
}

func numberMatch(v fhir.SearchValue, x float64) bool {
	switch v.Prefix {
	case fhir.AnyValue:
		return true
	case "gt", "sa":
		return x > v.Num
	case "lt", "eb":
		return x < v.Num
	case "ge":
		return x >= v.Num
	case "le":
		return x <= v.Num
	case "ap":
		d := math.Abs(v.Num) * 0.1
		return x >= v.Num-d && x <= v.Num+d
	default:
		return x >= v.NumLo && x < v.NumHi
	}
}

func quantityMatch(v fhir.SearchValue, x float64, system, code, unit string) bool {
	if !numberMatch(v, x) {
		return false
	}
	switch {
	case v.System != "" && v.Code != "":
		return system == v.System && code == v.Code
	case v.Code != "":
		return code == v.Code || unit == v.Code
	case v.System != "":
		return system == v.System
	}
	return true
}

func (m *Query) compositeMatch(v fhir.SearchValue, k fhir.CompositeKey) bool {
	a, b := v.Parts[0], v.Parts[1]
	if !tokenMatch(a, k.A.System, k.A.Code) {
		return false
	}
	switch b.Kind {
	case "token":
		return tokenMatch(b, k.B.System, k.B.Code)
	case "quantity":
		return quantityMatch(b, k.B.Lo, k.B.System, k.B.Code, k.B.Unit)
	case "number":
		return numberMatch(b, k.B.Lo)
	case "date":
		return m.rangeMatch(b, int64(k.B.Lo), int64(k.B.Hi))
	case "string":
		return strings.HasPrefix(k.B.Code, b.Str)
	case "reference":
		return k.B.Code == b.RefType+"/"+b.RefID
	case "uri":
		return k.B.Code == b.Str
	}
	return false
}

// Sort orders candidates by q.Sort, as the embedded store does: per key the
// smallest value ascending or the largest descending, resources without a
// value last either way, then by id.
func Sort(q *fhir.SearchQuery, cs []*Candidate) {
	type keyed struct {
		c    *Candidate
		vals []sortVal
	}
	ks := make([]keyed, len(cs))
	for i, c := range cs {
		ks[i] = keyed{c: c}
		for _, k := range q.Sort {
			ks[i].vals = append(ks[i].vals, sortValue(k, c))
		}
	}
	sort.SliceStable(ks, func(i, j int) bool {
		for n, k := range q.Sort {
			a, b := ks[i].vals[n], ks[j].vals[n]
			if a.missing != b.missing {
				return !a.missing
			}
			if a.missing {
				continue
			}
			if c := a.cmp(b); c != 0 {
				if k.Desc {
					return c > 0
				}
				return c < 0
			}
		}
		return ks[i].c.ID < ks[j].c.ID
	})
	for i := range ks {
		cs[i] = ks[i].c
	}
}

type sortVal struct {
	missing bool
	num     float64
	str     string
	isStr   bool
}

func (a sortVal) cmp(b sortVal) int {
	if a.isStr {
		return strings.Compare(a.str, b.str)
	}
	switch {
	case a.num < b.num:
		return -1
	case a.num > b.num:
		return 1
	}
	return 0
}

func sortValue(k fhir.SortKey, c *Candidate) sortVal {
	ix := c.Index
	out := sortVal{missing: true}
	pickStr := func(s string) {
		if out.missing || (k.Desc && s > out.str) || (!k.Desc && s < out.str) {
			out = sortVal{str: s, isStr: true}
		}
	}
	pickNum := func(x float64) {
		if out.missing || (k.Desc && x > out.num) || (!k.Desc && x < out.num) {
			out = sortVal{num: x}
		}
	}
	switch {
	case k.Name == "_id":
		return sortVal{str: c.ID, isStr: true}
	case k.Name == "_lastUpdated":
		return sortVal{num: float64(c.LastUpdated)}
	case k.Type == "string":
		for _, s := range ix.Strings {
			if s.Param == k.Name {
				pickStr(s.Norm)
			}
		}
	case k.Type == "token":
		for _, s := range ix.Tokens {
			if s.Param == k.Name {
				pickStr(s.Code)
			}
		}
	case k.Type == "date":
		for _, s := range ix.Dates {
			if s.Param == k.Name {
				if k.Desc {
					pickNum(float64(s.Hi))
				} else {
					pickNum(float64(s.Lo))
				}
			}
		}
	case k.Type == "number":
		for _, s := range ix.Numbers {
			if s.Param == k.Name {
				pickNum(s.Value)
			}
		}
	case k.Type == "quantity":
		for _, s := range ix.Quantities {
			if s.Param == k.Name {
				pickNum(s.Value)
			}
		}
	case k.Type == "uri":
		for _, s := range ix.URIs {
			if s.Param == k.Name {
				pickStr(s.URI)
			}
		}
	case k.Type == "reference":
		for _, s := range ix.Refs {
			if s.Param == k.Name {
				pickStr(s.URL)
			}
		}
	}
	return out
}
