package smart_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"time"

	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"

	"golang.org/x/oauth2"

	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/server"
	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/smart/mail"
	"github.com/hearth-fhir/hearth/smart/mail/mailtest"
	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/sqlite"
)

// passwords are the test users' own passwords, where not password.
var passwords = map[string]string{"newbie": "lantern-orchid-fjord", "helper": "saffron-glacier-pond"}

// env is a running Hearth with authorization on, over a real SQLite file:
// three patients (alice; kid1 and kid2, whose parent is a proxy), their
// observations, a practitioner, and a public app.
type env struct {
	t        *testing.T
	base     string // FHIR base
	root     string
	st       store.Store
	provider *smart.Provider
	records  *interact.Session // unrestricted: the test's own setup
	parentRP map[string]string // patient → RelatedPerson id of the parent's link
	mail     *mailtest.Server  // receives the account e-mails
	// exports serves $export; its jobs run once the test calls
	// runExports, so that a test may see them waiting.
	exports *interact.Exports
}

const (
	appID       = "app"
	appRedirect = "http://127.0.0.1:9/callback"
	password    = "correct horse battery"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newEnvOn(t, st)
}

// newEnvOn is the environment over a store of the test's choosing; opts
// change the authorization server's configuration.
func newEnvOn(t *testing.T, st store.Store, opts ...func(*smart.Config)) *env {
	return newEnvAt(t, st, "127.0.0.1", opts...)
}

// newEnvAt is the environment served under a host name of the test's
// choosing (on the loopback address): passkeys need a name, not an IP.
func newEnvAt(t *testing.T, st store.Store, host string, opts ...func(*smart.Config)) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	root := "http://" + host + ":" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	e := &env{t: t, base: root + "/fhir", root: root, st: st, parentRP: map[string]string{}}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	// Sync: a test that searches the trail finds what it just did.
	trail := audit.New(st, audit.Options{Mode: audit.Sync})
	t.Cleanup(trail.Close)
	door := interact.New(st, interact.Config{BaseURL: e.base, Audit: trail})
	e.records = door.Unrestricted(audit.Agent{})
	e.mail = mailtest.Start(t)
	sender, err := mail.NewSMTP(e.mail.URL, "Hearth <noreply@hearth.test>")
	if err != nil {
		t.Fatal(err)
	}
	cfg := smart.Config{FHIRBase: e.base, Audit: trail, Mail: sender}
	for _, o := range opts {
		o(&cfg)
	}
	e.provider, err = smart.New(ctx, cfg, st, e.records, log)
	if err != nil {
		t.Fatal(err)
	}
	// Files of two resources, so that a type spans several.
	e.exports = interact.NewExports(door, st, st, interact.ExportConfig{PartSize: 2, Poll: 100 * time.Millisecond, Lease: 2 * time.Second})
	ts := httptest.NewUnstartedServer(server.New(server.Config{BaseURL: e.base, Auth: e.provider, Audit: trail, Exports: e.exports}, door, log))
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)

	e.put("Practitioner", "dr", `{"resourceType":"Practitioner","id":"dr","name":[{"family":"House"}]}`)
	e.put("Organization", "org", `{"resourceType":"Organization","id":"org","name":"General"}`)
	for _, p := range []string{"alice", "kid1", "kid2"} {
		e.put("Patient", p, fmt.Sprintf(`{"resourceType":"Patient","id":%q,"name":[{"family":"Doe","given":[%q]}],"gender":"female","birthDate":"2010-01-01","managingOrganization":{"reference":"Organization/org"}}`, p, p))
		e.put("Observation", p+"-lab", obs(p+"-lab", p, "laboratory", "2345-7"))
		e.put("Observation", p+"-vital", obs(p+"-vital", p, "vital-signs", "8867-4"))
		e.put("Condition", p+"-cond", fmt.Sprintf(`{"resourceType":"Condition","id":"%s-cond","subject":{"reference":"Patient/%s"},"code":{"text":"flu"}}`, p, p))
		e.put("Encounter", p+"-enc", fmt.Sprintf(`{"resourceType":"Encounter","id":"%s-enc","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/%s"},"participant":[{"individual":{"reference":"Practitioner/dr"}}]}`, p, p))
	}
	acc := smart.NewAccounts(st)
	if _, err := acc.AddUser(ctx, "alice", password, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.AddUser(ctx, "parent", password, ""); err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{"kid1", "kid2"} {
		l, err := smart.LinkProxy(ctx, st, e.records, "parent", kid, "PRN")
		if err != nil {
			t.Fatal(err)
		}
		e.parentRP[kid] = l.RelatedPerson
	}
	if err := e.provider.AddClient(ctx, &smart.Client{ID: appID, Name: "Test app", Public: true, RedirectURIs: []string{appRedirect}}, ""); err != nil {
		t.Fatal(err)
	}
	return e
}

func obs(id, patient, category, code string) string {
	idField := ""
	if id != "" {
		idField = fmt.Sprintf(`"id":%q,`, id)
	}
	return fmt.Sprintf(`{"resourceType":"Observation",%s"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":%q}]}],"code":{"coding":[{"system":"http://loinc.org","code":%q}]},"subject":{"reference":"Patient/%s"},"performer":[{"reference":"Practitioner/dr"}],"effectiveDateTime":"2024-01-01"}`, idField, category, code, patient)
}

// homeReading is an Observation a patient records: a vital sign they
// performed themselves, as the patient write rules require.
func homeReading(patient, code string) string {
	return fmt.Sprintf(`{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":%q}]},"subject":{"reference":"Patient/%s"},"performer":[{"reference":"Patient/%s"}],"effectiveDateTime":"2024-01-01","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`, code, patient, patient)
}

func (e *env) put(typ, id, body string) {
	e.t.Helper()
	err := e.st.Transact(context.Background(), func(tx store.Tx) error {
		_, _, err := tx.Update(context.Background(), store.Write{Type: typ, ID: id, Body: []byte(body)})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) oauthConfig(clientID string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:    clientID,
		Endpoint:    oauth2.Endpoint{AuthURL: e.root + "/oauth2/authorize", TokenURL: e.root + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: appRedirect,
		Scopes:      scopes,
	}
}

// browser is a user agent with cookies that stops at the app's redirect.
type browser struct {
	t      *testing.T
	client *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	status   int
	body     string
	location string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, body: string(body), location: resp.Header.Get("Location")}
}

func (b *browser) get(u string) page {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

var hiddenRe = regexp.MustCompile(`type="hidden" name="(pending|csrf|signin|t|return)" value="([^"]*)"`)

// submit posts the page's form with the hidden fields plus fields.
func (b *browser) submit(action string, p page, fields url.Values) page {
	b.t.Helper()
	form := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(p.body, -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	if form.Get("pending") == "" && form.Get("csrf") == "" {
		b.t.Fatalf("no form on the page (%d): %.300s", p.status, p.body)
	}
	for k, v := range fields {
		form[k] = v
	}
	req, _ := http.NewRequest(http.MethodPost, action, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

var scopeBoxRe = regexp.MustCompile(`name="scope" value="([^"]*)"`)

// launch holds what an app keeps during one authorization.
type launch struct {
	cfg      *oauth2.Config
	state    string
	verifier string
	code     string
	redirect *url.URL
}

// authorize runs the browser side: login as user, pick patient if asked,
// consent to every offered scope except those in untick, and returns the
// redirect back to the app.
func (e *env) authorize(b *browser, cfg *oauth2.Config, user, pick string, untick ...string) *launch {
	e.t.Helper()
	l := &launch{cfg: cfg, state: "st-" + rand.Text(), verifier: oauth2.GenerateVerifier()}
	u := cfg.AuthCodeURL(l.state, oauth2.S256ChallengeOption(l.verifier), oauth2.SetAuthURLParam("aud", e.base))
	p := b.get(u)
	action := e.root + "/oauth2/interact"
	if strings.Contains(p.body, `name="password"`) {
		pw := password
		if own, ok := passwords[user]; ok {
			pw = own
		}
		p = b.submit(action, p, url.Values{"step": {"login"}, "username": {user}, "password": {pw}})
	}
	if strings.Contains(p.body, `name="patient"`) {
		if pick == "" {
			e.t.Fatalf("unexpected patient picker: %.300s", p.body)
		}
		p = b.submit(action, p, url.Values{"step": {"pick"}, "patient": {pick}})
	}
	if !strings.Contains(p.body, `value="consent"`) {
		e.t.Fatalf("expected the consent page, got %d %s: %.400s", p.status, p.location, p.body)
	}
	var allowed []string
	for _, m := range scopeBoxRe.FindAllStringSubmatch(p.body, -1) {
		s := htmlUnescape(m[1])
		if !contains(untick, s) {
			allowed = append(allowed, s)
		}
	}
	p = b.submit(action, p, url.Values{"step": {"consent"}, "decision": {"allow"}, "scope": allowed})
	l.redirect = e.redirected(p)
	l.code = l.redirect.Query().Get("code")
	if got := l.redirect.Query().Get("state"); got != l.state {
		e.t.Fatalf("state %q, want %q", got, l.state)
	}
	if l.code == "" {
		e.t.Fatalf("no code: %s", l.redirect)
	}
	return l
}

func (e *env) redirected(p page) *url.URL {
	e.t.Helper()
	if p.status != http.StatusFound && p.status != http.StatusSeeOther {
		e.t.Fatalf("expected a redirect to the app, got %d: %.400s", p.status, p.body)
	}
	u, err := url.Parse(p.location)
	if err != nil || !strings.HasPrefix(p.location, appRedirect) {
		e.t.Fatalf("redirect to %q, want %s", p.location, appRedirect)
	}
	return u
}

func (e *env) exchange(l *launch) *oauth2.Token {
	e.t.Helper()
	tok, err := l.cfg.Exchange(context.Background(), l.code, oauth2.VerifierOption(l.verifier))
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	return tok
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// fhirGet calls the FHIR API with a bearer token ("" for none).
func (e *env) fhir(method, path, token, body string) (int, map[string]any, http.Header) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.base+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	return resp.StatusCode, m, resp.Header
}

// ids lists the resource ids (Type/id) in a Bundle.
func ids(b map[string]any) []string {
	var out []string
	entries, _ := b["entry"].([]any)
	for _, en := range entries {
		r, _ := en.(map[string]any)["resource"].(map[string]any)
		if r == nil {
			continue
		}
		out = append(out, fmt.Sprint(r["resourceType"], "/", r["id"]))
	}
	return out
}

func postForm(t *testing.T, u string, form url.Values, basicUser, basicPass string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	return resp.StatusCode, m, resp.Header
}

func (e *env) fhirForm(path, token string, form url.Values) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	return resp.StatusCode, m, resp.Header
}

// backend is a registered backend service with an RS384 key.
type backend struct {
	id  string
	key *rsa.PrivateKey
	kid string
}

func (e *env) newBackend(scope string) *backend {
	e.t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		e.t.Fatal(err)
	}
	b := &backend{id: "backend-" + rand.Text()[:8], key: key, kid: "k1"}
	jwks := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: b.kid, Algorithm: "RS384", Use: "sig"}}}
	c := &smart.Client{ID: b.id, GrantTypes: []string{"client_credentials"}, Scope: scope, JWKS: jwks, SigningAlg: "RS384"}
	if err := e.provider.AddClient(context.Background(), c, ""); err != nil {
		e.t.Fatal(err)
	}
	return b
}

// assertion signs a client assertion; mutate may change its claims.
func (b *backend) assertion(t *testing.T, aud string, exp time.Duration, jti string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS384, Key: b.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", b.kid))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := josejwt.Signed(signer).Claims(map[string]any{
		"iss": b.id, "sub": b.id, "aud": aud, "exp": time.Now().Add(exp).Unix(), "jti": jti,
	}).CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (e *env) backendToken(b *backend, scope string) (int, map[string]any) {
	e.t.Helper()
	status, body, _ := postForm(e.t, e.root+"/oauth2/token", url.Values{
		"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {b.assertion(e.t, e.root+"/oauth2/token", 4*time.Minute, rand.Text())},
	}, "", "")
	return status, body
}

// openToken is a backend token that may read everything: the tests' view
// of what is really stored.
func (e *env) openToken() string {
	e.t.Helper()
	b := e.newBackend("system/*.rs")
	status, body := e.backendToken(b, "system/*.rs")
	if status != 200 {
		e.t.Fatalf("backend token: %d %v", status, body)
	}
	return body["access_token"].(string)
}

// statusOnceRechecked is the status of a GET made after the bearer check's
// memory of the token has lapsed (smart's checkedFor, one second): what a
// change made in the store by another process gives.
func (e *env) statusOnceRechecked(path, token string) int {
	time.Sleep(1100 * time.Millisecond)
	status, _, _ := e.fhir("GET", path, token, "")
	return status
}
