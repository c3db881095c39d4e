package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/server"
	"github.com/hearth-fhir/hearth/store/sqlite"
)

// newServer starts Hearth over a real SQLite file behind a real HTTP server.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	return newServerWithLimit(t, 64<<10)
}

// openStore opens a fresh SQLite store, closed when the test ends.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newServerWithLimit(t *testing.T, maxBody int64) *httptest.Server {
	t.Helper()
	st := openStore(t)
	var ts *httptest.Server
	ts = httptest.NewUnstartedServer(nil)
	ts.Start()
	ts.Config.Handler = server.New(server.Config{BaseURL: ts.URL + "/fhir", MaxBodyBytes: maxBody, Version: "test", Open: true}, interact.New(st, interact.Config{BaseURL: ts.URL + "/fhir"}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(ts.Close)
	return ts
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON (%d): %s", r.status, r.body)
	}
	return m
}

// issue returns the first OperationOutcome issue as "code expression: diagnostics".
func (r response) issue(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("want an OperationOutcome, got %s", r.body)
	}
	is := m["issue"].([]any)[0].(map[string]any)
	expr := ""
	if e, ok := is["expression"].([]any); ok {
		expr = e[0].(string)
	}
	return fmt.Sprintf("%s %s: %s", is["code"], expr, is["diagnostics"])
}

func do(t *testing.T, ts *httptest.Server, method, path, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

const patientJSON = `{"resourceType":"Patient","active":true,"name":[{"family":"Doe","given":["Jane"]}],"birthDate":"1980-02-29","_birthDate":{"extension":[{"url":"http://example.org/time","valueString":"about noon"}]}}`

func TestCreateReadVReadRoundTrip(t *testing.T) {
	ts := newServer(t)
	c := do(t, ts, "POST", "/fhir/Patient", patientJSON)
	if c.status != 201 {
		t.Fatalf("create: %d %s", c.status, c.body)
	}
	loc := c.header.Get("Location")
	if !strings.HasPrefix(loc, ts.URL+"/fhir/Patient/") || !strings.HasSuffix(loc, "/_history/1") {
		t.Fatalf("Location = %q", loc)
	}
	if c.header.Get("ETag") != `W/"1"` || c.header.Get("Last-Modified") == "" {
		t.Errorf("ETag %q Last-Modified %q", c.header.Get("ETag"), c.header.Get("Last-Modified"))
	}
	created := c.json(t)
	id := created["id"].(string)
	r := do(t, ts, "GET", "/fhir/Patient/"+id, "")
	if r.status != 200 || !bytes.Equal(r.body, c.body) {
		t.Fatalf("read: %d %s", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/fhir+json") {
		t.Errorf("headers: %v", r.header)
	}
	if !strings.Contains(string(r.body), `"_birthDate":{"extension":[{"url":"http://example.org/time","valueString":"about noon"}]}`) {
		t.Errorf("primitive extension lost: %s", r.body)
	}
	if sum := do(t, ts, "GET", "/fhir/Patient/"+id+"?_elements=birthDate", "").json(t); sum["name"] != nil || sum["birthDate"] != "1980-02-29" || !strings.Contains(fmt.Sprint(sum["meta"]), "SUBSETTED") {
		t.Errorf("read with _elements: %v", sum)
	}
	if sum := do(t, ts, "GET", "/fhir/Patient/"+id+"?_summary=count", ""); sum.status != 400 {
		t.Errorf("read with _summary=count: %d", sum.status)
	}
	v := do(t, ts, "GET", "/fhir/Patient/"+id+"/_history/1", "")
	if v.status != 200 || !bytes.Equal(v.body, c.body) {
		t.Fatalf("vread: %d %s", v.status, v.body)
	}
	if nm := do(t, ts, "GET", "/fhir/Patient/"+id, "", "If-None-Match", `W/"1"`); nm.status != 304 {
		t.Errorf("If-None-Match current version: %d, want 304", nm.status)
	}
	if nm := do(t, ts, "GET", "/fhir/Patient/"+id, "", "If-None-Match", `W/"7"`); nm.status != 200 {
		t.Errorf("If-None-Match other version: %d, want 200", nm.status)
	}
	if m := do(t, ts, "GET", "/fhir/Patient/nope", ""); m.status != 404 || !strings.HasPrefix(m.issue(t), "not-found") {
		t.Errorf("missing: %d %s", m.status, m.body)
	}
	if m := do(t, ts, "GET", "/fhir/Patient/"+id+"/_history/9", ""); m.status != 404 {
		t.Errorf("missing version: %d", m.status)
	}
}

func TestDecimalPrecisionAndContainedSurvive(t *testing.T) {
	ts := newServer(t)
	body := `{"resourceType":"Observation","status":"final","code":{"text":"weight"},"valueQuantity":{"value":1.50,"unit":"kg"},"contained":[{"resourceType":"Patient","id":"p1","gender":"female"}],"subject":{"reference":"#p1"},"component":[{"code":{"text":"a"},"valueQuantity":{"value":100.000}}]}`
	c := do(t, ts, "POST", "/fhir/Observation", body)
	if c.status != 201 {
		t.Fatalf("create: %d %s", c.status, c.body)
	}
	for _, want := range []string{`"value":1.50`, `"value":100.000`, `"contained":[{"resourceType":"Patient","id":"p1","gender":"female"}]`} {
		if !strings.Contains(string(c.body), want) {
			t.Errorf("lost %s in %s", want, c.body)
		}
	}
}

func TestValidationErrorsAreOperationOutcomesAndStoreNothing(t *testing.T) {
	ts := newServer(t)
	cases := []struct {
		name, method, path, body, want string
		status                         int
	}{
		{"unknown element", "POST", "/fhir/Patient", `{"resourceType":"Patient","foo":1}`, "structure Patient.foo: unknown element", 400},
		{"wrong type", "POST", "/fhir/Patient", `{"resourceType":"Patient","active":"yes"}`, "value Patient.active: must be a JSON boolean", 400},
		{"bad date", "POST", "/fhir/Patient", `{"resourceType":"Patient","birthDate":"1980-1-1"}`, "value Patient.birthDate: is not a valid date", 400},
		{"bad code", "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"robot"}`, "code-invalid Patient.gender: code is not in the required value set", 400},
		{"array for single", "POST", "/fhir/Patient", `{"resourceType":"Patient","birthDate":["1980-01-01"]}`, "structure Patient.birthDate: must be a single value", 400},
		{"type mismatch", "POST", "/fhir/Patient", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, "invalid : resourceType Observation does not match", 400},
		{"not json", "POST", "/fhir/Patient", `{"resourceType":`, "structure : body is not valid JSON", 400},
		// A member given twice would be stored with both values while the
		// index saw only the last; invalid UTF-8 would be served back raw.
		{"duplicate member", "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"male","gender":"female"}`, `structure : body is not valid JSON: the member /gender is given twice`, 400},
		{"nested duplicate member", "POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"family":"A","family":"B"}]}`, `structure : body is not valid JSON: the member /name/0/family is given twice`, 400},
		{"invalid UTF-8", "POST", "/fhir/Patient", "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\xfe\"}]}", "structure : body is not valid JSON: invalid UTF-8 at byte", 400},
		{"id mismatch", "PUT", "/fhir/Patient/abc", `{"resourceType":"Patient","id":"xyz"}`, "invalid : the resource id must be present and equal the id in the URL", 400},
		{"id missing", "PUT", "/fhir/Patient/abc", `{"resourceType":"Patient"}`, "invalid : the resource id must be present", 400},
		{"bad url id", "PUT", "/fhir/Patient/a_b", `{"resourceType":"Patient","id":"a_b"}`, "value : id in the URL", 400},
		{"unknown type", "POST", "/fhir/Patinet", `{"resourceType":"Patinet"}`, "not-supported : unknown resource type Patinet", 404},
		{"too large", "POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"text":"` + strings.Repeat("x", 70<<10) + `"}]}`, "too-costly : request body exceeds", 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, ts, tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if got := r.issue(t); !strings.HasPrefix(got, tc.want) {
				t.Errorf("issue %q, want prefix %q", got, tc.want)
			}
		})
	}
	h := do(t, ts, "GET", "/fhir/_history", "").json(t)
	if h["total"].(float64) != 0 {
		t.Errorf("rejected requests stored %v versions", h["total"])
	}
}

func TestContentNegotiation(t *testing.T) {
	ts := newServer(t)
	cases := []struct {
		name    string
		path    string
		headers []string
		status  int
		ctype   string
	}{
		{"default", "/fhir/metadata", nil, 200, "application/fhir+json"},
		{"fhir json", "/fhir/metadata", []string{"Accept", "application/fhir+json"}, 200, "application/fhir+json"},
		{"plain json", "/fhir/metadata", []string{"Accept", "application/json"}, 200, "application/json"},
		{"browser", "/fhir/metadata", []string{"Accept", "text/html,application/xhtml+xml,*/*;q=0.8"}, 200, "application/fhir+json"},
		{"xml refused", "/fhir/metadata", []string{"Accept", "application/fhir+xml"}, 406, "application/fhir+json"},
		{"_format json", "/fhir/metadata?_format=json", []string{"Accept", "application/fhir+xml"}, 200, "application/fhir+json"},
		{"_format xml", "/fhir/metadata?_format=xml", nil, 406, "application/fhir+json"},
	}
	for _, tc := range cases {
		r := do(t, ts, "GET", tc.path, "", tc.headers...)
		if r.status != tc.status || !strings.HasPrefix(r.header.Get("Content-Type"), tc.ctype) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, r.status, r.header.Get("Content-Type"), tc.status, tc.ctype)
		}
	}
	// Request bodies must be JSON.
	req, _ := http.NewRequest("POST", ts.URL+"/fhir/Patient", strings.NewReader("<Patient/>"))
	req.Header.Set("Content-Type", "application/fhir+xml")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 415 {
		t.Errorf("XML body: %d, want 415", resp.StatusCode)
	}
	pretty := do(t, ts, "GET", "/fhir/metadata?_pretty=true", "")
	if !strings.Contains(string(pretty.body), "\n  \"") {
		t.Errorf("_pretty=true not indented: %.80s", pretty.body)
	}
}

func TestUpdateIfMatchAndUpdateAsCreate(t *testing.T) {
	ts := newServer(t)
	c := do(t, ts, "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","active":true}`)
	if c.status != 201 || c.header.Get("Location") != ts.URL+"/fhir/Patient/p1/_history/1" {
		t.Fatalf("update-as-create: %d %q", c.status, c.header.Get("Location"))
	}
	u := do(t, ts, "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","active":false}`, "If-Match", `W/"1"`)
	if u.status != 200 || u.header.Get("ETag") != `W/"2"` {
		t.Fatalf("update: %d %q %s", u.status, u.header.Get("ETag"), u.body)
	}
	stale := do(t, ts, "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","active":true}`, "If-Match", `W/"1"`)
	if stale.status != 412 || !strings.HasPrefix(stale.issue(t), "conflict") {
		t.Fatalf("stale If-Match: %d %s", stale.status, stale.body)
	}
	if r := do(t, ts, "GET", "/fhir/Patient/p1", ""); r.header.Get("ETag") != `W/"2"` {
		t.Errorf("stale update changed the resource: %s", r.header.Get("ETag"))
	}
	if bad := do(t, ts, "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`, "If-Match", `banana`); bad.status != 400 {
		t.Errorf("malformed If-Match: %d", bad.status)
	}
}

func TestPreferReturn(t *testing.T) {
	ts := newServer(t)
	min := do(t, ts, "POST", "/fhir/Patient", patientJSON, "Prefer", "return=minimal")
	if min.status != 201 || len(min.body) != 0 || min.header.Get("Location") == "" {
		t.Errorf("minimal: %d %q", min.status, min.body)
	}
	oo := do(t, ts, "POST", "/fhir/Patient", patientJSON, "Prefer", "return=OperationOutcome")
	if oo.status != 201 || oo.json(t)["resourceType"] != "OperationOutcome" {
		t.Errorf("OperationOutcome: %d %s", oo.status, oo.body)
	}
	rep := do(t, ts, "POST", "/fhir/Patient", patientJSON, "Prefer", "return=representation")
	if rep.status != 201 || rep.json(t)["resourceType"] != "Patient" {
		t.Errorf("representation: %d %s", rep.status, rep.body)
	}
}

func TestDeleteThenGone(t *testing.T) {
	ts := newServer(t)
	do(t, ts, "PUT", "/fhir/Patient/d1", `{"resourceType":"Patient","id":"d1"}`)
	d := do(t, ts, "DELETE", "/fhir/Patient/d1", "")
	if d.status != 200 || d.header.Get("ETag") != `W/"2"` {
		t.Fatalf("delete: %d %s", d.status, d.body)
	}
	g := do(t, ts, "GET", "/fhir/Patient/d1", "")
	if g.status != 410 || !strings.HasPrefix(g.issue(t), "deleted") {
		t.Fatalf("read after delete: %d %s", g.status, g.body)
	}
	if again := do(t, ts, "DELETE", "/fhir/Patient/d1", "", "Prefer", "return=minimal"); again.status != 204 {
		t.Errorf("second delete: %d", again.status)
	}
	if v1 := do(t, ts, "GET", "/fhir/Patient/d1/_history/1", ""); v1.status != 200 {
		t.Errorf("vread of version before the deletion: %d", v1.status)
	}
	if v2 := do(t, ts, "GET", "/fhir/Patient/d1/_history/2", ""); v2.status != 410 {
		t.Errorf("vread of the deletion: %d, want 410", v2.status)
	}
	if nf := do(t, ts, "DELETE", "/fhir/Patient/never", ""); nf.status != 404 {
		t.Errorf("delete of a resource that never existed: %d", nf.status)
	}
	re := do(t, ts, "PUT", "/fhir/Patient/d1", `{"resourceType":"Patient","id":"d1"}`)
	if re.status != 201 || re.header.Get("ETag") != `W/"3"` {
		t.Errorf("re-create after delete: %d %s", re.status, re.header.Get("ETag"))
	}
}

func TestJSONPatch(t *testing.T) {
	ts := newServer(t)
	do(t, ts, "PUT", "/fhir/Observation/o1", `{"resourceType":"Observation","id":"o1","status":"preliminary","code":{"text":"x"},"valueQuantity":{"value":1.50}}`)
	patch := func(body string, headers ...string) response {
		return do(t, ts, "PATCH", "/fhir/Observation/o1", body, append([]string{"Content-Type", "application/json-patch+json"}, headers...)...)
	}
	ok := patch(`[{"op":"test","path":"/status","value":"preliminary"},{"op":"replace","path":"/status","value":"final"}]`)
	if ok.status != 200 || ok.header.Get("ETag") != `W/"2"` || !strings.Contains(string(ok.body), `"status":"final"`) || !strings.Contains(string(ok.body), `"value":1.50`) {
		t.Fatalf("patch: %d %s", ok.status, ok.body)
	}
	cases := []struct {
		name, body string
		headers    []string
		status     int
		want       string
	}{
		{"failed test", `[{"op":"test","path":"/status","value":"preliminary"}]`, nil, 422, "processing : the patch could not be applied: a test operation failed"},
		{"invalid result", `[{"op":"replace","path":"/status","value":"bogus"}]`, nil, 422, "code-invalid Observation.status"},
		{"removes required", `[{"op":"remove","path":"/code"}]`, nil, 422, "required Observation.code"},
		{"changes id", `[{"op":"replace","path":"/id","value":"other"}]`, nil, 422, "processing : a patch may not change the resource id"},
		{"not a patch", `{"op":"replace"}`, nil, 400, "structure : body is not a valid JSON Patch document"},
		{"stale If-Match", `[{"op":"replace","path":"/status","value":"amended"}]`, []string{"If-Match", `W/"1"`}, 412, "conflict"},
	}
	for _, tc := range cases {
		r := patch(tc.body, tc.headers...)
		if r.status != tc.status || !strings.HasPrefix(r.issue(t), tc.want) {
			t.Errorf("%s: %d %s, want %d %q", tc.name, r.status, r.body, tc.status, tc.want)
		}
	}
	if r := do(t, ts, "GET", "/fhir/Observation/o1", ""); r.header.Get("ETag") != `W/"2"` {
		t.Errorf("failed patches changed the resource: %s", r.header.Get("ETag"))
	}
	// A FHIR JSON body is a FHIRPath Patch, which an array is not.
	if r := do(t, ts, "PATCH", "/fhir/Observation/o1", `[]`, "Content-Type", "application/fhir+json"); r.status != 400 {
		t.Errorf("patch with a FHIR JSON array: %d, want 400", r.status)
	}
	if r := do(t, ts, "PATCH", "/fhir/Observation/o1", `[]`, "Content-Type", "text/plain"); r.status != 415 {
		t.Errorf("patch as text/plain: %d, want 415", r.status)
	}
}

func TestConditionalCreate(t *testing.T) {
	ts := newServer(t)
	body := `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"42"}]}`
	first := do(t, ts, "POST", "/fhir/Patient", body, "If-None-Exist", "identifier=urn:mrn|42")
	if first.status != 201 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	second := do(t, ts, "POST", "/fhir/Patient", body, "If-None-Exist", "identifier=urn:mrn|42")
	if second.status != 200 || second.json(t)["id"] != first.json(t)["id"] {
		t.Fatalf("second: %d %s", second.status, second.body)
	}
	do(t, ts, "POST", "/fhir/Patient", `{"resourceType":"Patient","identifier":[{"system":"urn:other","value":"42"}]}`)
	multi := do(t, ts, "POST", "/fhir/Patient", body, "If-None-Exist", "identifier=42")
	if multi.status != 412 || !strings.HasPrefix(multi.issue(t), "multiple-matches") {
		t.Errorf("multiple matches: %d %s", multi.status, multi.body)
	}
	unsupported := do(t, ts, "POST", "/fhir/Patient", body, "If-None-Exist", "foo=Doe")
	if unsupported.status != 400 || !strings.Contains(unsupported.issue(t), "unknown search parameter") {
		t.Errorf("unsupported parameter: %d %s", unsupported.status, unsupported.body)
	}
	h := do(t, ts, "GET", "/fhir/Patient/_history", "").json(t)
	if h["total"].(float64) != 2 {
		t.Errorf("history total %v, want 2 (the matched and refused creates stored nothing)", h["total"])
	}
}

func TestHistoryBundles(t *testing.T) {
	ts := newServer(t)
	do(t, ts, "PUT", "/fhir/Patient/h1", `{"resourceType":"Patient","id":"h1","active":true}`)
	do(t, ts, "PUT", "/fhir/Patient/h1", `{"resourceType":"Patient","id":"h1","active":false}`)
	do(t, ts, "DELETE", "/fhir/Patient/h1", "")
	do(t, ts, "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`)

	inst := do(t, ts, "GET", "/fhir/Patient/h1/_history", "").json(t)
	if inst["type"] != "history" || inst["total"].(float64) != 3 {
		t.Fatalf("instance history: %v", inst)
	}
	entries := inst["entry"].([]any)
	first := entries[0].(map[string]any)
	if first["request"].(map[string]any)["method"] != "DELETE" || first["resource"] != nil {
		t.Errorf("newest entry should be the deletion without a resource: %v", first)
	}
	last := entries[2].(map[string]any)
	if last["response"].(map[string]any)["etag"] != `W/"1"` {
		t.Errorf("oldest entry: %v", last)
	}
	// h1 was created by a PUT with its id: history says so.
	if req := last["request"].(map[string]any); req["method"] != "PUT" || req["url"] != "Patient/h1" || last["response"].(map[string]any)["status"] != "201 Created" {
		t.Errorf("update-as-create entry: %v", last)
	}
	obs := do(t, ts, "GET", "/fhir/Observation/_history", "").json(t)["entry"].([]any)[0].(map[string]any)
	if req := obs["request"].(map[string]any); req["method"] != "POST" || req["url"] != "Observation" {
		t.Errorf("create entry: %v", obs)
	}

	// Page through the system history one entry at a time.
	next := "/fhir/_history?_count=1"
	seen := 0
	for next != "" && seen < 10 {
		page := do(t, ts, "GET", next, "").json(t)
		seen += len(page["entry"].([]any))
		next = ""
		for _, l := range page["link"].([]any) {
			l := l.(map[string]any)
			if l["relation"] == "next" {
				next = strings.TrimPrefix(l["url"].(string), ts.URL)
			}
		}
		// A write between pages must not shift the pages.
		do(t, ts, "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"late"}}`)
	}
	if seen != 4 {
		t.Errorf("paged system history served %d entries, want 4", seen)
	}

	if typ := do(t, ts, "GET", "/fhir/Observation/_history?_count=0", "").json(t); typ["entry"] != nil || typ["total"].(float64) < 1 {
		t.Errorf("_count=0: %v", typ)
	}
	if bad := do(t, ts, "GET", "/fhir/_history?_since=yesterday", ""); bad.status != 400 {
		t.Errorf("bad _since: %d", bad.status)
	}
	if bad := do(t, ts, "GET", "/fhir/_history?_cursor=zzz", ""); bad.status != 400 {
		t.Errorf("bad cursor: %d", bad.status)
	}
	if strict := do(t, ts, "GET", "/fhir/_history?foo=1", "", "Prefer", "handling=strict"); strict.status != 400 {
		t.Errorf("unknown parameter under strict handling: %d", strict.status)
	}
	if lenient := do(t, ts, "GET", "/fhir/_history?foo=1", ""); lenient.status != 200 {
		t.Errorf("unknown parameter under lenient handling: %d", lenient.status)
	}
	if missing := do(t, ts, "GET", "/fhir/Patient/none/_history", ""); missing.status != 404 {
		t.Errorf("history of a missing resource: %d", missing.status)
	}
}

func TestCORSAndRequestID(t *testing.T) {
	ts := newServer(t)
	pre := do(t, ts, "OPTIONS", "/fhir/Patient", "", "Origin", "https://app.example", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	if pre.status != 204 || pre.header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(pre.header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", pre.status, pre.header)
	}
	r := do(t, ts, "GET", "/fhir/metadata", "", "Origin", "https://app.example", "X-Request-Id", "abc-123")
	if r.header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Errorf("CORS on GET: %v", r.header)
	}
	if r.header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("request id not echoed: %q", r.header.Get("X-Request-Id"))
	}
	if gen := do(t, ts, "GET", "/fhir/metadata", "", "X-Request-Id", "bad id with spaces"); len(gen.header.Get("X-Request-Id")) != 24 {
		t.Errorf("insane request id should be replaced: %q", gen.header.Get("X-Request-Id"))
	}
}

func TestCapabilityStatementIsHonest(t *testing.T) {
	ts := newServer(t)
	raw := do(t, ts, "GET", "/fhir/metadata", "")
	if !strings.HasPrefix(string(raw.body), `{"resourceType":"CapabilityStatement"`) {
		t.Errorf("resourceType should come first: %.60s", raw.body)
	}
	if oo := do(t, ts, "GET", "/fhir/Patient/missing", ""); !strings.HasPrefix(string(oo.body), `{"resourceType":"OperationOutcome"`) {
		t.Errorf("resourceType should come first: %.60s", oo.body)
	}
	cs := raw.json(t)
	if cs["resourceType"] != "CapabilityStatement" || cs["fhirVersion"] != "4.0.1" || cs["kind"] != "instance" {
		t.Fatalf("metadata: %v", cs)
	}
	rest := cs["rest"].([]any)[0].(map[string]any)
	resources := rest["resource"].([]any)
	if len(resources) < 140 {
		t.Errorf("only %d resource types listed", len(resources))
	}
	// Every advertised search parameter answers (with :missing, which every
	// indexed type supports) rather than being refused.
	checked := 0
	for _, r := range resources {
		r := r.(map[string]any)
		typ := r["type"].(string)
		if typ == "AuditEvent" {
			continue // searched in the audit trail, without :missing; smart's TestAuditTrail covers it
		}
		params, _ := r["searchParam"].([]any)
		for _, p := range params {
			p := p.(map[string]any)
			name, ptype := p["name"].(string), p["type"].(string)
			query := name + ":missing=true"
			switch ptype {
			case "special":
				query = name + "=x"
			case "composite":
				continue // composites have no :missing; the search table covers them
			}
			if name == "_id" || name == "_lastUpdated" {
				continue
			}
			if got := do(t, ts, "GET", "/fhir/"+typ+"?"+url.QueryEscape(name)+strings.TrimPrefix(query, name), ""); got.status != 200 {
				t.Errorf("%s?%s: %d %s", typ, query, got.status, got.body)
			}
			checked++
		}
	}
	if checked < 1000 {
		t.Errorf("only %d search parameters advertised", checked)
	}
	if r := do(t, ts, "GET", "/fhir/Encounter/_history", ""); r.status != 200 {
		t.Errorf("history-type: %d", r.status)
	}
	if r := do(t, ts, "POST", "/fhir/Patient/p1", "{}"); r.status != 405 || !strings.HasPrefix(r.issue(t), "not-supported") {
		t.Errorf("POST on an instance: %d", r.status)
	}
}
