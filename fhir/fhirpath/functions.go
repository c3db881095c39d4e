package fhirpath

import (
	"cmp"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"html"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/shopspring/decimal"
)

type function struct {
	minArgs, maxArgs int
	typeArg          bool // the argument is a type name (is, as, ofType)
	impl             func(c *ctx, f *call, in Collection) (Collection, error)
}

var functions map[string]*function

func fn(minArgs, maxArgs int, impl func(c *ctx, f *call, in Collection) (Collection, error)) *function {
	return &function{minArgs: minArgs, maxArgs: maxArgs, impl: impl}
}

func init() {
	functions = map[string]*function{
		// Existence
		"empty": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) { return Collection{len(in) == 0}, nil }),
		"exists": fn(0, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			if len(f.args) == 0 {
				return Collection{len(in) > 0}, nil
			}
			out, err := where(c, f, in)
			return Collection{len(out) > 0}, err
		}),
		"all": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			for i, item := range in {
				r, err := f.lambda(c, 0, item, i)
				if err != nil {
					return nil, err
				}
				if b, ok := singletonBool(r); !ok || !b {
					return Collection{false}, nil
				}
			}
			return Collection{true}, nil
		}),
		"allTrue":  fn(0, 0, boolAggregate(true, true)),
		"anyTrue":  fn(0, 0, boolAggregate(false, true)),
		"allFalse": fn(0, 0, boolAggregate(true, false)),
		"anyFalse": fn(0, 0, boolAggregate(false, false)),
		"subsetOf": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			other, err := f.arg(c, 0)
			return Collection{subset(in, other)}, err
		}),
		"supersetOf": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			other, err := f.arg(c, 0)
			return Collection{subset(other, in)}, err
		}),
		"count": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) { return Collection{int64(len(in))}, nil }),
		"distinct": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			return union(in, nil), nil
		}),
		"isDistinct": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			return Collection{len(union(in, nil)) == len(in)}, nil
		}),

		// Filtering and projection
		"where": fn(1, 1, where),
		"select": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			var out Collection
			for i, item := range in {
				r, err := f.lambda(c, 0, item, i)
				if err != nil {
					return nil, err
				}
				out = append(out, r...)
			}
			return out, nil
		}),
		"repeat": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			var out Collection
			queue := in
			for len(queue) > 0 {
				var next Collection
				for i, item := range queue {
					r, err := f.lambda(c, 0, item, i)
					if err != nil {
						return nil, err
					}
					for _, x := range r {
						if !contains(out, x) {
							out = append(out, x)
							next = append(next, x)
						}
					}
				}
				queue = next
			}
			return out, nil
		}),
		"ofType": {minArgs: 1, maxArgs: 1, typeArg: true, impl: func(_ *ctx, f *call, in Collection) (Collection, error) {
			var out Collection
			for _, item := range in {
				ok, err := f.typ.is(item, true)
				if err != nil {
					return nil, err
				}
				if ok {
					out = append(out, item)
				}
			}
			return out, nil
		}},
		"is": {minArgs: 1, maxArgs: 1, typeArg: true, impl: func(_ *ctx, f *call, in Collection) (Collection, error) {
			if len(in) == 0 {
				return nil, nil
			}
			if len(in) > 1 {
				return nil, errorf("is() needs one item, not %d", len(in))
			}
			ok, err := f.typ.is(in[0], false)
			return Collection{ok}, err
		}},
		"as": {minArgs: 1, maxArgs: 1, typeArg: true, impl: func(c *ctx, f *call, in Collection) (Collection, error) {
			if len(in) == 0 {
				return nil, nil
			}
			if c.r4 {
				return functions["ofType"].impl(c, f, in)
			}
			if len(in) > 1 {
				return nil, errorf("as() needs one item, not %d", len(in))
			}
			ok, err := f.typ.is(in[0], true)
			if err != nil || !ok {
				return nil, err
			}
			return in, nil
		}},
		"type": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			out := make(Collection, len(in))
			for i, item := range in {
				out[i] = TypeOf(item)
			}
			return out, nil
		}),

		// Subsetting
		"single": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			if len(in) > 1 {
				return nil, errorf("single() on %d items", len(in))
			}
			return in, nil
		}),
		"first": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) { return in[:min(1, len(in))], nil }),
		"last": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			if len(in) == 0 {
				return nil, nil
			}
			return in[len(in)-1:], nil
		}),
		"tail": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			if len(in) == 0 {
				return nil, nil
			}
			return in[1:], nil
		}),
		"skip": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			n, err := intArg(c, f, 0)
			if err != nil {
				return nil, err
			}
			return in[min(max(n, 0), len(in)):], nil
		}),
		"take": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			n, err := intArg(c, f, 0)
			if err != nil {
				return nil, err
			}
			return in[:min(max(n, 0), len(in))], nil
		}),
		"intersect": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			other, err := f.arg(c, 0)
			var out Collection
			for _, item := range in {
				if contains(other, item) && !contains(out, item) {
					out = append(out, item)
				}
			}
			return out, err
		}),
		"exclude": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			other, err := f.arg(c, 0)
			var out Collection
			for _, item := range in {
				if !contains(other, item) {
					out = append(out, item)
				}
			}
			return out, err
		}),

		// Combining
		"union": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			other, err := f.arg(c, 0)
			return union(in, other), err
		}),
		"combine": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			other, err := f.arg(c, 0)
			return append(slices.Clip(in), other...), err
		}),

		// Conversion
		"iif": fn(2, 3, func(c *ctx, f *call, in Collection) (Collection, error) {
			if len(in) > 1 {
				return nil, errorf("iif() on %d items", len(in))
			}
			var item any
			if len(in) == 1 {
				item = in[0]
			} else {
				item = c.this
			}
			cc := c.with(item, int(c.index))
			cond, err := f.args[0].eval(cc, collectionOf(item))
			if err != nil {
				return nil, err
			}
			b := false
			switch {
			case len(cond) > 1:
				return nil, errorf("iif() criterion gives %d items", len(cond))
			case len(cond) == 1:
				v, ok := system(cond[0]).(bool)
				if !ok {
					return nil, errorf("iif() criterion is not a boolean")
				}
				b = v
			}
			switch {
			case b:
				return f.args[1].eval(cc, collectionOf(item))
			case len(f.args) == 3:
				return f.args[2].eval(cc, collectionOf(item))
			}
			return nil, nil
		}),
		"toBoolean":          converter(toBoolean),
		"convertsToBoolean":  convertsTo(toBoolean),
		"toInteger":          converter(toInteger),
		"convertsToInteger":  convertsTo(toInteger),
		"toDecimal":          converter(toDecimalValue),
		"convertsToDecimal":  convertsTo(toDecimalValue),
		"toString":           converter(toStringValue),
		"convertsToString":   convertsTo(toStringValue),
		"toDate":             converter(toTemporal(KindDate)),
		"convertsToDate":     convertsTo(toTemporal(KindDate)),
		"toDateTime":         converter(toTemporal(KindDateTime)),
		"convertsToDateTime": convertsTo(toTemporal(KindDateTime)),
		"toTime":             converter(toTemporal(KindTime)),
		"convertsToTime":     convertsTo(toTemporal(KindTime)),
		"toQuantity": fn(0, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			q, ok, err := quantityConversion(c, f, in)
			if err != nil || !ok {
				return nil, err
			}
			return Collection{q}, nil
		}),
		"convertsToQuantity": fn(0, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			if len(in) == 0 {
				return nil, nil
			}
			_, ok, err := quantityConversion(c, f, in)
			return Collection{ok}, err
		}),

		// Strings
		"indexOf": stringFn(1, func(s string, args []Collection) (Collection, error) {
			sub, _ := singleString(args[0])
			return Collection{int64(runeIndex(s, sub))}, nil
		}),
		"substring": fn(1, 2, func(c *ctx, f *call, in Collection) (Collection, error) {
			s, ok, err := inputString(in)
			if !ok || err != nil {
				return nil, err
			}
			start, err := intArg(c, f, 0)
			if err != nil {
				return nil, err
			}
			r := []rune(s)
			if start < 0 || start >= len(r) {
				return nil, nil
			}
			end := len(r)
			if len(f.args) == 2 {
				length, err := intArg(c, f, 1)
				if err != nil {
					return nil, err
				}
				end = min(start+max(length, 0), len(r))
			}
			return Collection{string(r[start:end])}, nil
		}),
		"startsWith": stringFn(1, func(s string, args []Collection) (Collection, error) {
			p, _ := singleString(args[0])
			return Collection{strings.HasPrefix(s, p)}, nil
		}),
		"endsWith": stringFn(1, func(s string, args []Collection) (Collection, error) {
			p, _ := singleString(args[0])
			return Collection{strings.HasSuffix(s, p)}, nil
		}),
		"contains": stringFn(1, func(s string, args []Collection) (Collection, error) {
			p, _ := singleString(args[0])
			return Collection{strings.Contains(s, p)}, nil
		}),
		"upper": stringFn(0, func(s string, _ []Collection) (Collection, error) { return Collection{strings.ToUpper(s)}, nil }),
		"lower": stringFn(0, func(s string, _ []Collection) (Collection, error) { return Collection{strings.ToLower(s)}, nil }),
		"replace": stringFn(2, func(s string, args []Collection) (Collection, error) {
			pattern, _ := singleString(args[0])
			repl, _ := singleString(args[1])
			if pattern == "" {
				// Between every character, as the specification says.
				var b strings.Builder
				b.WriteString(repl)
				for _, r := range s {
					b.WriteRune(r)
					b.WriteString(repl)
				}
				return Collection{b.String()}, nil
			}
			return Collection{strings.ReplaceAll(s, pattern, repl)}, nil
		}),
		"matches": stringFn(1, func(s string, args []Collection) (Collection, error) {
			p, _ := singleString(args[0])
			re, err := compileRegex("(?s)" + p)
			if err != nil {
				return nil, err
			}
			return Collection{re.MatchString(s)}, nil
		}),
		"matchesFull": stringFn(1, func(s string, args []Collection) (Collection, error) {
			p, _ := singleString(args[0])
			re, err := compileRegex("(?s)^(?:" + p + ")$")
			if err != nil {
				return nil, err
			}
			return Collection{re.MatchString(s)}, nil
		}),
		"replaceMatches": stringFn(2, func(s string, args []Collection) (Collection, error) {
			p, _ := singleString(args[0])
			repl, _ := singleString(args[1])
			if p == "" {
				return Collection{s}, nil
			}
			re, err := compileRegex("(?s)" + p)
			if err != nil {
				return nil, err
			}
			return Collection{re.ReplaceAllString(s, repl)}, nil
		}),
		"length": stringFn(0, func(s string, _ []Collection) (Collection, error) {
			return Collection{int64(len([]rune(s)))}, nil
		}),
		"toChars": stringFn(0, func(s string, _ []Collection) (Collection, error) {
			var out Collection
			for _, r := range s {
				out = append(out, string(r))
			}
			return out, nil
		}),
		"trim": stringFn(0, func(s string, _ []Collection) (Collection, error) { return Collection{strings.TrimSpace(s)}, nil }),
		"split": stringFn(1, func(s string, args []Collection) (Collection, error) {
			sep, _ := singleString(args[0])
			var out Collection
			for _, part := range strings.Split(s, sep) {
				out = append(out, part)
			}
			return out, nil
		}),
		"join": fn(0, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			sep := ""
			if len(f.args) == 1 {
				a, err := f.arg(c, 0)
				if err != nil {
					return nil, err
				}
				sep, _ = singleString(a)
			}
			parts := make([]string, 0, len(in))
			for _, item := range in {
				s, ok := system(item).(string)
				if !ok {
					return nil, errorf("join() joins strings")
				}
				parts = append(parts, s)
			}
			return Collection{strings.Join(parts, sep)}, nil
		}),
		"encode": stringFn(1, func(s string, args []Collection) (Collection, error) {
			format, _ := singleString(args[0])
			switch format {
			case "base64":
				return Collection{base64.StdEncoding.EncodeToString([]byte(s))}, nil
			case "urlbase64":
				return Collection{base64.URLEncoding.EncodeToString([]byte(s))}, nil
			case "hex":
				return Collection{hex.EncodeToString([]byte(s))}, nil
			}
			return nil, errorf("encode() knows base64, urlbase64 and hex")
		}),
		"decode": stringFn(1, func(s string, args []Collection) (Collection, error) {
			format, _ := singleString(args[0])
			var b []byte
			var err error
			switch format {
			case "base64":
				b, err = base64.StdEncoding.DecodeString(s)
			case "urlbase64":
				b, err = base64.URLEncoding.DecodeString(s)
			case "hex":
				b, err = hex.DecodeString(s)
			default:
				return nil, errorf("decode() knows base64, urlbase64 and hex")
			}
			if err != nil {
				return nil, nil
			}
			return Collection{string(b)}, nil
		}),
		"escape": stringFn(1, func(s string, args []Collection) (Collection, error) {
			format, _ := singleString(args[0])
			switch format {
			case "html":
				return Collection{htmlEscaper.Replace(s)}, nil
			case "json":
				var b strings.Builder
				enc := json.NewEncoder(&b)
				enc.SetEscapeHTML(false)
				_ = enc.Encode(s)
				out := strings.TrimSuffix(b.String(), "\n")
				return Collection{out[1 : len(out)-1]}, nil
			}
			return nil, errorf("escape() knows html and json")
		}),
		"unescape": stringFn(1, func(s string, args []Collection) (Collection, error) {
			format, _ := singleString(args[0])
			switch format {
			case "html":
				return Collection{html.UnescapeString(s)}, nil
			case "json":
				out, ok := unescapeJSON(s)
				if !ok {
					return nil, nil
				}
				return Collection{out}, nil
			}
			return nil, errorf("unescape() knows html and json")
		}),

		// Math
		"abs":      mathFn(func(d decimal.Decimal) (any, bool) { return d.Abs(), true }, true),
		"ceiling":  mathFn(func(d decimal.Decimal) (any, bool) { return d.Ceil().IntPart(), true }, false),
		"floor":    mathFn(func(d decimal.Decimal) (any, bool) { return d.Floor().IntPart(), true }, false),
		"truncate": mathFn(func(d decimal.Decimal) (any, bool) { return d.Truncate(0).IntPart(), true }, false),
		"exp":      mathFn(floatFn(math.Exp), false),
		"ln":       mathFn(floatFn(math.Log), false),
		"sqrt": mathFn(func(d decimal.Decimal) (any, bool) {
			if d.IsNegative() {
				return nil, false
			}
			return floatFn(math.Sqrt)(d)
		}, false),
		"log": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			base, err := decimalArg(c, f, 0)
			if err != nil || len(in) == 0 {
				return nil, err
			}
			x, ok := singleNumber(in)
			if !ok {
				return nil, errorf("log() needs a number")
			}
			xf, _ := x.Float64()
			bf, _ := base.Float64()
			return floatResult(math.Log(xf) / math.Log(bf)), nil
		}),
		"power": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			if len(in) == 0 {
				return nil, nil
			}
			ex, err := f.arg(c, 0)
			if err != nil || len(ex) == 0 {
				return nil, err
			}
			bi, bInt := system(in[0]).(int64)
			ei, eInt := system(ex[0]).(int64)
			if bInt && eInt && ei >= 0 {
				return Collection{int64(math.Pow(float64(bi), float64(ei)))}, nil
			}
			b, ok1 := toDecimal(in[0])
			e, ok2 := toDecimal(ex[0])
			if !ok1 || !ok2 {
				return nil, errorf("power() needs numbers")
			}
			bf, _ := b.Float64()
			ef, _ := e.Float64()
			return floatResult(math.Pow(bf, ef)), nil
		}),
		"round": fn(0, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			places := int64(0)
			if len(f.args) == 1 {
				n, err := intArg(c, f, 0)
				if err != nil {
					return nil, err
				}
				places = int64(n)
			}
			if len(in) == 0 {
				return nil, nil
			}
			d, ok := singleNumber(in)
			if !ok {
				return nil, errorf("round() needs a number")
			}
			return Collection{d.Round(int32(places))}, nil
		}),

		// Tree navigation
		"children": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			var out Collection
			for _, item := range in {
				if n, ok := item.(*Node); ok {
					out = n.children(out)
				}
			}
			return out, nil
		}),
		"descendants": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			var out Collection
			queue := in
			for len(queue) > 0 {
				var next Collection
				for _, item := range queue {
					if n, ok := item.(*Node); ok {
						next = n.children(next)
					}
				}
				out = append(out, next...)
				queue = next
			}
			return out, nil
		}),

		// Utility
		"trace": fn(1, 2, func(c *ctx, f *call, in Collection) (Collection, error) {
			name, err := f.arg(c, 0)
			if err != nil {
				return nil, err
			}
			if c.env.Trace == nil {
				return in, nil
			}
			shown := in
			if len(f.args) == 2 {
				shown = nil
				for i, item := range in {
					r, err := f.lambda(c, 1, item, i)
					if err != nil {
						return nil, err
					}
					shown = append(shown, r...)
				}
			}
			s, _ := singleString(name)
			c.env.Trace(s, shown)
			return in, nil
		}),
		"now": fn(0, 0, func(c *ctx, _ *call, _ Collection) (Collection, error) {
			return Collection{fromTime(c.now, KindDateTime, precMillisecond, true)}, nil
		}),
		"today": fn(0, 0, func(c *ctx, _ *call, _ Collection) (Collection, error) {
			return Collection{fromTime(c.now, KindDate, precDay, false)}, nil
		}),
		"timeOfDay": fn(0, 0, func(c *ctx, _ *call, _ Collection) (Collection, error) {
			return Collection{fromTime(c.now, KindTime, precMillisecond, false)}, nil
		}),
		"not": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			if len(in) == 0 {
				return nil, nil
			}
			b, ok := singletonBool(in)
			if !ok {
				return nil, errorf("not() needs one value, not %d", len(in))
			}
			return Collection{!b}, nil
		}),
		"aggregate": fn(1, 2, func(c *ctx, f *call, in Collection) (Collection, error) {
			var total Collection
			if len(f.args) == 2 {
				var err error
				if total, err = f.arg(c, 1); err != nil {
					return nil, err
				}
			}
			for i, item := range in {
				cc := c.with(item, i)
				cc.total = total
				r, err := f.args[0].eval(cc, Collection{item})
				if err != nil {
					return nil, err
				}
				total = r
			}
			return total, nil
		}),
		"sort": fn(0, 8, sortFn),

		// Precision and boundaries
		"precision": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			if len(in) != 1 {
				return nil, nil
			}
			switch v := system(in[0]).(type) {
			case decimal.Decimal:
				return Collection{int64(max(0, -v.Exponent()))}, nil
			case Temporal:
				return Collection{int64(v.digits())}, nil
			}
			return nil, nil
		}),
		"lowBoundary":  fn(0, 1, boundaryFn(false)),
		"highBoundary": fn(0, 1, boundaryFn(true)),
		"comparable": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			other, err := f.arg(c, 0)
			if err != nil || len(in) != 1 || len(other) != 1 {
				return nil, err
			}
			a, ok1 := system(in[0]).(Quantity)
			b, ok2 := system(other[0]).(Quantity)
			if !ok1 || !ok2 {
				return nil, errorf("comparable() compares quantities")
			}
			ua, ok1 := parseUnit(a.Unit)
			ub, ok2 := parseUnit(b.Unit)
			return Collection{ok1 && ok2 && sameDimension(ua, ub)}, nil
		}),

		// FHIR's additions
		"extension": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			url, err := f.arg(c, 0)
			if err != nil {
				return nil, err
			}
			u, _ := singleString(url)
			var out Collection
			for _, item := range in {
				n, ok := item.(*Node)
				if !ok {
					continue
				}
				exts, err := n.member("extension", nil)
				if err != nil {
					continue
				}
				for _, e := range exts {
					if m, ok := e.(*Node).object(); ok && m["url"] == u {
						out = append(out, e)
					}
				}
			}
			return out, nil
		}),
		"hasValue": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			if len(in) != 1 {
				return Collection{false}, nil
			}
			n, ok := in[0].(*Node)
			if !ok {
				return Collection{true}, nil
			}
			_, isObj := n.object()
			return Collection{n.Val != nil && !isObj}, nil
		}),
		"getValue": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			if len(in) != 1 {
				return nil, nil
			}
			if n, ok := in[0].(*Node); ok {
				if _, isObj := n.object(); isObj || n.Val == nil {
					return nil, nil
				}
			}
			return Collection{system(in[0])}, nil
		}),
		"resolve": fn(0, 0, func(c *ctx, _ *call, in Collection) (Collection, error) {
			var out Collection
			for _, item := range in {
				ref := ""
				if n, ok := item.(*Node); ok {
					if m, ok := n.object(); ok {
						ref, _ = m["reference"].(string)
					} else {
						ref, _ = n.Val.(string)
					}
				} else {
					ref, _ = item.(string)
				}
				if ref == "" {
					continue
				}
				if res, ok := c.resolveReference(ref); ok {
					out = append(out, res)
				}
			}
			return out, nil
		}),
		"conformsTo": fn(1, 1, func(c *ctx, f *call, in Collection) (Collection, error) {
			url, err := f.arg(c, 0)
			if err != nil || len(in) != 1 {
				return nil, err
			}
			u, _ := singleString(url)
			name, ok := strings.CutPrefix(u, "http://hl7.org/fhir/StructureDefinition/")
			if !ok || !isKnownType(name) {
				return nil, errorf("conformsTo(): unknown profile %s", u)
			}
			return Collection{(typeSpec{"FHIR", name}).isNode(in[0])}, nil
		}),
		"memberOf": fn(1, 1, func(*ctx, *call, Collection) (Collection, error) {
			return nil, errorf("memberOf() needs a terminology service, which Hearth does not have")
		}),
		"htmlChecks": fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
			if len(in) != 1 {
				return Collection{false}, nil
			}
			s, ok := system(in[0]).(string)
			return Collection{ok && SafeXHTML(s)}, nil
		}),
	}
}

func collectionOf(item any) Collection {
	if item == nil {
		return nil
	}
	return Collection{item}
}

func where(c *ctx, f *call, in Collection) (Collection, error) {
	var out Collection
	for i, item := range in {
		r, err := f.lambda(c, 0, item, i)
		if err != nil {
			return nil, err
		}
		if b, ok := singletonBool(r); ok && b {
			out = append(out, item)
		}
	}
	return out, nil
}

func (ts typeSpec) isNode(item any) bool {
	ok, _ := ts.is(item, false)
	return ok
}

func boolAggregate(all, want bool) func(*ctx, *call, Collection) (Collection, error) {
	return func(_ *ctx, _ *call, in Collection) (Collection, error) {
		for _, item := range in {
			b, ok := system(item).(bool)
			if !ok {
				return nil, errorf("expects booleans")
			}
			if all && b != want {
				return Collection{false}, nil
			}
			if !all && b == want {
				return Collection{true}, nil
			}
		}
		return Collection{all}, nil
	}
}

func subset(a, b Collection) bool {
	for _, item := range a {
		if !contains(b, item) {
			return false
		}
	}
	return true
}

func intArg(c *ctx, f *call, i int) (int, error) {
	a, err := f.arg(c, i)
	if err != nil {
		return 0, err
	}
	n, ok := singleInteger(a)
	if !ok {
		return 0, errorf("argument %d must be an integer", i+1)
	}
	return int(n), nil
}

func decimalArg(c *ctx, f *call, i int) (decimal.Decimal, error) {
	a, err := f.arg(c, i)
	if err != nil {
		return decimal.Decimal{}, err
	}
	d, ok := singleNumber(a)
	if !ok {
		return decimal.Decimal{}, errorf("argument %d must be a number", i+1)
	}
	return d, nil
}

func singleNumber(in Collection) (decimal.Decimal, bool) {
	if len(in) != 1 {
		return decimal.Decimal{}, false
	}
	return toDecimal(in[0])
}

// inputString is the one string a string function applies to; ok is false
// for an empty input.
func inputString(in Collection) (string, bool, error) {
	if len(in) == 0 {
		return "", false, nil
	}
	s, ok := singleString(in)
	if !ok {
		return "", false, errorf("expects one string, not %d items", len(in))
	}
	return s, true, nil
}

// stringFn is a function of one string and n plain arguments; an empty
// input or argument gives empty.
func stringFn(n int, impl func(s string, args []Collection) (Collection, error)) *function {
	return fn(n, n, func(c *ctx, f *call, in Collection) (Collection, error) {
		s, ok, err := inputString(in)
		if !ok || err != nil {
			return nil, err
		}
		args := make([]Collection, n)
		for i := range n {
			if args[i], err = f.arg(c, i); err != nil {
				return nil, err
			}
			if len(args[i]) == 0 {
				return nil, nil
			}
		}
		return impl(s, args)
	})
}

func runeIndex(s, sub string) int {
	i := strings.Index(s, sub)
	if i < 0 {
		return -1
	}
	return len([]rune(s[:i]))
}

var regexCache sync.Map // pattern → *regexp.Regexp

func compileRegex(p string) (*regexp.Regexp, error) {
	if re, ok := regexCache.Load(p); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, errorf("bad regular expression: %v", err)
	}
	regexCache.Store(p, re)
	return re, nil
}

// mathFn applies a function of one number; keepInt keeps an Integer an
// Integer (abs).
func mathFn(impl func(decimal.Decimal) (any, bool), keepInt bool) *function {
	return fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, errorf("expects one number, not %d", len(in))
		}
		v := system(in[0])
		if q, ok := v.(Quantity); ok && keepInt {
			return Collection{Quantity{q.Value.Abs(), q.Unit}}, nil
		}
		d, ok := toDecimal(v)
		if !ok {
			return nil, errorf("expects a number")
		}
		r, ok := impl(d)
		if !ok {
			return nil, nil
		}
		if _, isInt := v.(int64); isInt && keepInt {
			r = r.(decimal.Decimal).IntPart()
		}
		return Collection{r}, nil
	})
}

func floatFn(f func(float64) float64) func(decimal.Decimal) (any, bool) {
	return func(d decimal.Decimal) (any, bool) {
		x, _ := d.Float64()
		r := floatResult(f(x))
		if r == nil {
			return nil, false
		}
		return r[0], true
	}
}

// floatResult is a float result as a Decimal, or empty when it is not a
// number (log of a negative, a power that overflows).
func floatResult(f float64) Collection {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return Collection{roundFloat(f)}
}

// roundFloat turns a float result into a Decimal, rounded to the digits a
// float64 holds.
func roundFloat(f float64) decimal.Decimal {
	d := decimal.NewFromFloat(f)
	if d.Exponent() < -15 {
		d = d.Round(15)
	}
	return d
}

func converter(conv func(any) (any, bool)) *function {
	return fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, errorf("converts one item, not %d", len(in))
		}
		v, ok := conv(system(in[0]))
		if !ok {
			return nil, nil
		}
		return Collection{v}, nil
	})
}

func convertsTo(conv func(any) (any, bool)) *function {
	return fn(0, 0, func(_ *ctx, _ *call, in Collection) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, errorf("converts one item, not %d", len(in))
		}
		_, ok := conv(system(in[0]))
		return Collection{ok}, nil
	})
}

func toBoolean(v any) (any, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case int64:
		switch x {
		case 0:
			return false, true
		case 1:
			return true, true
		}
	case decimal.Decimal:
		switch {
		case x.Equal(decimal.Zero):
			return false, true
		case x.Equal(decimal.NewFromInt(1)):
			return true, true
		}
	case string:
		switch strings.ToLower(x) {
		case "true", "t", "yes", "y", "1", "1.0":
			return true, true
		case "false", "f", "no", "n", "0", "0.0":
			return false, true
		}
	}
	return nil, false
}

var (
	integerRe = regexp.MustCompile(`^[+-]?\d+$`)
	decimalRe = regexp.MustCompile(`^[+-]?\d+(\.\d+)?$`)
)

func toInteger(v any) (any, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case bool:
		if x {
			return int64(1), true
		}
		return int64(0), true
	case string:
		if !integerRe.MatchString(x) {
			return nil, false
		}
		n, err := strconv.ParseInt(x, 10, 32)
		return n, err == nil
	}
	return nil, false
}

func toDecimalValue(v any) (any, bool) {
	switch x := v.(type) {
	case int64:
		return decimal.NewFromInt(x), true
	case decimal.Decimal:
		return x, true
	case bool:
		if x {
			return decimal.RequireFromString("1.0"), true
		}
		return decimal.RequireFromString("0.0"), true
	case string:
		if !decimalRe.MatchString(x) {
			return nil, false
		}
		d, err := decimal.NewFromString(x)
		return d, err == nil
	}
	return nil, false
}

func toStringValue(v any) (any, bool) {
	switch v.(type) {
	case bool, string, int64, decimal.Decimal, Quantity, Temporal:
		return String(v), true
	}
	return nil, false
}

func toTemporal(kind TemporalKind) func(any) (any, bool) {
	return func(v any) (any, bool) {
		switch x := v.(type) {
		case string:
			t, ok := parseTemporal(x, kind)
			return t, ok
		case Temporal:
			switch {
			case x.Kind == kind:
				return x, true
			case kind == KindDate && x.Kind == KindDateTime:
				x.Kind, x.Prec, x.HasTZ = KindDate, min(x.Prec, precDay), false
				return x, true
			case kind == KindDateTime && x.Kind == KindDate:
				x.Kind = KindDateTime
				return x, true
			}
		}
		return nil, false
	}
}

var quantityRe = regexp.MustCompile(`^([+-]?\d+(?:\.\d+)?)\s*(?:'([^']+)'|([a-zA-Z]+))?$`)

// quantityConversion is toQuantity(unit?) of the input.
func quantityConversion(c *ctx, f *call, in Collection) (Quantity, bool, error) {
	if len(in) != 1 {
		return Quantity{}, false, nil
	}
	var q Quantity
	switch x := system(in[0]).(type) {
	case int64:
		q = Quantity{decimal.NewFromInt(x), "1"}
	case decimal.Decimal:
		q = Quantity{x, "1"}
	case bool:
		q = Quantity{decimal.NewFromInt(0), "1"}
		if x {
			q.Value = decimal.RequireFromString("1.0")
		}
	case Quantity:
		q = x
	case string:
		m := quantityRe.FindStringSubmatch(x)
		if m == nil {
			return q, false, nil
		}
		unit := m[2]
		if m[3] != "" {
			if unit = calendarUnit(m[3]); unit == "" {
				return q, false, nil // a bare word must be a calendar unit
			}
		}
		if unit == "" {
			unit = "1"
		}
		d, _ := decimal.NewFromString(m[1])
		q = Quantity{d, unit}
	default:
		return q, false, nil
	}
	if len(f.args) == 1 {
		u, err := f.arg(c, 0)
		if err != nil {
			return q, false, err
		}
		unit, _ := singleString(u)
		if unit != q.Unit {
			v, from, ok1 := toCanonical(q)
			to, ok2 := parseUnit(unit)
			if !ok1 || !ok2 || !sameDimension(from, to) {
				return q, false, nil
			}
			q = Quantity{v.DivRound(to.factor, decimalPlaces), unit}
		}
	}
	return q, true, nil
}

func boundaryFn(high bool) func(*ctx, *call, Collection) (Collection, error) {
	return func(c *ctx, f *call, in Collection) (Collection, error) {
		if len(in) != 1 {
			return nil, nil
		}
		prec := -1
		if len(f.args) == 1 {
			n, err := intArg(c, f, 0)
			if err != nil || n < 0 {
				return nil, err
			}
			prec = n
		}
		switch v := system(in[0]).(type) {
		case int64:
			return decimalBoundary(decimal.NewFromInt(v), prec, high)
		case decimal.Decimal:
			return decimalBoundary(v, prec, high)
		case Quantity:
			d, err := decimalBoundary(v.Value, prec, high)
			if err != nil || len(d) == 0 {
				return nil, err
			}
			return Collection{Quantity{d[0].(decimal.Decimal), v.Unit}}, nil
		case Temporal:
			if prec < 0 {
				prec = map[TemporalKind]int{KindDate: 8, KindDateTime: 17, KindTime: 9}[v.Kind]
			}
			t, ok := v.boundary(prec, high)
			if !ok {
				return nil, nil
			}
			return Collection{t}, nil
		}
		return nil, errorf("needs a number, quantity or date")
	}
}

// decimalBoundary is the least (or greatest) value d may stand for given
// its precision, written to prec places (8 by default).
func decimalBoundary(d decimal.Decimal, prec int, high bool) (Collection, error) {
	if prec < 0 {
		prec = 8
	}
	if prec > 28 {
		return nil, nil
	}
	scale := max(0, -d.Exponent())
	half := decimal.New(5, int32(-scale-1)) // half a unit of the last digit
	var v decimal.Decimal
	if high == !d.IsNegative() {
		v = d.Abs().Add(half)
	} else {
		v = d.Abs().Sub(half)
	}
	if d.IsNegative() {
		v = v.Neg()
	}
	// Cut to prec places, away from the value d stands for.
	var out decimal.Decimal
	if high {
		out = v.RoundCeil(int32(prec))
	} else {
		out = v.RoundFloor(int32(prec))
	}
	if prec > 0 && out.Exponent() > int32(-prec) {
		out = decimal.RequireFromString(out.StringFixed(int32(prec)))
	}
	if prec == 0 {
		return Collection{out.Truncate(0)}, nil
	}
	return Collection{decimal.RequireFromString(out.StringFixed(int32(prec)))}, nil
}

// sortFn is sort(key, …): ascending by each key, descending where the key
// is negated (-$this).
func sortFn(c *ctx, f *call, in Collection) (Collection, error) {
	type keyed struct {
		item any
		keys []Collection
	}
	items := make([]keyed, len(in))
	for i, item := range in {
		items[i].item = item
		for k := range f.args {
			body, _ := sortKey(f.args[k])
			r, err := body.eval(c.with(item, i), Collection{item})
			if err != nil {
				return nil, err
			}
			items[i].keys = append(items[i].keys, r)
		}
	}
	slices.SortStableFunc(items, func(a, b keyed) int {
		if len(f.args) == 0 {
			return compareItems(a.item, b.item)
		}
		for k := range f.args {
			_, desc := sortKey(f.args[k])
			c := compareCollections(a.keys[k], b.keys[k])
			if desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
	out := make(Collection, len(items))
	for i, it := range items {
		out[i] = it.item
	}
	return out, nil
}

// sortKey strips a leading minus from a sort key: it means descending,
// and a string key cannot be negated.
func sortKey(x expr) (expr, bool) {
	if u, ok := x.(*unaryOp); ok && u.op == "-" {
		return u.x, true
	}
	return x, false
}

func compareCollections(a, b Collection) int {
	// Empty sorts last, so that a descending key puts it first.
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	return compareItems(a[0], b[0])
}

func compareItems(a, b any) int {
	c, known, err := compare(a, b)
	if err != nil || !known {
		return cmp.Compare(String(a), String(b))
	}
	return c
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

// unescapeJSON undoes JSON string escapes; quotes left bare stay.
func unescapeJSON(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i++; i >= len(s) {
			return "", false
		}
		text, end, ok := escaped(s, i, `"\/`, "bfnrt")
		if !ok {
			return "", false
		}
		b.WriteString(text)
		i = end
	}
	return b.String(), true
}
