package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/server"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/mongo"
	"github.com/hearth-fhir/hearth/store/mongo/mongotest"
)

// fixedTokens maps bearer tokens to policies: the token check of a real
// server, without its OAuth flows.
type fixedTokens map[string]*access.Policy

func (f fixedTokens) Authenticate(_ context.Context, token string) (*access.Policy, error) {
	if p, ok := f[token]; ok {
		return p, nil
	}
	return nil, errors.New("unknown token")
}

// clock is a settable time for release delays.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// tokenServer serves Hearth over st with the door's cfg, its token check
// answering from tokens.
func tokenServer(t *testing.T, st store.Store, cfg interact.Config, tokens fixedTokens) (*httptest.Server, *interact.Door) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.Start()
	t.Cleanup(ts.Close)
	cfg.BaseURL = ts.URL + "/fhir"
	door := interact.New(st, cfg)
	ts.Config.Handler = server.New(server.Config{BaseURL: cfg.BaseURL, MaxBodyBytes: 16 << 20, Version: "test", Tokens: tokens}, door, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return ts, door
}

func withToken(token string, headers ...string) []string {
	return append([]string{"Authorization", "Bearer " + token}, headers...)
}

func ids(t *testing.T, r response) string {
	t.Helper()
	var out []string
	m := r.json(t)
	entries, _ := m["entry"].([]any)
	for _, e := range entries {
		res := e.(map[string]any)["resource"].(map[string]any)
		out = append(out, res["resourceType"].(string)+"/"+res["id"].(string))
	}
	return strings.Join(out, ",")
}

func TestMain(m *testing.M) {
	code := m.Run()
	mongotest.Stop()
	os.Exit(code)
}

// onEachBackend runs a test on a fresh SQLite store and a fresh MongoDB
// database (FerretDB).
func onEachBackend(t *testing.T, test func(t *testing.T, st store.Store)) {
	t.Run("sqlite", func(t *testing.T) { test(t, openStore(t)) })
	t.Run("mongo", func(t *testing.T) {
		st, err := mongo.Open(context.Background(), mongotest.URI(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		test(t, st)
	})
}

// Results are seen by the patient only once final and released: by a
// clinician's $release, or after their category's delay. On both backends.
func TestResultsReleasedAfterReview(t *testing.T) { onEachBackend(t, resultsReleased) }

func resultsReleased(t *testing.T, st store.Store) {
	clk := &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	tokens := fixedTokens{
		"staff": {Scopes: scopes.ParseSet("system/*.cruds"), ClientID: "lab-system"},
		"pat":   {Patient: "p1", Scopes: scopes.ParseSet("patient/*.cruds patient/*.rs"), ClientID: "app", Subject: "p1", FHIRUser: "Patient/p1"},
		"proxy": {Patient: "p1", Scopes: scopes.ParseSet("patient/*.rs"), ClientID: "app", Subject: "mum", FHIRUser: "RelatedPerson/mum"},
	}
	ts, door := tokenServer(t, st, interact.Config{ReleaseDelays: map[string]time.Duration{interact.ReleaseLaboratory: 72 * time.Hour}, Now: clk.Now}, tokens)

	staff := func(method, path, body string, headers ...string) response {
		return do(t, ts, method, path, body, withToken("staff", headers...)...)
	}
	patient := func(path string) response { return do(t, ts, "GET", path, "", withToken("pat")...) }
	lab := `{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"LAB"}]}`
	obsLab := `[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}]`
	put := func(typ, id, body string) {
		t.Helper()
		if r := staff("PUT", "/fhir/"+typ+"/"+id, body); r.status != 201 && r.status != 200 {
			t.Fatalf("PUT %s/%s: %d %s", typ, id, r.status, r.body)
		}
	}
	put("Patient", "p1", `{"resourceType":"Patient","id":"p1"}`)
	put("Observation", "glucose", `{"resourceType":"Observation","id":"glucose","status":"final","category":`+obsLab+`,"code":{"text":"glucose"},"subject":{"reference":"Patient/p1"}}`)
	put("DiagnosticReport", "panel", `{"resourceType":"DiagnosticReport","id":"panel","status":"preliminary","category":[`+lab+`],"code":{"text":"panel"},"subject":{"reference":"Patient/p1"},"result":[{"reference":"Observation/glucose"}]}`)
	put("DiagnosticReport", "xray", `{"resourceType":"DiagnosticReport","id":"xray","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"RAD"}]}],"code":{"text":"chest"},"subject":{"reference":"Patient/p1"}}`)
	put("Observation", "pulse", `{"resourceType":"Observation","id":"pulse","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"text":"pulse"},"subject":{"reference":"Patient/p1"}}`)

	// The preliminary panel is held, the final glucose waits 72 h; the
	// x-ray (imaging: no delay) and the vital sign (not a result) are seen.
	checks := func(stage string, want map[string]string) {
		t.Helper()
		for _, token := range []string{"pat", "proxy"} {
			for path, ids_ := range want {
				if got := ids(t, do(t, ts, "GET", path, "", withToken(token)...)); got != ids_ {
					t.Errorf("%s, %s token: %s gives %q, want %q", stage, token, path, got, ids_)
				}
			}
		}
	}
	checks("before release", map[string]string{
		"/fhir/DiagnosticReport?subject=Patient/p1&_sort=_id":                 "DiagnosticReport/xray",
		"/fhir/Observation?_sort=_id":                                         "Observation/pulse",
		"/fhir/Patient?_id=p1&_revinclude=DiagnosticReport:subject&_sort=_id": "Patient/p1,DiagnosticReport/xray",
		"/fhir/Observation?_has:DiagnosticReport:result:status=preliminary":   "",
		"/fhir/DiagnosticReport?result.code:text=glucose":                     "",
	})
	for _, path := range []string{"/fhir/DiagnosticReport/panel", "/fhir/Observation/glucose", "/fhir/DiagnosticReport/panel/_history/1"} {
		if r := patient(path); r.status != 404 {
			t.Errorf("before release: %s: %d, want 404", path, r.status)
		}
	}
	if r := patient("/fhir/Patient/p1/$everything"); strings.Contains(string(r.body), "glucose") || strings.Contains(string(r.body), `"panel"`) {
		t.Errorf("$everything shows an unreleased result: %s", r.body)
	}
	// Staff see everything, with the state.
	if r := staff("GET", "/fhir/DiagnosticReport/panel", ""); r.status != 200 || !strings.Contains(string(r.body), `"code":"held"`) {
		t.Errorf("staff read of the held panel: %d %s", r.status, r.body)
	}

	// $release: only final results, and never by the patient's token.
	if r := staff("POST", "/fhir/DiagnosticReport/panel/$release", ""); r.status != 422 {
		t.Errorf("$release of a preliminary report: %d %s", r.status, r.body)
	}
	put("DiagnosticReport", "panel", `{"resourceType":"DiagnosticReport","id":"panel","status":"final","category":[`+lab+`],"code":{"text":"panel"},"subject":{"reference":"Patient/p1"},"result":[{"reference":"Observation/glucose"}]}`)
	if r := patient("/fhir/DiagnosticReport/panel"); r.status != 404 {
		t.Errorf("final, within its delay: %d, want 404", r.status)
	}
	if r := do(t, ts, "POST", "/fhir/DiagnosticReport/panel/$release", "", withToken("pat")...); r.status != 403 {
		t.Errorf("$release by the patient: %d %s", r.status, r.body)
	}
	if r := staff("POST", "/fhir/DiagnosticReport/panel/$release", ""); r.status != 200 || !strings.Contains(string(r.body), `"code":"released"`) {
		t.Fatalf("$release: %d %s", r.status, r.body)
	}
	checks("after $release", map[string]string{
		"/fhir/DiagnosticReport?subject=Patient/p1&_sort=_id": "DiagnosticReport/panel,DiagnosticReport/xray",
		"/fhir/Observation?_sort=_id":                         "Observation/glucose,Observation/pulse",
	})
	// Its history shows the released version only: what came before was
	// never the patient's to see.
	if r := patient("/fhir/DiagnosticReport/panel/_history"); !strings.Contains(string(r.body), `"total":1`) {
		t.Errorf("history after release: %s", r.body)
	}
	// An amendment of a released result stays released.
	put("DiagnosticReport", "panel", `{"resourceType":"DiagnosticReport","id":"panel","status":"amended","category":[`+lab+`],"code":{"text":"panel, amended"},"subject":{"reference":"Patient/p1"},"result":[{"reference":"Observation/glucose"}]}`)
	if r := patient("/fhir/DiagnosticReport/panel"); r.status != 200 {
		t.Errorf("amended after release: %d", r.status)
	}

	// A delay that passes releases the result by itself.
	put("Observation", "a1c", `{"resourceType":"Observation","id":"a1c","status":"final","category":`+obsLab+`,"code":{"text":"A1c"},"subject":{"reference":"Patient/p1"}}`)
	if n, err := door.ReleaseDue(context.Background()); err != nil || n != 0 {
		t.Errorf("ReleaseDue before the delay: %d %v", n, err)
	}
	clk.advance(73 * time.Hour)
	if n, err := door.ReleaseDue(context.Background()); err != nil || n != 1 {
		t.Errorf("ReleaseDue after the delay: %d %v", n, err)
	}
	if r := patient("/fhir/Observation/a1c"); r.status != 200 {
		t.Errorf("after its delay: %d", r.status)
	}
}
