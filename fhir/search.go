package fhir

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// SearchQuery is a FHIR search parsed into a typed, backend-neutral form.
// Every backend compiles it; none sees the raw query string.
type SearchQuery struct {
	Type        string
	Params      []*SearchParam // all must match (AND)
	Sort        []SortKey
	Count       int    // page size
	Total       string // none | estimate | accurate ("" = server's choice)
	Summary     string // true | text | data | count | false
	Elements    []string
	Includes    []Include
	RevIncludes []Include
	// Compartment restricts matches to one Patient's compartment: compartment
	// search (Patient/1/Observation) and patient-scoped tokens; or, as
	// AnyCompartment, to resources in some Patient's compartment (a bulk
	// export of every patient's data).
	// search (Patient/1/Observation) and patient-scoped tokens.
	Compartment string
	// Ignored lists parameters that were not understood and were ignored
	// under Prefer: handling=lenient.
	Ignored []string
	// Canonical is the query as understood, for the self link.
	Canonical url.Values
}

// AnyCompartment as a query's Compartment matches the resources that
// belong to at least one Patient's compartment. No Patient id contains it.
const AnyCompartment = "*"

// SearchParam is one parameter condition: any of Values must match (OR).
type SearchParam struct {
	Name     string
	Type     string // string, token, reference, date, number, quantity, uri, composite, special
	Def      *SearchParamDef
	Modifier string // exact, contains, missing, not, text, below, above, identifier, or a type for references
	Values   []SearchValue
	Chain    *Chain // subject:Patient.name=…
	Has      *Has   // _has:Observation:patient:code=…
}

// Chain continues a reference parameter into the referenced resources.
type Chain struct {
	Types []string     // candidate target types; none: the chain matches nothing
	Param *SearchParam // the condition on the target (itself possibly chained)
	// Scopes narrows the targets of each type to what the session may see
	// (nil: no narrowing).
	Scopes map[string]*Scope
}

// Has is reverse chaining: resources of Type whose RefParam points at the
// candidate and that match Param.
type Has struct {
	Type     string
	RefParam string
	Param    *SearchParam
	Scope    *Scope // narrows the sources to what the session may see
}

// Scope narrows a sub-query — the targets of a chain, the sources of a
// _has — exactly as a top-level search of that type is narrowed for an
// access token: to one Patient's compartment and further conditions. The
// door to the data sets it on every sub-query of a restricted session; a
// request never carries one.
type Scope struct {
	Compartment string         // only resources in this Patient's compartment
	Params      []*SearchParam // and matching every one of these
}

// SearchValue is one value of a parameter, parsed for its type.
// IsNotEqual: the value has the ne prefix, on its number or on the number
// part of a composite (see NotEqual).
func (v *SearchValue) IsNotEqual() bool {
	return v.Prefix == "ne" || len(v.Parts) == 2 && v.Parts[1].Prefix == "ne"
}

// AnyValue is the prefix of a value that matches every value of its kind
// (never parsed from a query: NotEqual makes it).
const AnyValue = "*"

// NotEqual splits a value with the ne prefix (on its number, or on the
// number part of a composite) into what "no value equal" means: the
// resource has a value in the value's scope (a quantity's unit, a
// composite's first part) and none equal to it. ok is false for a value
// without ne.
func (v SearchValue) NotEqual() (eq, scope SearchValue, ok bool) {
	if !v.IsNotEqual() {
		return v, v, false
	}
	switch {
	case v.Prefix == "ne":
		eq, scope = v, v
		eq.Prefix, scope.Prefix = "eq", AnyValue
		return eq, scope, true
	case len(v.Parts) == 2 && v.Parts[1].Prefix == "ne":
		eq, scope = v, v
		eq.Parts, scope.Parts = slices.Clone(v.Parts), slices.Clone(v.Parts)
		eq.Parts[1].Prefix, scope.Parts[1].Prefix = "eq", AnyValue
		return eq, scope, true
	}
	return v, v, false
}

type SearchValue struct {
	Raw    string
	Prefix string // eq, ne, gt, lt, ge, le, sa, eb, ap (date, number, quantity)

	// token, and the units of a quantity
	System    string
	Code      string
	AnySystem bool // no "|" given: any system matches

	// string (normalised unless :exact), uri, token :text
	Str string

	// date: closed range in Unix ms
	Lo, Hi int64

	// number and quantity: the value and the range its precision implies
	Num          float64
	NumLo, NumHi float64

	// reference
	RefType string
	RefID   string
	RefURL  string

	// :missing
	Missing bool

	// composite: one value per component, each with its Kind
	Parts []SearchValue
	Kind  string // the parameter type of a composite part
}

// SortKey is one _sort key.
type SortKey struct {
	Name string
	Type string
	Desc bool
}

// Include is one _include or _revinclude.
type Include struct {
	SourceType string // the type holding the reference
	Param      string // the reference parameter; "*" for all
	TargetType string // restrict to this target type; "" for any
	Iterate    bool
}

// SearchError is a problem with the search request itself (a 400).
type SearchError struct{ Msg string }

func (e *SearchError) Error() string { return e.Msg }

func searchErr(format string, args ...any) error {
	return &SearchError{Msg: fmt.Sprintf(format, args...)}
}

// SearchOptions are the server's paging limits and handling preference.
type SearchOptions struct {
	DefaultCount int
	MaxCount     int
	Strict       bool // Prefer: handling=strict
	// BaseURL lets absolute references to this server match local ones.
	BaseURL string
}

var resultParams = map[string]bool{
	"_sort": true, "_count": true, "_include": true, "_revinclude": true, "_summary": true,
	"_elements": true, "_total": true, "_contained": true, "_containedType": true,
	"_format": true, "_pretty": true, "_page": true,
}

// Limits of one search, checked before any store sees the query: each
// bounds work a short request could otherwise multiply, and each answers a
// 400 naming it.
const (
	// MaxChainDepth bounds the links of one parameter: chained references
	// and _has levels together (subject:Patient.organization.name is 2).
	MaxChainDepth = 4
	// MaxValues bounds the values of one parameter (an OR).
	MaxValues = 100
	// MaxConditions bounds the search parameters of one query, repeats
	// included (an AND).
	MaxConditions = 64
	// MaxSortKeys bounds the keys of _sort.
	MaxSortKeys = 8
	// MaxIncludes bounds the _include and _revinclude parameters.
	MaxIncludes = 16
)

// ParseSearch parses the query parameters of a search on resourceType.
func ParseSearch(resourceType string, params url.Values, opts SearchOptions) (*SearchQuery, error) {
	q := &SearchQuery{Type: resourceType, Count: opts.DefaultCount, Canonical: url.Values{}}
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
		if depth := strings.Count(name, ".") + strings.Count(name, "_has:"); depth > MaxChainDepth {
			return nil, searchErr("%s: chains and _has may be at most %d links deep (this is %d)", QuoteSafe(name), MaxChainDepth, depth)
		}
	}
	sort.Strings(names)
	conditions := 0
	for _, name := range names {
		if base, _, _ := strings.Cut(name, ":"); !resultParams[base] {
			if conditions += len(params[name]); conditions > MaxConditions {
				return nil, searchErr("a search may have at most %d search parameters", MaxConditions)
			}
		}
		for _, raw := range params[name] {
			if err := q.parseOne(name, raw, opts); err != nil {
				return nil, err
			}
		}
	}
	if len(q.Sort) > MaxSortKeys {
		return nil, searchErr("_sort may have at most %d keys", MaxSortKeys)
	}
	if len(q.Includes)+len(q.RevIncludes) > MaxIncludes {
		return nil, searchErr("a search may have at most %d _include and _revinclude parameters", MaxIncludes)
	}
	if q.Count > opts.MaxCount {
		q.Count = opts.MaxCount
		q.Canonical.Set("_count", strconv.Itoa(q.Count))
	}
	return q, nil
}

func (q *SearchQuery) parseOne(name, raw string, opts SearchOptions) error {
	base, mod, _ := strings.Cut(name, ":")
	if resultParams[base] {
		return q.parseResultParam(base, mod, raw, opts)
	}
	if strings.HasPrefix(name, "_has:") {
		p, err := parseHas(q.Type, name, raw, opts)
		if err != nil {
			return err
		}
		q.Params = append(q.Params, p)
		q.Canonical.Add(name, raw)
		return nil
	}
	p, err := parseParam(q.Type, name, raw, opts)
	if err != nil {
		if ue, ok := err.(*unknownParamError); ok {
			if opts.Strict {
				return searchErr("unknown search parameter %q for %s", ue.name, q.Type)
			}
			q.Ignored = append(q.Ignored, ue.name)
			return nil
		}
		return err
	}
	q.Params = append(q.Params, p)
	q.Canonical.Add(name, raw)
	return nil
}

type unknownParamError struct{ name string }

func (e *unknownParamError) Error() string { return "unknown search parameter " + e.name }

func (q *SearchQuery) parseResultParam(name, mod, raw string, opts SearchOptions) error {
	switch name {
	case "_count":
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			return searchErr("_count must be a non-negative integer")
		}
		q.Count = n
		q.Canonical.Set("_count", raw)
	case "_total":
		switch raw {
		case "none", "estimate", "accurate":
			q.Total = raw
			q.Canonical.Set("_total", raw)
		default:
			return searchErr("_total must be none, estimate or accurate")
		}
	case "_summary":
		switch raw {
		case "true", "text", "data", "count", "false":
			q.Summary = raw
			q.Canonical.Set("_summary", raw)
		default:
			return searchErr("_summary must be true, text, data, count or false")
		}
	case "_elements":
		for _, e := range strings.Split(raw, ",") {
			if e = strings.TrimSpace(e); e != "" {
				q.Elements = append(q.Elements, e)
			}
		}
		q.Canonical.Set("_elements", raw)
	case "_sort":
		for _, key := range strings.Split(raw, ",") {
			key = strings.TrimSpace(key)
			desc := strings.HasPrefix(key, "-")
			key = strings.TrimPrefix(key, "-")
			typ := ""
			switch key {
			case "_id":
				typ = "token"
			case "_lastUpdated":
				typ = "date"
			default:
				def, ok := LookupSearchParam(q.Type, key)
				if !ok || !ParamIndexed(q.Type, key) {
					return searchErr("cannot sort %s by %q: not a supported search parameter", q.Type, key)
				}
				if def.Type == "composite" || def.Type == "special" {
					return searchErr("cannot sort by %s parameter %q", def.Type, key)
				}
				typ = def.Type
			}
			q.Sort = append(q.Sort, SortKey{Name: key, Type: typ, Desc: desc})
		}
		q.Canonical.Set("_sort", raw)
	case "_include", "_revinclude":
		inc, err := parseInclude(q.Type, name, mod, raw)
		if err != nil {
			return err
		}
		if name == "_include" {
			q.Includes = append(q.Includes, inc)
		} else {
			q.RevIncludes = append(q.RevIncludes, inc)
		}
		key := name
		if mod != "" {
			key += ":" + mod
		}
		q.Canonical.Add(key, raw)
	case "_contained":
		if raw != "false" {
			return searchErr("_contained=%s is not supported", raw)
		}
	case "_containedType":
		return searchErr("_containedType is not supported")
	}
	return nil
}

func parseInclude(searchType, name, mod, raw string) (Include, error) {
	inc := Include{}
	switch mod {
	case "":
	case "iterate", "recurse":
		inc.Iterate = true
	default:
		return inc, searchErr("%s:%s is not a valid modifier", name, mod)
	}
	if raw == "*" {
		inc.SourceType, inc.Param = searchType, "*"
		if name == "_revinclude" {
			return inc, searchErr("_revinclude=* is not supported; name the resource type and parameter")
		}
		return inc, nil
	}
	parts := strings.Split(raw, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return inc, searchErr("%s must be Type:parameter or Type:parameter:TargetType", name)
	}
	inc.SourceType, inc.Param = parts[0], parts[1]
	if len(parts) == 3 {
		inc.TargetType = parts[2]
		if !IsResourceType(inc.TargetType) {
			return inc, searchErr("%s: unknown target type %q", name, inc.TargetType)
		}
	}
	if !IsResourceType(inc.SourceType) {
		return inc, searchErr("%s: unknown resource type %q", name, inc.SourceType)
	}
	if inc.Param == "*" {
		return inc, nil
	}
	def, ok := LookupSearchParam(inc.SourceType, inc.Param)
	if !ok || def.Type != "reference" || !ParamIndexed(inc.SourceType, inc.Param) {
		return inc, searchErr("%s: %s is not a reference parameter of %s", name, inc.Param, inc.SourceType)
	}
	if name == "_include" && inc.SourceType != searchType && !inc.Iterate {
		return inc, searchErr("_include=%s: the source type must be %s (or use _include:iterate)", raw, searchType)
	}
	return inc, nil
}

// parseHas parses _has:Type:refParam:param=value, nested as deep as given.
func parseHas(searchType, name, raw string, opts SearchOptions) (*SearchParam, error) {
	rest := strings.TrimPrefix(name, "_has:")
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) < 3 {
		return nil, searchErr("_has must be _has:Type:reference:parameter")
	}
	typ, refParam, inner := parts[0], parts[1], parts[2]
	if !IsResourceType(typ) {
		return nil, searchErr("_has: unknown resource type %q", typ)
	}
	def, ok := LookupSearchParam(typ, refParam)
	if !ok || def.Type != "reference" || !ParamIndexed(typ, refParam) {
		return nil, searchErr("_has: %s is not a reference parameter of %s", refParam, typ)
	}
	var p *SearchParam
	var err error
	if strings.HasPrefix(inner, "_has:") {
		p, err = parseHas(typ, inner, raw, opts)
	} else {
		p, err = parseParam(typ, inner, raw, opts)
	}
	if err != nil {
		if ue, ok := err.(*unknownParamError); ok {
			return nil, searchErr("_has: unknown search parameter %q for %s", ue.name, typ)
		}
		return nil, err
	}
	return &SearchParam{Name: "_has", Type: "special", Has: &Has{Type: typ, RefParam: refParam, Param: p}}, nil
}

// parseParam parses name[:modifier][.chain]=raw for resourceType.
func parseParam(resourceType, name, raw string, opts SearchOptions) (*SearchParam, error) {
	head, chainRest, chained := strings.Cut(name, ".")
	code, mod, _ := strings.Cut(head, ":")
	switch code {
	case "_query", "_filter":
		return nil, searchErr("%s is not supported", code)
	case "_text", "_content", "_list":
		if mod != "" || chained {
			return nil, searchErr("%s takes no modifier", code)
		}
		p := &SearchParam{Name: code, Type: "special"}
		vals := splitValues(raw)
		if len(vals) > MaxValues {
			return nil, searchErr("%s may have at most %d values", code, MaxValues)
		}
		for _, v := range vals {
			if v == "" {
				return nil, searchErr("%s: empty value", code)
			}
			sv := SearchValue{Raw: v, Str: Normalize(v)}
			if code == "_list" {
				sv.RefID = v
			}
			p.Values = append(p.Values, sv)
		}
		return p, nil
	}
	def, ok := LookupSearchParam(resourceType, code)
	if !ok {
		return nil, &unknownParamError{name: code}
	}
	if !ParamIndexed(resourceType, code) {
		return nil, searchErr("search parameter %q of %s is not supported (its expression cannot be evaluated exactly)", code, resourceType)
	}
	p := &SearchParam{Name: code, Type: def.Type, Def: def, Modifier: mod}
	if (code == "_id" && mod != "" && mod != "not") || (code == "_lastUpdated" && mod != "") {
		return nil, searchErr("%s:%s is not supported", code, mod)
	}
	if chained {
		if def.Type != "reference" {
			return nil, searchErr("%s: only reference parameters can be chained", code)
		}
		types := def.Targets
		if mod != "" {
			if !IsResourceType(mod) {
				return nil, searchErr("%s: unknown chain type %q", code, mod)
			}
			types = []string{mod}
		}
		var candidates []string
		var inner *SearchParam
		for _, t := range types {
			ip, err := parseParam(t, chainRest, raw, opts)
			if err != nil {
				if _, unknown := err.(*unknownParamError); unknown {
					continue
				}
				return nil, err
			}
			candidates = append(candidates, t)
			if inner == nil {
				inner = ip
			}
		}
		if len(candidates) == 0 {
			return nil, searchErr("%s.%s: no target type of %s has that parameter", code, chainRest, code)
		}
		if len(candidates) > 1 {
			// One parsed condition must mean the same on every candidate type.
			for _, t := range candidates[1:] {
				ip, _ := parseParam(t, chainRest, raw, opts)
				if ip.Type != inner.Type {
					return nil, searchErr("%s.%s is ambiguous: give the type, as %s:Type.%s", code, chainRest, code, chainRest)
				}
			}
		}
		p.Modifier = ""
		p.Chain = &Chain{Types: candidates, Param: inner}
		return p, nil
	}
	if err := checkModifier(p); err != nil {
		return nil, err
	}
	if mod == "missing" {
		switch raw {
		case "true":
			p.Values = []SearchValue{{Raw: raw, Missing: true}}
		case "false":
			p.Values = []SearchValue{{Raw: raw, Missing: false}}
		default:
			return nil, searchErr("%s:missing must be true or false", code)
		}
		return p, nil
	}
	vals := splitValues(raw)
	if len(vals) > MaxValues {
		return nil, searchErr("%s may have at most %d values", code, MaxValues)
	}
	for _, v := range vals {
		sv, err := parseValue(p, v, opts)
		if err != nil {
			return nil, err
		}
		p.Values = append(p.Values, sv)
	}
	if len(p.Values) == 0 {
		return nil, searchErr("%s: no value", code)
	}
	return p, nil
}

func checkModifier(p *SearchParam) error {
	m := p.Modifier
	if m == "" || m == "missing" {
		return nil
	}
	ok := false
	switch p.Type {
	case "string":
		ok = m == "exact" || m == "contains"
	case "token":
		ok = m == "not" || m == "text"
		if m == "above" || m == "below" || m == "in" || m == "not-in" || m == "of-type" {
			return searchErr("%s:%s needs terminology services, which are not supported", p.Name, m)
		}
	case "reference":
		ok = m == "identifier" || IsResourceType(m)
		if IsResourceType(m) {
			if len(p.Def.Targets) > 0 && !contains(p.Def.Targets, m) && !contains(p.Def.Targets, "Resource") {
				return searchErr("%s:%s: %s is not a target of %s", p.Name, m, m, p.Name)
			}
		}
	case "uri":
		ok = m == "below" || m == "above"
	}
	if !ok {
		return searchErr("modifier :%s is not supported on %s parameter %s", m, p.Type, p.Name)
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// IDParam is the condition _id=ids, as the server itself builds it (for
// any number of ids: MaxValues bounds what clients send).
func IDParam(ids ...string) *SearchParam {
	def, _ := LookupSearchParam("Resource", "_id")
	p := &SearchParam{Name: "_id", Type: "token", Def: def, Values: make([]SearchValue, len(ids))}
	for i, id := range ids {
		p.Values[i] = SearchValue{Raw: id, Code: id, AnySystem: true}
	}
	return p
}

// splitValues splits at commas not escaped with a backslash; more than
// MaxValues values are refused by the callers.
func splitValues(raw string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) {
			cur.WriteByte(c)
			cur.WriteByte(raw[i+1])
			i++
			continue
		}
		if c == ',' {
			out = append(out, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	return append(out, cur.String())
}

// splitEscaped splits at sep not escaped, and unescapes \, \| \$ \\.
func splitEscaped(raw string, sep byte, n int) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) {
			cur.WriteByte(raw[i+1])
			i++
			continue
		}
		if c == sep && (n < 0 || len(out) < n-1) {
			out = append(out, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	return append(out, cur.String())
}

func unescape(s string) string { return splitEscaped(s, 0, 1)[0] }

var prefixes = []string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}

func cutPrefix(v string) (string, string) {
	if len(v) > 2 {
		for _, p := range prefixes {
			if strings.HasPrefix(v, p) && (v[2] >= '0' && v[2] <= '9' || v[2] == '-' || v[2] == '.') {
				return p, v[2:]
			}
		}
	}
	return "eq", v
}

func parseValue(p *SearchParam, v string, opts SearchOptions) (SearchValue, error) {
	sv := SearchValue{Raw: v}
	if v == "" {
		return sv, searchErr("%s: empty value", p.Name)
	}
	switch p.Type {
	case "string":
		s := unescape(v)
		if p.Modifier == "exact" {
			sv.Str = s
		} else {
			sv.Str = Normalize(s)
		}
	case "token":
		if p.Modifier == "text" {
			sv.Str = Normalize(unescape(v))
			return sv, nil
		}
		sv.System, sv.Code, sv.AnySystem = parseToken(v)
		if p.Name == "_id" && !sv.AnySystem {
			return sv, searchErr("_id takes plain ids")
		}
	case "uri":
		sv.Str = unescape(v)
	case "date":
		prefix, rest := cutPrefix(v)
		lo, hi, ok := DateRange(rest)
		if !ok && strings.Count(rest, " ") == 1 {
			// An unencoded "+" of a time zone offset arrives as a space.
			lo, hi, ok = DateRange(strings.Replace(rest, " ", "+", 1))
		}
		if !ok {
			return sv, searchErr("%s: %q is not a valid date (use YYYY, YYYY-MM, YYYY-MM-DD or a dateTime with a time zone)", p.Name, rest)
		}
		sv.Prefix, sv.Lo, sv.Hi = prefix, lo, hi
	case "number":
		prefix, rest := cutPrefix(v)
		n, lo, hi, err := parseNumber(rest)
		if err != nil {
			return sv, searchErr("%s: %q is not a number", p.Name, rest)
		}
		sv.Prefix, sv.Num, sv.NumLo, sv.NumHi = prefix, n, lo, hi
	case "quantity":
		parts := splitEscaped(v, '|', 3)
		prefix, rest := cutPrefix(parts[0])
		n, lo, hi, err := parseNumber(rest)
		if err != nil {
			return sv, searchErr("%s: %q is not a number", p.Name, rest)
		}
		sv.Prefix, sv.Num, sv.NumLo, sv.NumHi = prefix, n, lo, hi
		if len(parts) == 3 {
			sv.System, sv.Code = parts[1], parts[2]
		} else if len(parts) == 2 {
			return sv, searchErr("%s: a quantity is number|system|code", p.Name)
		}
	case "reference":
		if p.Modifier == "identifier" {
			sv.System, sv.Code, sv.AnySystem = parseToken(v)
			return sv, nil
		}
		s := unescape(v)
		if opts.BaseURL != "" && strings.HasPrefix(s, opts.BaseURL+"/") {
			s = strings.TrimPrefix(s, opts.BaseURL+"/")
		}
		if i := strings.Index(s, "/_history/"); i >= 0 && !strings.Contains(s, "://") {
			s = s[:i]
		}
		switch {
		case strings.Contains(s, "://") || strings.HasPrefix(s, "urn:"):
			sv.RefURL = s
		case strings.Contains(s, "/"):
			k := ParseReference(s)
			if k.Type == "" {
				return sv, searchErr("%s: %q is not a reference (Type/id, id or an absolute URL)", p.Name, s)
			}
			sv.RefType, sv.RefID = k.Type, k.ID
		default:
			if !ValidID(s) {
				return sv, searchErr("%s: %q is not a valid id", p.Name, s)
			}
			sv.RefID = s
			if IsResourceType(p.Modifier) {
				sv.RefType = p.Modifier
			}
		}
		if sv.RefType != "" && len(p.Def.Targets) > 0 && !contains(p.Def.Targets, sv.RefType) && !contains(p.Def.Targets, "Resource") {
			return sv, searchErr("%s: %s is not a target type of %s", p.Name, sv.RefType, p.Name)
		}
	case "composite":
		comps := p.Def.Components
		parts := splitEscapedKeep(v, '$')
		if len(parts) != len(comps) || len(comps) != 2 {
			return sv, searchErr("%s: a composite value has %d parts separated by $", p.Name, len(comps))
		}
		for i, c := range comps {
			cdef := paramsByURL[c.Definition]
			if cdef == nil {
				return sv, searchErr("%s: composite is not supported", p.Name)
			}
			part, err := parseValue(&SearchParam{Name: p.Name, Type: cdef.Type, Def: cdef}, parts[i], opts)
			if err != nil {
				return sv, err
			}
			part.Kind = cdef.Type
			sv.Parts = append(sv.Parts, part)
		}
	default:
		return sv, searchErr("%s parameters (%s) are not supported", p.Type, p.Name)
	}
	return sv, nil
}

// splitEscapedKeep splits at unescaped sep, keeping escapes for later parsing.
func splitEscapedKeep(raw string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' {
			i++
			continue
		}
		if raw[i] == sep {
			out = append(out, raw[start:i])
			start = i + 1
		}
	}
	return append(out, raw[start:])
}

// parseToken reads [system]|[code], |code, system| and code.
func parseToken(v string) (system, code string, anySystem bool) {
	parts := splitEscaped(v, '|', 2)
	if len(parts) == 1 {
		return "", parts[0], true
	}
	return parts[0], parts[1], false
}

// parseNumber returns the value and the range its precision implies:
// "100" is [99.5, 100.5), "1.50" is [1.495, 1.505), "1e2" is [50, 150).
func parseNumber(s string) (n, lo, hi float64, err error) {
	n, err = strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, 0, 0, fmt.Errorf("not a number")
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		exp, err = strconv.Atoi(s[i+1:])
		if err != nil {
			return 0, 0, 0, err
		}
	}
	decimals := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		decimals = len(mant) - i - 1
	}
	half := 0.5 * math.Pow(10, float64(exp-decimals))
	return n, n - half, n + half, nil
}
