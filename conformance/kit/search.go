package kit

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// searchSuite loads a patient and three observations of its own and
// checks searches over them: string, token, date, quantity, reference,
// chains, _has, includes, sorting, paging, :missing and _summary=count.
func (k *kit) searchSuite() {
	run := runID()
	system := "urn:hearth-conformance:" + run
	family := "Zconf" + run
	var patient string
	obs := map[string]string{} // o1, o2, o3 → id
	k.check("load the search data", func() error {
		id, err := k.create("Patient", `{"resourceType":"Patient","identifier":[{"system":"`+system+`","value":"p"}],"name":[{"family":"`+family+`","given":["Ada"]}],"gender":"female","birthDate":"1980-05-05"}`)
		if err != nil {
			return err
		}
		patient = id
		for _, o := range []struct{ key, code, date, value, unit string }{
			{"o1", "8867-4", "2020-01-01T10:00:00Z", "60", "/min"},
			{"o2", "8867-4", "2021-06-15T10:00:00Z", "80", "/min"},
			{"o3", "8310-5", "2022-03-03T10:00:00Z", "37.5", "Cel"},
		} {
			id, err := k.create("Observation", fmt.Sprintf(`{"resourceType":"Observation","identifier":[{"system":%q,"value":%q}],"status":"final",`+
				`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],`+
				`"code":{"coding":[{"system":"http://loinc.org","code":%q}]},"subject":{"reference":"Patient/%s"},"effectiveDateTime":%q,`+
				`"valueQuantity":{"value":%s,"unit":%q,"system":"http://unitsofmeasure.org","code":%q}}`, system, o.key, o.code, patient, o.date, o.value, o.unit, o.unit))
			if err != nil {
				return err
			}
			obs[o.key] = id
		}
		return nil
	})
	if patient == "" || len(obs) < 3 {
		return
	}
	defer func() {
		for _, id := range obs {
			k.do("DELETE", "Observation/"+id, nil)
		}
		k.do("DELETE", "Patient/"+patient, nil)
	}()
	p := "Patient/" + patient
	o := func(keys ...string) []string {
		var out []string
		for _, key := range keys {
			out = append(out, "Observation/"+obs[key])
		}
		return out
	}
	subject := "subject=" + url.QueryEscape(p)
	for _, c := range []struct {
		name, query string
		want        []string
		ordered     bool
	}{
		{"string: prefix, any case", "Patient?family=" + strings.ToLower(family[:len(family)-2]), []string{p}, false},
		{"string :exact is case-sensitive", "Patient?family:exact=" + strings.ToUpper(family), nil, false},
		{"date: a month contains the day", "Patient?identifier=" + url.QueryEscape(system+"|p") + "&birthdate=1980-05", []string{p}, false},
		{"date: lt excludes the day itself", "Patient?identifier=" + url.QueryEscape(system+"|p") + "&birthdate=lt1980-05-05", nil, false},
		{"reference", "Observation?" + subject, o("o1", "o2", "o3"), false},
		{"token system|code", "Observation?" + subject + "&code=" + url.QueryEscape("http://loinc.org|8867-4"), o("o1", "o2"), false},
		{"token code alone", "Observation?" + subject + "&code=8310-5", o("o3"), false},
		{"date ge", "Observation?" + subject + "&date=ge2021-01-01", o("o2", "o3"), false},
		{"quantity gt", "Observation?" + subject + "&value-quantity=gt70", o("o2"), false},
		{"quantity with system and unit", "Observation?" + subject + "&value-quantity=" + url.QueryEscape("37.5|http://unitsofmeasure.org|Cel"), o("o3"), false},
		{"_sort=date", "Observation?" + subject + "&_sort=date", o("o1", "o2", "o3"), true},
		{"_sort=-date", "Observation?" + subject + "&_sort=-date", o("o3", "o2", "o1"), true},
		{"chain", "Observation?subject:Patient.family=" + family + "&code=8867-4", o("o1", "o2"), false},
		{"_has", "Patient?identifier=" + url.QueryEscape(system+"|p") + "&_has:Observation:subject:code=8310-5", []string{p}, false},
		{"_has with no match", "Patient?identifier=" + url.QueryEscape(system+"|p") + "&_has:Observation:subject:code=0000-0", nil, false},
		{":missing=true", "Observation?" + subject + "&value-quantity:missing=true", nil, false},
		{"_include", "Observation?" + subject + "&code=8310-5&_include=Observation:subject", append(o("o3"), p), false},
		{"_revinclude", "Patient?_id=" + patient + "&_revinclude=Observation:subject", append([]string{p}, o("o1", "o2", "o3")...), false},
	} {
		k.check(c.name+": "+c.query, func() error {
			got, err := k.searchAll(c.query)
			if err != nil {
				return err
			}
			want := slices.Clone(c.want)
			if !c.ordered {
				slices.Sort(got)
				slices.Sort(want)
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("got %v, want %v", got, want)
			}
			return nil
		})
	}
	k.check("paging with _count=1 visits each match once", func() error {
		got, err := k.searchAll("Observation?" + subject + "&_count=1")
		if err != nil {
			return err
		}
		want := o("o1", "o2", "o3")
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("pages gave %v, want %v", got, want)
		}
		return nil
	})
	k.check("_summary=count gives the total", func() error {
		r, err := k.do("GET", "Observation?"+subject+"&_summary=count", nil)
		if err != nil {
			return err
		}
		if err := r.expect("_summary=count", 200); err != nil {
			return err
		}
		if n, _ := r.json["total"].(json.Number); n.String() != "3" {
			return fmt.Errorf("total %v, want 3", r.json["total"])
		}
		return nil
	})
	k.check("an unknown parameter with handling=strict is refused", func() error {
		r, err := k.do("GET", "Observation?conformance-nonsense=1", nil, "Prefer", "handling=strict")
		if err != nil {
			return err
		}
		return r.expect("unknown parameter, strict", 400)
	})
}

// create posts a resource and returns its id.
func (k *kit) create(typ, body string) (string, error) {
	r, err := k.do("POST", typ, body, "Prefer", "return=representation")
	if err != nil {
		return "", err
	}
	if err := r.expect("create "+typ, 201); err != nil {
		return "", err
	}
	id := str(r.json, "id")
	if id == "" {
		return "", fmt.Errorf("create %s: no id in the answer", typ)
	}
	return id, nil
}

// searchAll runs a search and follows its next links, returning the
// Type/id of every entry (matches and includes) in the order given.
func (k *kit) searchAll(query string) ([]string, error) {
	var out []string
	next := query
	for page := 0; next != "" && page < 20; page++ {
		r, err := k.do("GET", next, nil)
		if err != nil {
			return nil, err
		}
		if err := r.expect("search", 200); err != nil {
			return nil, err
		}
		if str(r.json, "type") != "searchset" {
			return nil, fmt.Errorf("the answer is not a searchset Bundle")
		}
		out = append(out, ids(r.json)...)
		next = ""
		links, _ := r.json["link"].([]any)
		for _, l := range links {
			lm, _ := l.(map[string]any)
			if str(lm, "relation") == "next" {
				next = str(lm, "url")
			}
		}
	}
	return out, nil
}
