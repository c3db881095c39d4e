package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/store/mongo/mongotest"
)

// sharedBase is the base URL both processes are configured with, as two
// processes behind one load balancer would be: tokens name it as audience
// and issuer, whichever process issued them.
const sharedBase = "http://hearth.example/fhir"

// startAuthServer runs `hearth serve` with authorization on.
func startAuthServer(t *testing.T, args ...string) string {
	t.Helper()
	root, _ := startAuthServerCmd(t, args...)
	return root
}

// startAuthServerCmd is startAuthServer that also returns the process.
func startAuthServerCmd(t *testing.T, args ...string) (string, *exec.Cmd) {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(binary, append([]string{"serve", "--listen", addr, "--log-level", "warn"}, args...)...)
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	root := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(root + "/fhir/metadata"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return root, cmd
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server did not come up: %s", stderr.String())
	return "", nil
}

func runHearth(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("hearth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// call sends a FHIR or OAuth request with an optional bearer token.
func call(t *testing.T, method, u, token, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func backendToken(t *testing.T, root string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, root+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=system/*.cruds"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("ops", "ops-secret-ops-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(raw, &tok); tok.AccessToken == "" {
		t.Fatalf("client_credentials: %d %s", resp.StatusCode, raw)
	}
	return tok.AccessToken
}

var formFieldRe = regexp.MustCompile(`name="(pending|csrf)" value="([^"]*)"`)

// TestTwoServersOneMongo runs two Hearth processes on one database: a
// user signs in on one and consents on the other, a code issued by one is
// redeemed at the other, revocation at one takes effect at the other at
// once, and writers racing through both lose no write.
func TestTwoServersOneMongo(t *testing.T) {
	uri := mongotest.URI(t)
	runHearth(t, "client", "add", "--store", uri, "--id", "ops", "--secret", "ops-secret-ops-secret", "--backend")
	runHearth(t, "client", "add", "--store", uri, "--id", "app", "--public", "--redirect-uri", "http://app.localhost/cb")
	a := startAuthServer(t, "--store", uri, "--no-seed", "--base-url", sharedBase)
	b := startAuthServer(t, "--store", uri, "--no-seed", "--base-url", sharedBase)

	// A token from A works on B.
	ops := backendToken(t, a)
	status, body := call(t, http.MethodPut, b+"/fhir/Patient/p1", ops, "application/fhir+json", `{"resourceType":"Patient","id":"p1","name":[{"family":"Ray"}]}`)
	if status != http.StatusCreated {
		t.Fatalf("create through B with A's token: %d %v", status, body)
	}
	runHearth(t, "user", "add", "--store", uri, "--username", "ray", "--password", "ray-password-1", "--patient", "Patient/p1")

	// Authorization code flow split across the two processes.
	jar, _ := cookiejar.New(nil) // cookies are per host, not port: both servers see them
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := func(resp *http.Response) url.Values {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		v := url.Values{}
		for _, m := range formFieldRe.FindAllStringSubmatch(string(raw), -1) {
			v.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
		}
		if v.Get("pending") == "" {
			t.Fatalf("no form (%d): %.300s", resp.StatusCode, raw)
		}
		return v
	}
	post := func(u string, v url.Values) *http.Response {
		resp, err := browser.PostForm(u, v)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	verifier := "verifier-verifier-verifier-verifier-verifier-0123"
	q := url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {"http://app.localhost/cb"},
		"scope": {"launch/patient openid fhirUser patient/*.rs"}, "state": {"state-12345678"}, "aud": {sharedBase},
		"code_challenge": {s256(verifier)}, "code_challenge_method": {"S256"}}
	resp, err := browser.Get(a + "/oauth2/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	login := form(resp)
	login.Set("step", "login")
	login.Set("username", "ray")
	login.Set("password", "ray-password-1")
	consent := form(post(b+"/oauth2/interact", login)) // signed in on B
	consent.Set("step", "consent")
	consent.Set("decision", "allow")
	consent["scope"] = []string{"launch/patient", "openid", "fhirUser", "patient/*.rs"}
	resp = post(a+"/oauth2/interact", consent) // consented on A
	resp.Body.Close()
	redirect, _ := url.Parse(resp.Header.Get("Location"))
	code := redirect.Query().Get("code")
	if code == "" {
		t.Fatalf("no code: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = post(b+"/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"app"},
		"redirect_uri": {"http://app.localhost/cb"}, "code_verifier": {verifier}})
	var tok struct {
		AccessToken string `json:"access_token"`
		Patient     string `json:"patient"`
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if json.Unmarshal(raw, &tok); tok.AccessToken == "" || tok.Patient != "p1" {
		t.Fatalf("code from A redeemed at B: %d %s", resp.StatusCode, raw)
	}
	if status, body := call(t, http.MethodGet, a+"/fhir/Patient/p1", tok.AccessToken, "", ""); status != 200 {
		t.Fatalf("B's token on A: %d %v", status, body)
	}

	// Revocation on B is seen by A once A's bearer check looks at the
	// store again: within a second (the check reuses a policy that long).
	resp = post(b+"/oauth2/revoke", url.Values{"token": {tok.AccessToken}, "client_id": {"app"}})
	resp.Body.Close()
	time.Sleep(1100 * time.Millisecond)
	if status, _ := call(t, http.MethodGet, a+"/fhir/Patient/p1", tok.AccessToken, "", ""); status != http.StatusUnauthorized {
		t.Fatalf("revoked on B, still accepted on A: %d", status)
	}

	// Racing unconditional updates through both processes: every one lands.
	const writers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan string, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			root := []string{a, b}[w%2]
			for i := range each {
				body := fmt.Sprintf(`{"resourceType":"Patient","id":"p1","name":[{"family":"Ray","given":["w%d-%d"]}]}`, w, i)
				req, _ := http.NewRequest(http.MethodPut, root+"/fhir/Patient/p1", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+ops)
				req.Header.Set("Content-Type", "application/fhir+json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Sprintf("update %d-%d: %d", w, i, resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	status, hist := call(t, http.MethodGet, b+"/fhir/Patient/p1/_history?_count=1", ops, "", "")
	if status != 200 || hist["total"] != float64(1+writers*each) {
		t.Errorf("history of p1 after %d racing updates: %d total=%v, want %d", writers*each, status, hist["total"], 1+writers*each)
	}
	// Both processes wrote one trail, which hearth audit reads: every
	// update of p1 there (the PUT that created it too), and ray's sign-in
	// (on B) about p1.
	out, err := exec.Command(binary, "audit", "--store", uri, "--patient", "p1", "--subtype", "update", "--format", "ndjson").Output()
	if n := strings.Count(string(out), "\n"); err != nil || n != 1+writers*each {
		t.Errorf("hearth audit --store: %d updates of p1 (%v), want %d", n, err, 1+writers*each)
	}
	out, err = exec.Command(binary, "audit", "--store", uri, "--patient", "p1", "--subtype", "login").Output()
	if err != nil || !strings.Contains(string(out), "ray") {
		t.Errorf("hearth audit --store: ray's sign-in: %v %s", err, out)
	}
}

func TestMongoTransactionBundleRefusedWithoutReplicaSet(t *testing.T) {
	if os.Getenv("HEARTH_MONGO_URI") != "" {
		t.Skip("HEARTH_MONGO_URI may be a replica set")
	}
	uri := mongotest.URI(t)
	_, base := startServer(t, nil, "--store", uri) // MongoDB is never seeded unasked
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:0f3b7c9e-0000-4000-8000-000000000001","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:0f3b7c9e-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Observation"}}]}`
	status, body := request(t, http.MethodPost, base, bundle)
	if status != http.StatusBadRequest || !strings.Contains(body, "replica set") {
		t.Fatalf("transaction on FerretDB: %d %.400s", status, body)
	}
	if status, body := request(t, http.MethodGet, base+"/Patient?_summary=count", ""); !strings.Contains(body, `"total":0`) {
		t.Fatalf("an unseeded database after a refused transaction holds Patients: %d %.200s", status, body)
	}
	batch := strings.Replace(strings.Replace(bundle, `"transaction"`, `"batch"`, 1), `"reference":"urn:uuid:0f3b7c9e-0000-4000-8000-000000000001"`, `"display":"x"`, 1)
	if status, body := request(t, http.MethodPost, base, batch); status != 200 || strings.Count(body, `"201 Created"`) != 2 {
		t.Fatalf("batch on FerretDB: %d %.400s", status, body)
	}
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
