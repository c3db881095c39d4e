package fhirpath

import (
	"maps"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
)

// The UCUM units FHIRPath comparisons convert between: enough of UCUM for
// the quantities clinical data carries (mass, length, volume, time, and
// their prefixes, products, quotients and powers). A unit outside it is
// comparable only to itself.

// canonicalUnit is a unit as a factor of base units with their exponents.
type canonicalUnit struct {
	factor decimal.Decimal
	dims   map[string]int
}

var ucumAtoms = map[string]struct {
	factor string
	base   string // base unit and exponent, e.g. "m3"; "" for dimensionless
	prefix bool   // takes metric prefixes
}{
	"m":       {"1", "m", true},
	"g":       {"1", "g", true},
	"s":       {"1", "s", true},
	"L":       {"0.001", "m3", true},
	"l":       {"0.001", "m3", true},
	"mol":     {"1", "mol", true},
	"K":       {"1", "K", true},
	"min":     {"60", "s", false},
	"h":       {"3600", "s", false},
	"d":       {"86400", "s", false},
	"wk":      {"604800", "s", false},
	"mo":      {"2629800", "s", false},
	"a":       {"31557600", "s", false},
	"[in_i]":  {"0.0254", "m", false},
	"[ft_i]":  {"0.3048", "m", false},
	"[lb_av]": {"453.59237", "g", false},
	"[oz_av]": {"28.349523125", "g", false},
	"%":       {"0.01", "", false},
	"1":       {"1", "", false},
}

var ucumPrefixes = map[string]string{
	"k": "1000", "h": "100", "da": "10", "d": "0.1", "c": "0.01", "m": "0.001",
	"u": "0.000001", "n": "0.000000001", "p": "0.000000000001", "M": "1000000", "G": "1000000000",
}

// parseUnit reads a UCUM unit expression ("mg", "m2", "g/m", "cm.m",
// "kg/m2") or a calendar keyword.
func parseUnit(u string) (canonicalUnit, bool) {
	if c := calendarUnit(u); c != "" {
		u = calendarUnits[c]
	}
	out := canonicalUnit{factor: decimal.NewFromInt(1), dims: map[string]int{}}
	sign := 1
	for u != "" {
		end := strings.IndexAny(u, "./")
		term := u
		if end >= 0 {
			term = u[:end]
		}
		c, ok := parseTerm(term)
		if !ok {
			return out, false
		}
		if sign > 0 {
			out.factor = out.factor.Mul(c.factor)
		} else {
			out.factor = out.factor.DivRound(c.factor, 24)
		}
		for k, e := range c.dims {
			out.dims[k] += sign * e
			if out.dims[k] == 0 {
				delete(out.dims, k)
			}
		}
		if end < 0 {
			break
		}
		sign = 1
		if u[end] == '/' {
			sign = -1
		}
		u = u[end+1:]
	}
	return out, true
}

// parseTerm reads one prefixed atom with an optional exponent ("cm2").
func parseTerm(term string) (canonicalUnit, bool) {
	exp := 1
	if i := strings.IndexFunc(term, func(r rune) bool { return r >= '0' && r <= '9' || r == '-' }); i > 0 && !strings.HasPrefix(term, "[") {
		n, err := strconv.Atoi(term[i:])
		if err != nil {
			return canonicalUnit{}, false
		}
		exp, term = n, term[:i]
	}
	if term == "" {
		return canonicalUnit{}, false
	}
	factor, base, ok := atom(term)
	if !ok {
		return canonicalUnit{}, false
	}
	c := canonicalUnit{factor: decimal.NewFromInt(1), dims: map[string]int{}}
	for range abs(exp) {
		if exp > 0 {
			c.factor = c.factor.Mul(factor)
		} else {
			c.factor = c.factor.DivRound(factor, 24)
		}
	}
	for k, e := range base {
		c.dims[k] = e * exp
	}
	return c, true
}

func atom(term string) (decimal.Decimal, map[string]int, bool) {
	if a, ok := ucumAtoms[term]; ok {
		return decimal.RequireFromString(a.factor), baseDims(a.base), true
	}
	for p, pf := range ucumPrefixes {
		rest, ok := strings.CutPrefix(term, p)
		if !ok {
			continue
		}
		if a, ok := ucumAtoms[rest]; ok && a.prefix {
			f := decimal.RequireFromString(a.factor).Mul(decimal.RequireFromString(pf))
			return f, baseDims(a.base), true
		}
	}
	return decimal.Decimal{}, nil, false
}

func baseDims(base string) map[string]int {
	if base == "" {
		return map[string]int{}
	}
	if n := base[len(base)-1]; n >= '0' && n <= '9' {
		return map[string]int{base[:len(base)-1]: int(n - '0')}
	}
	return map[string]int{base: 1}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// sameDimension reports whether two units measure the same kind of thing.
func sameDimension(a, b canonicalUnit) bool { return maps.Equal(a.dims, b.dims) }

// toCanonical converts q to base units; ok is false for a unit not known.
func toCanonical(q Quantity) (decimal.Decimal, canonicalUnit, bool) {
	u, ok := parseUnit(q.Unit)
	if !ok {
		return decimal.Decimal{}, u, false
	}
	return q.Value.Mul(u.factor), u, true
}
