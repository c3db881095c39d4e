package server_test

import (
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/server"
)

// TestLimitsAnswer4xx: each documented limit of a request's work answers a
// 4xx OperationOutcome naming it — before the database sees the query —
// and the request just within it is served.
func TestLimitsAnswer4xx(t *testing.T) {
	ts := newServerWithLimit(t, 16<<20)
	do(t, ts, "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","name":[{"family":"Doe"}],"managingOrganization":{"reference":"Organization/o1"}}`)
	do(t, ts, "PUT", "/fhir/Organization/o1", `{"resourceType":"Organization","id":"o1","name":"Org","partOf":{"reference":"Organization/o1"}}`)
	values := func(n int) string {
		v := make([]string, n)
		for i := range v {
			v[i] = fmt.Sprintf("id%d", i)
		}
		return strings.Join(v, ",")
	}
	params := func(n int) string {
		v := url.Values{}
		for i := range n {
			v.Add("name", fmt.Sprintf("n%d", i))
		}
		return v.Encode()
	}
	chain := func(depth int) string {
		// Observation?subject:Patient.organization.partof.partof…name=x
		name := "subject:Patient.organization" + strings.Repeat(".partof", depth-2) + ".name"
		return "/fhir/Observation?" + url.QueryEscape(name) + "=x"
	}
	sortKeys := func(n int) string {
		k := make([]string, n)
		for i := range k {
			k[i] = "name"
		}
		return strings.Join(k, ",")
	}
	includes := func(n int) string {
		v := url.Values{}
		for range n {
			v.Add("_include", "Patient:organization")
		}
		return v.Encode()
	}
	for _, c := range []struct {
		name, ok, over string
		want           string
	}{
		{"values of one parameter", "/fhir/Patient?_id=" + values(fhir.MaxValues), "/fhir/Patient?_id=" + values(fhir.MaxValues+1), "at most 100 values"},
		{"search parameters", "/fhir/Patient?" + params(fhir.MaxConditions), "/fhir/Patient?" + params(fhir.MaxConditions+1), "at most 64 search parameters"},
		{"chain depth", chain(fhir.MaxChainDepth + 1 - 1), chain(fhir.MaxChainDepth + 1), "at most 4 links deep"},
		{"chain depth, 10,000 links", chain(fhir.MaxChainDepth), chain(10_000), "at most 4 links deep"},
		{"_has depth", "/fhir/Patient?" + url.QueryEscape(strings.Repeat("_has:Patient:link:", 4)) + "gender=male",
			"/fhir/Patient?" + url.QueryEscape(strings.Repeat("_has:Patient:link:", 5)) + "gender=male", "at most 4 links deep"},
		{"sort keys", "/fhir/Patient?_sort=" + sortKeys(fhir.MaxSortKeys), "/fhir/Patient?_sort=" + sortKeys(fhir.MaxSortKeys+1), "_sort may have at most 8 keys"},
		{"includes", "/fhir/Patient?" + includes(fhir.MaxIncludes), "/fhir/Patient?" + includes(fhir.MaxIncludes+1), "at most 16 _include"},
	} {
		if r := do(t, ts, "GET", c.ok, ""); r.status != 200 {
			t.Errorf("%s, at the limit: %d %s", c.name, r.status, r.body)
		}
		r := do(t, ts, "GET", c.over, "")
		if r.status != 400 || !strings.Contains(r.issue(t), c.want) {
			t.Errorf("%s, over the limit: %d %s", c.name, r.status, r.body)
		}
	}

	// Bundle entries.
	entries := func(n int) string {
		e := make([]string, n)
		for i := range e {
			e[i] = `{"request":{"method":"GET","url":"Patient/p1"}}`
		}
		return `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Join(e, ",") + `]}`
	}
	if r := do(t, ts, "POST", "/fhir", entries(10_001)); r.status != 400 || !strings.Contains(r.issue(t), "at most 10000 entries") {
		t.Errorf("10,001 entries: %d %.300s", r.status, r.body)
	}

	// OperationOutcome issues: the first 100 and a count of the rest.
	bad := `{"resourceType":"Patient","name":[` + strings.TrimSuffix(strings.Repeat(`{"family":1},`, 5000), ",") + `]}`
	r := do(t, ts, "POST", "/fhir/Patient", bad)
	issues, _ := r.json(t)["issue"].([]any)
	if r.status != 400 || len(issues) != fhir.MaxIssues+1 || !strings.Contains(fmt.Sprint(issues[fhir.MaxIssues]), "4900 more issues") {
		t.Errorf("5,000 faults: %d, %d issues", r.status, len(issues))
	}
}

// TestBatchResultsAreBounded: the searches of one bundle share a budget of
// resources; the entry that would exceed it fails alone in a batch.
func TestBatchResultsAreBounded(t *testing.T) {
	st := openStore(t)
	door := interact.New(st, interact.Config{MaxBundleResults: 5})
	ts := httptest.NewServer(server.New(server.Config{Open: true}, door, slog.New(slog.DiscardHandler)))
	t.Cleanup(ts.Close)
	for i := range 4 {
		do(t, ts, "PUT", fmt.Sprintf("/fhir/Patient/p%d", i), fmt.Sprintf(`{"resourceType":"Patient","id":"p%d"}`, i))
	}
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Patient?_count=3"}},
		{"request":{"method":"GET","url":"Patient?_count=3"}},
		{"request":{"method":"GET","url":"Patient?_count=3"}}]}`
	r := do(t, ts, "POST", "/fhir", batch)
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	var statuses []string
	for _, e := range entries(t, r.json(t)) {
		statuses = append(statuses, e["response"].(map[string]any)["status"].(string))
	}
	if strings.Join(statuses, ",") != "200 OK,400 Bad Request,400 Bad Request" {
		t.Errorf("statuses %v", statuses)
	}
}

// TestRequestTimeoutIs503: an interaction that outlasts the request
// timeout is stopped and answered 503, never left to run or half-answered.
func TestRequestTimeoutIs503(t *testing.T) {
	st := openStore(t)
	ts := httptest.NewServer(server.New(server.Config{Open: true, RequestTimeout: 1}, interact.New(st, interact.Config{}), slog.New(slog.DiscardHandler)))
	t.Cleanup(ts.Close)
	r := do(t, ts, "GET", "/fhir/Patient?name=x", "")
	if r.status != 503 || !strings.Contains(r.issue(t), "longer than the server allows") {
		t.Errorf("timed-out search: %d %s", r.status, r.body)
	}
	r = do(t, ts, "PUT", "/fhir/Patient/late", `{"resourceType":"Patient","id":"late"}`)
	if r.status != 503 {
		t.Errorf("timed-out write: %d %s", r.status, r.body)
	}
}

// TestBatchReadsCountTowardTheBudget: reads by id count as the searches
// do, so a small batch of many reads cannot return without bound.
func TestBatchReadsCountTowardTheBudget(t *testing.T) {
	st := openStore(t)
	ts := httptest.NewServer(server.New(server.Config{Open: true}, interact.New(st, interact.Config{MaxBundleResults: 2}), slog.New(slog.DiscardHandler)))
	t.Cleanup(ts.Close)
	do(t, ts, "PUT", "/fhir/Patient/p0", `{"resourceType":"Patient","id":"p0"}`)
	r := do(t, ts, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Patient/p0"}},{"request":{"method":"GET","url":"Patient/p0"}},{"request":{"method":"GET","url":"Patient/p0"}}]}`)
	var statuses []string
	for _, e := range entries(t, r.json(t)) {
		statuses = append(statuses, e["response"].(map[string]any)["status"].(string))
	}
	if strings.Join(statuses, ",") != "200 OK,200 OK,400 Bad Request" {
		t.Errorf("statuses %v", statuses)
	}
}
