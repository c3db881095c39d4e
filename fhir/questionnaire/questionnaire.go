// Package questionnaire checks a QuestionnaireResponse against its
// Questionnaire: every answered item exists, required items are answered
// once complete, answers have the item's type and come from its options,
// disabled items (enableWhen) are not answered, and items that do not
// repeat are answered once. Each issue names the item's linkId.
package questionnaire

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"github.com/hearth-fhir/hearth/fhir"
)

// answerTypes is the value[x] each item type is answered with.
var answerTypes = map[string][]string{
	"boolean": {"valueBoolean"}, "decimal": {"valueDecimal"}, "integer": {"valueInteger"},
	"date": {"valueDate"}, "dateTime": {"valueDateTime"}, "time": {"valueTime"},
	"string": {"valueString"}, "text": {"valueString"}, "url": {"valueUri"},
	"choice":      {"valueCoding", "valueString", "valueInteger", "valueDate", "valueTime", "valueReference"},
	"open-choice": {"valueCoding", "valueString"}, "attachment": {"valueAttachment"},
	"reference": {"valueReference"}, "quantity": {"valueQuantity"},
}

// Validate checks qr against q; an empty result means it conforms.
func Validate(q, qr map[string]any) []fhir.Issue {
	v := &validator{answers: map[string][]map[string]any{}}
	collectAnswers(fhir.AsList(qr["item"]), v.answers)
	complete := qr["status"] == "completed" || qr["status"] == "amended"
	v.items(fhir.AsList(q["item"]), fhir.AsList(qr["item"]), "QuestionnaireResponse", complete)
	return v.issues
}

type validator struct {
	issues  []fhir.Issue
	answers map[string][]map[string]any // linkId → every answer given to it
}

func (v *validator) add(code, path, linkID, format string, args ...any) {
	v.issues = append(v.issues, fhir.Issue{Severity: "error", Code: code, Expression: path,
		Diagnostics: fmt.Sprintf("item %q: ", linkID) + fmt.Sprintf(format, args...)})
}

// items checks the response items of one level against the questionnaire
// items of that level.
func (v *validator) items(qItems, rItems []any, path string, complete bool) {
	defs := map[string]map[string]any{}
	for _, qi := range qItems {
		m, _ := qi.(map[string]any)
		defs[str(m, "linkId")] = m
	}
	given := map[string][]int{} // linkId → indexes in rItems
	for i, ri := range rItems {
		m, _ := ri.(map[string]any)
		id := str(m, "linkId")
		if _, ok := defs[id]; !ok {
			v.add("structure", fmt.Sprintf("%s.item[%d]", path, i), id, "is not an item of the questionnaire here")
			continue
		}
		given[id] = append(given[id], i)
	}
	for _, qi := range qItems {
		def, _ := qi.(map[string]any)
		id, typ := str(def, "linkId"), str(def, "type")
		idx := given[id]
		enabled := v.enabled(def)
		switch {
		case !enabled && len(idx) > 0:
			v.add("business-rule", fmt.Sprintf("%s.item[%d]", path, idx[0]), id, "is not enabled (enableWhen) and must not be answered")
			continue
		case !enabled:
			continue
		}
		if typ == "group" && len(idx) > 1 && def["repeats"] != true {
			v.add("structure", fmt.Sprintf("%s.item[%d]", path, idx[1]), id, "is a group that does not repeat: give it once")
		}
		answered := false
		for _, i := range idx {
			ri, _ := rItems[i].(map[string]any)
			at := fmt.Sprintf("%s.item[%d]", path, i)
			if v.answersOf(def, ri, at) {
				answered = true
			}
			if typ == "group" {
				if len(fhir.AsList(ri["item"])) > 0 {
					answered = true
				}
				v.items(fhir.AsList(def["item"]), fhir.AsList(ri["item"]), at, complete)
			} else if len(fhir.AsList(def["item"])) > 0 {
				for j, a := range fhir.AsList(ri["answer"]) {
					am, _ := a.(map[string]any)
					v.items(fhir.AsList(def["item"]), fhir.AsList(am["item"]), fmt.Sprintf("%s.answer[%d]", at, j), complete)
				}
			}
		}
		if complete && def["required"] == true && typ != "display" && !answered {
			v.add("required", path, id, "is required and has no answer")
		}
	}
}

// answersOf checks one response item's answers; it reports whether any.
func (v *validator) answersOf(def, ri map[string]any, at string) bool {
	id, typ := str(def, "linkId"), str(def, "type")
	answers := fhir.AsList(ri["answer"])
	if len(answers) == 0 {
		return false
	}
	if typ == "group" || typ == "display" {
		v.add("structure", at, id, "is a %s and takes no answer", typ)
		return false
	}
	if len(answers) > 1 && def["repeats"] != true {
		v.add("structure", at+".answer[1]", id, "does not repeat: one answer only")
	}
	allowed := answerTypes[typ]
	for j, a := range answers {
		am, _ := a.(map[string]any)
		key, val := valueOf(am)
		aat := fmt.Sprintf("%s.answer[%d]", at, j)
		if key == "" {
			if len(fhir.AsList(am["item"])) == 0 {
				v.add("required", aat, id, "an answer needs a value")
			}
			continue
		}
		if !slices.Contains(allowed, key) {
			v.add("value", aat, id, "is a %s question; %s is not its answer type", typ, key)
			continue
		}
		if opts := fhir.AsList(def["answerOption"]); len(opts) > 0 && typ == "choice" && !inOptions(key, val, opts) {
			v.add("value", aat, id, "the answer is not one of the item's answerOption")
		}
	}
	return true
}

// valueOf is an answer's value[x] member.
func valueOf(m map[string]any) (string, any) {
	for k, val := range m {
		if len(k) > 5 && k[:5] == "value" {
			return k, val
		}
	}
	return "", nil
}

// inOptions: a Coding matches an option by system and code; other values
// by equality.
func inOptions(key string, val any, opts []any) bool {
	for _, o := range opts {
		om, _ := o.(map[string]any)
		ov, ok := om[key]
		if !ok {
			continue
		}
		if key == "valueCoding" {
			a, _ := val.(map[string]any)
			b, _ := ov.(map[string]any)
			if a["code"] == b["code"] && (b["system"] == nil || a["system"] == b["system"]) {
				return true
			}
			continue
		}
		if reflect.DeepEqual(normalize(val), normalize(ov)) {
			return true
		}
	}
	return false
}

func normalize(v any) any {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	return v
}

// enabled evaluates an item's enableWhen against the answers given.
func (v *validator) enabled(def map[string]any) bool {
	conds := fhir.AsList(def["enableWhen"])
	if len(conds) == 0 {
		return true
	}
	any_ := def["enableBehavior"] == "any"
	for _, c := range conds {
		cm, _ := c.(map[string]any)
		ok := v.condition(cm)
		if any_ && ok {
			return true
		}
		if !any_ && !ok {
			return false
		}
	}
	return !any_
}

func (v *validator) condition(c map[string]any) bool {
	answers := v.answers[str(c, "question")]
	op := str(c, "operator")
	if op == "exists" {
		want, _ := c["answerBoolean"].(bool)
		return (len(answers) > 0) == want
	}
	key, want := "", any(nil)
	for k, val := range c {
		if len(k) > 6 && k[:6] == "answer" {
			key, want = "value"+k[6:], val
		}
	}
	for _, a := range answers {
		got, ok := a[key]
		if !ok {
			continue
		}
		cmp, comparable := compareAnswers(key, got, want)
		switch op {
		case "=":
			if comparable && cmp == 0 {
				return true
			}
		case "!=":
			if !comparable || cmp != 0 {
				return true
			}
		case ">":
			if comparable && cmp > 0 {
				return true
			}
		case "<":
			if comparable && cmp < 0 {
				return true
			}
		case ">=":
			if comparable && cmp >= 0 {
				return true
			}
		case "<=":
			if comparable && cmp <= 0 {
				return true
			}
		}
	}
	return false
}

// compareAnswers orders two answer values of one type.
func compareAnswers(key string, a, b any) (int, bool) {
	switch key {
	case "valueCoding":
		am, _ := a.(map[string]any)
		bm, _ := b.(map[string]any)
		if am["code"] == bm["code"] && (bm["system"] == nil || am["system"] == bm["system"]) {
			return 0, true
		}
		return 1, false
	case "valueInteger", "valueDecimal":
		x, err1 := a.(json.Number).Float64()
		y, err2 := b.(json.Number).Float64()
		if err1 != nil || err2 != nil {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case "valueBoolean":
		if a == b {
			return 0, true
		}
		return 1, false
	}
	as, ok1 := a.(string)
	bs, ok2 := b.(string)
	if !ok1 || !ok2 {
		return 0, false
	}
	switch {
	case as < bs:
		return -1, true
	case as > bs:
		return 1, true
	}
	return 0, true
}

// collectAnswers gathers every answer of the response by linkId, nested
// items included.
func collectAnswers(items []any, into map[string][]map[string]any) {
	for _, it := range items {
		m, _ := it.(map[string]any)
		id := str(m, "linkId")
		for _, a := range fhir.AsList(m["answer"]) {
			am, _ := a.(map[string]any)
			into[id] = append(into[id], am)
			collectAnswers(fhir.AsList(am["item"]), into)
		}
		collectAnswers(fhir.AsList(m["item"]), into)
	}
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }
