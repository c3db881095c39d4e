package fhirpath

import (
	"reflect"
	"strings"

	"github.com/shopspring/decimal"
)

// equal is FHIRPath = on two items; known is false when the answer is
// empty (dates of different precision).
func equal(a, b any) (eq, known bool) {
	a, b = system(a), system(b)
	switch x := a.(type) {
	case *Node:
		y, ok := b.(*Node)
		return ok && reflect.DeepEqual(x.Val, y.Val), true
	case bool:
		y, ok := b.(bool)
		return ok && x == y, true
	case string:
		y, ok := b.(string)
		return ok && x == y, true
	case int64, decimal.Decimal:
		y, ok := toDecimal(b)
		if !ok {
			return false, true
		}
		xd, _ := toDecimal(x)
		return xd.Equal(y), true
	case Temporal:
		y, ok := b.(Temporal)
		if !ok || (x.Kind == KindTime) != (y.Kind == KindTime) {
			return false, true
		}
		c, known := compareTemporal(x, y)
		return c == 0, known
	case Quantity:
		y, ok := b.(Quantity)
		if !ok {
			return false, true
		}
		c, known := compareQuantity(x, y, false)
		return c == 0, known
	case TypeInfo:
		return a == b, true
	}
	return false, true
}

// equivalent is FHIRPath ~ on two items: strings ignoring case and
// whitespace, decimals at the lesser precision, no unknowns.
func equivalent(a, b any) bool {
	a, b = system(a), system(b)
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && normalizeSpace(x) == normalizeSpace(y)
	case int64, decimal.Decimal:
		y, ok := toDecimal(b)
		if !ok {
			return false
		}
		xd, _ := toDecimal(x)
		scale := max(xd.Exponent(), y.Exponent())
		return xd.Round(-scale).Equal(y.Round(-scale))
	case Temporal:
		y, ok := b.(Temporal)
		if !ok {
			return false
		}
		c, known := compareTemporal(x, y)
		return known && c == 0
	case Quantity:
		y, ok := b.(Quantity)
		if !ok {
			return false
		}
		c, known := compareQuantity(x, y, true)
		return known && c == 0
	case *Node:
		y, ok := b.(*Node)
		return ok && reflect.DeepEqual(x.Val, y.Val)
	}
	eq, known := equal(a, b)
	return known && eq
}

func normalizeSpace(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

func toDecimal(v any) (decimal.Decimal, bool) {
	switch x := system(v).(type) {
	case int64:
		return decimal.NewFromInt(x), true
	case decimal.Decimal:
		return x, true
	}
	return decimal.Decimal{}, false
}

// compareQuantity orders two quantities, converting units where UCUM
// relates them; known is false for units of different kinds. round
// compares at the lesser precision (for ~).
func compareQuantity(a, b Quantity, round bool) (int, bool) {
	av, bv := a.Value, b.Value
	if a.Unit != b.Unit && (calendarOnly(a.Unit) || calendarOnly(b.Unit)) && calendarUnit(a.Unit) != calendarUnit(b.Unit) {
		return 0, false // a calendar year or month is not UCUM's average 'a' or 'mo'
	}
	if a.Unit != b.Unit {
		ca, ua, ok1 := toCanonical(a)
		cb, ub, ok2 := toCanonical(b)
		if !ok1 || !ok2 || !sameDimension(ua, ub) {
			return 0, false
		}
		av, bv = ca, cb
	}
	if round {
		scale := max(a.Value.Exponent(), b.Value.Exponent())
		av, bv = av.Round(-scale), bv.Round(-scale)
	}
	return av.Cmp(bv), true
}

// compare orders two items for < > <= >=. known is false when the order is
// unknown (dates of different precision); an error when the items are not
// of comparable types.
func compare(a, b any) (int, bool, error) {
	a, b = system(a), system(b)
	switch x := a.(type) {
	case int64, decimal.Decimal:
		y, ok := toDecimal(b)
		if ok {
			xd, _ := toDecimal(x)
			return xd.Cmp(y), true, nil
		}
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), true, nil
		}
	case Temporal:
		if y, ok := b.(Temporal); ok && (x.Kind == KindTime) == (y.Kind == KindTime) {
			c, known := compareTemporal(x, y)
			return c, known, nil
		}
	case Quantity:
		if y, ok := b.(Quantity); ok {
			c, known := compareQuantity(x, y, false)
			if !known {
				return 0, false, errorf("quantities in %s and %s cannot be compared", x.Unit, y.Unit)
			}
			return c, true, nil
		}
	}
	return 0, false, errorf("cannot compare %s with %s", typeName(a), typeName(b))
}

func typeName(item any) string {
	t := TypeOf(item)
	return t.Namespace + "." + t.Name
}

// calendarOnly reports whether u is a calendar year or month, which have
// no fixed length.
func calendarOnly(u string) bool {
	c := calendarUnit(u)
	return c == "year" || c == "month"
}
