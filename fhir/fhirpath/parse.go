package fhirpath

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
)

// Expression is a compiled FHIRPath expression: parse once, evaluate many
// times, from any number of goroutines.
type Expression struct {
	src  string
	root expr
	r4   bool
}

func (e *Expression) String() string { return e.src }

// Compile parses a FHIRPath expression. Functions are looked up now, so an
// unknown function or a wrong number of arguments is a compile error.
func Compile(src string) (*Expression, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	root, err := p.expression(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, &SyntaxError{t.pos, fmt.Sprintf("unexpected %q", t.text)}
	}
	return &Expression{src: src, root: root}, nil
}

// CompileR4 compiles an expression written for R4's own definitions,
// which expect the lenient engines of their day: as() applied to a
// collection filters it as ofType() does (%resource.descendants().as(canonical)
// in dom-3), where the FHIRPath specification makes it an error; and a
// name an element does not have is empty, not an error (an invariant of
// probability[x] names Range's low, and applies to every type of it).
func CompileR4(src string) (*Expression, error) {
	e, err := Compile(src)
	if err != nil {
		return nil, err
	}
	e.r4 = true
	return e, nil
}

// MustCompile is Compile for expressions known at build time.
func MustCompile(src string) *Expression {
	e, err := Compile(src)
	if err != nil {
		panic(err)
	}
	return e
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

func (p *parser) isSymbol(s string) bool {
	t := p.peek()
	return t.kind == tokSymbol && t.text == s
}

func (p *parser) expect(s string) error {
	t := p.next()
	if t.kind != tokSymbol || t.text != s {
		if t.kind == tokEOF {
			return &SyntaxError{t.pos, fmt.Sprintf("expected %q at the end", s)}
		}
		return &SyntaxError{t.pos, fmt.Sprintf("expected %q, found %q", s, t.text)}
	}
	return nil
}

// binaryPrecedence gives each infix operator its level, loosest first, as
// the FHIRPath grammar orders them.
func binaryPrecedence(t token) int {
	if t.kind == tokIdent {
		switch t.text {
		case "implies":
			return 1
		case "or", "xor":
			return 2
		case "and":
			return 3
		case "in", "contains":
			return 4
		case "is", "as":
			return 8
		case "div", "mod":
			return 10
		}
		return 0
	}
	if t.kind != tokSymbol {
		return 0
	}
	switch t.text {
	case "=", "~", "!=", "!~":
		return 5
	case "<", ">", "<=", ">=":
		return 6
	case "|":
		return 7
	case "+", "-", "&":
		return 9
	case "*", "/":
		return 10
	}
	return 0
}

// expression parses operators binding tighter than minPrec.
func (p *parser) expression(minPrec int) (expr, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		prec := binaryPrecedence(t)
		if prec == 0 || prec <= minPrec {
			return left, nil
		}
		p.next()
		if t.text == "is" || t.text == "as" {
			ts, err := p.typeSpecifier()
			if err != nil {
				return nil, err
			}
			left = &typeOp{op: t.text, x: left, typ: ts}
			continue
		}
		right, err := p.expression(prec)
		if err != nil {
			return nil, err
		}
		left = &binary{op: t.text, l: left, r: right}
	}
}

func (p *parser) unary() (expr, error) {
	if p.isSymbol("-") || p.isSymbol("+") {
		op := p.next().text
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &unaryOp{op: op, x: x}, nil
	}
	return p.postfix()
}

func (p *parser) postfix() (expr, error) {
	x, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isSymbol("."):
			p.next()
			t := p.next()
			if t.kind != tokIdent && t.kind != tokDelimited {
				return nil, &SyntaxError{t.pos, "expected a name after '.'"}
			}
			if t.kind == tokIdent && p.isSymbol("(") {
				f, err := p.call(t)
				if err != nil {
					return nil, err
				}
				f.target = x
				x = f
				continue
			}
			x = &member{target: x, name: t.text}
		case p.isSymbol("["):
			p.next()
			idx, err := p.expression(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			x = &indexer{x: x, index: idx}
		default:
			return x, nil
		}
	}
}

func (p *parser) term() (expr, error) {
	t := p.next()
	switch t.kind {
	case tokNumber:
		return p.number(t)
	case tokString:
		return &literal{Collection{t.text}}, nil
	case tokDateTime:
		kind := KindDate
		if strings.Contains(t.text, "T") {
			kind = KindDateTime
		}
		v, ok := parseTemporal(strings.TrimSuffix(t.text, "T"), kind)
		if kind == KindDateTime && strings.HasSuffix(t.text, "T") && v.Prec > precDay {
			ok = false
		}
		if !ok {
			return nil, &SyntaxError{t.pos, fmt.Sprintf("@%s is not a date or date-time", t.text)}
		}
		v.Kind = kind
		return &literal{Collection{v}}, nil
	case tokTime:
		v, ok := parseTemporal(t.text, KindTime)
		if !ok {
			return nil, &SyntaxError{t.pos, fmt.Sprintf("@T%s is not a time", t.text)}
		}
		return &literal{Collection{v}}, nil
	case tokThis:
		switch t.text {
		case "$this", "$index", "$total":
			return &variable{name: t.text}, nil
		}
		return nil, &SyntaxError{t.pos, fmt.Sprintf("unknown %s", t.text)}
	case tokExternal:
		return &variable{name: "%" + t.text}, nil
	case tokDelimited:
		return &member{name: t.text}, nil
	case tokIdent:
		switch t.text {
		case "true", "false":
			return &literal{Collection{t.text == "true"}}, nil
		}
		if p.isSymbol("(") {
			return p.call(t)
		}
		return &member{name: t.text}, nil
	case tokSymbol:
		switch t.text {
		case "(":
			x, err := p.expression(0)
			if err != nil {
				return nil, err
			}
			return x, p.expect(")")
		case "{":
			return &literal{nil}, p.expect("}")
		}
	}
	if t.kind == tokEOF {
		return nil, &SyntaxError{t.pos, "expression ends too early"}
	}
	return nil, &SyntaxError{t.pos, fmt.Sprintf("unexpected %q", t.text)}
}

// number reads an integer or decimal literal, and the unit that makes it a
// quantity if one follows.
func (p *parser) number(t token) (expr, error) {
	next := p.peek()
	unit := ""
	switch {
	case next.kind == tokString:
		unit = p.next().text
	case next.kind == tokIdent && calendarUnit(next.text) != "":
		unit = p.next().text
	}
	d, err := decimal.NewFromString(t.text)
	if err != nil {
		return nil, &SyntaxError{t.pos, "bad number"}
	}
	if unit != "" {
		return &literal{Collection{Quantity{Value: d, Unit: unit}}}, nil
	}
	if strings.Contains(t.text, ".") {
		return &literal{Collection{d}}, nil
	}
	i, err := strconv.ParseInt(t.text, 10, 64)
	if err != nil {
		return nil, &SyntaxError{t.pos, "integer out of range"}
	}
	return &literal{Collection{i}}, nil
}

// call parses name(args) and binds the function.
func (p *parser) call(name token) (*call, error) {
	if err := p.expect("("); err != nil {
		return nil, err
	}
	var args []expr
	for !p.isSymbol(")") {
		a, err := p.expression(0)
		if err != nil {
			return nil, err
		}
		args = append(args, a)
		if !p.isSymbol(",") {
			break
		}
		p.next()
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	fn, ok := functions[name.text]
	if !ok {
		return nil, &SyntaxError{name.pos, fmt.Sprintf("unknown function %s()", name.text)}
	}
	if len(args) < fn.minArgs || len(args) > fn.maxArgs {
		return nil, &SyntaxError{name.pos, fmt.Sprintf("%s() takes %s", name.text, arity(fn))}
	}
	c := &call{name: name.text, fn: fn, args: args}
	if fn.typeArg {
		ts, err := typeFromExpr(args[0])
		if err != nil {
			return nil, &SyntaxError{name.pos, err.Error()}
		}
		c.typ = ts
	}
	return c, nil
}

func arity(fn *function) string {
	switch {
	case fn.minArgs == fn.maxArgs && fn.minArgs == 0:
		return "no arguments"
	case fn.minArgs == fn.maxArgs:
		return fmt.Sprintf("%d argument(s)", fn.minArgs)
	}
	return fmt.Sprintf("%d to %d arguments", fn.minArgs, fn.maxArgs)
}

// typeSpecifier reads a (qualified) type name after is/as.
func (p *parser) typeSpecifier() (typeSpec, error) {
	t := p.next()
	if t.kind != tokIdent && t.kind != tokDelimited {
		return typeSpec{}, &SyntaxError{t.pos, "expected a type name"}
	}
	if p.isSymbol(".") {
		p.next()
		n := p.next()
		if n.kind != tokIdent && n.kind != tokDelimited {
			return typeSpec{}, &SyntaxError{n.pos, "expected a type name"}
		}
		return typeSpec{namespace: t.text, name: n.text}, nil
	}
	return typeSpec{name: t.text}, nil
}

// typeFromExpr reads the type argument of is(), as() and ofType(), which
// parses as a path: FHIR.Patient, Boolean.
func typeFromExpr(x expr) (typeSpec, error) {
	switch m := x.(type) {
	case *member:
		if m.target == nil {
			return typeSpec{name: m.name}, nil
		}
		if ns, ok := m.target.(*member); ok && ns.target == nil {
			return typeSpec{namespace: ns.name, name: m.name}, nil
		}
	}
	return typeSpec{}, fmt.Errorf("expected a type name")
}
