// Package scopes parses SMART App Launch scopes, v1 (patient/Observation.read)
// and v2 (patient/Observation.rs, with granular constraints such as
// patient/Observation.rs?category=…|laboratory), and answers what a set of
// granted scopes permits.
package scopes

import (
	"net/url"
	"sort"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
)

// Perm is a set of SMART v2 permissions.
type Perm uint8

const (
	Create Perm = 1 << iota
	Read
	Update
	Delete
	Search
)

// All is every permission (v2 .cruds, v1 .*).
const All = Create | Read | Update | Delete | Search

const letters = "cruds"

// String renders p in v2 order, e.g. "rs".
func (p Perm) String() string {
	var b strings.Builder
	for i, l := range letters {
		if p&(1<<i) != 0 {
			b.WriteRune(l)
		}
	}
	return b.String()
}

// Resource is one resource scope: a context (patient, user, system), a
// resource type or "*", permissions and an optional granular constraint.
type Resource struct {
	Context string // patient | user | system
	Type    string // a resource type, or "*"
	Perm    Perm
	// Query constrains the scope to resources matching a search
	// (granular scopes); nil when the scope covers the whole type.
	Query url.Values
	V1    bool // written in v1 syntax (.read, .write, .*)
}

// ParseResource parses a resource scope; ok is false for anything else
// (openid, launch/patient, a malformed or unknown scope). Malformed scopes
// are never read as more access: an unknown permission string or resource
// type yields ok=false.
func ParseResource(s string) (Resource, bool) {
	var r Resource
	ctx, rest, found := strings.Cut(s, "/")
	if !found || (ctx != "patient" && ctx != "user" && ctx != "system") {
		return r, false
	}
	r.Context = ctx
	typ, perm, found := strings.Cut(rest, ".")
	if !found || (typ != "*" && !fhir.IsResourceType(typ)) {
		return r, false
	}
	r.Type = typ
	if p, q, hasQuery := strings.Cut(perm, "?"); hasQuery {
		vals, err := url.ParseQuery(q)
		if err != nil || len(vals) == 0 {
			return r, false
		}
		r.Query = vals
		perm = p
	}
	switch perm {
	case "read":
		r.Perm, r.V1 = Read|Search, true
	case "write":
		r.Perm, r.V1 = Create|Update|Delete, true
	case "*":
		r.Perm, r.V1 = All, true
	default:
		// v2: a non-empty subsequence of "cruds", in that order.
		at := 0
		for _, c := range perm {
			i := strings.IndexRune(letters[at:], c)
			if i < 0 {
				return r, false
			}
			r.Perm |= 1 << (at + i)
			at += i + 1
		}
		if r.Perm == 0 {
			return r, false
		}
	}
	if r.V1 && r.Query != nil {
		return r, false // granular constraints are a v2 feature
	}
	return r, true
}

// String renders the scope the way it was granted.
func (r Resource) String() string {
	var perm string
	switch {
	case r.V1 && r.Perm == Read|Search:
		perm = "read"
	case r.V1 && r.Perm == Create|Update|Delete:
		perm = "write"
	case r.V1 && r.Perm == All:
		perm = "*"
	default:
		perm = r.Perm.String()
	}
	s := r.Context + "/" + r.Type + "." + perm
	if r.Query != nil {
		s += "?" + encodeQuery(r.Query)
	}
	return s
}

// encodeQuery is url.Values.Encode without escaping | and : so that a
// granted scope reads like the requested one.
func encodeQuery(v url.Values) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		for _, val := range v[k] {
			parts = append(parts, k+"="+val)
		}
	}
	return strings.Join(parts, "&")
}

// Set is the resource scopes of one grant.
type Set []Resource

// ParseSet keeps the resource scopes of a space-separated scope string.
func ParseSet(scope string) Set {
	var out Set
	for _, s := range strings.Fields(scope) {
		if r, ok := ParseResource(s); ok {
			out = append(out, r)
		}
	}
	return out
}

// Grant is what a set allows on one resource type for one permission.
type Grant struct {
	Allowed bool
	// Constraints is nil when some scope covers the whole type; otherwise
	// a resource must match at least one of these searches.
	Constraints []url.Values
}

// For returns what the set allows on typ for permission p. Contexts are
// not distinguished here: the caller binds patient/ and user/ scopes to the
// patient in context.
func (s Set) For(typ string, p Perm) Grant {
	var g Grant
	for _, r := range s {
		if r.Perm&p == 0 || (r.Type != "*" && r.Type != typ) {
			continue
		}
		if r.Query == nil {
			return Grant{Allowed: true}
		}
		g.Allowed = true
		g.Constraints = append(g.Constraints, r.Query)
	}
	return g
}

// HasContext reports whether any scope has the given context (patient,
// user or system).
func (s Set) HasContext(ctx string) bool {
	for _, r := range s {
		if r.Context == ctx {
			return true
		}
	}
	return false
}
