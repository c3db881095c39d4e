package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// compiler turns a fhir.SearchQuery into SQL over the index tables. Each
// parameter becomes "c.id IN (SELECT id FROM idx_… WHERE …)" so that SQLite
// can drive the query from the most selective index.
type compiler struct {
	args []any
	now  time.Time
}

// arg binds a value and returns its numbered placeholder; numbering lets
// the SQL be assembled in any order.
func (c *compiler) arg(v any) string {
	c.args = append(c.args, v)
	return "?" + strconv.Itoa(len(c.args))
}

// where returns the FROM clause and the conditions on alias a (a row of
// current) for q.
//
// Every condition compiles to "a.id IN (SELECT id FROM idx_… WHERE …)". Left
// like that, SQLite materialises each subquery in full — every Observation
// with a common code, every one dated after 2020 — before intersecting them.
// So only the most selective condition stays an IN that drives the query;
// the others become correlated EXISTS probes on the index table's (type, id)
// index, checked only for the rows the driver yields. The driver is joined
// with CROSS JOIN, which SQLite never reorders: left to itself the planner
// prefers walking all of current in id order to avoid a sort, probing each
// row, which is ruinous when the driver matches a few rows in a million.
func (c *compiler) where(q *fhir.SearchQuery, a string) (from, where string, err error) {
	type cond struct {
		sql  string
		rank int // lower drives better
	}
	var conds []cond
	switch q.Compartment {
	case "":
	case fhir.AnyCompartment:
		// A probe of compartment_owner, never a driver: as a subquery of
		// ids it would repeat a resource in several compartments.
		conds = append(conds, cond{fmt.Sprintf("EXISTS (SELECT 1 FROM compartment WHERE type = %s AND id = %s.id)", c.arg(q.Type), a), 10})
	default:
		conds = append(conds, cond{fmt.Sprintf("%s.id IN (SELECT id FROM compartment WHERE patient_id = %s AND type = %s)", a, c.arg(q.Compartment), c.arg(q.Type)), 1})
	}
	patient, anchored := patientAnchor(q), -1
	if patient != "" && q.Type != "Patient" {
		anchored = slices.IndexFunc(q.Params, func(p *fhir.SearchParam) bool {
			return p.Type == "token" && p.Modifier == "" && p.Name != "_id" && len(p.Values) > 0
		})
	}
	for i, p := range q.Params {
		if i == anchored {
			// A token condition read through idx_token_patient drives
			// better than anything: only the anchor patient's rows with
			// that code. It implies the token condition itself; the anchor
			// and the others stay, as probes.
			sql, err := c.tokenOfPatient(q.Type, p, patient, a)
			if err != nil {
				return "", "", err
			}
			conds = append(conds, cond{sql, -1})
			continue
		}
		sql, err := c.param(q.Type, p, a)
		if err != nil {
			return "", "", err
		}
		conds = append(conds, cond{sql, driveRank(p)})
	}
	driver := -1
	for i, cd := range conds {
		if driver < 0 || cd.rank < conds[driver].rank {
			driver = i
		}
	}
	var sub string // the driver as a subquery of ids, if it is one
	if driver >= 0 {
		sub, _ = drivingSubquery(conds[driver].sql, a)
	}
	// Index rows exist only for live resources of their type, so when the
	// driver is an index subquery, every other condition an index probe and
	// nothing is sorted, the driver's ids are the answer: current (a wide
	// row holding the JSON, two B-tree seeks) is not visited at all.
	if sub != "" && len(q.Sort) == 0 {
		probes := []string{"1"}
		for i, cd := range conds {
			if i == driver {
				continue
			}
			probe := asExists(cd.sql, a, a)
			if probe == cd.sql {
				probes = nil // not an index probe: it needs current
				break
			}
			probes = append(probes, probe)
		}
		if probes != nil {
			return "(" + sub + ") " + a, strings.Join(probes, " AND "), nil
		}
	}
	from = "current " + a
	out := []string{a + ".type = " + c.arg(q.Type), a + ".op <> 'delete'"}
	// The probes are correlated on the driver's id when there is one, so
	// SQLite checks them in the driver's loop and looks up current (a wide
	// row holding the JSON) only for the ids that pass them all.
	corr := a
	switch {
	case sub != "":
		from = "(" + sub + ") d CROSS JOIN current " + a
		out = append(out, a+".id = d.id")
		corr = "d"
	case driver >= 0:
		out = append(out, conds[driver].sql)
	}
	for i, cd := range conds {
		if i != driver {
			out = append(out, asExists(cd.sql, a, corr))
		}
	}
	return from, strings.Join(out, " AND "), nil
}

// tokenOfPatient compiles token parameter p, for resources tied to
// patient, over idx_token_patient.
func (c *compiler) tokenOfPatient(typ string, p *fhir.SearchParam, patient, a string) (string, error) {
	ors, err := c.values(p)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s.id IN (SELECT id FROM idx_token_patient WHERE patient_id = %s AND type = %s AND param = %s AND (%s))",
		a, c.arg(patient), c.arg(typ), c.arg(p.Name), ors), nil
}

// values compiles the OR of p's values over its index table's columns.
func (c *compiler) values(p *fhir.SearchParam) (string, error) {
	var ors []string
	for _, v := range p.Values {
		cond, err := c.value(p, v)
		if err != nil {
			return "", err
		}
		ors = append(ors, "("+cond+")")
	}
	return strings.Join(ors, " OR "), nil
}

// patientAnchor is the one Patient every match of q must be tied to: the
// compartment of a compartment search, or the single Patient named by a
// plain reference parameter (patient=X, subject=Patient/X). "" if none.
func patientAnchor(q *fhir.SearchQuery) string {
	if q.Compartment != "" && q.Compartment != fhir.AnyCompartment {
		return q.Compartment
	}
	for _, p := range q.Params {
		if p.Type != "reference" || p.Chain != nil || p.Has != nil || (p.Modifier != "" && p.Modifier != "Patient") || len(p.Values) != 1 {
			continue
		}
		v := p.Values[0]
		if v.RefURL != "" || v.RefID == "" {
			continue
		}
		onlyPatient := p.Def != nil && len(p.Def.Targets) == 1 && p.Def.Targets[0] == "Patient"
		if v.RefType == "Patient" || (v.RefType == "" && onlyPatient) {
			return v.RefID
		}
	}
	return ""
}

// drivingSubquery turns "a.id IN (SELECT id FROM …)" into
// "SELECT DISTINCT id FROM …" to be joined as the outer loop.
func drivingSubquery(cond, a string) (string, bool) {
	prefix := a + ".id IN (SELECT id FROM "
	if !strings.HasPrefix(cond, prefix) || !strings.HasSuffix(cond, ")") {
		return "", false
	}
	rest := cond[len(prefix) : len(cond)-1]
	sp := strings.Index(rest, " WHERE ")
	if sp < 0 {
		return "", false
	}
	// Without statistics SQLite picks the (type, id) index to produce
	// DISTINCT ids in order — a scan of every row of the type. Name the
	// index that starts with the condition's own columns instead.
	table := rest[:sp]
	index := table + "_value"
	switch {
	case table == "compartment":
		index = "compartment_members"
	case table == "idx_ref" && !strings.Contains(rest, "target_id"):
		index = "idx_ref_url"
	case !strings.HasPrefix(table, "idx_") || strings.ContainsAny(table, " ,()"):
		return "", false
	}
	return "SELECT DISTINCT id FROM " + table + " INDEXED BY " + index + rest[sp:], true
}

// driveRank orders parameters by how few rows they usually match.
func driveRank(p *fhir.SearchParam) int {
	switch {
	case p.Modifier == "missing" || p.Modifier == "not" || p.Has != nil || p.Name == "_content":
		return 9
	case p.Name == "_id":
		return 0
	case p.Chain != nil:
		return 6
	case p.Type == "reference":
		return 1
	case p.Type == "token":
		return 2
	case p.Type == "string" || p.Type == "uri":
		return 3
	}
	return 5
}

// asExists rewrites "a.id [NOT ]IN (SELECT id FROM t WHERE w)" as a
// correlated "[NOT ]EXISTS (SELECT 1 FROM t WHERE id = corr.id AND w)";
// other conditions are returned unchanged.
func asExists(cond, a, corr string) string {
	for _, form := range []struct{ in, exists string }{{" IN ", "EXISTS"}, {" NOT IN ", "NOT EXISTS"}} {
		prefix := a + ".id" + form.in + "(SELECT id FROM "
		if !strings.HasPrefix(cond, prefix) || !strings.HasSuffix(cond, ")") {
			continue
		}
		rest := cond[len(prefix):]
		sp := strings.Index(rest, " WHERE ")
		if sp < 0 || strings.ContainsAny(rest[:sp], " ,()") {
			return cond
		}
		table, w := rest[:sp], rest[sp+len(" WHERE "):len(rest)-1]
		return fmt.Sprintf("%s (SELECT 1 FROM %s INDEXED BY %s_owner WHERE %s.id = %s.id AND %s)", form.exists, table, table, table, corr, w)
	}
	return cond
}

// param compiles one parameter (an OR of its values) for rows of alias a.
func (c *compiler) param(typ string, p *fhir.SearchParam, a string) (string, error) {
	switch {
	case p.Has != nil:
		return c.has(typ, p.Has, a)
	case p.Chain != nil:
		return c.chain(typ, p, a)
	}
	switch p.Name {
	case "_id":
		return c.ids(p, a), nil
	case "_lastUpdated":
		return c.lastUpdated(p, a), nil
	case "_text":
		var ors []string
		for _, v := range p.Values {
			ors = append(ors, "norm LIKE "+c.arg("%"+likeEscape(v.Str)+"%")+` ESCAPE '\'`)
		}
		return fmt.Sprintf("%s.id IN (SELECT id FROM idx_string WHERE type = %s AND param = '_text' AND (%s))", a, c.arg(typ), strings.Join(ors, " OR ")), nil
	case "_content":
		var ors []string
		for _, v := range p.Values {
			ors = append(ors, "lower(CAST("+a+".json AS TEXT)) LIKE "+c.arg("%"+likeEscape(v.Str)+"%")+` ESCAPE '\'`)
		}
		return "(" + strings.Join(ors, " OR ") + ")", nil
	case "_list":
		var ors []string
		for _, v := range p.Values {
			ors = append(ors, c.arg(v.RefID))
		}
		return fmt.Sprintf("%s.id IN (SELECT target_id FROM idx_ref WHERE type = 'List' AND id IN (%s) AND param = 'item' AND target_type = %s)", a, strings.Join(ors, ", "), c.arg(typ)), nil
	}
	table, ok := tableFor[p.Type]
	if !ok {
		return "", fmt.Errorf("%s parameters: %w", p.Type, store.ErrUnsupported)
	}
	if p.Modifier == "missing" {
		in := "IN"
		if p.Values[0].Missing {
			in = "NOT IN"
		}
		return fmt.Sprintf("%s.id %s (SELECT id FROM %s WHERE type = %s AND param = %s)", a, in, table, c.arg(typ), c.arg(p.Name)), nil
	}
	ors, err := c.values(p)
	if err != nil {
		return "", err
	}
	in := "IN"
	if p.Modifier == "not" {
		// :not matches resources with no matching value, including those
		// without the element at all.
		in = "NOT IN"
	}
	for i := range p.Values {
		if p.Values[i].IsNotEqual() {
			// ne is "no value equal", not "some value unequal".
			return c.notEqual(typ, p, a, table)
		}
	}
	return fmt.Sprintf("%s.id %s (SELECT id FROM %s WHERE type = %s AND param = %s AND (%s))", a, in, table, c.arg(typ), c.arg(p.Name), ors), nil
}

// notEqual compiles ne (alone or mixed with other prefixes) as: has a value
// in the ne value's scope (a quantity's unit, a composite's first part),
// and none equal to it.
func (c *compiler) notEqual(typ string, p *fhir.SearchParam, a, table string) (string, error) {
	var ors []string
	for _, v := range p.Values {
		if eq, scope, ne := v.NotEqual(); ne {
			in, err := c.value(p, scope)
			if err != nil {
				return "", err
			}
			cond, err := c.value(p, eq)
			if err != nil {
				return "", err
			}
			ors = append(ors, fmt.Sprintf("(%s.id IN (SELECT id FROM %s WHERE type = %s AND param = %s AND (%s)) AND %s.id NOT IN (SELECT id FROM %s WHERE type = %s AND param = %s AND (%s)))",
				a, table, c.arg(typ), c.arg(p.Name), in, a, table, c.arg(typ), c.arg(p.Name), cond))
			continue
		}
		cond, err := c.value(p, v)
		if err != nil {
			return "", err
		}
		ors = append(ors, fmt.Sprintf("%s.id IN (SELECT id FROM %s WHERE type = %s AND param = %s AND (%s))", a, table, c.arg(typ), c.arg(p.Name), cond))
	}
	return "(" + strings.Join(ors, " OR ") + ")", nil
}

var tableFor = map[string]string{
	"string": "idx_string", "token": "idx_token", "reference": "idx_ref", "date": "idx_date",
	"number": "idx_number", "quantity": "idx_quantity", "uri": "idx_uri", "composite": "idx_composite",
}

func (c *compiler) ids(p *fhir.SearchParam, a string) string {
	var ph []string
	for _, v := range p.Values {
		ph = append(ph, c.arg(v.Code))
	}
	not := ""
	if p.Modifier == "not" {
		not = "NOT "
	}
	return fmt.Sprintf("%s.id %sIN (%s)", a, not, strings.Join(ph, ", "))
}

func (c *compiler) lastUpdated(p *fhir.SearchParam, a string) string {
	var ors []string
	for _, v := range p.Values {
		if eq, _, ne := v.NotEqual(); ne {
			// One value per resource: no value equal is this one unequal.
			ors = append(ors, "NOT "+c.rangeCond(eq, a+".last_updated", a+".last_updated"))
			continue
		}
		ors = append(ors, c.rangeCond(v, a+".last_updated", a+".last_updated"))
	}
	return "(" + strings.Join(ors, " OR ") + ")"
}

// rangeCond compiles a date prefix against a stored closed range [lo, hi].
func (c *compiler) rangeCond(v fhir.SearchValue, lo, hi string) string {
	switch v.Prefix {
	case fhir.AnyValue:
		return "1 = 1"
	case "gt":
		return fmt.Sprintf("%s > %s", hi, c.arg(v.Hi))
	case "lt":
		return fmt.Sprintf("%s < %s", lo, c.arg(v.Lo))
	case "ge":
		return fmt.Sprintf("(%s > %s OR (%s >= %s AND %s <= %s))", hi, c.arg(v.Hi), lo, c.arg(v.Lo), hi, c.arg(v.Hi))
	case "le":
		return fmt.Sprintf("(%s < %s OR (%s >= %s AND %s <= %s))", lo, c.arg(v.Lo), lo, c.arg(v.Lo), hi, c.arg(v.Hi))
	case "sa":
		return fmt.Sprintf("%s > %s", lo, c.arg(v.Hi))
	case "eb":
		return fmt.Sprintf("%s < %s", hi, c.arg(v.Lo))
	case "ap":
		// Approximately: within 10% of the distance from now, either side.
		now := c.now.UnixMilli()
		d := int64(math.Abs(float64(now-v.Lo)) * 0.1)
		return fmt.Sprintf("(%s <= %s AND %s >= %s)", lo, c.arg(v.Hi+d), hi, c.arg(v.Lo-d))
	default: // eq (and ne, negated by the caller)
		return fmt.Sprintf("(%s >= %s AND %s <= %s)", lo, c.arg(v.Lo), hi, c.arg(v.Hi))
	}
}

// numberCond compiles a number prefix against a stored value: eq is within
// the precision of the search value, the others compare with the value.
func (c *compiler) numberCond(v fhir.SearchValue, col string) string {
	switch v.Prefix {
	case fhir.AnyValue:
		return "1 = 1"
	case "gt", "sa":
		return fmt.Sprintf("%s > %s", col, c.arg(v.Num))
	case "lt", "eb":
		return fmt.Sprintf("%s < %s", col, c.arg(v.Num))
	case "ge":
		return fmt.Sprintf("%s >= %s", col, c.arg(v.Num))
	case "le":
		return fmt.Sprintf("%s <= %s", col, c.arg(v.Num))
	case "ap":
		d := math.Abs(v.Num) * 0.1
		return fmt.Sprintf("(%s >= %s AND %s <= %s)", col, c.arg(v.Num-d), col, c.arg(v.Num+d))
	default:
		return fmt.Sprintf("(%s >= %s AND %s < %s)", col, c.arg(v.NumLo), col, c.arg(v.NumHi))
	}
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// prefixUpper is the smallest string above every string starting with s.
const prefixUpper = "\U0010FFFF"

func (c *compiler) value(p *fhir.SearchParam, v fhir.SearchValue) (string, error) {
	switch p.Type {
	case "string":
		switch p.Modifier {
		case "exact":
			return "exact = " + c.arg(v.Str), nil
		case "contains":
			return "norm LIKE " + c.arg("%"+likeEscape(v.Str)+"%") + ` ESCAPE '\'`, nil
		}
		return fmt.Sprintf("norm >= %s AND norm < %s", c.arg(v.Str), c.arg(v.Str+prefixUpper)), nil
	case "token":
		if p.Modifier == "text" {
			return fmt.Sprintf("(text >= %s AND text < %s OR text LIKE %s ESCAPE '\\')", c.arg(v.Str), c.arg(v.Str+prefixUpper), c.arg("% "+likeEscape(v.Str)+"%")), nil
		}
		return c.token(v, "system", "code"), nil
	case "uri":
		switch p.Modifier {
		case "below":
			return fmt.Sprintf("uri >= %s AND uri < %s", c.arg(v.Str), c.arg(v.Str+prefixUpper)), nil
		case "above":
			return fmt.Sprintf("uri <> '' AND substr(%s, 1, length(uri)) = uri", c.arg(v.Str)), nil
		}
		return "uri = " + c.arg(v.Str), nil
	case "date":
		return c.rangeCond(v, "lo", "hi"), nil
	case "number":
		return c.numberCond(v, "value"), nil
	case "quantity":
		return c.quantity(v, "value", "system", "code", "unit"), nil
	case "reference":
		switch {
		case p.Modifier == "identifier":
			return c.token(v, "ident_system", "ident_value"), nil
		case v.RefURL != "":
			return "url = " + c.arg(v.RefURL), nil
		case v.RefType != "":
			return fmt.Sprintf("target_id = %s AND target_type = %s", c.arg(v.RefID), c.arg(v.RefType)), nil
		default:
			return "target_id = " + c.arg(v.RefID), nil
		}
	case "composite":
		a, b := v.Parts[0], v.Parts[1]
		cond := c.token(a, "a_system", "a_code")
		switch b.Kind {
		case "token":
			cond += " AND " + c.token(b, "b_system", "b_code")
		case "quantity":
			cond += " AND " + c.quantity(b, "b_lo", "b_system", "b_code", "b_unit")
		case "number":
			cond += " AND " + c.numberCond(b, "b_lo")
		case "date":
			cond += " AND " + c.rangeCond(b, "b_lo", "b_hi")
		case "string":
			cond += fmt.Sprintf(" AND b_code >= %s AND b_code < %s", c.arg(b.Str), c.arg(b.Str+prefixUpper))
		case "reference":
			cond += " AND b_code = " + c.arg(b.RefType+"/"+b.RefID)
		case "uri":
			cond += " AND b_code = " + c.arg(b.Str)
		}
		return cond, nil
	}
	return "", fmt.Errorf("%s parameters: %w", p.Type, store.ErrUnsupported)
}

func (c *compiler) token(v fhir.SearchValue, sysCol, codeCol string) string {
	switch {
	case v.AnySystem:
		return codeCol + " = " + c.arg(v.Code)
	case v.Code == "":
		return sysCol + " = " + c.arg(v.System)
	default:
		return fmt.Sprintf("%s = %s AND %s = %s", codeCol, c.arg(v.Code), sysCol, c.arg(v.System))
	}
}

func (c *compiler) quantity(v fhir.SearchValue, valCol, sysCol, codeCol, unitCol string) string {
	cond := c.numberCond(v, valCol)
	switch {
	case v.System != "" && v.Code != "":
		cond += fmt.Sprintf(" AND %s = %s AND %s = %s", sysCol, c.arg(v.System), codeCol, c.arg(v.Code))
	case v.Code != "":
		cond += fmt.Sprintf(" AND (%s = %s OR %s = %s)", codeCol, c.arg(v.Code), unitCol, c.arg(v.Code))
	case v.System != "":
		cond += fmt.Sprintf(" AND %s = %s", sysCol, c.arg(v.System))
	}
	return cond
}

// chain compiles subject:Patient.name=x: a reference to a resource of a
// candidate type that itself matches the inner condition.
func (c *compiler) chain(typ string, p *fhir.SearchParam, a string) (string, error) {
	if len(p.Chain.Types) == 0 {
		return "0", nil // no target type the session may see
	}
	var ors []string
	for _, t := range p.Chain.Types {
		inner, err := c.param(t, p.Chain.Param, "t")
		if err != nil {
			return "", err
		}
		scope, err := c.scope(t, p.Chain.Scopes[t], "t")
		if err != nil {
			return "", err
		}
		ors = append(ors, fmt.Sprintf("(target_type = %s AND target_id IN (SELECT t.id FROM current t WHERE t.type = %s AND t.op <> 'delete' AND %s%s))",
			c.arg(t), c.arg(t), inner, scope))
	}
	return fmt.Sprintf("%s.id IN (SELECT id FROM idx_ref WHERE type = %s AND param = %s AND (%s))", a, c.arg(typ), c.arg(p.Name), strings.Join(ors, " OR ")), nil
}

// has compiles _has:Type:ref:param=x: some resource of Type referring to
// the candidate through ref matches the inner condition.
func (c *compiler) has(typ string, h *fhir.Has, a string) (string, error) {
	inner, err := c.param(h.Type, h.Param, "h")
	if err != nil {
		return "", err
	}
	scope, err := c.scope(h.Type, h.Scope, "h")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s.id IN (SELECT r.target_id FROM idx_ref r WHERE r.type = %s AND r.param = %s AND r.target_type = %s AND r.id IN (SELECT h.id FROM current h WHERE h.type = %s AND h.op <> 'delete' AND %s%s))",
		a, c.arg(h.Type), c.arg(h.RefParam), c.arg(typ), c.arg(h.Type), inner, scope), nil
}

// scope compiles the narrowing of a sub-query over rows of alias a of type
// typ: " AND …" for each condition, "" when there is none.
func (c *compiler) scope(typ string, sc *fhir.Scope, a string) (string, error) {
	if sc == nil {
		return "", nil
	}
	var out strings.Builder
	if sc.Compartment != "" {
		fmt.Fprintf(&out, " AND %s.id IN (SELECT id FROM compartment WHERE patient_id = %s AND type = %s)", a, c.arg(sc.Compartment), c.arg(typ))
	}
	for _, p := range sc.Params {
		cond, err := c.param(typ, p, a)
		if err != nil {
			return "", err
		}
		out.WriteString(" AND " + cond)
	}
	return out.String(), nil
}

// orderBy compiles _sort. Resources without a value sort last either way.
func (c *compiler) orderBy(q *fhir.SearchQuery, a string) string {
	var keys []string
	for _, k := range q.Sort {
		dir := "ASC"
		agg := "MIN"
		if k.Desc {
			dir, agg = "DESC", "MAX"
		}
		var expr string
		switch {
		case k.Name == "_id":
			keys = append(keys, a+".id "+dir)
			continue
		case k.Name == "_lastUpdated":
			keys = append(keys, a+".last_updated "+dir)
			continue
		case k.Type == "string":
			expr = fmt.Sprintf("(SELECT %s(norm) FROM idx_string s INDEXED BY idx_string_owner WHERE s.type = %s.type AND s.id = %s.id AND s.param = %s)", agg, a, a, c.arg(k.Name))
		case k.Type == "token":
			expr = fmt.Sprintf("(SELECT %s(code) FROM idx_token s INDEXED BY idx_token_owner WHERE s.type = %s.type AND s.id = %s.id AND s.param = %s)", agg, a, a, c.arg(k.Name))
		case k.Type == "date":
			col := "lo"
			if k.Desc {
				col = "hi"
			}
			expr = fmt.Sprintf("(SELECT %s(%s) FROM idx_date s INDEXED BY idx_date_owner WHERE s.type = %s.type AND s.id = %s.id AND s.param = %s)", agg, col, a, a, c.arg(k.Name))
		case k.Type == "number":
			expr = fmt.Sprintf("(SELECT %s(value) FROM idx_number s INDEXED BY idx_number_owner WHERE s.type = %s.type AND s.id = %s.id AND s.param = %s)", agg, a, a, c.arg(k.Name))
		case k.Type == "quantity":
			expr = fmt.Sprintf("(SELECT %s(value) FROM idx_quantity s INDEXED BY idx_quantity_owner WHERE s.type = %s.type AND s.id = %s.id AND s.param = %s)", agg, a, a, c.arg(k.Name))
		case k.Type == "uri":
			expr = fmt.Sprintf("(SELECT %s(uri) FROM idx_uri s INDEXED BY idx_uri_owner WHERE s.type = %s.type AND s.id = %s.id AND s.param = %s)", agg, a, a, c.arg(k.Name))
		case k.Type == "reference":
			expr = fmt.Sprintf("(SELECT %s(url) FROM idx_ref s INDEXED BY idx_ref_owner WHERE s.type = %s.type AND s.id = %s.id AND s.param = %s)", agg, a, a, c.arg(k.Name))
		default:
			continue
		}
		keys = append(keys, fmt.Sprintf("%s IS NULL", expr), expr+" "+dir)
	}
	keys = append(keys, a+".id ASC")
	return strings.Join(keys, ", ")
}

func (s *Store) SearchIDs(ctx context.Context, q *fhir.SearchQuery, afterID string, limit int) ([]string, error) {
	return searchIDs(ctx, s.searches, q, afterID, limit)
}

func searchIDs(ctx context.Context, db queryer, q *fhir.SearchQuery, afterID string, limit int) ([]string, error) {
	c := &compiler{now: time.Now()}
	from, where, err := c.where(q, "c")
	if err != nil {
		return nil, err
	}
	if afterID != "" {
		where += " AND c.id > " + c.arg(afterID)
	}
	query := "SELECT c.id FROM " + from + " WHERE " + where + " ORDER BY " + c.orderBy(q, "c")
	if limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := db.QueryContext(ctx, query, c.args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: search: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: search: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (s *Store) Count(ctx context.Context, q *fhir.SearchQuery) (int, error) {
	c := &compiler{now: time.Now()}
	from, where, err := c.where(q, "c")
	if err != nil {
		return 0, err
	}
	var n int
	rows, err := s.searches.QueryContext(ctx, "SELECT COUNT(*) FROM "+from+" WHERE "+where, c.args...)
	if err != nil {
		return 0, fmt.Errorf("sqlite: count: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return 0, fmt.Errorf("sqlite: count: %w", errors.Join(rows.Err(), sql.ErrNoRows))
	}
	if err := rows.Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: count: %w", err)
	}
	return n, nil
}

// ReadMany reads through the cache, so a page of results costs little more
// than the id query.
// Those not cached are read in one query per 500, not one each.
func (s *Store) ScanType(ctx context.Context, typ, afterID string, limit int) ([]store.Resource, error) {
	rows, err := s.searches.QueryContext(ctx, `SELECT id, version, last_updated, op, json FROM current WHERE type = ? AND id > ? AND op <> 'delete' ORDER BY id LIMIT ?`, typ, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: scan: %w", err)
	}
	defer rows.Close()
	out := make([]store.Resource, 0, limit)
	for rows.Next() {
		var (
			id, op      string
			version, lu int64
			body        []byte
		)
		if err := rows.Scan(&id, &version, &lu, &op, &body); err != nil {
			return nil, fmt.Errorf("sqlite: scan: %w", err)
		}
		out = append(out, makeResource(typ, id, version, lu, op, body))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: scan: %w", err)
	}
	return out, nil
}

func (s *Store) ReadMany(ctx context.Context, typ string, ids []string) ([]store.Resource, error) {
	found := make(map[string]store.Resource, len(ids))
	var missing []string
	for _, id := range ids {
		if r, ok := s.cache.get(cacheKey(typ, id)); ok {
			found[id] = r
		} else {
			missing = append(missing, id)
		}
	}
	keep := !store.IsScanning(ctx)
	for start := 0; start < len(missing); start += 500 {
		chunk := missing[start:min(start+500, len(missing))]
		gen := s.cache.generation()
		args := make([]any, 0, len(chunk)+1)
		args = append(args, typ)
		for _, id := range chunk {
			args = append(args, id)
		}
		rows, err := s.searches.QueryContext(ctx, `SELECT id, version, last_updated, op, json FROM current WHERE type = ? AND id IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: read: %w", err)
		}
		for rows.Next() {
			var (
				id, op      string
				version, lu int64
				body        []byte
			)
			if err := rows.Scan(&id, &version, &lu, &op, &body); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: read: %w", err)
			}
			r := makeResource(typ, id, version, lu, op, body)
			if keep {
				s.cache.putIfGeneration(cacheKey(typ, id), r, gen)
			}
			found[id] = r
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlite: read: %w", err)
		}
	}
	out := make([]store.Resource, 0, len(ids))
	for _, id := range ids {
		if r, ok := found[id]; ok && !r.Deleted {
			out = append(out, r)
		}
	}
	return out, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func (s *Store) References(ctx context.Context, typ string, ids []string, param string) ([]fhir.RefKey, error) {
	var out []fhir.RefKey
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		args := []any{typ}
		q := `SELECT param, target_type, target_id, url FROM idx_ref INDEXED BY idx_ref_owner WHERE type = ? AND id IN (` + placeholders(len(chunk)) + `) AND target_id <> ''`
		for _, id := range chunk {
			args = append(args, id)
		}
		if param != "*" {
			q += " AND param = ?"
			args = append(args, param)
		}
		rows, err := s.reader.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: references: %w", err)
		}
		for rows.Next() {
			var k fhir.RefKey
			if err := rows.Scan(&k.Param, &k.Type, &k.ID, &k.URL); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, k)
		}
		rows.Close()
	}
	return out, nil
}

func (s *Store) ReferencedBy(ctx context.Context, srcType, param, targetType string, targetIDs []string) ([]string, error) {
	var out []string
	for start := 0; start < len(targetIDs); start += 500 {
		chunk := targetIDs[start:min(start+500, len(targetIDs))]
		args := []any{srcType, param, targetType}
		for _, id := range chunk {
			args = append(args, id)
		}
		rows, err := s.reader.QueryContext(ctx, `SELECT DISTINCT r.id FROM idx_ref r INDEXED BY idx_ref_value JOIN current c ON c.type = r.type AND c.id = r.id AND c.op <> 'delete'
			WHERE r.type = ? AND r.param = ? AND r.target_type = ? AND r.target_id IN (`+placeholders(len(chunk))+`) ORDER BY r.id`, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: referenced by: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, id)
		}
		rows.Close()
	}
	return out, nil
}

// snapshotTTL is how long a sorted search's pages stay available.
const snapshotTTL = time.Hour

func (s *Store) SaveSnapshot(ctx context.Context, ids []string) (string, error) {
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	blob, err := json.Marshal(ids)
	if err != nil {
		return "", err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	now := time.Now()
	if _, err := s.writer.ExecContext(ctx, `DELETE FROM search_snapshots WHERE expires < ?`, now.UnixMilli()); err != nil {
		return "", fmt.Errorf("sqlite: snapshot: %w", err)
	}
	if _, err := s.writer.ExecContext(ctx, `INSERT INTO search_snapshots (token, expires, ids) VALUES (?, ?, ?)`, token, now.Add(snapshotTTL).UnixMilli(), blob); err != nil {
		return "", fmt.Errorf("sqlite: snapshot: %w", err)
	}
	return token, nil
}

func (s *Store) LoadSnapshot(ctx context.Context, token string) ([]string, error) {
	var blob []byte
	err := s.reader.QueryRowContext(ctx, `SELECT ids FROM search_snapshots WHERE token = ? AND expires >= ?`, token, time.Now().UnixMilli()).Scan(&blob)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("search page expired or unknown; run the search again: %w", store.ErrInvalidCursor)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	var ids []string
	if err := json.Unmarshal(blob, &ids); err != nil {
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	return ids, nil
}

func (s *Store) members(ctx context.Context, query string, args ...any) ([]store.Member, error) {
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: members: %w", err)
	}
	defer rows.Close()
	var out []store.Member
	for rows.Next() {
		var m store.Member
		var lu int64
		if err := rows.Scan(&m.Type, &m.ID, &lu); err != nil {
			return nil, err
		}
		m.LastUpdated = time.UnixMilli(lu).UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}

func (s *Store) CompartmentMembers(ctx context.Context, patientID string) ([]store.Member, error) {
	return s.members(ctx, `SELECT c.type, c.id, c.last_updated FROM compartment m JOIN current c ON c.type = m.type AND c.id = m.id
		WHERE m.patient_id = ? AND c.op <> 'delete' ORDER BY c.type, c.id`, patientID)
}

func (s *Store) ReferencingMembers(ctx context.Context, typ, id string) ([]store.Member, error) {
	return s.members(ctx, `SELECT DISTINCT c.type, c.id, c.last_updated FROM idx_ref r JOIN current c ON c.type = r.type AND c.id = r.id
		WHERE r.target_type = ? AND r.target_id = ? AND c.op <> 'delete' ORDER BY c.type, c.id`, typ, id)
}
