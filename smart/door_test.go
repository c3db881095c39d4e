package smart_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The findings of the issue "One door to the data", each reproduced over
// real HTTP: every one of these answered differently before the door.

// Finding 1: open registration cannot create a backend client.
func TestOpenRegistrationGrantsNoMoreThanAPatient(t *testing.T) {
	e := newEnv(t)
	post := func(body, bearer string) (int, map[string]any, http.Header) {
		req, _ := http.NewRequest("POST", e.root+"/oauth2/register", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		return do(t, req)
	}
	for _, body := range []string{
		`{"redirect_uris":[],"grant_types":["client_credentials"],"scope":"system/*.cruds"}`,
		`{"redirect_uris":["https://app.example/cb"],"scope":"openid system/Patient.rs"}`,
		`{"redirect_uris":["https://app.example/cb"],"grant_types":["authorization_code","client_credentials"]}`,
		`{"redirect_uris":["https://app.example/cb"],"grant_types":["password"]}`,
	} {
		if status, resp, _ := post(body, ""); status != 400 || resp["error"] != "invalid_client_metadata" {
			t.Errorf("open registration of %s: %d %v", body, status, resp)
		}
	}
	// A user-facing app registers openly.
	if status, resp, _ := post(`{"redirect_uris":["https://app.example/cb"],"scope":"openid fhirUser launch/patient patient/*.rs offline_access","token_endpoint_auth_method":"none"}`, ""); status != 201 {
		t.Errorf("user-facing app: %d %v", status, resp)
	}
	// A backend client needs the operator's initial access token, once.
	iat, err := e.provider.IssueRegistrationToken(context.Background(), 3600e9)
	if err != nil {
		t.Fatal(err)
	}
	backend := `{"grant_types":["client_credentials"],"scope":"system/*.rs","token_endpoint_auth_method":"client_secret_basic"}`
	if status, resp, h := post(backend, "not-a-token"); status != 401 || resp["error"] != "invalid_token" || h.Get("WWW-Authenticate") == "" {
		t.Errorf("bogus initial access token: %d %v", status, resp)
	}
	status, resp, _ := post(backend, iat)
	if status != 201 {
		t.Fatalf("registration with an initial access token: %d %v", status, resp)
	}
	tokStatus, tok, _ := postForm(t, e.root+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}},
		resp["client_id"].(string), resp["client_secret"].(string))
	if tokStatus != 200 || tok["access_token"] == nil {
		t.Errorf("the registered backend's token: %d %v", tokStatus, tok)
	}
	if status, resp, _ := post(backend, iat); status != 401 {
		t.Errorf("an initial access token used twice: %d %v", status, resp)
	}
}

// Findings 2 and 3: chains, _has (nested) and _list see only what the
// token may see, so their answers do not tell whether another patient's
// data exists.
func TestSubqueriesAreNarrowedToTheToken(t *testing.T) {
	e := newEnv(t)
	alice := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs"), "alice", "")).AccessToken
	e.put("List", "kid1-list", `{"resourceType":"List","id":"kid1-list","status":"current","mode":"working","subject":{"reference":"Patient/kid1"},"entry":[{"item":{"reference":"Practitioner/dr"}}]}`)
	count := func(tok, path string) any {
		t.Helper()
		status, b, _ := e.fhir("GET", path, tok, "")
		if status != 200 {
			t.Fatalf("%s: %d %v", path, status, b)
		}
		return b["total"]
	}
	// Each pair: a query about kid1 (not alice's) and the same about a
	// patient who does not exist must answer alike.
	pairs := [][2]string{
		{"/Practitioner?_has:Encounter:practitioner:patient=kid1&_summary=count", "/Practitioner?_has:Encounter:practitioner:patient=nobody&_summary=count"},
		{"/Organization?_has:Patient:organization:name=kid1&_summary=count", "/Organization?_has:Patient:organization:name=nobody&_summary=count"},
		{"/Practitioner?_has:Encounter:practitioner:patient.name=kid1&_summary=count", "/Practitioner?_has:Encounter:practitioner:patient.name=nobody&_summary=count"},
		{"/Organization?_has:Patient:organization:_has:Condition:subject:_id=kid1-cond&_summary=count", "/Organization?_has:Patient:organization:_has:Condition:subject:_id=nobody&_summary=count"},
		{"/Practitioner?_has:Observation:performer:subject:Patient.name=kid1&_summary=count", "/Practitioner?_has:Observation:performer:subject:Patient.name=nobody&_summary=count"},
		{"/Practitioner?_list=kid1-list&_summary=count", "/Practitioner?_list=nobody&_summary=count"},
	}
	for _, p := range pairs {
		if a, b := count(alice, p[0]), count(alice, p[1]); a != b {
			t.Errorf("%s answers %v where a made-up patient answers %v", p[0], a, b)
		}
	}
	// alice's own data still answers.
	if got := count(alice, "/Practitioner?_has:Encounter:practitioner:patient=alice&_summary=count"); got != float64(1) {
		t.Errorf("alice's own _has: %v", got)
	}
	if got := count(alice, "/Organization?_has:Patient:organization:name=alice&_summary=count"); got != float64(1) {
		t.Errorf("alice's own chain through Patient: %v", got)
	}

	// Finding 3: a parent of a 12+ child, against the child's hidden records.
	const act = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	e.put("Condition", "kid1-hiv", `{"resourceType":"Condition","id":"kid1-hiv","meta":{"security":[{"system":"`+act+`","code":"HIV"}]},"subject":{"reference":"Patient/kid1"},"encounter":{"reference":"Encounter/kid1-senc"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"86406008"}]}}`)
	e.put("Encounter", "kid1-senc", `{"resourceType":"Encounter","id":"kid1-senc","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"V"}]},"status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/kid1"},"reasonCode":[{"text":"secret"}]}`)
	e.put("Observation", "kid1-obs-senc", strings.Replace(obs("kid1-obs-senc", "kid1", "laboratory", "1-1"), `"effectiveDateTime"`, `"encounter":{"reference":"Encounter/kid1-senc"},"effectiveDateTime"`, 1))
	e.put("MedicationRequest", "kid1-mr", `{"resourceType":"MedicationRequest","id":"kid1-mr","meta":{"security":[{"system":"`+act+`","code":"HIV"}]},"status":"active","intent":"order","subject":{"reference":"Patient/kid1"},"medicationReference":{"reference":"Medication/arv"}}`)
	e.put("Medication", "arv", `{"resourceType":"Medication","id":"arv","code":{"text":"antiretroviral"}}`)
	parent := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.cruds"), "parent", "kid1")).AccessToken
	pairs = [][2]string{
		{"/Patient?_id=kid1&_has:Condition:patient:code=http://snomed.info/sct|86406008&_summary=count", "/Patient?_id=kid1&_has:Condition:patient:code=http://snomed.info/sct|0000000&_summary=count"},
		{"/Patient?_id=kid1&_has:Condition:patient:_security=" + act + "|HIV&_summary=count", "/Patient?_id=kid1&_has:Condition:patient:_security=" + act + "|XXX&_summary=count"},
		{"/Observation?_id=kid1-obs-senc&encounter._security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|V&_summary=count", "/Observation?_id=kid1-obs-senc&encounter._security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|X&_summary=count"},
		{"/Observation?_id=kid1-obs-senc&encounter:Encounter.reason-code:text=secret&_summary=count", "/Observation?_id=kid1-obs-senc&encounter:Encounter.reason-code:text=nothing&_summary=count"},
	}
	for _, p := range pairs {
		if a, b := count(parent, p[0]), count(parent, p[1]); a != b {
			t.Errorf("parent of a teen: %s answers %v where a made-up value answers %v", p[0], a, b)
		}
	}
	status, body, _ := e.fhir("GET", "/Patient/kid1/$everything", parent, "")
	if status != 200 {
		t.Fatalf("$everything: %d", status)
	}
	for _, id := range ids(body) {
		if id == "Medication/arv" || id == "MedicationRequest/kid1-mr" || id == "Condition/kid1-hiv" || id == "Encounter/kid1-senc" {
			t.Errorf("$everything for the parent returned %s", id)
		}
	}
	if total := body["total"].(float64); int(total) != len(ids(body)) {
		t.Errorf("$everything total %v counts what it does not return (%d entries)", total, len(ids(body)))
	}
	// A conditional update naming a hidden record answers as for a made-up id.
	hiddenStatus, hb, _ := e.fhir("PUT", "/Condition?_id=kid1-hiv", parent, `{"resourceType":"Condition","id":"kid1-hiv","subject":{"reference":"Patient/kid1"},"code":{"text":"x"}}`)
	madeStatus, mb, _ := e.fhir("PUT", "/Condition?_id=made-up", parent, `{"resourceType":"Condition","id":"made-up","subject":{"reference":"Patient/kid1"},"code":{"text":"x"}}`)
	if hiddenStatus != madeStatus || hiddenStatus < 400 {
		t.Errorf("conditional update of a hidden record: %d %v; of a made-up id: %d %v", hiddenStatus, hb, madeStatus, mb)
	}
}

// Finding 4: a refresh token is not an access token.
func TestRefreshTokenIsNotAnAccessToken(t *testing.T) {
	e := newEnv(t)
	tok := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs", "offline_access"), "alice", ""))
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	if status, _, _ := e.fhir("GET", "/Patient/alice", tok.RefreshToken, ""); status != 401 {
		t.Errorf("the FHIR API accepted a refresh token: %d", status)
	}
	if status, _, _ := e.fhir("GET", "/Patient/alice", tok.AccessToken, ""); status != 200 {
		t.Errorf("the access token: %d", status)
	}
}

// Finding 5: a sorted search's page link serves only the policy that made
// it; another token replaying it learns nothing, not even the total.
func TestPageLinksAreBoundToTheirPolicy(t *testing.T) {
	e := newEnv(t)
	system := e.openToken()
	status, body, _ := e.fhir("GET", "/Observation?_sort=-date&_count=1", system, "")
	next := nextLink(body)
	if status != 200 || next == "" {
		t.Fatalf("first page: %d %v", status, body)
	}
	alice := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs"), "alice", "")).AccessToken
	status, body, _ = e.fhir("GET", strings.TrimPrefix(next, e.base), alice, "")
	if status != 400 || body["total"] != nil {
		t.Errorf("another token replaying a page link: %d %v", status, body)
	}
	// Its own token follows it.
	if status, _, _ := e.fhir("GET", strings.TrimPrefix(next, e.base), system, ""); status != 200 {
		t.Errorf("the link's own token: %d", status)
	}
}

// Finding 6: a patient writes only into their own record.
func TestPatientWritesOnlyIntoTheirOwnRecord(t *testing.T) {
	e := newEnv(t)
	alice := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.cruds"), "alice", "")).AccessToken
	for _, body := range []string{
		`{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/kid1"},"sender":{"reference":"Patient/alice"}}`,
		strings.Replace(obs("", "kid1", "vital-signs", "8867-4"), `"performer":[{"reference":"Practitioner/dr"}]`, `"performer":[{"reference":"Patient/alice"}]`, 1),
		strings.Replace(obs("", "alice", "vital-signs", "8867-4"), `"performer":[{"reference":"Practitioner/dr"}]`, `"performer":[{"reference":"Patient/kid1"}]`, 1),
	} {
		typ := strings.SplitN(strings.SplitN(body, `"resourceType":"`, 2)[1], `"`, 2)[0]
		if status, b, _ := e.fhir("POST", "/"+typ, alice, body); status != 403 {
			t.Errorf("alice writing %s: %d %v", body, status, b)
		}
	}
	if status, b, _ := e.fhir("POST", "/Communication", alice, `{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/alice"},"sender":{"reference":"Patient/alice"},"recipient":[{"reference":"Practitioner/dr"}]}`); status != 201 {
		t.Errorf("alice messaging about herself: %d %v", status, b)
	}
	// A patient token cannot pick ids: whether an id is taken by a record
	// it cannot see must not show.
	if status, b, _ := e.fhir("PUT", "/Observation/alice-new", alice, obs("alice-new", "alice", "vital-signs", "8867-4")); status != 403 {
		t.Errorf("update as create by a patient token: %d %v", status, b)
	}
	// Her record holds what her care team wrote, which she may not change
	// (the patient write rules), and what she wrote, which she may.
	if status, b, _ := e.fhir("PUT", "/Observation/alice-vital", alice, obs("alice-vital", "alice", "vital-signs", "8867-4")); status != 403 {
		t.Errorf("alice updating her care team's record: %d %v", status, b)
	}
	status, b, h := e.fhir("POST", "/Observation", alice, homeReading("alice", "8867-4"))
	if status != 201 {
		t.Fatalf("alice recording a reading: %d %v", status, b)
	}
	id := strings.Split(strings.SplitN(h.Get("Location"), "/Observation/", 2)[1], "/")[0]
	mine := strings.Replace(homeReading("alice", "8867-4"), `"resourceType":"Observation",`, `"resourceType":"Observation","id":"`+id+`",`, 1)
	if status, b, _ := e.fhir("PUT", "/Observation/"+id, alice, mine); status != 200 {
		t.Errorf("alice updating her own reading: %d %v", status, b)
	}
}

// Finding 7: RFC 6749 error codes of the token endpoint.
func TestTokenEndpointErrorCodes(t *testing.T) {
	e := newEnv(t)
	if status, body, _ := postForm(t, e.root+"/oauth2/token", url.Values{"grant_type": {"urn:example:nothing"}}, "", ""); status != 400 || body["error"] != "unsupported_grant_type" {
		t.Errorf("unknown grant type: %d %v", status, body)
	}
	status, body, h := postForm(t, e.root+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, "nobody", "wrong")
	if status != 401 || body["error"] != "invalid_client" || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("bad Basic client credentials: %d %v %q", status, body, h.Get("WWW-Authenticate"))
	}
}

// Related defects: a bundle POST is a create (history says POST, a
// create-only token may do it), and a store outage during the token check
// is a 503.
func TestBundlePostIsACreate(t *testing.T) {
	e := newEnv(t)
	at := e.backendAccess("system/Observation.c system/Observation.r", "system/Observation.c")
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + obs("", "alice", "laboratory", "1-8") + `,"request":{"method":"POST","url":"Observation"}}]}`
	status, body, _ := e.fhir("POST", "", at, bundle)
	if status != 200 {
		t.Fatalf("create-only token posting a transaction: %d %v", status, body)
	}
	loc := body["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["location"].(string)
	id := strings.Split(loc, "/")[1]
	status, hist, _ := e.fhir("GET", "/Observation/"+id+"/_history", e.openToken(), "")
	if status != 200 {
		t.Fatalf("history: %d", status)
	}
	req := hist["entry"].([]any)[0].(map[string]any)["request"].(map[string]any)
	if req["method"] != "POST" || req["url"] != "Observation" {
		t.Errorf("history of a bundle POST: %v", req)
	}
}

func TestStoreOutageDuringTokenCheckIs503(t *testing.T) {
	e := newEnv(t)
	tok := e.openToken()
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	status, body, h := e.fhir("GET", "/Patient/alice", tok, "")
	if status != 503 || h.Get("WWW-Authenticate") != "" {
		t.Errorf("token check with the store down: %d %v", status, body)
	}
}

func do(t *testing.T, req *http.Request) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, resp.Header
}

// A backend that may write a type but not read it can still update: it
// sees nothing, and may overwrite anything, so no existence is kept from it.
func TestWriteOnlyBackendUpdates(t *testing.T) {
	e := newEnv(t)
	at := e.backendAccess("system/Observation.cu", "system/Observation.cu")
	if status, body, _ := e.fhir("PUT", "/Observation/alice-lab", at, obs("alice-lab", "alice", "laboratory", "2345-7")); status != 200 {
		t.Errorf("write-only update: %d %v", status, body)
	}
	if status, body, _ := e.fhir("GET", "/Observation/alice-lab", at, ""); status != 403 {
		t.Errorf("write-only read: %d %v", status, body)
	}
}

// backendAccess registers a backend client that may ask for allowed and
// returns an access token for scope.
func (e *env) backendAccess(allowed, scope string) string {
	e.t.Helper()
	status, tok := e.backendToken(e.newBackend(allowed), scope)
	if status != 200 {
		e.t.Fatalf("token: %d %v", status, tok)
	}
	return tok["access_token"].(string)
}
