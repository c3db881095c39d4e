package fhir

import (
	"encoding/json"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Index is what a resource can be found by: the search keys of every search
// parameter of its type whose expression Hearth evaluates, computed at write
// time and stored beside the resource by every backend.
type Index struct {
	Strings      []StringKey
	Tokens       []TokenKey
	Refs         []RefKey
	Dates        []RangeKey
	Numbers      []NumberKey
	Quantities   []QuantityKey
	URIs         []URIKey
	Composites   []CompositeKey
	Compartments []string // ids of the Patients whose compartment holds the resource
}

// StringKey is a string parameter value: Norm is lower-cased without
// accents (for the default prefix match), Exact the value as written.
type StringKey struct {
	Param string
	Norm  string
	Exact string
}

// TokenKey is a token: a system and a code (or identifier value). System is
// "" when the element has none. Text is the normalised display or text, for
// the :text modifier.
type TokenKey struct {
	Param  string
	System string
	Code   string
	Text   string
}

// RefKey is a reference. A literal reference "Patient/1" gives Type and ID;
// URL keeps the reference as written (absolute URLs, canonicals). A logical
// reference gives IdentSystem and IdentValue for :identifier.
type RefKey struct {
	Param       string
	Type        string
	ID          string
	URL         string
	IdentSystem string
	IdentValue  string
}

// RangeKey is a date value as the closed range of instants it covers, in
// Unix milliseconds; an open end is math.MinInt64 or math.MaxInt64.
type RangeKey struct {
	Param string
	Lo    int64
	Hi    int64
}

// NumberKey is a number value.
type NumberKey struct {
	Param string
	Value float64
}

// QuantityKey is a quantity value with its units.
type QuantityKey struct {
	Param  string
	Value  float64
	System string
	Code   string
	Unit   string
}

// URIKey is a uri value.
type URIKey struct {
	Param string
	URI   string
}

// CompositeKey is one combination of a two-part composite parameter, taken
// from the same element (Observation.component[2].code with its value).
type CompositeKey struct {
	Param string
	A     CompositePart
	B     CompositePart
}

// CompositePart is one component value; which fields are set depends on the
// component parameter's type.
type CompositePart struct {
	Type   string // token, quantity, date, string, reference, number, uri
	System string
	Code   string // token code, quantity code, reference Type/id, uri, normalised string
	Unit   string
	Lo, Hi float64 // quantity and number value (Lo == Hi); date range in ms
}

type compiledParam struct {
	def   *SearchParamDef
	expr  *pathExpr
	comps []*compiledComponent
}

type compiledComponent struct {
	def  *SearchParamDef
	expr *pathExpr
}

var (
	paramsCacheMu sync.RWMutex
	paramsCache   = map[string][]compiledParam{}
	paramsByURL   = map[string]*SearchParamDef{}
	urlIndexOnce  sync.Once
)

// indexedParams lists the parameters of a type that are extracted at write
// time, with their compiled expressions.
func indexedParams(resourceType string) []compiledParam {
	paramsCacheMu.RLock()
	ps, ok := paramsCache[resourceType]
	paramsCacheMu.RUnlock()
	if ok {
		return ps
	}
	urlIndexOnce.Do(func() {
		for i := range generatedSearchParams {
			p := &generatedSearchParams[i]
			paramsByURL[p.URL] = p
		}
	})
	for _, def := range SearchParams(resourceType) {
		if def.Expression == "" || def.Code == "_id" || def.Code == "_lastUpdated" || def.Type == "special" {
			continue // special parameters (near) have no generic semantics
		}
		expr, err := compilePath(def.Expression)
		if err != nil {
			continue
		}
		cp := compiledParam{def: def, expr: expr}
		if def.Type == "composite" {
			if len(def.Components) != 2 {
				continue
			}
			ok := true
			for _, c := range def.Components {
				cdef := paramsByURL[c.Definition]
				cexpr, err := compilePath(c.Expression)
				if cdef == nil || err != nil {
					ok = false
					break
				}
				cp.comps = append(cp.comps, &compiledComponent{def: cdef, expr: cexpr})
			}
			if !ok {
				continue
			}
		}
		ps = append(ps, cp)
	}
	paramsCacheMu.Lock()
	paramsCache[resourceType] = ps
	paramsCacheMu.Unlock()
	return ps
}

// ParamIndexed reports whether a search parameter of resourceType is
// extracted at write time, so a search on it can be answered exactly.
// _id and _lastUpdated are stored with the resource itself and always are.
func ParamIndexed(resourceType, code string) bool {
	if code == "_id" || code == "_lastUpdated" {
		return true
	}
	for _, p := range indexedParams(resourceType) {
		if p.def.Code == code {
			return true
		}
	}
	return false
}

// Extract computes the search index of a decoded resource.
func Extract(resourceType string, res map[string]any) Index {
	var ix Index
	for _, p := range indexedParams(resourceType) {
		nodes := p.expr.Evaluate(resourceType, res)
		if p.def.Type == "composite" {
			for _, n := range nodes {
				ix.addComposite(p, n)
			}
			continue
		}
		for _, n := range nodes {
			ix.add(p.def.Code, p.def.Type, n)
		}
	}
	if text, ok := res["text"].(map[string]any); ok {
		if div, _ := text["div"].(string); div != "" {
			if plain := narrativeText(div); plain != "" {
				ix.Strings = append(ix.Strings, StringKey{Param: "_text", Norm: Normalize(plain)})
			}
		}
	}
	if resourceType == "Patient" {
		if id, _ := res["id"].(string); id != "" {
			ix.Compartments = append(ix.Compartments, id)
		}
	}
	for _, param := range PatientCompartmentParams(resourceType) {
		for _, r := range ix.Refs {
			if r.Param == param && r.Type == "Patient" && r.ID != "" {
				ix.Compartments = append(ix.Compartments, r.ID)
			}
		}
	}
	ix.dedupe()
	return ix
}

// ExtractTokens is the token part of Extract.
func ExtractTokens(resourceType string, res map[string]any) []TokenKey {
	return Extract(resourceType, res).Tokens
}

func (ix *Index) add(param, typ string, n Node) {
	switch typ {
	case "string":
		for _, s := range stringValues(n) {
			ix.Strings = append(ix.Strings, StringKey{Param: param, Norm: Normalize(s), Exact: s})
		}
	case "token":
		for _, t := range tokenValues(n) {
			t.Param = param
			ix.Tokens = append(ix.Tokens, t)
		}
	case "reference":
		for _, r := range refValues(n) {
			r.Param = param
			ix.Refs = append(ix.Refs, r)
		}
	case "date":
		for _, r := range dateValues(n) {
			r.Param = param
			ix.Dates = append(ix.Dates, r)
		}
	case "number":
		if v, ok := numberValue(n.Value); ok {
			ix.Numbers = append(ix.Numbers, NumberKey{Param: param, Value: v})
		}
	case "quantity":
		for _, q := range quantityValues(n) {
			q.Param = param
			ix.Quantities = append(ix.Quantities, q)
		}
	case "uri":
		if s, ok := n.Value.(string); ok {
			ix.URIs = append(ix.URIs, URIKey{Param: param, URI: s})
		}
	}
}

// addComposite pairs the values of the two components found under one node.
func (ix *Index) addComposite(p compiledParam, n Node) {
	var parts [2][]CompositePart
	for i, c := range p.comps {
		for _, cn := range c.expr.evaluateFrom(n) {
			parts[i] = append(parts[i], compositeParts(c.def.Type, cn)...)
		}
	}
	for _, a := range parts[0] {
		for _, b := range parts[1] {
			ix.Composites = append(ix.Composites, CompositeKey{Param: p.def.Code, A: a, B: b})
		}
	}
}

func compositeParts(typ string, n Node) []CompositePart {
	var out []CompositePart
	switch typ {
	case "token":
		for _, t := range tokenValues(n) {
			out = append(out, CompositePart{Type: typ, System: t.System, Code: t.Code})
		}
	case "quantity":
		for _, q := range quantityValues(n) {
			out = append(out, CompositePart{Type: typ, System: q.System, Code: q.Code, Unit: q.Unit, Lo: q.Value, Hi: q.Value})
		}
	case "date":
		for _, d := range dateValues(n) {
			out = append(out, CompositePart{Type: typ, Lo: float64(d.Lo), Hi: float64(d.Hi)})
		}
	case "string":
		for _, s := range stringValues(n) {
			out = append(out, CompositePart{Type: typ, Code: Normalize(s)})
		}
	case "reference":
		for _, r := range refValues(n) {
			if r.Type != "" {
				out = append(out, CompositePart{Type: typ, Code: r.Type + "/" + r.ID})
			}
		}
	case "number":
		if v, ok := numberValue(n.Value); ok {
			out = append(out, CompositePart{Type: typ, Lo: v, Hi: v})
		}
	case "uri":
		if s, ok := n.Value.(string); ok {
			out = append(out, CompositePart{Type: typ, Code: s})
		}
	}
	return out
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// stringValues lists the strings a node contributes to a string parameter.
func stringValues(n Node) []string {
	switch v := n.Value.(type) {
	case string:
		return []string{v}
	case map[string]any:
		var keys []string
		switch n.Type {
		case "HumanName":
			keys = []string{"text", "family", "given", "prefix", "suffix"}
		case "Address":
			keys = []string{"text", "line", "city", "district", "state", "postalCode", "country"}
		case "CodeableConcept", "Coding":
			keys = []string{"text", "display"}
		default:
			return nil
		}
		var out []string
		for _, k := range keys {
			switch x := v[k].(type) {
			case string:
				out = append(out, x)
			case []any:
				for _, item := range x {
					if s, ok := item.(string); ok {
						out = append(out, s)
					}
				}
			}
		}
		return out
	}
	return nil
}

// tokenValues lists the tokens a node contributes to a token parameter.
func tokenValues(n Node) []TokenKey {
	switch v := n.Value.(type) {
	case map[string]any:
		switch n.Type {
		case "Coding":
			if c := str(v, "code"); c != "" {
				return []TokenKey{{System: str(v, "system"), Code: c, Text: Normalize(str(v, "display"))}}
			}
		case "CodeableConcept":
			var out []TokenKey
			text := Normalize(str(v, "text"))
			codings, _ := v["coding"].([]any)
			for _, c := range codings {
				for _, t := range tokenValues(Node{Value: c, Type: "Coding"}) {
					if t.Text == "" {
						t.Text = text
					}
					out = append(out, t)
				}
			}
			if len(out) == 0 && text != "" {
				// Text alone is findable by :text.
				out = append(out, TokenKey{Text: text})
			}
			return out
		case "Identifier":
			if val := str(v, "value"); val != "" {
				text := ""
				if t, ok := v["type"].(map[string]any); ok {
					text = Normalize(str(t, "text"))
				}
				return []TokenKey{{System: str(v, "system"), Code: val, Text: text}}
			}
		case "ContactPoint":
			if val := str(v, "value"); val != "" {
				return []TokenKey{{System: str(v, "system"), Code: val}}
			}
		}
	case string:
		return []TokenKey{{System: codeSystemOf(n), Code: v}}
	case bool:
		if v {
			return []TokenKey{{Code: "true"}}
		}
		return []TokenKey{{Code: "false"}}
	case json.Number:
		return []TokenKey{{Code: v.String()}}
	}
	return nil
}

// codeSystemOf is the implicit system of a code element bound to a value
// set drawn from one code system (Patient.gender → administrative-gender).
func codeSystemOf(n Node) string {
	if n.Def == nil || n.Type != "code" {
		return ""
	}
	return n.Def.CodeSystem
}

// refValues lists the references a node contributes to a reference parameter.
func refValues(n Node) []RefKey {
	switch v := n.Value.(type) {
	case map[string]any:
		if n.Type != "Reference" {
			return nil
		}
		var out RefKey
		if ref := str(v, "reference"); ref != "" && !strings.HasPrefix(ref, "#") {
			out = ParseReference(ref)
		}
		if id, ok := v["identifier"].(map[string]any); ok {
			out.IdentSystem, out.IdentValue = str(id, "system"), str(id, "value")
		}
		if out.URL == "" && out.IdentValue == "" {
			return nil
		}
		return []RefKey{out}
	case string: // canonical or uri
		return []RefKey{ParseReference(v)}
	}
	return nil
}

// localBases holds the public base URLs this process serves (AddLocalBase).
var localBases atomic.Pointer[[]string]

// AddLocalBase declares base (e.g. https://fhir.example.org/fhir) to be
// this server's own, so that an absolute reference under it is indexed as
// the local Type/id it names — the FHIR rule that a reference to the
// server's own base is a local reference — for search, compartments and
// access checks alike.
func AddLocalBase(base string) {
	base = strings.TrimSuffix(base, "/")
	if base == "" {
		return
	}
	for {
		old := localBases.Load()
		var bases []string
		if old != nil {
			if slices.Contains(*old, base) {
				return
			}
			bases = append(bases, *old...)
		}
		bases = append(bases, base)
		if localBases.CompareAndSwap(old, &bases) {
			return
		}
	}
}

// ParseReference splits a relative literal reference into type and id:
// "Patient/1", "Patient/1/_history/2", or an absolute one under a local
// base. Any other absolute URL keeps only URL: it names a resource on some
// other server, and taking its last segments as a local Type/id would put
// another server's patient's data in a local compartment.
func ParseReference(ref string) RefKey {
	k := RefKey{URL: ref}
	r := ref
	if bases := localBases.Load(); bases != nil {
		for _, b := range *bases {
			if strings.HasPrefix(r, b+"/") {
				r = r[len(b)+1:]
				break
			}
		}
	}
	if i := strings.Index(r, "/_history/"); i >= 0 {
		r = r[:i]
	}
	if strings.HasPrefix(r, "urn:") || strings.Contains(r, "://") || strings.HasPrefix(r, "/") {
		return k
	}
	parts := strings.Split(r, "/")
	if len(parts) >= 2 {
		typ, id := parts[len(parts)-2], parts[len(parts)-1]
		if IsResourceType(typ) && ValidID(id) {
			k.Type, k.ID = typ, id
		}
	}
	return k
}

// ValidID reports whether id is a valid FHIR resource id: 1-64 characters
// of A-Z, a-z, 0-9, '-' and '.'.
func ValidID(id string) bool {
	// "." and ".." match the FHIR id pattern but are path segments: a
	// client would resolve Patient/.. to another URL than the resource's.
	if id == "" || len(id) > 64 || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// dateValues lists the ranges a node contributes to a date parameter.
func dateValues(n Node) []RangeKey {
	switch v := n.Value.(type) {
	case string:
		if lo, hi, ok := DateRange(v); ok {
			return []RangeKey{{Lo: lo, Hi: hi}}
		}
	case map[string]any:
		switch n.Type {
		case "Period":
			lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
			if s := str(v, "start"); s != "" {
				if l, _, ok := DateRange(s); ok {
					lo = l
				}
			}
			if e := str(v, "end"); e != "" {
				if _, h, ok := DateRange(e); ok {
					hi = h
				}
			}
			if lo == math.MinInt64 && hi == math.MaxInt64 {
				return nil
			}
			return []RangeKey{{Lo: lo, Hi: hi}}
		case "Timing":
			var out []RangeKey
			events, _ := v["event"].([]any)
			for _, e := range events {
				if s, ok := e.(string); ok {
					if lo, hi, ok := DateRange(s); ok {
						out = append(out, RangeKey{Lo: lo, Hi: hi})
					}
				}
			}
			if rep, ok := v["repeat"].(map[string]any); ok {
				if b, ok := rep["boundsPeriod"].(map[string]any); ok {
					out = append(out, dateValues(Node{Value: b, Type: "Period"})...)
				}
			}
			return out
		}
	}
	return nil
}

func numberValue(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// quantityValues lists the quantities a node contributes.
func quantityValues(n Node) []QuantityKey {
	v, ok := n.Value.(map[string]any)
	if !ok {
		return nil
	}
	switch n.Type {
	case "Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity":
		f, ok := numberValue(v["value"])
		if !ok {
			return nil
		}
		return []QuantityKey{{Value: f, System: str(v, "system"), Code: str(v, "code"), Unit: str(v, "unit")}}
	case "Money":
		f, ok := numberValue(v["value"])
		if !ok {
			return nil
		}
		return []QuantityKey{{Value: f, System: "urn:iso:std:iso:4217", Code: str(v, "currency"), Unit: str(v, "currency")}}
	}
	return nil
}

var normalizer = sync.Pool{New: func() any {
	return transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
}}

// Normalize lower-cases s and strips accents, for string search:
// "Müller" and "muller" are the same.
func Normalize(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	t := normalizer.Get().(transform.Transformer)
	defer normalizer.Put(t)
	out, _, err := transform.String(t, s)
	if err != nil {
		out = s
	}
	return strings.ToLower(out)
}

func (ix *Index) dedupe() {
	ix.Strings = dedupe(ix.Strings, func(a, b StringKey) int { return compareStrings(a.Param+"\x00"+a.Exact, b.Param+"\x00"+b.Exact) })
	ix.Tokens = dedupe(ix.Tokens, func(a, b TokenKey) int {
		return compareStrings(a.Param+"\x00"+a.System+"\x00"+a.Code+"\x00"+a.Text, b.Param+"\x00"+b.System+"\x00"+b.Code+"\x00"+b.Text)
	})
	ix.Refs = dedupe(ix.Refs, func(a, b RefKey) int {
		return compareStrings(a.Param+"\x00"+a.URL+"\x00"+a.IdentSystem+"\x00"+a.IdentValue, b.Param+"\x00"+b.URL+"\x00"+b.IdentSystem+"\x00"+b.IdentValue)
	})
	ix.URIs = dedupe(ix.URIs, func(a, b URIKey) int { return compareStrings(a.Param+"\x00"+a.URI, b.Param+"\x00"+b.URI) })
	sort.Strings(ix.Compartments)
	ix.Compartments = dedupe(ix.Compartments, compareStrings)
}

func compareStrings(a, b string) int { return strings.Compare(a, b) }

// dedupe sorts keys and drops exact duplicates.
func dedupe[T comparable](xs []T, cmp func(a, b T) int) []T {
	if len(xs) < 2 {
		return xs
	}
	sort.Slice(xs, func(i, j int) bool { return cmp(xs[i], xs[j]) < 0 })
	out := xs[:1]
	for _, x := range xs[1:] {
		if x != out[len(out)-1] {
			out = append(out, x)
		}
	}
	return out
}

// TokenParamSupported reports whether a token parameter of resourceType is
// indexed.
func TokenParamSupported(resourceType, code string) bool {
	p, ok := LookupSearchParam(resourceType, code)
	return ok && p.Type == "token" && ParamIndexed(resourceType, code)
}

// MaxNarrativeText is how much of a narrative's text _text indexes and
// searches: its first 64 KiB of words. A narrative may be megabytes (16 MB
// is a valid resource); indexed whole it would be stored three times over
// in the search index and held in memory while it is written.
const MaxNarrativeText = 64 << 10

// narrativeText is the words of a narrative div, for _text: the markup
// dropped (a tag separates words), the common entities decoded, and runs of
// white space made one space, up to MaxNarrativeText bytes. One pass into
// one buffer.
func narrativeText(xhtml string) string {
	var b strings.Builder
	b.Grow(min(len(xhtml), MaxNarrativeText))
	inTag, space := false, false
	word := func(s string) {
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteString(s)
	}
	for i := 0; i < len(xhtml) && b.Len() < MaxNarrativeText-utf8.UTFMax-1; {
		r, size := utf8.DecodeRuneInString(xhtml[i:])
		switch {
		case r == '<':
			inTag, space = true, true
		case r == '>':
			inTag = false
		case inTag:
		case unicode.IsSpace(r):
			space = true
		case r == '&':
			decoded := false
			for _, e := range narrativeEntities {
				if strings.HasPrefix(xhtml[i:], e.entity) {
					if e.text == " " {
						space = true
					} else {
						word(e.text)
					}
					size, decoded = len(e.entity), true
					break
				}
			}
			if !decoded {
				word("&")
			}
		default:
			word(xhtml[i : i+size])
		}
		i += size
	}
	return b.String()
}

var narrativeEntities = []struct{ entity, text string }{
	{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", `"`}, {"&nbsp;", " "},
}
