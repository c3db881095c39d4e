package fhirpath

import (
	"encoding/json"
	"strings"

	"github.com/shopspring/decimal"
)

// Collection is what every FHIRPath expression evaluates to. Its items are
// *Node (FHIR data) or System values: bool, string, int64 (Integer),
// decimal.Decimal (Decimal), Temporal, Quantity, TypeInfo.
type Collection []any

// Quantity is a System.Quantity: a decimal and a UCUM unit, or a calendar
// duration keyword ("day", "month").
type Quantity struct {
	Value decimal.Decimal
	Unit  string
}

func (q Quantity) String() string {
	if calendarUnit(q.Unit) != "" {
		return formatDecimal(q.Value) + " " + q.Unit // 1 week, a keyword
	}
	return formatDecimal(q.Value) + " '" + q.Unit + "'"
}

// TypeInfo is what type() returns: a namespace (System, FHIR) and a name.
type TypeInfo struct {
	Namespace string
	Name      string
}

func parseDecimal(s string) (decimal.Decimal, error) { return decimal.NewFromString(s) }

// formatDecimal writes d with the digits its scale says it has: 1.50
// stays 1.50, as FHIRPath's decimal keeps its precision.
func formatDecimal(d decimal.Decimal) string {
	if e := d.Exponent(); e < 0 {
		return d.StringFixed(-e)
	}
	return d.String()
}

// calendarUnits are the calendar duration keywords and the UCUM unit each
// is, for comparison; singular and plural name the same unit.
var calendarUnits = map[string]string{
	"year": "a", "month": "mo", "week": "wk", "day": "d", "hour": "h",
	"minute": "min", "second": "s", "millisecond": "ms",
}

// calendarUnit normalises a keyword (days → day); "" if it is none.
func calendarUnit(u string) string {
	u = strings.TrimSuffix(u, "s")
	if u == "milli" { // "millis" is not a keyword; "milliseconds" is
		return ""
	}
	if _, ok := calendarUnits[u]; ok {
		return u
	}
	return ""
}

// system converts an item to its System value: FHIR primitives become
// bool, string, int64, decimal or Temporal; a FHIR Quantity a Quantity.
// Items without one (complex FHIR elements) stay as they are.
func system(item any) any {
	if n, ok := item.(*Node); ok {
		if v := n.system(); v != nil {
			return v
		}
	}
	return item
}

// TypeOf is the type of an item as type() names it.
func TypeOf(item any) TypeInfo {
	switch v := item.(type) {
	case *Node:
		return TypeInfo{"FHIR", v.Type}
	case bool:
		return TypeInfo{"System", "Boolean"}
	case string:
		return TypeInfo{"System", "String"}
	case int64:
		return TypeInfo{"System", "Integer"}
	case decimal.Decimal:
		return TypeInfo{"System", "Decimal"}
	case Quantity:
		return TypeInfo{"System", "Quantity"}
	case Temporal:
		return TypeInfo{"System", [...]string{"Date", "DateTime", "Time"}[v.Kind]}
	case TypeInfo:
		return TypeInfo{"System", "Any"}
	}
	return TypeInfo{"System", "Any"}
}

// String renders one item as the tests and trace() show it.
func String(item any) string {
	switch v := system(item).(type) {
	case bool:
		if v {
			return "true"
		}
		return "false"
	case string:
		return v
	case int64:
		return decimal.NewFromInt(v).String()
	case decimal.Decimal:
		return formatDecimal(v)
	case Quantity:
		return v.String()
	case Temporal:
		return v.String()
	case TypeInfo:
		return v.Namespace + "." + v.Name
	case *Node:
		b, _ := json.Marshal(v.Val)
		return string(b)
	}
	return ""
}
