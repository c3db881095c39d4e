package smart_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hearth-fhir/hearth/smart"
)

var patientScopes = []string{"launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"}

func TestStandaloneLaunchAsPatient(t *testing.T) {
	e := newEnv(t)
	cfg := e.oauthConfig(appID, patientScopes...)
	l := e.authorize(newBrowser(t), cfg, "alice", "")
	tok := e.exchange(l)

	if tok.Extra("patient") != "alice" {
		t.Errorf("patient = %v", tok.Extra("patient"))
	}
	if s, _ := tok.Extra("scope").(string); !strings.Contains(s, "patient/*.rs") || !strings.Contains(s, "openid") || !strings.Contains(s, "launch/patient") {
		t.Errorf("scope = %q", s)
	}
	if tok.Expiry.IsZero() || tok.RefreshToken == "" {
		t.Errorf("expires_in or refresh_token missing: %+v", tok)
	}
	if nb, ok := tok.Extra("need_patient_banner").(bool); !ok || !nb {
		t.Errorf("need_patient_banner = %v", tok.Extra("need_patient_banner"))
	}
	if u, _ := tok.Extra("smart_style_url").(string); u == "" {
		t.Error("no smart_style_url")
	}

	// The id_token verifies as an app would verify it, with fhirUser.
	ctx := context.Background()
	op, err := oidc.NewProvider(ctx, e.base)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := op.Verifier(&oidc.Config{ClientID: appID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("id_token: %v", err)
	}
	var claims struct {
		FHIRUser string `json:"fhirUser"`
	}
	idt.Claims(&claims)
	if claims.FHIRUser != e.base+"/Patient/alice" || idt.Subject != "alice" {
		t.Errorf("fhirUser %q sub %q", claims.FHIRUser, idt.Subject)
	}

	status, body, _ := e.fhir("GET", "/Patient/alice", tok.AccessToken, "")
	if status != 200 || body["id"] != "alice" {
		t.Errorf("own record: %d", status)
	}
	if status, _, _ := e.fhir("GET", "/Patient/kid1", tok.AccessToken, ""); status != 404 {
		t.Errorf("another patient's record: %d, want 404", status)
	}
	// Directory data is shared.
	if status, _, _ := e.fhir("GET", "/Practitioner/dr", tok.AccessToken, ""); status != 200 {
		t.Errorf("Practitioner: %d", status)
	}
}

func TestTokenEndpointHeaders(t *testing.T) {
	e := newEnv(t)
	l := e.authorize(newBrowser(t), e.oauthConfig(appID, patientScopes...), "alice", "")
	status, body, h := postForm(t, e.root+"/oauth2/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {l.code}, "redirect_uri": {appRedirect},
		"client_id": {appID}, "code_verifier": {l.verifier}}, "", "")
	if status != 200 {
		t.Fatalf("token: %d %v", status, body)
	}
	if !strings.Contains(h.Get("Cache-Control"), "no-store") || !strings.Contains(h.Get("Pragma"), "no-cache") {
		t.Errorf("token response headers: %v", h)
	}
	if _, ok := body["expires_in"].(float64); !ok || body["token_type"] == nil || body["scope"] == nil {
		t.Errorf("token body: %v", body)
	}
	first, _ := body["access_token"].(string)
	// Replaying the code fails and revokes what it issued.
	status, body, _ = postForm(t, e.root+"/oauth2/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {l.code}, "redirect_uri": {appRedirect},
		"client_id": {appID}, "code_verifier": {l.verifier}}, "", "")
	if status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("code replay: %d %v", status, body)
	}
	if status, _, _ := e.fhir("GET", "/Patient/alice", first, ""); status != 401 {
		t.Errorf("token from a replayed code still works: %d", status)
	}
}

func unlink(e *env, user, patient string) error {
	return smart.Unlink(context.Background(), e.st, user, patient)
}

func TestProxyPicksPatient(t *testing.T) {
	e := newEnv(t)
	b := newBrowser(t)
	l := e.authorize(b, e.oauthConfig(appID, patientScopes...), "parent", "kid2")
	tok := e.exchange(l)
	if tok.Extra("patient") != "kid2" {
		t.Fatalf("patient = %v", tok.Extra("patient"))
	}
	rp := e.parentRP["kid2"]
	if status, body, _ := e.fhir("GET", "/RelatedPerson/"+rp, tok.AccessToken, ""); status != 200 || body["resourceType"] != "RelatedPerson" {
		t.Errorf("fhirUser RelatedPerson: %d", status)
	}
	// The other child's data stays out of reach of this token.
	if status, _, _ := e.fhir("GET", "/Patient/kid1", tok.AccessToken, ""); status != 404 {
		t.Errorf("kid1 with kid2's token: %d", status)
	}
	if status, _, _ := e.fhir("GET", "/RelatedPerson/"+e.parentRP["kid1"], tok.AccessToken, ""); status != 404 {
		t.Errorf("the link to kid1 with kid2's token: %d", status)
	}
	raw, _ := tok.Extra("id_token").(string)
	op, _ := oidc.NewProvider(context.Background(), e.base)
	idt, err := op.Verifier(&oidc.Config{ClientID: appID}).Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		FHIRUser string `json:"fhirUser"`
	}
	idt.Claims(&claims)
	if claims.FHIRUser != e.base+"/RelatedPerson/"+rp {
		t.Errorf("fhirUser = %q", claims.FHIRUser)
	}
	// Ending the link (here as another process would: in the store)
	// stops the outstanding token once the bearer check looks again.
	if err := unlink(e, "parent", "kid2"); err != nil {
		t.Fatal(err)
	}
	if status := e.statusOnceRechecked("/Patient/kid2", tok.AccessToken); status != 401 {
		t.Errorf("token after the proxy link ended: %d, want 401", status)
	}
}

func TestRefreshRotatesAndReuseRevokes(t *testing.T) {
	e := newEnv(t)
	cfg := e.oauthConfig(appID, patientScopes...)
	tok := e.exchange(e.authorize(newBrowser(t), cfg, "alice", ""))
	refresh := func(rt string, scope string) (int, map[string]any) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {appID}}
		if scope != "" {
			form.Set("scope", scope)
		}
		status, body, _ := postForm(t, e.root+"/oauth2/token", form, "", "")
		return status, body
	}
	status, body := refresh(tok.RefreshToken, "")
	if status != 200 || body["access_token"] == nil || body["refresh_token"] == nil || body["expires_in"] == nil || body["patient"] != "alice" {
		t.Fatalf("refresh: %d %v", status, body)
	}
	next := body["refresh_token"].(string)
	access := body["access_token"].(string)
	if status, _, _ := e.fhir("GET", "/Patient/alice", access, ""); status != 200 {
		t.Errorf("refreshed token: %d", status)
	}
	if status, body := refresh(next, "patient/*.rs openid"); status != 200 || body["scope"] != "patient/*.rs openid" {
		t.Errorf("narrowing refresh: %d %v", status, body)
	}
	if status, body := refresh(tok.RefreshToken, ""); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("reuse of a rotated refresh token: %d %v", status, body)
	}
	if status, _, _ := e.fhir("GET", "/Patient/alice", access, ""); status != 401 {
		t.Errorf("the family's access token survived refresh reuse: %d", status)
	}
	if status, body := refresh("not-a-token", ""); status != 400 && status != 401 {
		t.Errorf("bogus refresh token: %d %v", status, body)
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	e := newEnv(t)
	b := newBrowser(t)
	cfg := e.oauthConfig(appID, patientScopes...)
	verifier := oauth2.GenerateVerifier()
	good := func(opts ...oauth2.AuthCodeOption) string {
		return cfg.AuthCodeURL("state-12345", append([]oauth2.AuthCodeOption{oauth2.SetAuthURLParam("aud", e.base)}, opts...)...)
	}
	// No PKCE: redirected with invalid_request and the state.
	p := b.get(good())
	if u := e.redirected(p); u.Query().Get("error") != "invalid_request" || u.Query().Get("state") != "state-12345" || u.Query().Get("code") != "" {
		t.Errorf("without PKCE: %s", u)
	}
	// plain PKCE.
	p = b.get(good(oauth2.SetAuthURLParam("code_challenge", verifier), oauth2.SetAuthURLParam("code_challenge_method", "plain")))
	if u := e.redirected(p); u.Query().Get("error") != "invalid_request" {
		t.Errorf("plain PKCE: %s", u)
	}
	// Wrong aud: no code.
	p = b.get(cfg.AuthCodeURL("state-12345", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("aud", "https://inferno.healthit.gov/invalid_aud")))
	if u := e.redirected(p); u.Query().Get("error") == "" || u.Query().Get("code") != "" {
		t.Errorf("wrong aud: %s", u)
	}
	// Unregistered redirect URIs and unknown clients are never redirected to.
	for _, bad := range []*oauth2.Config{
		{ClientID: appID, Endpoint: cfg.Endpoint, RedirectURL: appRedirect + "/", Scopes: cfg.Scopes},
		{ClientID: appID, Endpoint: cfg.Endpoint, RedirectURL: "http://evil.example/cb", Scopes: cfg.Scopes},
		{ClientID: "nobody", Endpoint: cfg.Endpoint, RedirectURL: appRedirect, Scopes: cfg.Scopes},
	} {
		p := b.get(bad.AuthCodeURL("state-12345", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("aud", e.base)))
		if p.location != "" || p.status < 400 {
			t.Errorf("client %s redirect %s: %d Location %q", bad.ClientID, bad.RedirectURL, p.status, p.location)
		}
	}
	// Implicit grant is not offered.
	p = b.get(strings.Replace(good(oauth2.S256ChallengeOption(verifier)), "response_type=code", "response_type=token", 1))
	if u := e.redirected(p); u.Query().Get("error") != "unsupported_response_type" && !strings.Contains(u.Fragment, "unsupported_response_type") {
		t.Errorf("implicit: %s", u)
	}
}

func TestDenyAndUntick(t *testing.T) {
	e := newEnv(t)
	b := newBrowser(t)
	cfg := e.oauthConfig(appID, "launch/patient", "openid", "fhirUser", "patient/Patient.rs", "patient/Observation.rs")
	// Untick Observation: the grant omits it and the API answers 403.
	l := e.authorize(b, cfg, "alice", "", "patient/Observation.rs")
	tok := e.exchange(l)
	if s, _ := tok.Extra("scope").(string); strings.Contains(s, "Observation") {
		t.Errorf("unticked scope granted: %q", s)
	}
	status, body, h := e.fhir("GET", "/Observation?patient=alice", tok.AccessToken, "")
	if status != 403 || !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") || body["resourceType"] != "OperationOutcome" {
		t.Errorf("search of an ungranted type: %d %v", status, h)
	}
	// Deny: access_denied with the state, no code. The browser is signed in now.
	st := "deny-state-1"
	p := b.get(cfg.AuthCodeURL(st, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("aud", e.base)))
	p = b.submit(e.root+"/oauth2/interact", p, url.Values{"step": {"consent"}, "decision": {"deny"}})
	u := e.redirected(p)
	if u.Query().Get("error") != "access_denied" || u.Query().Get("state") != st || u.Query().Get("code") != "" {
		t.Errorf("deny: %s", u)
	}
}

func TestPKCEVerifierChecked(t *testing.T) {
	e := newEnv(t)
	b := newBrowser(t)
	cfg := e.oauthConfig(appID, patientScopes...)
	for name, verifier := range map[string]string{"missing": "", "wrong": oauth2.GenerateVerifier()} {
		l := e.authorize(b, cfg, "alice", "")
		form := url.Values{"grant_type": {"authorization_code"}, "code": {l.code}, "redirect_uri": {appRedirect}, "client_id": {appID}}
		if verifier != "" {
			form.Set("code_verifier", verifier)
		}
		if status, body, _ := postForm(t, e.root+"/oauth2/token", form, "", ""); status != 400 {
			t.Errorf("%s verifier: %d %v", name, status, body)
		}
	}
	// A different redirect_uri at the token endpoint.
	l := e.authorize(b, cfg, "alice", "")
	form := url.Values{"grant_type": {"authorization_code"}, "code": {l.code}, "redirect_uri": {appRedirect + "x"}, "client_id": {appID}, "code_verifier": {l.verifier}}
	if status, body, _ := postForm(t, e.root+"/oauth2/token", form, "", ""); status != 400 {
		t.Errorf("other redirect_uri: %d %v", status, body)
	}
	if status, body, _ := postForm(t, e.root+"/oauth2/token", url.Values{"grant_type": {"password"}, "client_id": {appID}}, "", ""); status != 400 || (body["error"] != "unsupported_grant_type" && body["error"] != "invalid_request") {
		t.Errorf("password grant: %d %v", status, body)
	}
}

func TestResourceServerTokenErrors(t *testing.T) {
	e := newEnv(t)
	status, _, h := e.fhir("GET", "/Patient/alice", "", "")
	if status != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d %q", status, h.Get("WWW-Authenticate"))
	}
	status, _, h = e.fhir("GET", "/Patient/alice", "made-up", "")
	if status != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("bad token: %d %q", status, h.Get("WWW-Authenticate"))
	}
	// metadata and discovery stay public.
	if status, _, _ := e.fhir("GET", "/metadata", "", ""); status != 200 {
		t.Errorf("metadata: %d", status)
	}
	req, _ := http.NewRequest("GET", e.base+"/.well-known/smart-configuration", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("smart-configuration with Accept text/html: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
