package smart_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/hearth-fhir/hearth/smart"
)

func TestGranularScopes(t *testing.T) {
	e := newEnv(t)
	lab := "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
	tok := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/Patient.rs", lab), "alice", "")).AccessToken
	status, body, _ := e.fhir("GET", "/Observation?patient=alice", tok, "")
	if got := ids(body); status != 200 || len(got) != 1 || got[0] != "Observation/alice-lab" {
		t.Errorf("search under a laboratory-only scope: %d %v", status, got)
	}
	if status, _, _ := e.fhir("GET", "/Observation/alice-lab", tok, ""); status != 200 {
		t.Errorf("read of a lab result: %d", status)
	}
	if status, _, _ := e.fhir("GET", "/Observation/alice-vital", tok, ""); status < 400 {
		t.Errorf("read of a vital sign under a lab scope: %d", status)
	}
	status, body, _ = e.fhir("GET", "/Patient/alice/$everything", tok, "")
	for _, id := range ids(body) {
		if id == "Observation/alice-vital" || id == "Condition/alice-cond" {
			t.Errorf("$everything returned %s outside the granted scopes", id)
		}
	}
}

func TestEHRLaunch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	launch, err := e.provider.CreateLaunch(ctx, appID, "kid1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.oauthConfig(appID, "launch", "openid", "fhirUser", "patient/*.rs")
	b := newBrowser(t)
	verifier := oauth2.GenerateVerifier()
	u := cfg.AuthCodeURL("ehr-state-1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("aud", e.base), oauth2.SetAuthURLParam("launch", launch))
	p := b.get(u)
	p = b.submit(e.root+"/oauth2/interact", p, url.Values{"step": {"login"}, "username": {"parent"}, "password": {password}})
	if strings.Contains(p.body, `name="patient"`) {
		t.Fatal("an EHR launch showed the patient picker")
	}
	var allowed []string
	for _, m := range scopeBoxRe.FindAllStringSubmatch(p.body, -1) {
		allowed = append(allowed, htmlUnescape(m[1]))
	}
	p = b.submit(e.root+"/oauth2/interact", p, url.Values{"step": {"consent"}, "decision": {"allow"}, "scope": allowed})
	code := e.redirected(p).Query().Get("code")
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("patient") != "kid1" || tok.Extra("need_patient_banner") != false {
		t.Errorf("patient %v need_patient_banner %v", tok.Extra("patient"), tok.Extra("need_patient_banner"))
	}
	// The launch value is single-use.
	p = b.get(cfg.AuthCodeURL("ehr-state-2", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("aud", e.base), oauth2.SetAuthURLParam("launch", launch)))
	if u := e.redirected(p); u.Query().Get("error") == "" || u.Query().Get("code") != "" {
		t.Errorf("launch reuse: %s", u)
	}
}

func TestBackendServices(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend("system/*.rs system/Observation.cruds")
	status, body := e.backendToken(b, "system/Patient.rs system/Observation.rs")
	if status != 200 || body["scope"] != "system/Patient.rs system/Observation.rs" || body["refresh_token"] != nil {
		t.Fatalf("backend token: %d %v", status, body)
	}
	tok := body["access_token"].(string)
	status, res, _ := e.fhir("GET", "/Observation", tok, "")
	if len(ids(res)) != 6 {
		t.Errorf("system token search: %d %v", status, ids(res))
	}
	if status, _, _ := e.fhir("GET", "/Condition", tok, ""); status != 403 {
		t.Errorf("ungranted type: %d", status)
	}
	// A user scope is not for a backend service.
	if status, body := e.backendToken(b, "patient/*.rs"); status != 400 || body["error"] != "invalid_scope" {
		t.Errorf("patient scope via client_credentials: %d %v", status, body)
	}
	tokenURL := e.root + "/oauth2/token"
	try := func(assertion string) int {
		status, _, _ := postForm(t, tokenURL, url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}, "", "")
		return status
	}
	a := b.assertion(t, tokenURL, 4*time.Minute, "replayed-jti")
	if s := try(a); s != 200 {
		t.Fatalf("first use: %d", s)
	}
	if s := try(a); s != 400 && s != 401 {
		t.Errorf("replayed jti: %d", s)
	}
	if s := try(b.assertion(t, tokenURL, 30*time.Minute, "far-exp")); s != 400 && s != 401 {
		t.Errorf("exp 30 minutes ahead: %d", s)
	}
	if s := try(b.assertion(t, "https://elsewhere.example/token", 4*time.Minute, "wrong-aud")); s != 400 && s != 401 {
		t.Errorf("wrong aud: %d", s)
	}
	if s := try(b.assertion(t, tokenURL, -time.Minute, "expired")); s != 400 && s != 401 {
		t.Errorf("expired assertion: %d", s)
	}
	other := e.newBackend("system/*.rs")
	other.id = b.id // signed with a key the client did not register
	if s := try(other.assertion(t, tokenURL, 4*time.Minute, "bad-key")); s != 400 && s != 401 {
		t.Errorf("wrong key: %d", s)
	}
}

func TestIntrospectionAndRevocation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.provider.AddClient(ctx, &smart.Client{ID: "conf", RedirectURIs: []string{appRedirect}}, "s3cret-s3cret"); err != nil {
		t.Fatal(err)
	}
	cfg := e.oauthConfig("conf", patientScopes...)
	cfg.ClientSecret = "s3cret-s3cret"
	cfg.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	tok := e.exchange(e.authorize(newBrowser(t), cfg, "parent", "kid1"))
	introspect := func(token string) (int, map[string]any) {
		status, body, _ := postForm(t, e.root+"/oauth2/introspect", url.Values{"token": {token}}, "conf", "s3cret-s3cret")
		return status, body
	}
	status, body := introspect(tok.AccessToken)
	if status != 200 || body["active"] != true || body["client_id"] != "conf" || body["patient"] != "kid1" ||
		body["scope"] != tok.Extra("scope") || body["sub"] != "parent" || !strings.HasSuffix(body["fhirUser"].(string), "/RelatedPerson/"+e.parentRP["kid1"]) {
		t.Errorf("introspection: %d %v", status, body)
	}
	if _, ok := body["exp"].(float64); !ok {
		t.Errorf("exp: %v", body["exp"])
	}
	if status, body := introspect("invalid_token_value"); status != 200 || body["active"] != false || len(body) != 1 {
		t.Errorf("introspection of a bad token: %d %v", status, body)
	}
	if status, _, _ := postForm(t, e.root+"/oauth2/introspect", url.Values{"token": {tok.AccessToken}}, "", ""); status != 401 {
		t.Errorf("introspection without authorization: %d", status)
	}
	// Wrong client id in Basic auth at the token endpoint.
	if status, _, _ := postForm(t, e.root+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, "BAD_CLIENT_ID", "s3cret-s3cret"); status != 400 && status != 401 {
		t.Errorf("bad client id: %d", status)
	}
	// Revoking the refresh token ends the grant's access tokens too.
	status, _, _ = postForm(t, e.root+"/oauth2/revoke", url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}}, "conf", "s3cret-s3cret")
	if status != 200 {
		t.Fatalf("revoke: %d", status)
	}
	if status, body := introspect(tok.AccessToken); status != 200 || body["active"] != false {
		t.Errorf("introspection after revocation: %v", body)
	}
	if status, _, _ := e.fhir("GET", "/Patient/kid1", tok.AccessToken, ""); status != 401 {
		t.Errorf("API after revocation: %d", status)
	}
	if status, _, _ := postForm(t, e.root+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, "conf", "s3cret-s3cret"); status != 400 && status != 401 {
		t.Errorf("refresh after revocation: %d", status)
	}
	// Revoking an unknown token is still 200.
	if status, _, _ := postForm(t, e.root+"/oauth2/revoke", url.Values{"token": {"nonsense"}}, "conf", "s3cret-s3cret"); status != 200 {
		t.Errorf("revoke unknown: %d", status)
	}
}

func TestDynamicRegistration(t *testing.T) {
	e := newEnv(t)
	reg := func(body string) (int, map[string]any) {
		resp, err := http.Post(e.root+"/oauth2/register", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	status, body := reg(`{"redirect_uris":["` + appRedirect + `"],"client_name":"My app","token_endpoint_auth_method":"none"}`)
	if status != 201 || body["client_id"] == nil || body["client_secret"] != nil {
		t.Fatalf("register public: %d %v", status, body)
	}
	tok := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(body["client_id"].(string), patientScopes...), "alice", ""))
	if tok.Extra("patient") != "alice" {
		t.Errorf("registered client's token: %v", tok.Extra("patient"))
	}
	status, body = reg(`{"redirect_uris":["https://app.example/cb"]}`)
	if status != 201 || body["client_secret"] == nil || body["token_endpoint_auth_method"] != "client_secret_basic" {
		t.Errorf("register confidential: %d %v", status, body)
	}
	for _, bad := range []string{`{"redirect_uris":["http://app.example/cb"]}`, `{"redirect_uris":["https://app.example/cb#frag"]}`, `not json`, `{"redirect_uris":["https://a.example/"],"response_types":["token"]}`} {
		if status, body := reg(bad); status != 400 || body["error"] == nil {
			t.Errorf("register %s: %d %v", bad, status, body)
		}
	}
}

func TestCSRFAndFraming(t *testing.T) {
	e := newEnv(t)
	b := newBrowser(t)
	cfg := e.oauthConfig(appID, patientScopes...)
	p := b.get(cfg.AuthCodeURL("csrf-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("aud", e.base)))
	if p.status != 200 || !strings.Contains(p.body, `name="username"`) {
		t.Fatalf("login page: %d", p.status)
	}
	// The same form posted from another browser (no CSRF cookie) is refused.
	other := newBrowser(t)
	if q := other.submit(e.root+"/oauth2/interact", p, url.Values{"step": {"login"}, "username": {"alice"}, "password": {password}}); q.status != 403 {
		t.Errorf("cross-site login post: %d", q.status)
	}
	resp, err := http.Get(cfg.AuthCodeURL("csrf-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("aud", e.base)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("CSP: %q", resp.Header.Get("Content-Security-Policy"))
	}
}

func TestPortalLaunch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	launchURI := "http://127.0.0.1:9/launch?app=1"
	if err := e.provider.AddClient(ctx, &smart.Client{ID: "portal-app", Public: true, RedirectURIs: []string{appRedirect}, LaunchURI: launchURI}, ""); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	p := b.get(e.root + "/oauth2/launch?client_id=portal-app")
	p = b.submit(e.root+"/oauth2/interact", p, url.Values{"step": {"login"}, "username": {"parent"}, "password": {password}})
	p = b.submit(e.root+"/oauth2/interact", p, url.Values{"step": {"pick"}, "patient": {"kid1"}})
	if p.status != http.StatusFound || !strings.HasPrefix(p.location, "http://127.0.0.1:9/launch?") {
		t.Fatalf("portal launch: %d %q %.200s", p.status, p.location, p.body)
	}
	lu, _ := url.Parse(p.location)
	if lu.Query().Get("iss") != e.base || lu.Query().Get("launch") == "" || lu.Query().Get("app") != "1" {
		t.Fatalf("launch URL %s", lu)
	}
	// The app then authorizes with the launch; the signed-in browser goes
	// straight to consent, for the launch patient.
	cfg := e.oauthConfig("portal-app", "launch", "openid", "fhirUser", "patient/*.rs")
	verifier := oauth2.GenerateVerifier()
	p = b.get(cfg.AuthCodeURL("portal-state", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("aud", lu.Query().Get("iss")), oauth2.SetAuthURLParam("launch", lu.Query().Get("launch"))))
	if !strings.Contains(p.body, `value="consent"`) {
		t.Fatalf("expected consent: %d %.300s", p.status, p.body)
	}
	var allowed []string
	for _, m := range scopeBoxRe.FindAllStringSubmatch(p.body, -1) {
		allowed = append(allowed, htmlUnescape(m[1]))
	}
	p = b.submit(e.root+"/oauth2/interact", p, url.Values{"step": {"consent"}, "decision": {"allow"}, "scope": allowed})
	tok, err := cfg.Exchange(ctx, e.redirected(p).Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("patient") != "kid1" || tok.Extra("need_patient_banner") != false {
		t.Errorf("patient %v banner %v", tok.Extra("patient"), tok.Extra("need_patient_banner"))
	}
	if p := b.get(e.root + "/oauth2/launch?client_id=" + appID); p.status != 400 {
		t.Errorf("launch of an app without a launch URL: %d", p.status)
	}
}

func TestStyleAndJWKS(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/oauth2/style.json", "/oauth2/jwks"} {
		resp, err := http.Get(e.root + path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		err = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil || len(m) == 0 {
			t.Errorf("%s: %d %v", path, resp.StatusCode, err)
		}
	}
}

func TestOnlineAccessEndsWithSignIn(t *testing.T) {
	e := newEnv(t)
	b := newBrowser(t)
	tok := e.exchange(e.authorize(b, e.oauthConfig(appID, "launch/patient", "online_access", "patient/*.rs"), "alice", ""))
	refresh := func(rt string) (int, map[string]any) {
		status, body, _ := postForm(t, e.root+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {appID}}, "", "")
		return status, body
	}
	status, body := refresh(tok.RefreshToken)
	if status != 200 {
		t.Fatalf("online refresh while signed in: %d %v", status, body)
	}
	req, _ := http.NewRequest(http.MethodPost, e.root+"/oauth2/logout", nil)
	if p := b.do(req); p.status != 200 {
		t.Fatalf("logout: %d", p.status)
	}
	if status, body := refresh(body["refresh_token"].(string)); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("online refresh after sign-out: %d %v", status, body)
	}
}
