package smart_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/store/mongo"
	"github.com/hearth-fhir/hearth/store/mongo/mongotest"
)

// auditEvents are the AuditEvents a search answers, as decoded maps.
func auditEvents(t *testing.T, b map[string]any) []map[string]any {
	t.Helper()
	var out []map[string]any
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		res, _ := e.(map[string]any)["resource"].(map[string]any)
		if res["resourceType"] == "AuditEvent" {
			out = append(out, res)
		}
	}
	return out
}

// eventFacts reads what a test checks of an AuditEvent: its subtype, the
// references of its agents and entities, and its query.
func eventFacts(ev map[string]any) (subtype string, agents, entities []string, query string) {
	if st, ok := ev["subtype"].([]any); ok && len(st) > 0 {
		subtype, _ = st[0].(map[string]any)["code"].(string)
	}
	for _, a := range ev["agent"].([]any) {
		if who, ok := a.(map[string]any)["who"].(map[string]any); ok {
			if ref, ok := who["reference"].(string); ok {
				agents = append(agents, ref)
			}
		}
	}
	for _, en := range ev["entity"].([]any) {
		m := en.(map[string]any)
		if what, ok := m["what"].(map[string]any); ok {
			if ref, ok := what["reference"].(string); ok {
				entities = append(entities, ref)
			}
		}
		if q, ok := m["query"].(string); ok {
			raw, _ := base64.StdEncoding.DecodeString(q)
			query = string(raw)
		}
	}
	return
}

// TestAuditTrail: each interaction through the door leaves exactly one
// AuditEvent naming who (user, app, proxy), what and whose data; a
// patient reads the events about their own record, a proxy's accesses
// included, while the proxy sees none; a backend service with
// system/AuditEvent.rs sees all; nobody writes one.
func TestAuditTrail(t *testing.T) {
	testAuditViews(t, newEnv(t))
}

// TestAuditTrailOnMongo: the same views on the MongoDB backend (FerretDB).
func TestAuditTrailOnMongo(t *testing.T) {
	st, err := mongo.Open(context.Background(), mongotest.URI(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	testAuditViews(t, newEnvOn(t, st))
}

func testAuditViews(t *testing.T, e *env) {
	ctx := context.Background()
	if _, err := smart.NewAccounts(e.st).AddUser(ctx, "kid1", password, "kid1"); err != nil {
		t.Fatal(err)
	}
	alice := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs"), "alice", "")).AccessToken
	parent := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs"), "parent", "kid1")).AccessToken
	kid := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs"), "kid1", "")).AccessToken
	b := e.newBackend("system/*.rs")
	status, body := e.backendToken(b, "system/*.rs")
	if status != 200 {
		t.Fatalf("backend token: %d %v", status, body)
	}
	backend := body["access_token"].(string)

	proxy := "RelatedPerson/" + e.parentRP["kid1"]

	// The interactions.
	if s, _, _ := e.fhir("GET", "/Patient/alice", alice, ""); s != 200 {
		t.Fatalf("alice reads herself: %d", s)
	}
	if s, _, _ := e.fhir("GET", "/Observation?category=laboratory", alice, ""); s != 200 {
		t.Fatalf("alice searches: %d", s)
	}
	if s, _, _ := e.fhir("GET", "/Observation/kid1-lab", parent, ""); s != 200 {
		t.Fatalf("the parent reads kid1's lab: %d", s)
	}
	if s, _, _ := e.fhir("GET", "/Observation/alice-lab", parent, ""); s != 404 {
		t.Fatalf("the parent reads alice's lab: %d", s)
	}
	if s, _, _ := e.fhir("GET", "/Patient?name=Doe", backend, ""); s != 200 {
		t.Fatalf("the backend searches: %d", s)
	}

	// What the backend service sees: everything.
	search := func(token, query string) []map[string]any {
		t.Helper()
		s, b, _ := e.fhir("GET", "/AuditEvent?"+query, token, "")
		if s != 200 {
			t.Fatalf("AuditEvent?%s: %d %v", query, s, b)
		}
		return auditEvents(t, b)
	}
	one := func(name string, events []map[string]any, match func(subtype string, agents, entities []string, query string) bool) map[string]any {
		t.Helper()
		var found []map[string]any
		for _, ev := range events {
			if match(eventFacts(ev)) {
				found = append(found, ev)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s: %d matching AuditEvents, want exactly 1", name, len(found))
			return nil
		}
		return found[0]
	}
	all := search(backend, "_count=1000")
	one("alice's read", all, func(st string, ag, en []string, _ string) bool {
		return st == "read" && slices.Contains(ag, "Patient/alice") && slices.Contains(en, "Patient/alice") && slices.Contains(ag, "Device/"+appID)
	})
	one("alice's search", all, func(st string, ag, en []string, q string) bool {
		return st == "search-type" && slices.Contains(ag, "Patient/alice") && q == "Observation?category=*" && slices.Contains(en, "Patient/alice")
	})
	one("the parent's read", all, func(st string, ag, en []string, _ string) bool {
		return st == "read" && slices.Contains(ag, proxy) && slices.Contains(en, "Observation/kid1-lab") && slices.Contains(en, "Patient/kid1")
	})
	refused := one("the parent's refused read", all, func(st string, ag, en []string, _ string) bool {
		return st == "read" && slices.Contains(ag, proxy) && slices.Contains(en, "Observation/alice-lab")
	})
	if refused != nil && refused["outcome"] != "4" {
		t.Errorf("a refused read's outcome: %v", refused["outcome"])
	}
	// A search over three patients' data names each of them.
	if ev := one("the backend's search", all, func(st string, ag, _ []string, q string) bool {
		return st == "search-type" && slices.Contains(ag, "Device/"+b.id) && q == "Patient?name=*"
	}); ev != nil {
		_, _, entities, _ := eventFacts(ev)
		for _, p := range []string{"Patient/alice", "Patient/kid1", "Patient/kid2"} {
			if !slices.Contains(entities, p) {
				t.Errorf("the backend's search names %v, not %s", entities, p)
			}
		}
		if strings.Contains(ev["entity"].([]any)[len(ev["entity"].([]any))-1].(map[string]any)["what"].(map[string]any)["identifier"].(map[string]any)["value"].(string), "Doe") {
			t.Errorf("the request id entity holds a searched value")
		}
	}
	if got := search(backend, "patient=kid1&subtype=read&agent="+proxy); len(got) != 1 {
		t.Errorf("the backend's view of the proxy's reads about kid1: %d events, want 1", len(got))
	}

	// kid1 sees who looked at her record, the parent included.
	mine := search(kid, "_count=100")
	one("kid1 sees the parent's read", mine, func(st string, ag, en []string, _ string) bool {
		return st == "read" && slices.Contains(ag, proxy) && slices.Contains(en, "Observation/kid1-lab")
	})
	for _, ev := range mine {
		if _, _, entities, _ := eventFacts(ev); !slices.Contains(entities, "Patient/kid1") {
			t.Errorf("kid1 sees an event not about her: %v", entities)
		}
	}
	// Asking for another patient's events finds none.
	if got := search(kid, "patient=alice"); len(got) != 0 {
		t.Errorf("kid1 sees %d events about alice", len(got))
	}
	// The proxy sees none.
	if s, _, _ := e.fhir("GET", "/AuditEvent", parent, ""); s != http.StatusForbidden {
		t.Errorf("the parent's AuditEvent search: %d, want 403", s)
	}
	// Nobody writes one.
	for _, tok := range []string{alice, backend} {
		if s, _, _ := e.fhir("POST", "/AuditEvent", tok, `{"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2020-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}`); s < 400 || s >= 500 {
			t.Errorf("an AuditEvent write answered %d", s)
		}
	}
	// One read of an AuditEvent by id, in the patient's view.
	if len(mine) > 0 {
		id := mine[0]["id"].(string)
		if s, _, _ := e.fhir("GET", "/AuditEvent/"+id, kid, ""); s != 200 {
			t.Errorf("kid1 reads her AuditEvent: %d", s)
		}
		if s, _, _ := e.fhir("GET", "/AuditEvent/"+id, alice, ""); s != 404 {
			t.Errorf("alice reads kid1's AuditEvent: %d, want 404", s)
		}
	}
}

// TestAuditTrailRecordsEveryInteraction: vread, history, create, update,
// patch, delete, each entry of a batch and of a transaction, $everything,
// and the security events — sign-in (success and failure), lockout,
// consent, token issued, refreshed, refused and revoked, registration,
// a request refused at the token check — each leave exactly one
// AuditEvent, found by a backend service.
func TestAuditTrailRecordsEveryInteraction(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend("system/*.cruds")
	status, body := e.backendToken(b, "system/*.cruds")
	if status != 200 {
		t.Fatalf("backend token: %d %v", status, body)
	}
	backend := body["access_token"].(string)
	do := func(method, path, body string, want int) map[string]any {
		t.Helper()
		s, b, _ := e.fhir(method, path, backend, body)
		if s != want {
			t.Fatalf("%s %s: %d, want %d: %v", method, path, s, want, b)
		}
		return b
	}
	do("GET", "/Observation/alice-lab/_history/1", "", 200)
	do("GET", "/Condition/alice-cond/_history", "", 200)
	created := do("POST", "/Observation", obs("", "kid2", "laboratory", "718-7"), 201)
	id := created["id"].(string)
	do("PUT", "/Observation/"+id, obs(id, "kid2", "laboratory", "718-8"), 200)
	if s, b := e.fhirPatch("/Observation/"+id, backend, `[{"op":"replace","path":"/status","value":"amended"}]`); s != 200 {
		t.Fatalf("patch: %d %v", s, b)
	}
	do("DELETE", "/Observation/"+id, "", 200)
	do("POST", "", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Encounter/kid2-enc"}},{"request":{"method":"GET","url":"Condition?subject=Patient/kid2"}}]}`, 200)
	tx := do("POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:0b3c7f5e-7a4e-4f7e-9c59-3a3f1c1d2e01","resource":`+obs("", "kid2", "vital-signs", "9279-1")+`,"request":{"method":"POST","url":"Observation"}}]}`, 200)
	txLoc := tx["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["location"].(string)
	txID := strings.Split(txLoc, "/")[1]
	do("GET", "/Patient/kid2/$everything", "", 200)
	// Refused before the door: a body that does not parse, an unknown type.
	do("PUT", "/Observation/kid2-vital", `{"resourceType":"Observation",`, 400)
	do("GET", "/Nonsense/x1", "", 404)
	do("GET", "/Observation/no-such-thing", "", 404) // the door's own refusal: recorded once

	// Security events: alice signs in, consents and gets a token, which
	// is refreshed, then revoked; a wrong password; a lockout; a bad
	// token at the API; an app registers; a token request is refused.
	l := e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs", "offline_access"), "alice", "")
	tok := e.exchange(l)
	refreshed, err := l.cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil || refreshed.AccessToken == "" {
		t.Fatalf("refresh: %v", err)
	}
	// alice sees her own sign-in (the type of sign-ins, DICOM 110114).
	_, mine, _ := e.fhir("GET", "/AuditEvent?type=110114", refreshed.AccessToken, "")
	if n := len(auditEvents(t, mine)); n != 1 {
		t.Errorf("alice sees %d sign-ins of hers, want 1: %v", n, mine)
	}
	form := url.Values{"token": {refreshed.RefreshToken}, "client_id": {appID}}
	if resp, err := http.PostForm(e.root+"/oauth2/revoke", form); err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for range 6 { // the fifth pauses sign-in; the sixth comes during the pause
		e.failLogin("parent", "not the password")
	}
	if s, _, _ := e.fhir("GET", "/Patient/alice", "not-a-token", ""); s != 401 {
		t.Fatalf("a bad token: %d", s)
	}
	if resp, err := http.Post(e.root+"/oauth2/register", "application/json", strings.NewReader(`{"redirect_uris":["https://registered.example/cb"],"client_name":"Registered"}`)); err != nil || resp.StatusCode != 201 {
		t.Fatalf("register: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.PostForm(e.root+"/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {"forged"}, "client_id": {appID}, "redirect_uri": {appRedirect}}); err != nil || resp.StatusCode != 400 {
		t.Fatalf("a forged code: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	_, all, _ := e.fhir("GET", "/AuditEvent?_count=1000", backend, "")
	events := auditEvents(t, all)
	count := func(name string, match func(ev map[string]any, subtype string, agents, entities []string) bool) {
		t.Helper()
		n := 0
		for _, ev := range events {
			st, ag, en, _ := eventFacts(ev)
			if match(ev, st, ag, en) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d AuditEvents, want exactly 1", name, n)
		}
	}
	by := func(subtype, entity string) func(map[string]any, string, []string, []string) bool {
		return func(_ map[string]any, st string, _, en []string) bool {
			// A write names the version it made.
			return st == subtype && slices.ContainsFunc(en, func(r string) bool { return r == entity || strings.HasPrefix(r, entity+"/_history/") })
		}
	}
	outcome := func(subtype, want, user string) func(map[string]any, string, []string, []string) bool {
		return func(ev map[string]any, st string, _, _ []string) bool {
			return st == subtype && ev["outcome"] == want && (user == "" || strings.Contains(fmtJSON(ev), `"altId":"`+user+`"`) || strings.Contains(fmtJSON(ev), `"value":"`+user+`"`))
		}
	}
	count("vread", by("vread", "Observation/alice-lab/_history/1"))
	count("history", by("history-instance", "Condition/alice-cond"))
	count("create", by("create", "Observation/"+id))
	count("update", by("update", "Observation/"+id))
	count("patch", by("patch", "Observation/"+id))
	count("delete", by("delete", "Observation/"+id))
	count("batch read entry", by("read", "Encounter/kid2-enc"))
	count("batch search entry", func(ev map[string]any, st string, _, en []string) bool {
		return st == "search-type" && strings.Contains(fmtJSON(ev), base64.StdEncoding.EncodeToString([]byte("Condition?subject=*")))
	})
	count("transaction entry", by("create", "Observation/"+txID))
	count("$everything", by("operation", "Patient/kid2"))
	count("an update whose body does not parse", func(ev map[string]any, st string, _, en []string) bool {
		return st == "update" && ev["outcome"] == "4" && slices.Contains(en, "Observation/kid2-vital")
	})
	count("a read of an unknown type", func(ev map[string]any, st string, _, en []string) bool {
		return st == "read" && ev["outcome"] == "4" && len(en) == 0
	})
	count("a read of nothing", by("read", "Observation/no-such-thing"))
	count("sign-in", outcome("login", "0", "alice"))
	count("lockout", outcome("lockout", "0", "parent"))
	count("consent", outcome("consent", "0", "alice"))
	count("token issued to alice", outcome("token-issued", "0", "alice"))
	count("token refreshed", outcome("token-refreshed", "0", "alice"))
	count("token revoked", outcome("token-revoked", "0", ""))
	count("token refused", outcome("token-issued", "4", ""))
	count("registration", outcome("registration", "0", ""))
	count("refused at the token check", outcome("access-refused", "4", ""))
	fails, paused := 0, 0
	for _, ev := range events {
		if st, _, _, _ := eventFacts(ev); st == "login" && ev["outcome"] == "4" {
			fails++
			if desc, _ := ev["outcomeDesc"].(string); strings.HasPrefix(desc, "sign-in paused until ") {
				paused++
			}
		}
	}
	// Five wrong passwords, the fifth pausing sign-in, then one refused
	// during the pause.
	if fails != 6 || paused != 2 {
		t.Errorf("failed sign-ins recorded: %d (%d paused), want 6 (2 paused)", fails, paused)
	}
}

func fmtJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// failLogin tries to sign in with a wrong password.
func (e *env) failLogin(user, pw string) {
	e.t.Helper()
	b := newBrowser(e.t)
	cfg := e.oauthConfig(appID, "launch/patient", "patient/*.rs")
	p := b.get(cfg.AuthCodeURL("st-"+rand.Text(), oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("aud", e.base)))
	p = b.submit(e.root+"/oauth2/interact", p, url.Values{"step": {"login"}, "username": {user}, "password": {pw}})
	if p.status != http.StatusUnauthorized && p.status != http.StatusTooManyRequests {
		e.t.Fatalf("a wrong password answered %d", p.status)
	}
}

// fhirPatch sends a JSON Patch.
func (e *env) fhirPatch(path, token, patch string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPatch, e.base+path, strings.NewReader(patch))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json-patch+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestMain(m *testing.M) {
	code := m.Run()
	mongotest.Stop()
	os.Exit(code)
}
