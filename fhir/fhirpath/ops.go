package fhirpath

import (
	"time"

	"github.com/shopspring/decimal"
)

type binary struct {
	op   string
	l, r expr
}

func (b *binary) eval(c *ctx, focus Collection) (Collection, error) {
	l, err := b.l.eval(c, focus)
	if err != nil {
		return nil, err
	}
	switch b.op {
	case "and", "or", "implies":
		// Short-circuit where the left side settles it; the right side
		// may be an error the left guards against.
		lb, lok, err := logicalOperand(l)
		if err != nil {
			return nil, err
		}
		switch {
		case b.op == "and" && lok && !lb:
			return Collection{false}, nil
		case b.op == "or" && lok && lb:
			return Collection{true}, nil
		case b.op == "implies" && lok && !lb:
			return Collection{true}, nil
		}
	}
	r, err := b.r.eval(c, focus)
	if err != nil {
		return nil, err
	}
	switch b.op {
	case "and", "or", "xor", "implies":
		return logical(b.op, l, r)
	case "|":
		return union(l, r), nil
	case "=", "!=":
		eq, known := equalCollections(l, r)
		if !known {
			return nil, nil
		}
		return Collection{eq == (b.op == "=")}, nil
	case "~", "!~":
		return Collection{equivalentCollections(l, r) == (b.op == "~")}, nil
	case "<", ">", "<=", ">=":
		return comparison(b.op, l, r)
	case "in", "contains":
		item, coll := l, r
		if b.op == "contains" {
			item, coll = r, l
		}
		if len(item) == 0 {
			return nil, nil
		}
		if len(item) > 1 {
			return nil, errorf("%s needs one item, not %d", b.op, len(item))
		}
		return Collection{contains(coll, item[0])}, nil
	case "&":
		ls, _ := singleString(l)
		rs, _ := singleString(r)
		if (len(l) > 0 && !isString(l)) || (len(r) > 0 && !isString(r)) {
			return nil, errorf("& joins strings")
		}
		return Collection{ls + rs}, nil
	}
	return arithmetic(b.op, l, r)
}

func isString(c Collection) bool {
	_, ok := singleString(c)
	return ok
}

// logicalOperand is a collection as an operand of and/or/xor/implies:
// empty is unknown (ok false).
func logicalOperand(c Collection) (v, ok bool, err error) {
	if len(c) == 0 {
		return false, false, nil
	}
	b, ok := singletonBool(c)
	if !ok {
		return false, false, errorf("a logical operand must be one value, not %d", len(c))
	}
	return b, true, nil
}

func logical(op string, l, r Collection) (Collection, error) {
	lb, lok, err := logicalOperand(l)
	if err != nil {
		return nil, err
	}
	rb, rok, err := logicalOperand(r)
	if err != nil {
		return nil, err
	}
	var v, known bool
	switch op {
	case "and":
		switch {
		case lok && rok:
			v, known = lb && rb, true
		case lok && !lb || rok && !rb:
			v, known = false, true
		}
	case "or":
		switch {
		case lok && rok:
			v, known = lb || rb, true
		case lok && lb || rok && rb:
			v, known = true, true
		}
	case "xor":
		if lok && rok {
			v, known = lb != rb, true
		}
	case "implies":
		switch {
		case lok && rok:
			v, known = !lb || rb, true
		case lok && !lb:
			v, known = true, true
		case rok && rb:
			v, known = true, true
		}
	}
	if !known {
		return nil, nil
	}
	return Collection{v}, nil
}

// union merges two collections without duplicates, in order.
func union(l, r Collection) Collection {
	var out Collection
	for _, side := range []Collection{l, r} {
		for _, item := range side {
			if !contains(out, item) {
				out = append(out, item)
			}
		}
	}
	return out
}

func contains(coll Collection, item any) bool {
	for _, x := range coll {
		if eq, known := equal(x, item); known && eq {
			return true
		}
	}
	return false
}

func equalCollections(l, r Collection) (eq, known bool) {
	if len(l) == 0 || len(r) == 0 {
		return false, false
	}
	if len(l) != len(r) {
		return false, true
	}
	for i := range l {
		eq, known := equal(l[i], r[i])
		if !known || !eq {
			return eq, known
		}
	}
	return true, true
}

func equivalentCollections(l, r Collection) bool {
	if len(l) != len(r) {
		return false
	}
	used := make([]bool, len(r))
	for _, x := range l {
		found := false
		for j, y := range r {
			if !used[j] && equivalent(x, y) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func comparison(op string, l, r Collection) (Collection, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, errorf("%s compares single values", op)
	}
	c, known, err := compare(l[0], r[0])
	if err != nil || !known {
		return nil, err
	}
	var v bool
	switch op {
	case "<":
		v = c < 0
	case ">":
		v = c > 0
	case "<=":
		v = c <= 0
	case ">=":
		v = c >= 0
	}
	return Collection{v}, nil
}

func arithmetic(op string, l, r Collection) (Collection, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, errorf("%s needs single values", op)
	}
	a, b := system(l[0]), system(r[0])
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok && op == "+" {
			return Collection{x + y}, nil
		}
	case int64:
		if y, ok := b.(int64); ok {
			return integerOp(op, x, y)
		}
		if y, ok := b.(decimal.Decimal); ok {
			return decimalOp(op, decimal.NewFromInt(x), y)
		}
	case decimal.Decimal:
		if y, ok := toDecimal(b); ok {
			return decimalOp(op, x, y)
		}
	case Temporal:
		if y, ok := b.(Quantity); ok && (op == "+" || op == "-") {
			if op == "-" {
				y.Value = y.Value.Neg()
			}
			t, err := addDuration(x, y)
			if err != nil {
				return nil, err
			}
			return Collection{t}, nil
		}
	case Quantity:
		if y, ok := b.(Quantity); ok {
			return quantityOp(op, x, y)
		}
	}
	return nil, errorf("%s cannot apply to %s and %s", op, typeName(a), typeName(b))
}

func integerOp(op string, x, y int64) (Collection, error) {
	switch op {
	case "+":
		return Collection{x + y}, nil
	case "-":
		return Collection{x - y}, nil
	case "*":
		return Collection{x * y}, nil
	case "/":
		return decimalOp(op, decimal.NewFromInt(x), decimal.NewFromInt(y))
	case "div":
		if y == 0 {
			return nil, nil
		}
		return Collection{x / y}, nil
	case "mod":
		if y == 0 {
			return nil, nil
		}
		return Collection{x % y}, nil
	}
	return nil, errorf("unknown operator %s", op)
}

// decimalPlaces is the scale of a quotient that does not end.
const decimalPlaces = 8

func decimalOp(op string, x, y decimal.Decimal) (Collection, error) {
	switch op {
	case "+":
		return Collection{x.Add(y)}, nil
	case "-":
		return Collection{x.Sub(y)}, nil
	case "*":
		return Collection{x.Mul(y)}, nil
	case "/":
		if y.IsZero() {
			return nil, nil
		}
		return Collection{x.DivRound(y, decimalPlaces)}, nil
	case "div":
		if y.IsZero() {
			return nil, nil
		}
		return Collection{x.Div(y).Truncate(0).IntPart()}, nil
	case "mod":
		if y.IsZero() {
			return nil, nil
		}
		return Collection{x.Mod(y)}, nil
	}
	return nil, errorf("unknown operator %s", op)
}

func quantityOp(op string, x, y Quantity) (Collection, error) {
	switch op {
	case "*":
		return Collection{Quantity{x.Value.Mul(y.Value), productUnit(x.Unit, ".", y.Unit)}}, nil
	case "/":
		if y.Value.IsZero() {
			return nil, nil
		}
		return Collection{Quantity{x.Value.DivRound(y.Value, decimalPlaces), productUnit(x.Unit, "/", y.Unit)}}, nil
	case "+", "-":
		if x.Unit != y.Unit {
			cy, uy, ok1 := toCanonical(y)
			ux, ok2 := parseUnit(x.Unit)
			if !ok1 || !ok2 || !sameDimension(ux, uy) {
				return nil, errorf("cannot %s %s and %s", op, x.Unit, y.Unit)
			}
			y = Quantity{cy.DivRound(ux.factor, decimalPlaces), x.Unit}
		}
		if op == "+" {
			return Collection{Quantity{x.Value.Add(y.Value), x.Unit}}, nil
		}
		return Collection{Quantity{x.Value.Sub(y.Value), x.Unit}}, nil
	}
	return nil, errorf("%s cannot apply to quantities", op)
}

func productUnit(a, op, b string) string {
	if c := calendarUnit(a); c != "" {
		a = calendarUnits[c]
	}
	if c := calendarUnit(b); c != "" {
		b = calendarUnits[c]
	}
	if op == "/" && a == b {
		return "1"
	}
	return a + op + b
}

// addDuration adds a calendar duration to a date or time. Years and
// months are calendar units; 'a' and 'mo' (UCUM's average year and
// month) have no exact calendar meaning and are refused.
func addDuration(t Temporal, q Quantity) (Temporal, error) {
	unit := calendarUnit(q.Unit)
	if unit == "" {
		for k, u := range calendarUnits {
			if u == q.Unit && u != "a" && u != "mo" {
				unit = k
			}
		}
	}
	if unit == "" {
		return t, errorf("cannot add %s to a date", q.Unit)
	}
	n := q.Value.Truncate(0).IntPart()
	tm := t.time()
	switch unit {
	case "year":
		tm = tm.AddDate(int(n), 0, 0)
	case "month":
		tm = tm.AddDate(0, int(n), 0)
	case "week":
		tm = tm.AddDate(0, 0, int(n)*7)
	case "day":
		tm = tm.AddDate(0, 0, int(n))
	case "hour":
		tm = tm.Add(time.Duration(n) * time.Hour)
	case "minute":
		tm = tm.Add(time.Duration(n) * time.Minute)
	case "second":
		tm = tm.Add(time.Duration(n) * time.Second)
	case "millisecond":
		tm = tm.Add(time.Duration(n) * time.Millisecond)
	}
	out := fromTime(tm, t.Kind, t.Prec, t.HasTZ)
	if t.HasTZ {
		out.TZ = t.TZ
	}
	return out, nil
}
