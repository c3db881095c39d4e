package smart_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/store"
)

// runExports starts the env's export runner for the test's length.
func (e *env) runExports() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.exports.Run(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// kickoff asks for an export (GET, or POST with a Parameters body) with
// Prefer: respond-async, and returns the answer.
func (e *env) kickoff(t *testing.T, token, method, path, body string, header ...string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Prefer", "respond-async")
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header, out
}

// get is a GET of an absolute URL with a token, as a Bulk Data client
// makes it.
func get(t *testing.T, u, token string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// exported is a finished export as its client sees it.
type exported struct {
	manifest map[string]any
	// ids of the output by type, "Type/id", in file order.
	ids map[string][]string
	// lines of the output, decoded.
	lines []map[string]any
	files []string // output file URLs
	deleted,
	errors []string // the lines of the deleted and error files
}

func (x exported) all() []string {
	var out []string
	for _, ids := range x.ids {
		out = append(out, ids...)
	}
	slices.Sort(out)
	return out
}

// export runs an export to its end: kick-off, polls, downloads.
func (e *env) export(t *testing.T, token, method, path, body string) exported {
	t.Helper()
	status, h, oo := e.kickoff(t, token, method, path, body)
	if status != http.StatusAccepted {
		t.Fatalf("kick-off %s: %d %v", path, status, oo)
	}
	return e.awaitExport(t, token, h.Get("Content-Location"))
}

func (e *env) awaitExport(t *testing.T, token, statusURL string) exported {
	t.Helper()
	if !strings.HasPrefix(statusURL, e.base+"/") {
		t.Fatalf("Content-Location %q is not under the FHIR base", statusURL)
	}
	deadline := time.Now().Add(30 * time.Second)
	var b []byte
	for {
		status, h, body := get(t, statusURL, token)
		if status == http.StatusOK {
			if h.Get("Expires") == "" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
				t.Errorf("complete status: Expires %q, Content-Type %q", h.Get("Expires"), h.Get("Content-Type"))
			}
			b = body
			break
		}
		if status != http.StatusAccepted || h.Get("X-Progress") == "" || h.Get("Retry-After") == "" {
			t.Fatalf("status: %d (X-Progress %q, Retry-After %q) %s", status, h.Get("X-Progress"), h.Get("Retry-After"), body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the export did not finish: %s", h.Get("X-Progress"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	x := exported{ids: map[string][]string{}}
	if err := json.Unmarshal(b, &x.manifest); err != nil {
		t.Fatalf("manifest: %v: %s", err, b)
	}
	m := x.manifest
	if m["requiresAccessToken"] != true || m["transactionTime"] == nil || m["request"] == nil || m["error"] == nil {
		t.Errorf("manifest lacks a required field: %s", b)
	}
	lines := func(u string) []string {
		status, h, body := get(t, u, token)
		if status != 200 || h.Get("Content-Type") != "application/fhir+ndjson" || h.Get("Cache-Control") != "no-store" {
			t.Fatalf("file %s: %d %q %q %s", u, status, h.Get("Content-Type"), h.Get("Cache-Control"), body)
		}
		var out []string
		sc := bufio.NewScanner(strings.NewReader(string(body)))
		sc.Buffer(nil, 1<<24)
		for sc.Scan() {
			out = append(out, sc.Text())
		}
		return out
	}
	items := func(key string) []map[string]any {
		var out []map[string]any
		list, _ := m[key].([]any)
		for _, it := range list {
			out = append(out, it.(map[string]any))
		}
		return out
	}
	for _, it := range items("output") {
		u := it["url"].(string)
		x.files = append(x.files, u)
		ls := lines(u)
		if int(it["count"].(float64)) != len(ls) {
			t.Errorf("%s: count %v, %d lines", u, it["count"], len(ls))
		}
		for _, l := range ls {
			var res map[string]any
			if err := json.Unmarshal([]byte(l), &res); err != nil {
				t.Fatalf("%s: a line is not JSON: %v", u, err)
			}
			if res["resourceType"] != it["type"] {
				t.Errorf("%s (type %v) holds a %v", u, it["type"], res["resourceType"])
			}
			x.ids[it["type"].(string)] = append(x.ids[it["type"].(string)], res["resourceType"].(string)+"/"+res["id"].(string))
			x.lines = append(x.lines, res)
		}
	}
	for _, it := range items("deleted") {
		x.deleted = append(x.deleted, lines(it["url"].(string))...)
	}
	for _, it := range items("error") {
		x.errors = append(x.errors, lines(it["url"].(string))...)
	}
	return x
}

func sorted(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

// TestBulkExport exports at every level and with every parameter, as a
// backend service, on both stores.
func TestBulkExport(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(opts ...func(*smart.Config)) *env) {
		e := open()
		e.runExports()
		tok := e.backendAccess("system/*.rs", "system/*.rs")
		e.put("Organization", "unrelated", `{"resourceType":"Organization","id":"unrelated","name":"Elsewhere"}`)
		e.put("Group", "g1", `{"resourceType":"Group","id":"g1","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/alice"}},{"entity":{"reference":"Patient/kid1"}},{"entity":{"reference":"Patient/kid2"},"inactive":true}]}`)

		t.Run("system", func(t *testing.T) {
			x := e.export(t, tok, "GET", "/$export", "")
			if got := sorted(x.ids["Observation"]); !slices.Equal(got, []string{"Observation/alice-lab", "Observation/alice-vital", "Observation/kid1-lab", "Observation/kid1-vital", "Observation/kid2-lab", "Observation/kid2-vital"}) {
				t.Errorf("Observations: %v", got)
			}
			for _, want := range []string{"Patient/alice", "Patient/kid2", "Practitioner/dr", "Organization/org", "Organization/unrelated", "Group/g1", "Condition/kid1-cond"} {
				if !slices.Contains(x.all(), want) {
					t.Errorf("%s is missing from the system export", want)
				}
			}
			if len(x.files) < 3 || len(x.errors) != 0 {
				t.Errorf("files %d (6 Observations in files of 2 make 3 at least), errors %v", len(x.files), x.errors)
			}
			if !strings.HasSuffix(x.manifest["request"].(string), "/fhir/$export") {
				t.Errorf("request: %v", x.manifest["request"])
			}
		})
		t.Run("_type", func(t *testing.T) {
			x := e.export(t, tok, "GET", "/$export?_type=Condition,Encounter", "")
			if got := slices.Sorted(maps.Keys(x.ids)); !slices.Equal(got, []string{"Condition", "Encounter"}) {
				t.Errorf("types %v", got)
			}
		})
		t.Run("all patients", func(t *testing.T) {
			x := e.export(t, tok, "GET", "/Patient/$export", "")
			all := x.all()
			for _, want := range []string{"Patient/alice", "Patient/kid1", "Observation/kid2-lab", "Encounter/alice-enc", "Practitioner/dr", "Organization/org"} {
				if !slices.Contains(all, want) {
					t.Errorf("%s is missing from Patient/$export: %v", want, all)
				}
			}
			if slices.Contains(all, "Organization/unrelated") {
				t.Errorf("Patient/$export holds an Organization no patient's data refers to")
			}
		})
		t.Run("group", func(t *testing.T) {
			// After a Patient instance's export on the same route.
			if got := e.export(t, tok, "GET", "/Patient/kid2/$export?_type=Patient", "").all(); !slices.Equal(got, []string{"Patient/kid2"}) {
				t.Errorf("Patient/kid2/$export: %v", got)
			}
			x := e.export(t, tok, "GET", "/Group/g1/$export?_type=Patient,Observation", "")
			want := []string{"Observation/alice-lab", "Observation/alice-vital", "Observation/kid1-lab", "Observation/kid1-vital", "Patient/alice", "Patient/kid1"}
			if got := x.all(); !slices.Equal(got, want) {
				t.Errorf("Group export (kid2 is inactive): %v, want %v", got, want)
			}
			if status, _, _ := e.kickoff(t, tok, "GET", "/Group/nope/$export", ""); status != 404 {
				t.Errorf("unknown Group: %d", status)
			}
		})
		t.Run("patient parameter", func(t *testing.T) {
			x := e.export(t, tok, "POST", "/Patient/$export", `{"resourceType":"Parameters","parameter":[
				{"name":"patient","valueReference":{"reference":"Patient/kid2"}},{"name":"_type","valueString":"Patient,Condition"}]}`)
			if got := x.all(); !slices.Equal(got, []string{"Condition/kid2-cond", "Patient/kid2"}) {
				t.Errorf("patient=kid2: %v", got)
			}
		})
		t.Run("_typeFilter", func(t *testing.T) {
			x := e.export(t, tok, "GET", "/$export?_type=Observation,Condition&_typeFilter=Observation%3Fcategory%3Dlaboratory,Observation%3Fsubject%3DPatient/kid1", "")
			want := []string{"Condition/alice-cond", "Condition/kid1-cond", "Condition/kid2-cond", "Observation/alice-lab", "Observation/kid1-lab", "Observation/kid1-vital", "Observation/kid2-lab"}
			if got := x.all(); !slices.Equal(got, want) {
				t.Errorf("two filters on Observation are ORed, Condition unfiltered: %v, want %v", got, want)
			}
		})
		t.Run("_elements", func(t *testing.T) {
			x := e.export(t, tok, "GET", "/$export?_type=Observation,Patient&_elements=Observation.category,gender", "")
			for _, res := range x.lines {
				// Mandatory elements (status, code) stay whatever is asked.
				_, hasCategory := res["category"]
				_, hasEffective := res["effectiveDateTime"]
				_, hasGender := res["gender"]
				tags, _ := json.Marshal(res["meta"])
				switch {
				case !strings.Contains(string(tags), "SUBSETTED"):
					t.Errorf("%v/%v is not tagged SUBSETTED", res["resourceType"], res["id"])
				case res["resourceType"] == "Observation" && (!hasCategory || hasEffective):
					t.Errorf("Observation kept %v", res)
				case res["resourceType"] == "Patient" && (!hasGender || res["name"] != nil):
					t.Errorf("Patient kept %v", res)
				}
			}
		})
		t.Run("_since and deleted", func(t *testing.T) {
			time.Sleep(5 * time.Millisecond)
			since := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
			time.Sleep(5 * time.Millisecond)
			e.put("Observation", "alice-lab", obs("alice-lab", "alice", "laboratory", "1-1"))
			if err := e.st.Transact(context.Background(), func(tx store.Tx) error {
				_, err := tx.Delete(context.Background(), "Condition", "kid1-cond", 0)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			x := e.export(t, tok, "GET", "/$export?_type=Observation,Condition&_since="+since, "")
			if got := x.all(); !slices.Equal(got, []string{"Observation/alice-lab"}) {
				t.Errorf("_since: %v", got)
			}
			if len(x.deleted) != 1 || !strings.Contains(x.deleted[0], `"method":"DELETE","url":"Condition/kid1-cond"`) {
				t.Errorf("deleted: %v", x.deleted)
			}
		})
		t.Run("cancel", func(t *testing.T) {
			x := e.export(t, tok, "GET", "/$export?_type=Observation", "")
			status, h, _ := e.kickoff(t, tok, "GET", "/$export?_type=Observation", "")
			if status != 202 {
				t.Fatal(status)
			}
			loc := h.Get("Content-Location")
			req, _ := http.NewRequest("DELETE", loc, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if status, _, _ := do(t, req); status != 202 {
				t.Errorf("DELETE: %d", status)
			}
			if status, _, _ := get(t, loc, tok); status != 404 {
				t.Errorf("status after DELETE: %d, want 404", status)
			}
			// A finished export's files go when it is deleted.
			dir := x.files[0][:strings.LastIndex(x.files[0], "/")]
			job := dir[strings.LastIndex(dir, "/")+1:]
			req, _ = http.NewRequest("DELETE", e.base+"/$export-status/"+job, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if status, _, _ := do(t, req); status != 202 {
				t.Errorf("DELETE of a finished export: %d", status)
			}
			if status, _, _ := get(t, x.files[0], tok); status != 404 {
				t.Errorf("a deleted export's file: %d, want 404", status)
			}
		})
		t.Run("declared", func(t *testing.T) {
			_, _, md := get(t, e.base+"/metadata", "")
			for _, want := range []string{`"instantiates":["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]`,
				`"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"`,
				`"definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"`,
				`"definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"`} {
				if !strings.Contains(string(md), want) {
					t.Errorf("the CapabilityStatement lacks %s", want)
				}
			}
			_, _, sc := get(t, e.base+"/.well-known/smart-configuration", "")
			for _, want := range []string{"client-confidential-asymmetric", "system/*.rs", "private_key_jwt"} {
				if !strings.Contains(string(sc), want) {
					t.Errorf("smart-configuration lacks %s: %s", want, sc)
				}
			}
		})
		t.Run("a + left unescaped", func(t *testing.T) {
			if status, _, oo := e.kickoff(t, tok, "GET", "/$export?_type=Patient&_outputFormat=application/fhir+ndjson&_since=2000-01-01T00:00:00+00:00", ""); status != 202 {
				t.Errorf("_outputFormat and _since with a raw +: %d %v", status, oo)
			}
		})
		t.Run("refused", func(t *testing.T) {
			for _, c := range []struct {
				path   string
				header []string
				want   int
			}{
				{"/$export", []string{"Prefer", ""}, 400},
				{"/$export?_outputFormat=text/csv", nil, 400},
				{"/$export?_type=Nonsense", nil, 400},
				{"/$export?_since=yesterday", nil, 400},
				{"/$export?_typeFilter=Observation%3Fnope%3D1", nil, 400},
				{"/$export?includeAssociatedData=LatestProvenanceResources", nil, 400},
				{"/$export?_bogus=1", nil, 400},
				{"/Observation/$export", nil, 404},
				{"/Group/g1/$export?_type=Nonsense", []string{"Prefer", "respond-async, handling=lenient"}, 400},
			} {
				status, _, oo := e.kickoff(t, tok, "GET", c.path, "", c.header...)
				if status != c.want || oo["resourceType"] != "OperationOutcome" {
					t.Errorf("%s: %d %v, want %d with an OperationOutcome", c.path, status, oo, c.want)
				}
			}
			if status, _, _ := e.kickoff(t, "", "GET", "/$export", ""); status != 401 {
				t.Errorf("no token: %d", status)
			}
		})
	})
}

// TestBulkExportUnderTheTokensPolicy: an export holds what its token may
// see and nothing more — a backend's scopes limit the types, a patient
// exports their own record, the parent of a 16-year-old gets what the
// parent may see — and only the client that asked sees its status and
// files.
func TestBulkExportUnderTheTokensPolicy(t *testing.T) {
	e := newEnv(t)
	e.runExports()
	const act, conf = "http://terminology.hl7.org/CodeSystem/v3-ActCode", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	e.put("Observation", "kid1-psy", labelled("kid1-psy", "kid1", act, "PSY"))
	e.put("Observation", "kid1-n", labelled("kid1-n", "kid1", conf, "N"))

	t.Run("system scopes limit the types", func(t *testing.T) {
		tok := e.backendAccess("system/Observation.rs", "system/Observation.rs")
		x := e.export(t, tok, "GET", "/$export", "")
		if len(x.ids) != 1 || len(x.ids["Observation"]) != 8 {
			t.Errorf("system/Observation.rs exported %v", x.ids)
		}
		if status, _, oo := e.kickoff(t, tok, "GET", "/$export?_type=Patient", ""); status != 403 {
			t.Errorf("_type=Patient without a Patient scope: %d %v", status, oo)
		}
	})
	t.Run("a patient's own record", func(t *testing.T) {
		if _, err := smart.NewAccounts(e.st).AddUser(context.Background(), "kid1", password, "kid1"); err != nil {
			t.Fatal(err)
		}
		alice := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, patientScopes...), "alice", "")).AccessToken
		x := e.export(t, alice, "GET", "/Patient/alice/$export", "")
		want := []string{"Condition/alice-cond", "Encounter/alice-enc", "Observation/alice-lab", "Observation/alice-vital", "Organization/org", "Patient/alice", "Practitioner/dr"}
		if got := x.all(); !slices.Equal(got, want) {
			t.Errorf("alice's export: %v, want %v", got, want)
		}
		if status, _, _ := e.kickoff(t, alice, "GET", "/Patient/kid1/$export", ""); status != 404 {
			t.Errorf("alice exporting kid1's record: %d, want 404 (as a read of it)", status)
		}
		if got := e.export(t, alice, "GET", "/Patient/$export?_type=Observation", "").all(); !slices.Equal(got, []string{"Observation/alice-lab", "Observation/alice-vital"}) {
			t.Errorf("alice's Patient/$export: %v", got)
		}
		teen := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, patientScopes...), "kid1", "")).AccessToken
		if got := e.export(t, teen, "GET", "/Patient/kid1/$export?_type=Observation", "").all(); !slices.Contains(got, "Observation/kid1-psy") {
			t.Errorf("the teen's own export lacks their sensitive record: %v", got)
		}

		// Status and files are the client's and user's own.
		status, h, _ := e.kickoff(t, alice, "GET", "/Patient/alice/$export", "")
		if status != 202 {
			t.Fatal(status)
		}
		e.awaitExport(t, alice, h.Get("Content-Location"))
		// Kick-off, completion and downloads are in the audit trail.
		status, b, _ := e.fhir("GET", "/AuditEvent?patient=alice&_count=200", e.openToken(), "")
		if status != 200 {
			t.Fatalf("AuditEvent search: %d", status)
		}
		var queries []string
		for _, ev := range auditEvents(t, b) {
			_, _, _, q := eventFacts(ev)
			queries = append(queries, q)
		}
		for _, want := range []string{"Patient/alice/$export", "$export-complete", "$export-file"} {
			if !slices.Contains(queries, want) {
				t.Errorf("no audit event %q about alice: %v", want, queries)
			}
		}
		other := e.backendAccess("system/*.rs", "system/*.rs")
		for _, u := range append([]string{h.Get("Content-Location")}, x.files[0]) {
			if status, _, _ := get(t, u, other); status != 404 {
				t.Errorf("another client, %s: %d, want 404", u, status)
			}
			if status, _, _ := get(t, u, ""); status != 401 {
				t.Errorf("no token, %s: %d, want 401", u, status)
			}
		}
	})
	t.Run("the parent of a teen", func(t *testing.T) {
		parent := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, patientScopes...), "parent", "kid1")).AccessToken
		got := e.export(t, parent, "GET", "/Patient/kid1/$export", "").all()
		if slices.Contains(got, "Observation/kid1-psy") || !slices.Contains(got, "Observation/kid1-n") || slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "alice") || strings.Contains(s, "kid2") }) {
			t.Errorf("the parent's export of kid1 (16): %v", got)
		}
	})
}

// TestBulkExportWaitsAndLimits: until a runner takes a job its status is
// 202 with progress, and a client may run only so many at once (429).
func TestBulkExportWaitsAndLimits(t *testing.T) {
	e := newEnv(t) // no runner: jobs wait
	tok := e.backendAccess("system/*.rs", "system/*.rs")
	var locs []string
	for range 3 {
		status, h, oo := e.kickoff(t, tok, "GET", "/$export", "")
		if status != 202 {
			t.Fatalf("kick-off: %d %v", status, oo)
		}
		locs = append(locs, h.Get("Content-Location"))
	}
	status, h, oo := e.kickoff(t, tok, "GET", "/$export", "")
	if status != 429 || h.Get("Retry-After") == "" || oo["resourceType"] != "OperationOutcome" {
		t.Errorf("a fourth export: %d %v %v", status, h, oo)
	}
	if other := e.backendAccess("system/*.rs", "system/*.rs"); true {
		if status, _, _ := e.kickoff(t, other, "GET", "/$export", ""); status != 202 {
			t.Errorf("another client's first export: %d", status)
		}
	}
	status, h, _ = get(t, locs[0], tok)
	if status != 202 || !strings.Contains(h.Get("X-Progress"), "resources written") {
		t.Errorf("a waiting job: %d %q", status, h.Get("X-Progress"))
	}
	e.runExports()
	e.awaitExport(t, tok, locs[0])
	if status, _, _ := e.kickoff(t, tok, "GET", "/$export", ""); status != 202 {
		t.Errorf("once one finished, another may start: %d", status)
	}
}
