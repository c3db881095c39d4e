package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func entries(t *testing.T, bundle map[string]any) []map[string]any {
	t.Helper()
	var out []map[string]any
	es, _ := bundle["entry"].([]any)
	for _, e := range es {
		out = append(out, e.(map[string]any))
	}
	return out
}

func linkURL(bundle map[string]any, rel string) string {
	links, _ := bundle["link"].([]any)
	for _, l := range links {
		l := l.(map[string]any)
		if l["relation"] == rel {
			return l["url"].(string)
		}
	}
	return ""
}

func seedSearch(t *testing.T, ts interface{ Close() }, put func(path, body string)) {
	put("/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Jane</div>"},"name":[{"family":"Doe","given":["Jane"]}],"gender":"female","birthDate":"1970-01-01","generalPractitioner":[{"reference":"Practitioner/d1"}]}`)
	put("/fhir/Patient/p2", `{"resourceType":"Patient","id":"p2","name":[{"family":"Roe"}],"gender":"male"}`)
	put("/fhir/Practitioner/d1", `{"resourceType":"Practitioner","id":"d1","name":[{"family":"Who"}]}`)
	for i := 0; i < 5; i++ {
		subject := "p1"
		if i == 4 {
			subject = "p2"
		}
		put(fmt.Sprintf("/fhir/Observation/o%d", i), fmt.Sprintf(`{"resourceType":"Observation","id":"o%d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/%s"},"effectiveDateTime":"2024-01-0%dT10:00:00Z","valueQuantity":{"value":%d}}`, i, subject, i+1, 60+i))
	}
}

func TestSearchOverHTTP(t *testing.T) {
	ts := newServer(t)
	seedSearch(t, ts, func(path, body string) {
		if r := do(t, ts, "PUT", path, body); r.status != 201 {
			t.Fatalf("PUT %s: %d %s", path, r.status, r.body)
		}
	})

	b := do(t, ts, "GET", "/fhir/Observation?subject=Patient/p1&code=http://loinc.org|8867-4&date=ge2024-01-02&_count=2", "")
	if b.status != 200 || b.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("search: %d %s", b.status, b.body)
	}
	bundle := b.json(t)
	if bundle["type"] != "searchset" || bundle["total"].(float64) != 3 {
		t.Fatalf("bundle: %s", b.body)
	}
	self := linkURL(bundle, "self")
	for _, want := range []string{"subject=Patient%2Fp1", "date=ge2024-01-02", "_count=2"} {
		if !strings.Contains(self, want) {
			t.Errorf("self link %q lacks %s", self, want)
		}
	}
	var ids []string
	next := strings.TrimPrefix(linkURL(bundle, "next"), ts.URL)
	for _, e := range entries(t, bundle) {
		ids = append(ids, e["resource"].(map[string]any)["id"].(string))
		if e["search"].(map[string]any)["mode"] != "match" || !strings.HasPrefix(e["fullUrl"].(string), ts.URL+"/fhir/Observation/") {
			t.Errorf("entry: %v", e)
		}
	}
	for next != "" {
		page := do(t, ts, "GET", next, "").json(t)
		for _, e := range entries(t, page) {
			ids = append(ids, e["resource"].(map[string]any)["id"].(string))
		}
		next = strings.TrimPrefix(linkURL(page, "next"), ts.URL)
	}
	if strings.Join(ids, ",") != "o1,o2,o3" {
		t.Errorf("paged ids %v, want o1,o2,o3", ids)
	}

	// POST _search with a form body equals GET.
	req, _ := http.NewRequest("POST", ts.URL+"/fhir/Observation/_search?_count=10", strings.NewReader("subject=Patient/p1&date=ge2024-01-02"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST _search: %d", resp.StatusCode)
	}

	// Compartment search.
	comp := do(t, ts, "GET", "/fhir/Patient/p2/Observation", "").json(t)
	if comp["total"].(float64) != 1 || !strings.HasSuffix(linkURL(comp, "self"), "/fhir/Patient/p2/Observation") {
		t.Errorf("compartment search: %v", comp)
	}
	if r := do(t, ts, "GET", "/fhir/Patient/p2/Practitioner", ""); r.status != 400 {
		t.Errorf("compartment search of a type outside it: %d", r.status)
	}

	// _include and _revinclude mark included entries.
	inc := do(t, ts, "GET", "/fhir/Patient?_id=p1&_include=Patient:general-practitioner&_revinclude=Observation:subject", "").json(t)
	modes := map[string]int{}
	for _, e := range entries(t, inc) {
		modes[e["search"].(map[string]any)["mode"].(string)]++
	}
	if modes["match"] != 1 || modes["include"] != 5 || inc["total"].(float64) != 1 {
		t.Errorf("include modes %v total %v", modes, inc["total"])
	}

	// _summary and _elements subset and tag the resources.
	sum := do(t, ts, "GET", "/fhir/Patient?_id=p1&_summary=true", "").json(t)
	p := entries(t, sum)[0]["resource"].(map[string]any)
	if p["text"] != nil || p["name"] == nil || !strings.Contains(fmt.Sprint(p["meta"]), "SUBSETTED") {
		t.Errorf("_summary=true: %v", p)
	}
	el := do(t, ts, "GET", "/fhir/Patient?_id=p1&_elements=gender", "").json(t)
	p = entries(t, el)[0]["resource"].(map[string]any)
	if p["gender"] != "female" || p["name"] != nil || p["id"] != "p1" {
		t.Errorf("_elements=gender: %v", p)
	}
	count := do(t, ts, "GET", "/fhir/Observation?_summary=count", "").json(t)
	if count["total"].(float64) != 5 || count["entry"] != nil {
		t.Errorf("_summary=count: %v", count)
	}
	none := do(t, ts, "GET", "/fhir/Observation?_total=none", "").json(t)
	if none["total"] != nil {
		t.Errorf("_total=none still has a total: %v", none["total"])
	}

	// Unknown parameters: ignored and reported (lenient), or refused (strict).
	lenient := do(t, ts, "GET", "/fhir/Patient?foo=bar&gender=male", "").json(t)
	es := entries(t, lenient)
	if lenient["total"].(float64) != 1 || es[len(es)-1]["search"].(map[string]any)["mode"] != "outcome" || strings.Contains(linkURL(lenient, "self"), "foo") {
		t.Errorf("lenient: %v", lenient)
	}
	if r := do(t, ts, "GET", "/fhir/Patient?foo=bar", "", "Prefer", "handling=strict"); r.status != 400 || !strings.Contains(r.issue(t), "unknown search parameter") {
		t.Errorf("strict: %d %s", r.status, r.body)
	}
	if r := do(t, ts, "GET", "/fhir/Patient?birthdate=notadate", ""); r.status != 400 || !strings.Contains(r.issue(t), "not a valid date") {
		t.Errorf("malformed value: %d %s", r.status, r.body)
	}
	if r := do(t, ts, "GET", "/fhir/Observation?_sort=-date&_count=2", "").json(t); entries(t, r)[0]["resource"].(map[string]any)["id"] != "o4" {
		t.Errorf("_sort=-date first entry: %v", entries(t, r)[0])
	}
	if r := do(t, ts, "GET", "/fhir/Observation?_page=s.deadbeef.2", ""); r.status != 400 {
		t.Errorf("expired page: %d", r.status)
	}
}

func TestEverything(t *testing.T) {
	ts := newServer(t)
	seedSearch(t, ts, func(path, body string) {
		if r := do(t, ts, "PUT", path, body); r.status != 201 {
			t.Fatalf("PUT %s: %d %s", path, r.status, r.body)
		}
	})
	do(t, ts, "PUT", "/fhir/Encounter/e1", `{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"participant":[{"individual":{"reference":"Practitioner/d1"}}]}`)
	do(t, ts, "PUT", "/fhir/Observation/oe", `{"resourceType":"Observation","id":"oe","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"}}`)

	all := do(t, ts, "GET", "/fhir/Patient/p1/$everything", "").json(t)
	var got []string
	for _, e := range entries(t, all) {
		res := e["resource"].(map[string]any)
		got = append(got, res["resourceType"].(string)+"/"+res["id"].(string))
	}
	want := "Patient/p1,Encounter/e1,Observation/o0,Observation/o1,Observation/o2,Observation/o3,Observation/oe,Practitioner/d1"
	if strings.Join(got, ",") != want {
		t.Errorf("$everything:\n got %v\nwant %s", got, want)
	}
	for _, e := range got {
		if e == "Patient/p2" || e == "Observation/o4" {
			t.Errorf("another patient's data in $everything: %s", e)
		}
	}

	// Paging through a snapshot.
	var paged []string
	next := "/fhir/Patient/p1/$everything?_count=3"
	for next != "" {
		page := do(t, ts, "GET", next, "").json(t)
		if page["total"].(float64) != 8 {
			t.Errorf("page total %v", page["total"])
		}
		for _, e := range entries(t, page) {
			res := e["resource"].(map[string]any)
			paged = append(paged, res["resourceType"].(string)+"/"+res["id"].(string))
		}
		next = strings.TrimPrefix(linkURL(page, "next"), ts.URL)
	}
	if strings.Join(paged, ",") != want {
		t.Errorf("paged $everything: %v", paged)
	}

	typed := do(t, ts, "GET", "/fhir/Patient/p1/$everything?_type=Observation", "").json(t)
	if typed["total"].(float64) != 5 {
		t.Errorf("_type=Observation total %v", typed["total"])
	}
	since := do(t, ts, "GET", "/fhir/Patient/p1/$everything?_since=2999-01-01T00:00:00Z", "").json(t)
	if since["total"].(float64) != 0 {
		t.Errorf("_since in the future: %v", since["total"])
	}
	enc := do(t, ts, "GET", "/fhir/Encounter/e1/$everything", "").json(t)
	var encGot []string
	for _, e := range entries(t, enc) {
		res := e["resource"].(map[string]any)
		encGot = append(encGot, res["resourceType"].(string)+"/"+res["id"].(string))
	}
	if strings.Join(encGot, ",") != "Encounter/e1,Observation/oe,Patient/p1,Practitioner/d1" {
		t.Errorf("Encounter $everything: %v", encGot)
	}
	if r := do(t, ts, "GET", "/fhir/Patient/nobody/$everything", ""); r.status != 404 {
		t.Errorf("$everything of a missing patient: %d", r.status)
	}
}

// TestAbsoluteReferenceToOwnBaseIsLocal: a reference written as an absolute
// URL under this server's base names the local resource (FHIR search page:
// "references to the server's own base are local"); one under another
// server's base does not, even with the same Type/id.
func TestAbsoluteReferenceToOwnBaseIsLocal(t *testing.T) {
	ts := newServer(t)
	for path, body := range map[string]string{
		"/fhir/Patient/p1":     `{"resourceType":"Patient","id":"p1"}`,
		"/fhir/Observation/o1": `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"` + ts.URL + `/fhir/Patient/p1"}}`,
		"/fhir/Observation/o2": `{"resourceType":"Observation","id":"o2","status":"final","code":{"text":"x"},"subject":{"reference":"http://elsewhere.example/fhir/Patient/p1"}}`,
	} {
		if r := do(t, ts, "PUT", path, body); r.status != 201 {
			t.Fatalf("PUT %s: %d %s", path, r.status, r.body)
		}
	}
	for _, path := range []string{"/fhir/Observation?patient=p1", "/fhir/Observation?subject=Patient/p1", "/fhir/Patient/p1/Observation",
		"/fhir/Observation?subject=" + ts.URL + "/fhir/Patient/p1"} {
		var ids []string
		for _, e := range entries(t, do(t, ts, "GET", path, "").json(t)) {
			ids = append(ids, e["resource"].(map[string]any)["id"].(string))
		}
		if strings.Join(ids, ",") != "o1" {
			t.Errorf("%s: %v, want [o1]", path, ids)
		}
	}
}
