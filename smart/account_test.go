package smart_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"

	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/smart/mail/mailtest"
	"github.com/hearth-fhir/hearth/smart/oidctest"
	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/mongo"
	"github.com/hearth-fhir/hearth/store/mongo/mongotest"
	"github.com/hearth-fhir/hearth/store/sqlite"
)

// The account's lifecycle end to end over real HTTP, on SQLite and on
// MongoDB (FerretDB): sign-up with an activation code and e-mail
// confirmation, recovery, throttled sign-in, idle timeout, forced password
// change, two-step sign-in, connected apps, proxy invitations, minors'
// links, closing the account. Mail goes through a real SMTP server.

// onBothStores runs test on a fresh SQLite file and a fresh MongoDB
// database, each with the standard environment.
func onBothStores(t *testing.T, test func(t *testing.T, open func(opts ...func(*smart.Config)) *env)) {
	t.Run("sqlite", func(t *testing.T) {
		test(t, func(opts ...func(*smart.Config)) *env {
			st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return newEnvOn(t, st, opts...)
		})
	})
	t.Run("mongo", func(t *testing.T) {
		test(t, func(opts ...func(*smart.Config)) *env {
			st, err := mongo.Open(context.Background(), mongotest.URI(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return newEnvOn(t, st, opts...)
		})
	})
}

// accountSignIn signs b in on the account pages and expects want (303
// on success).
func (e *env) accountSignIn(b *browser, user, pw string, want int) page {
	e.t.Helper()
	p := b.get(e.root + "/account/login")
	p = b.submit(e.root+"/account/login", p, url.Values{"step": {"login"}, "username": {user}, "password": {pw}})
	if p.status != want {
		e.t.Fatalf("sign-in of %s answered %d, want %d: %s", user, p.status, want, why(p))
	}
	return p
}

// account reads the signed-in account page.
func (e *env) account(b *browser) page {
	e.t.Helper()
	p := b.get(e.root + "/account")
	if p.status != 200 {
		e.t.Fatalf("account page: %d (%s)", p.status, p.location)
	}
	return p
}

// accountPost submits one of the account page's forms.
func (e *env) accountPost(b *browser, path string, fields url.Values) page {
	e.t.Helper()
	return b.submit(e.root+"/account/"+path, e.account(b), fields)
}

func (e *env) adult(id, born string) {
	e.put("Patient", id, `{"resourceType":"Patient","id":"`+id+`","name":[{"family":"Smith","given":["`+id+`"]}],"birthDate":"`+born+`"}`)
}

func (e *env) setEmail(user, email string) {
	e.t.Helper()
	acc := smart.NewAccounts(e.st)
	u, err := acc.Get(context.Background(), user)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := acc.SetEmail(context.Background(), u, email); err != nil {
		e.t.Fatal(err)
	}
}

// apiStatus is the status of a FHIR read with token.
func (e *env) apiStatus(token, path string) int {
	s, _, _ := e.fhir("GET", path, token, "")
	return s
}

var alertRe = regexp.MustCompile(`role="alert"[^>]*>([^<]*)|class="field-error"[^>]*>([^<]*)|<title>([^<]*)`)

// why is what a page says went wrong: its title, alerts and field errors.
func why(p page) string {
	var out []string
	for _, m := range alertRe.FindAllStringSubmatch(p.body, -1) {
		out = append(out, strings.TrimSpace(m[1]+m[2]+m[3]))
	}
	return fmt.Sprintf("%d %s %q", p.status, p.location, out)
}

var errorTextRe = regexp.MustCompile(`<span class="field-error" id="([a-z-]+)-error">([^<]*)</span>`)

func TestSignUpWithActivationCode(t *testing.T) { onBothStores(t, signUpWithActivationCode) }

func signUpWithActivationCode(t *testing.T, open func(...func(*smart.Config)) *env) {
	e := open()
	ctx := context.Background()
	e.adult("newbie", "1980-05-17")
	code, _, err := e.provider.IssueActivation(ctx, "newbie", 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	form := b.get(e.root + "/account/signup")
	signup := func(fields url.Values) page {
		return b.submit(e.root+"/account/signup", form, fields)
	}
	good := url.Values{"code": {strings.ToLower(code)}, "birth_date": {"1980-05-17"}, "username": {"newbie"}, "email": {"newbie@example.org"},
		"new_password": {"lantern-orchid-fjord"}, "confirm_password": {"lantern-orchid-fjord"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = vv
		}
		f.Set(k, v)
		return f
	}
	// A wrong birth date and an unknown code get the same answer.
	wrongDate, wrongCode := signup(with("birth_date", "1980-05-18")), signup(with("code", "AAAAA-BBBBB-CCCCC"))
	if wrongDate.status != 400 || wrongCode.status != 400 || errorTextRe.FindString(wrongDate.body) != errorTextRe.FindString(wrongCode.body) {
		t.Fatalf("wrong date %d, wrong code %d:\n%s\n%s", wrongDate.status, wrongCode.status, errorTextRe.FindString(wrongDate.body), errorTextRe.FindString(wrongCode.body))
	}
	if weak := signup(with("new_password", "password1234")); weak.status != 400 || !strings.Contains(weak.body, "common passwords") || strings.Contains(weak.body, "password1234") {
		t.Fatalf("a common password: %d %.300s", weak.status, errorTextRe.FindString(weak.body))
	}
	if taken := signup(with("username", "alice")); taken.status != 400 || !strings.Contains(taken.body, "cannot be used") {
		t.Fatalf("a taken username: %d", taken.status)
	}
	if p := signup(good); p.status != 201 || !strings.Contains(p.body, "newbie@example.org") {
		t.Fatalf("sign-up: %s", why(p))
	}
	// The code works once.
	if again := signup(with("username", "newbie2")); again.status != 400 {
		t.Fatalf("a used code answered %d", again.status)
	}
	// No sign-in before the address is confirmed.
	if p := e.accountSignIn(newBrowser(t), "newbie", "lantern-orchid-fjord", 401); !strings.Contains(p.body, "Confirm your e-mail") {
		t.Fatalf("unconfirmed sign-in: %s", why(p))
	}
	m := e.mail.Wait(t, "newbie@example.org")
	if strings.Contains(m.Text, "1980") || strings.Contains(m.Text, "Smith") {
		t.Fatalf("the mail carries PHI:\n%s", m.Text)
	}
	link := m.Link(t)
	confirm := b.get(link) // the link shows a button; it changes nothing
	if confirm.status != 200 {
		t.Fatalf("confirm page: %d", confirm.status)
	}
	if p := b.submit(e.root+"/account/confirm", confirm, nil); p.status != 200 || !strings.Contains(p.body, "confirmed") {
		t.Fatalf("confirm: %s", why(p))
	}
	if p := b.submit(e.root+"/account/confirm", confirm, nil); p.status != 400 {
		t.Fatalf("a confirmation link used twice answered %d", p.status)
	}
	// The new patient launches an app and reads their own record.
	tok := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "openid", "fhirUser", "patient/*.rs"), "newbie", ""))
	if tok.Extra("patient") != "newbie" || e.apiStatus(tok.AccessToken, "/Patient/newbie") != 200 || e.apiStatus(tok.AccessToken, "/Patient/alice") != 404 {
		t.Fatalf("the new account's token: patient %v", tok.Extra("patient"))
	}
}

// TestActivationAPI: a backend service with system/Patient.u issues codes;
// nobody else does.
func TestActivationAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.provider.AddClient(ctx, &smart.Client{ID: "registry", GrantTypes: []string{"client_credentials"}, Scope: "system/Patient.cru system/Patient.rs", AuthMethod: "client_secret_basic"}, "registry-secret"); err != nil {
		t.Fatal(err)
	}
	if err := e.provider.AddClient(ctx, &smart.Client{ID: "reader", GrantTypes: []string{"client_credentials"}, Scope: "system/Patient.rs", AuthMethod: "client_secret_basic"}, "reader-secret"); err != nil {
		t.Fatal(err)
	}
	token := func(id, secret, scope string) string {
		req, _ := http.NewRequest(http.MethodPost, e.root+"/oauth2/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}.Encode()))
		req.SetBasicAuth(id, secret)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if err := doJSON(req, &out); err != nil || out.AccessToken == "" {
			t.Fatalf("token for %s: %v", id, err)
		}
		return out.AccessToken
	}
	issue := func(tok, body string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, e.root+"/account/api/activation", strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		var out map[string]any
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		decodeBody(resp, &out)
		return resp.StatusCode, out
	}
	patientTok := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs"), "alice", "")).AccessToken
	for _, c := range []struct {
		tok, body string
		want      int
	}{
		{"", `{"patient":"Patient/alice"}`, 401},
		{"not-a-token", `{"patient":"Patient/alice"}`, 401},
		{patientTok, `{"patient":"Patient/alice"}`, 403},
		{token("reader", "reader-secret", "system/Patient.rs"), `{"patient":"Patient/alice"}`, 403},
		{token("registry", "registry-secret", "system/Patient.cru"), `{"patient":"Patient/nobody"}`, 404},
		{token("registry", "registry-secret", "system/Patient.cru"), `{"patient":"Patient/alice","expires":"10y"}`, 400},
		{token("registry", "registry-secret", "system/Patient.cru"), `{"patient":"alice"}`, 400},
	} {
		if s, out := issue(c.tok, c.body); s != c.want {
			t.Errorf("%s with %.12s…: %d %v, want %d", c.body, c.tok, s, out, c.want)
		}
	}
	s, out := issue(token("registry", "registry-secret", "system/Patient.cru"), `{"patient":"Patient/kid1","expires":"7d"}`)
	code, _ := out["code"].(string)
	if s != 201 || !regexp.MustCompile(`^[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}$`).MatchString(code) || out["patient"] != "Patient/kid1" {
		t.Fatalf("issue: %d %v", s, out)
	}
	if exp, err := time.Parse(time.RFC3339, out["expires"].(string)); err != nil || exp.Sub(time.Now()) > 7*24*time.Hour+time.Minute || exp.Sub(time.Now()) < 7*24*time.Hour-time.Minute {
		t.Fatalf("expires %v", out["expires"])
	}
}

func TestPasswordRecovery(t *testing.T) { onBothStores(t, passwordRecovery) }

func passwordRecovery(t *testing.T, open func(...func(*smart.Config)) *env) {
	e := open()
	e.setEmail("alice", "alice@example.org")
	// Alice's app holds a refresh token; a browser of hers is signed in.
	l := e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs", "offline_access"), "alice", "")
	tok := e.exchange(l)
	signedIn := newBrowser(t)
	e.accountSignIn(signedIn, "alice", password, 303)

	b := newBrowser(t)
	ask := func(who string) page {
		return b.submit(e.root+"/account/forgot", b.get(e.root+"/account/forgot"), url.Values{"who": {who}})
	}
	unknown, known := ask("nobody-here"), ask("alice")
	if unknown.status != 200 || known.status != 200 || unknown.body != known.body {
		t.Fatalf("the answers to an unknown and a known username differ: %d %d", unknown.status, known.status)
	}
	link := e.mail.Wait(t, "alice@example.org").Link(t)
	reset := b.get(link)
	if p := b.submit(e.root+"/account/reset", reset, url.Values{"new_password": {"short"}, "confirm_password": {"short"}}); p.status != 400 {
		t.Fatalf("a short password: %d", p.status)
	}
	if p := b.submit(e.root+"/account/reset", reset, url.Values{"new_password": {"harbour-violet-quill"}, "confirm_password": {"harbour-violet-quill"}}); p.status != 200 {
		t.Fatalf("reset: %s", why(p))
	}
	if p := b.submit(e.root+"/account/reset", reset, url.Values{"new_password": {"another-fine-phrase"}, "confirm_password": {"another-fine-phrase"}}); p.status != 400 {
		t.Fatalf("a reset link used twice: %d", p.status)
	}
	// Everything the old password opened is closed.
	if s := e.apiStatus(tok.AccessToken, "/Patient/alice"); s != 401 {
		t.Errorf("the app's access token after a reset: %d", s)
	}
	if _, err := l.cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Error("the app's refresh token still works after a reset")
	}
	if p := signedIn.get(e.root + "/account"); p.status != 303 {
		t.Errorf("the signed-in browser after a reset: %d", p.status)
	}
	e.accountSignIn(newBrowser(t), "alice", password, 401)
	e.accountSignIn(newBrowser(t), "alice", "harbour-violet-quill", 303)

	// A forgotten username comes by mail too.
	b.submit(e.root+"/account/forgot-username", b.get(e.root+"/account/forgot-username"), url.Values{"email": {"ALICE@example.org"}})
	if m := e.mail.Wait(t, "ALICE@example.org"); !strings.Contains(m.Text, "\n  alice\n") {
		t.Fatalf("username mail:\n%s", m.Text)
	}
}

func TestSignInPausesInsteadOfLockingOut(t *testing.T) { onBothStores(t, signInPauses) }

func signInPauses(t *testing.T, open func(...func(*smart.Config)) *env) {
	e := open()
	ctx := context.Background()
	// Alice has an authenticator app; the parent does not.
	acc := smart.NewAccounts(e.st)
	u, _ := acc.Get(ctx, "alice")
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "Hearth", AccountName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	u.TOTP = key.Secret()
	if err := acc.Put(ctx, u); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"alice", "parent", "no-such-user"} {
		for i := range 5 {
			want := 401
			if i == 4 {
				want = 429 // the fifth failure pauses sign-in
			}
			p := e.accountSignIn(newBrowser(t), user, "not the password", want)
			if want == 401 && !strings.Contains(p.body, `value="`+user+`"`) {
				t.Fatalf("the username was not kept on the page")
			}
		}
	}
	// An unknown username pauses like a real one: the page tells nothing.
	ghost := e.accountSignIn(newBrowser(t), "no-such-user", "whatever-it-is", 429)
	real := e.accountSignIn(newBrowser(t), "parent", password, 429)
	if !strings.Contains(real.body, "Sign-in is paused") || !strings.Contains(real.body, "try again after") || stripValues(ghost.body) != stripValues(real.body) {
		t.Fatalf("the pause pages differ or say nothing:\n%s", why(real))
	}
	// Alice's password and a code still sign her in during the pause.
	p := e.accountSignIn(newBrowser(t), "alice", password, 200)
	if !strings.Contains(p.body, `name="code"`) {
		t.Fatalf("no code asked: %s", why(p))
	}
	b := newBrowser(t)
	p = e.accountSignIn(b, "alice", password, 200)
	code, _ := totp.GenerateCode(key.Secret(), time.Now())
	if p = b.submit(e.root+"/account/login", p, url.Values{"step": {"totp"}, "code": {code}}); p.status != 303 {
		t.Fatalf("password and code during a pause: %s", why(p))
	}
	e.account(b)
	// The same code is good once.
	b2 := newBrowser(t)
	p = e.accountSignIn(b2, "alice", password, 200)
	if p = b2.submit(e.root+"/account/login", p, url.Values{"step": {"totp"}, "code": {code}}); p.status != 401 {
		t.Fatalf("a code replayed: %d", p.status)
	}
	// Her recent sign-ins show the failures and the sign-in.
	page := e.account(b).body
	if !strings.Contains(page, "Signed in with password and a code") || !strings.Contains(page, "Failed: sign-in paused until") {
		t.Fatalf("recent sign-ins: %.2000s", page[strings.Index(page, "sign-ins"):])
	}
}

var valueRe = regexp.MustCompile(`value="[^"]*"|\d{1,2} \w{3} \d{4}, \d{2}:\d{2} UTC`)

// stripValues removes what differs between two renderings of one page
// (CSRF tokens, the typed username, the time the pause ends).
func stripValues(s string) string { return valueRe.ReplaceAllString(s, "") }

func TestIdleTimeoutAndForcedPasswordChange(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(...func(*smart.Config)) *env) {
		e := open(func(c *smart.Config) { c.IdleTimeout = 700 * time.Millisecond; c.PasswordMaxAge = 24 * time.Hour })
		ctx := context.Background()
		// An idle session ends, and an online_access grant with it.
		b := newBrowser(t)
		l := e.authorize(b, e.oauthConfig(appID, "launch/patient", "patient/*.rs", "online_access"), "alice", "")
		tok := e.exchange(l)
		e.account(b) // still signed in
		time.Sleep(1200 * time.Millisecond)
		if p := b.get(e.root + "/account"); p.status != 303 || !strings.HasSuffix(p.location, "/account/login") {
			t.Fatalf("an idle session: %d %s", p.status, p.location)
		}
		if _, err := l.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
			t.Error("an online_access refresh token outlived its idle session")
		}
		// A password past its age is changed at sign-in, then the
		// sign-in goes on.
		acc := smart.NewAccounts(e.st)
		u, _ := acc.Get(ctx, "parent")
		u.PasswordChanged = time.Now().Add(-48 * time.Hour)
		if err := acc.Put(ctx, u); err != nil {
			t.Fatal(err)
		}
		b = newBrowser(t)
		p := e.accountSignIn(b, "parent", password, 200)
		if !strings.Contains(p.body, "Choose a new password") {
			t.Fatalf("no change asked: %s", why(p))
		}
		if q := b.submit(e.root+"/account/login", p, url.Values{"step": {"change"}, "new_password": {password}, "confirm_password": {password}}); q.status != 400 {
			t.Fatalf("the same password again: %d", q.status)
		}
		if q := b.submit(e.root+"/account/login", p, url.Values{"step": {"change"}, "new_password": {"copper-kettle-meadow"}, "confirm_password": {"copper-kettle-meadow"}}); q.status != 303 {
			t.Fatalf("change: %s", why(q))
		}
		e.account(b)
		e.accountSignIn(newBrowser(t), "parent", "copper-kettle-meadow", 303)
	})
}

func TestConnectedAppsAndDeactivation(t *testing.T) { onBothStores(t, connectedApps) }

func connectedApps(t *testing.T, open func(...func(*smart.Config)) *env) {
	e := open()
	ctx := context.Background()
	if err := e.provider.AddClient(ctx, &smart.Client{ID: "other", Name: "Other app", Public: true, RedirectURIs: []string{appRedirect}}, ""); err != nil {
		t.Fatal(err)
	}
	l := e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/Observation.rs", "offline_access"), "alice", "")
	tok := e.exchange(l)
	other := e.exchange(e.authorize(newBrowser(t), e.oauthConfig("other", "launch/patient", "patient/*.rs"), "alice", ""))
	b := newBrowser(t)
	e.accountSignIn(b, "alice", password, 303)
	page := e.account(b).body
	if !strings.Contains(page, "Test app") || !strings.Contains(page, "Other app") || !strings.Contains(page, "See test results and vital signs") || !strings.Contains(page, "keeps access when closed") {
		t.Fatalf("connected apps: %.3000s", page[strings.Index(page, `id="apps"`):])
	}
	if p := e.accountPost(b, "apps/revoke", url.Values{"client": {appID}}); p.status != 303 {
		t.Fatalf("revoke: %d", p.status)
	}
	if s := e.apiStatus(tok.AccessToken, "/Observation?patient=alice"); s != 401 {
		t.Errorf("a revoked app's token: %d", s)
	}
	if _, err := l.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Error("a revoked app refreshed")
	}
	if s := e.apiStatus(other.AccessToken, "/Patient/alice"); s != 200 {
		t.Errorf("the other app's token after revoking one: %d", s)
	}
	if page = e.account(b).body; strings.Contains(page, "Test app") {
		t.Error("the revoked app is still listed")
	}
	// A form without the session's CSRF token changes nothing.
	if p := b.submit(e.root+"/account/deactivate", page0(), url.Values{"password": {password}, "csrf": {"forged"}}); p.status != 403 {
		t.Fatalf("a forged deactivation: %d", p.status)
	}
	if p := e.accountPost(b, "deactivate", url.Values{"password": {"wrong one"}}); p.status != 401 {
		t.Fatalf("deactivation with a wrong password: %d", p.status)
	}
	if p := e.accountPost(b, "deactivate", url.Values{"password": {password}}); p.status != 200 || !strings.Contains(p.body, "closed") {
		t.Fatalf("deactivate: %d", p.status)
	}
	if s := e.apiStatus(other.AccessToken, "/Patient/alice"); s != 401 {
		t.Errorf("a closed account's token: %d", s)
	}
	e.accountSignIn(newBrowser(t), "alice", password, 401)
	// The records stay.
	if _, err := e.records.Read(ctx, "Observation", "alice-lab"); err != nil {
		t.Errorf("the record after closing the account: %v", err)
	}
}

// page0 is a page with only a forged CSRF field, for a forged post.
func page0() page { return page{status: 200, body: `<input type="hidden" name="csrf" value="forged">`} }

// granInvites makes gran, an adult patient with an account, who invites
// email as a proxy with relationship from her account page; it returns
// her signed-in browser and the invitation mail.
func (e *env) granInvites(email, relationship string) (*browser, mailtest.Message) {
	e.t.Helper()
	e.adult("gran", "1950-03-03")
	if _, err := smart.NewAccounts(e.st).AddUser(context.Background(), "gran", password, "gran"); err != nil {
		e.t.Fatal(err)
	}
	g := newBrowser(e.t)
	e.accountSignIn(g, "gran", password, 303)
	if p := e.accountPost(g, "proxies/invite", url.Values{"email": {email}, "relationship": {relationship}}); p.status != 303 {
		e.t.Fatalf("invite: %s", why(p))
	}
	return g, e.mail.Wait(e.t, email)
}

func TestProxyInvitationAndMinorsLinks(t *testing.T) { onBothStores(t, proxyInvitation) }

func proxyInvitation(t *testing.T, open func(...func(*smart.Config)) *env) {
	e := open()
	ctx := context.Background()
	g, m := e.granInvites("helper@example.org", "CHILD")
	if strings.Contains(m.Text, "gran") || strings.Contains(m.Text, "Smith") {
		t.Fatalf("the invitation names the patient:\n%s", m.Text)
	}
	h := newBrowser(t)
	inv := h.get(m.Link(t))
	if inv.status != 200 || !strings.Contains(inv.body, "adult child") {
		t.Fatalf("invitation page: %d", inv.status)
	}
	if p := h.submit(e.root+"/account/invite", inv, url.Values{"step": {"signup"}, "username": {"helper"}, "new_password": {"qwertyuiop123"}, "confirm_password": {"qwertyuiop123"}}); p.status != 400 {
		t.Fatalf("a weak password accepted: %d", p.status)
	}
	if p := h.submit(e.root+"/account/invite", inv, url.Values{"step": {"signup"}, "username": {"helper"}, "new_password": {"saffron-glacier-pond"}, "confirm_password": {"saffron-glacier-pond"}}); p.status != 303 {
		t.Fatalf("accept with a new account: %s", why(p))
	}
	if p := h.submit(e.root+"/account/invite", inv, url.Values{"step": {"accept"}}); p.status != 400 {
		t.Fatalf("an invitation used twice: %d", p.status)
	}
	// The helper acts for gran, as a RelatedPerson.
	tok := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "openid", "fhirUser", "patient/*.rs"), "helper", ""))
	if tok.Extra("patient") != "gran" || e.apiStatus(tok.AccessToken, "/Patient/gran") != 200 {
		t.Fatalf("the helper's token: %v", tok.Extra("patient"))
	}
	page := e.account(g).body
	if !strings.Contains(page, "<strong>helper</strong>, your adult child") {
		t.Fatalf("gran's proxies: %.2000s", page[strings.Index(page, `id="proxies"`):])
	}
	if p := e.accountPost(g, "proxies/revoke", url.Values{"username": {"helper"}}); p.status != 303 {
		t.Fatalf("revoke: %d", p.status)
	}
	if s := e.apiStatus(tok.AccessToken, "/Patient/gran"); s != 401 {
		t.Errorf("an ended proxy's token: %d", s)
	}

	// A parent's link to a minor ends on the 18th birthday.
	almost := time.Now().AddDate(-18, 0, 2).Format("2006-01-02") // 18 in two days
	e.adult("teen", almost)
	l, err := smart.LinkProxy(ctx, e.st, e.records, "parent", "teen", "PRN")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Now().AddDate(0, 0, 2).Format("2006-01-02"); l.Ends.Format("2006-01-02") != want {
		t.Fatalf("the link ends %v, want %s", l.Ends, want)
	}
	ptok := e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, "launch/patient", "patient/*.rs"), "parent", "teen")).AccessToken
	if s := e.apiStatus(ptok, "/Patient/teen"); s != 200 {
		t.Fatalf("the parent before the birthday: %d", s)
	}
	// Two days on, as the clock would have it: the patient is 18 and the
	// link's end has passed.
	e.adult("teen", time.Now().AddDate(-18, 0, -1).Format("2006-01-02"))
	acc := smart.NewAccounts(e.st)
	pu, _ := acc.Get(ctx, "parent")
	for i := range pu.Links {
		if pu.Links[i].Patient == "teen" {
			pu.Links[i].Ends = time.Now().Add(-time.Second)
		}
	}
	if err := acc.Put(ctx, pu); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the token check's memory
	if s := e.apiStatus(ptok, "/Patient/teen"); s != 401 {
		t.Fatalf("the parent after the birthday: %d", s)
	}
	// The grown-up patient sees the ended link and keeps it going.
	if _, err := acc.AddUser(ctx, "teen", password, "teen"); err != nil {
		t.Fatal(err)
	}
	tb := newBrowser(t)
	e.accountSignIn(tb, "teen", password, 303)
	if page := e.account(tb).body; !strings.Contains(page, "ended") || !strings.Contains(page, "Keep their access") {
		t.Fatalf("the teen's proxies: %.1500s", page[strings.Index(page, `id="proxies"`):])
	}
	if p := e.accountPost(tb, "proxies/renew", url.Values{"username": {"parent"}}); p.status != 303 {
		t.Fatalf("renew: %d", p.status)
	}
	if s := e.apiStatus(ptok, "/Patient/teen"); s != 200 {
		t.Fatalf("the parent after renewal: %d", s)
	}
	// A 16-year-old does not manage their proxies (default), nor invite.
	kb := newBrowser(t)
	if _, err := acc.AddUser(ctx, "kid1", password, "kid1"); err != nil {
		t.Fatal(err)
	}
	e.accountSignIn(kb, "kid1", password, 303)
	if page := e.account(kb).body; !strings.Contains(page, "arranged with your clinic") || strings.Contains(page, "End access") {
		t.Fatal("a minor manages their proxies")
	}
	if p := e.accountPost(kb, "proxies/revoke", url.Values{"username": {"parent"}}); p.status != 403 {
		t.Fatalf("a minor revoked a parent: %d", p.status)
	}
}

// TestTwoStepSignIn: a user turns on two-step sign-in on the account page;
// under ProxyMFA a proxy without it enrols at sign-in.
func TestTwoStepSignIn(t *testing.T) {
	e := newEnvOn(t, openSQLite(t), func(c *smart.Config) { c.ProxyMFA = true })
	b := newBrowser(t)
	e.accountSignIn(b, "alice", password, 303)
	setup := e.accountPost(b, "totp/setup", nil)
	secret := regexp.MustCompile(`<code id="totp-secret">([A-Z2-7]+)</code>`).FindStringSubmatch(setup.body)
	if setup.status != 200 || secret == nil || !strings.Contains(setup.body, `src="data:image/png;base64,`) {
		t.Fatalf("set-up: %d", setup.status)
	}
	if p := b.submit(e.root+"/account/totp/confirm", setup, url.Values{"code": {"000000"}}); p.status != 400 {
		t.Fatalf("a wrong code: %d", p.status)
	}
	code, _ := totp.GenerateCode(secret[1], time.Now())
	if p := b.submit(e.root+"/account/totp/confirm", setup, url.Values{"code": {code}}); p.status != 303 {
		t.Fatalf("confirm: %d", p.status)
	}
	// Sign-in now asks for a code; a wrong one is refused.
	nb := newBrowser(t)
	p := e.accountSignIn(nb, "alice", password, 200)
	if q := nb.submit(e.root+"/account/login", p, url.Values{"step": {"totp"}, "code": {"123456"}}); q.status != 401 {
		t.Fatalf("a wrong code: %d", q.status)
	}
	time.Sleep(time.Until(time.Now().Truncate(30 * time.Second).Add(30 * time.Second))) // the set-up code is spent
	code, _ = totp.GenerateCode(secret[1], time.Now())
	if q := nb.submit(e.root+"/account/login", p, url.Values{"step": {"totp"}, "code": {code}}); q.status != 303 {
		t.Fatalf("the right code: %s", why(q))
	}
	// The parent acts for others: under ProxyMFA they enrol first.
	pb := newBrowser(t)
	p = e.accountSignIn(pb, "parent", password, 200)
	psecret := regexp.MustCompile(`<code id="totp-secret">([A-Z2-7]+)</code>`).FindStringSubmatch(p.body)
	if psecret == nil {
		t.Fatalf("no enrolment: %s", why(p))
	}
	if q := pb.submit(e.root+"/account/login", p, url.Values{"step": {"enroll"}, "code": {mustCode(t, psecret[1])}}); q.status != 303 {
		t.Fatalf("enrolment: %d", q.status)
	}
	if u, _ := smart.NewAccounts(e.st).Get(context.Background(), "parent"); u.TOTP != psecret[1] {
		t.Fatal("the enrolled secret was not kept")
	}
}

func mustCode(t *testing.T, secret string) string {
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func openSQLite(t *testing.T) store.Store {
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func doJSON(req *http.Request, out any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeBody(resp, out)
}

func decodeBody(resp *http.Response, out any) error { return json.NewDecoder(resp.Body).Decode(out) }

// TestSignUpWithoutCode: where the operator allows it, a patient signs up
// with family name, birth date and medical record number — only when they
// match exactly one patient, and only a patient with no account yet.
func TestSignUpWithoutCode(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(...func(*smart.Config)) *env) {
		e := open(func(c *smart.Config) { c.SignUpWithoutCode = true })
		mrn := func(id, family, born, number string) {
			e.put("Patient", id, `{"resourceType":"Patient","id":"`+id+`","identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:oid:1.2.3","value":"`+number+`"}],"name":[{"family":"`+family+`","given":["X"]}],"birthDate":"`+born+`"}`)
		}
		mrn("ruth", "Okonkwo", "1961-02-03", "MRN-1001")
		mrn("twin1", "Lee", "1990-07-07", "MRN-2002")
		mrn("twin2", "Lee", "1990-07-07", "MRN-2002") // a duplicate record: no match is sure
		b := newBrowser(t)
		form := b.get(e.root + "/account/signup")
		if !strings.Contains(form.body, `name="mrn"`) {
			t.Fatal("the sign-up page offers no way without a code")
		}
		try := func(family, born, number, user string) page {
			return b.submit(e.root+"/account/signup", form, url.Values{"family": {family}, "birth_date": {born}, "mrn": {number}, "username": {user},
				"email": {user + "@example.org"}, "new_password": {"lantern-orchid-fjord"}, "confirm_password": {"lantern-orchid-fjord"}})
		}
		for _, c := range [][3]string{{"Okonkwo", "1961-02-04", "MRN-1001"}, {"Okonkwa", "1961-02-03", "MRN-1001"}, {"Okonkwo", "1961-02-03", "MRN-1002"},
			{"Lee", "1990-07-07", "MRN-2002"}, {"Doe", "2010-01-01", "alice"}} {
			if p := try(c[0], c[1], c[2], "someone"); p.status != 400 {
				t.Errorf("%v: %s", c, why(p))
			}
		}
		if p := try("OKONKWO", "1961-02-03", "MRN-1001", "ruth"); p.status != 201 {
			t.Fatalf("sign-up by record number: %s", why(p))
		}
		// Ruth has an account now: the same details make no second one.
		if p := try("Okonkwo", "1961-02-03", "MRN-1001", "ruth2"); p.status != 400 {
			t.Fatalf("a second account by record number: %s", why(p))
		}
		if u, err := smart.NewAccounts(e.st).Get(context.Background(), "ruth"); err != nil || u.Patient != "ruth" || !u.Unconfirmed {
			t.Fatalf("ruth's account: %+v %v", u, err)
		}
	})
}

// TestTeenManagesProxies: with --teen-manages-proxies, a patient between
// the restricted age and 18 sees and ends a parent's link; under the
// restricted age still not.
func TestTeenManagesProxies(t *testing.T) {
	e := newEnvOn(t, openSQLite(t), func(c *smart.Config) { c.TeenManagesProxies = true })
	ctx := context.Background()
	e.adult("young", time.Now().AddDate(-10, 0, 0).Format("2006-01-02"))
	if _, err := smart.LinkProxy(ctx, e.st, e.records, "parent", "young", "PRN"); err != nil {
		t.Fatal(err)
	}
	acc := smart.NewAccounts(e.st)
	for _, who := range []string{"kid1", "young"} {
		if _, err := acc.AddUser(ctx, who, password, who); err != nil {
			t.Fatal(err)
		}
	}
	yb := newBrowser(t)
	e.accountSignIn(yb, "young", password, 303)
	if p := e.accountPost(yb, "proxies/revoke", url.Values{"username": {"parent"}}); p.status != 403 {
		t.Fatalf("a 10-year-old ended a parent's link: %d", p.status)
	}
	kb := newBrowser(t) // kid1 is 16
	e.accountSignIn(kb, "kid1", password, 303)
	if page := e.account(kb).body; !strings.Contains(page, "<strong>parent</strong>, your parent") {
		t.Fatalf("a 16-year-old does not see their parent's link: %.1500s", page[strings.Index(page, `id="proxies"`):])
	}
	if p := e.accountPost(kb, "proxies/revoke", url.Values{"username": {"parent"}}); p.status != 303 {
		t.Fatalf("the teen ends the link: %d", p.status)
	}
	if u, err := acc.Get(ctx, "parent"); err != nil {
		t.Fatal(err)
	} else if _, ok := u.ActorFor("kid1"); ok {
		t.Fatal("the parent still acts for kid1")
	}
}

// TestConsentMarksSelfRegisteredApps: an app that registered itself is
// marked unvetted on the consent page, with where it returns to.
func TestConsentMarksSelfRegisteredApps(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Post(e.root+"/oauth2/register", "application/json", strings.NewReader(`{"redirect_uris":["https://diary.example/cb"],"client_name":"Diary","token_endpoint_auth_method":"none"}`))
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		ClientID string `json:"client_id"`
	}
	decodeBody(resp, &reg)
	resp.Body.Close()
	consent := func(client, redirect string) string {
		cfg := e.oauthConfig(client, "launch/patient", "patient/*.rs")
		cfg.RedirectURL = redirect
		b := newBrowser(t)
		p := b.get(cfg.AuthCodeURL("st-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("aud", e.base)))
		p = b.submit(e.root+"/oauth2/interact", p, url.Values{"step": {"login"}, "username": {"alice"}, "password": {password}})
		return p.body
	}
	if page := consent(reg.ClientID, "https://diary.example/cb"); !strings.Contains(page, `id="unverified"`) || !strings.Contains(page, "diary.example") {
		t.Fatalf("a self-registered app's consent: %s", why(page0()))
	}
	if page := consent(appID, appRedirect); strings.Contains(page, `id="unverified"`) {
		t.Fatal("an operator's app is marked unvetted")
	}
}

// TestAccountIndexesOfEarlierAccounts: accounts stored before the indexes
// were kept are indexed once when the server starts.
func TestAccountIndexesOfEarlierAccounts(t *testing.T) {
	st := openSQLite(t)
	ctx := context.Background()
	old := `{"username":"old","passwordHash":"eA==","patient":"oldpat","email":"Old@Example.org","links":[{"patient":"kid9","relatedPerson":"rp9"}]}`
	if err := st.PutAuth(ctx, store.AuthRecord{Kind: "user", Key: "old", Subject: "old", Active: true, Data: []byte(old)}); err != nil {
		t.Fatal(err)
	}
	newEnvOn(t, st)
	acc := smart.NewAccounts(st)
	proxies, err := acc.ProxiesOf(ctx, "kid9")
	if err != nil || len(proxies) != 1 || proxies[0].Username != "old" {
		t.Fatalf("proxies of kid9: %+v %v", proxies, err)
	}
	if users, err := acc.ByEmail(ctx, "old@example.org"); err != nil || len(users) != 1 {
		t.Fatalf("by e-mail: %d %v", len(users), err)
	}
	if has, err := acc.HasAccount(ctx, "oldpat"); err != nil || !has {
		t.Fatalf("oldpat's account: %v %v", has, err)
	}
}

// TestFederatedCallbackBoundToBrowser: the provider's answer is taken only
// from the browser that started the sign-in, so that nobody can sign a
// victim in as themselves by sending them their own callback link.
func TestFederatedCallbackBoundToBrowser(t *testing.T) {
	op := oidctest.Reserve(t)
	e := newEnvAt(t, openSQLite(t), "localhost", func(c *smart.Config) {
		c.Federation = &smart.Federation{Issuer: op.Issuer, ClientID: op.ClientID, ClientSecret: op.ClientSecret, Name: "General Hospital"}
	})
	op.Run(t, e.root+"/account/federated/callback")
	a := newBrowser(t)
	p := a.submit(e.root+"/account/federated/start", a.get(e.root+"/account/login"), nil)
	to, err := url.Parse(p.location)
	if p.status != 303 || err != nil || !strings.HasPrefix(p.location, op.Issuer) {
		t.Fatalf("start: %s", why(p))
	}
	callback := e.root + "/account/federated/callback?code=attackers-code&state=" + url.QueryEscape(to.Query().Get("state"))
	if q := newBrowser(t).get(callback); q.status != 403 {
		t.Fatalf("the callback in another browser: %s", why(q))
	}
	// The state is spent by that attempt: not even the right browser can
	// use it now.
	if q := a.get(callback); q.status != 400 {
		t.Fatalf("a spent state: %s", why(q))
	}
}

// TestInvitationAcceptedBySigningIn: someone who already has an account
// accepts an invitation by signing in (the sign-in page brings them back
// to it) and then acts for the patient who invited them.
func TestInvitationAcceptedBySigningIn(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, m := e.granInvites("parent@example.org", "FAMMEMB")
	link := m.Link(t)
	b := newBrowser(t)
	inv := b.get(link)
	signin := regexp.MustCompile(`href="([^"]*/account/login\?return=[^"]*)"`).FindStringSubmatch(inv.body)
	if signin == nil {
		t.Fatalf("the invitation offers no sign-in: %s", why(inv))
	}
	login := b.get(htmlUnescape(signin[1]))
	p := b.submit(e.root+"/account/login", login, url.Values{"step": {"login"}, "username": {"parent"}, "password": {password}})
	if p.status != 303 || !strings.Contains(p.location, "/account/invite?t=") {
		t.Fatalf("sign-in did not bring the invitee back: %s", why(p))
	}
	inv = b.get(p.location)
	if p := b.submit(e.root+"/account/invite", inv, url.Values{"step": {"accept"}}); p.status != 303 {
		t.Fatalf("accept: %s", why(p))
	}
	u, err := smart.NewAccounts(e.st).Get(ctx, "parent")
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := u.ActorFor("gran"); !ok || a.Relationship != "FAMMEMB" {
		t.Fatalf("the parent's link to gran: %+v %v", a, ok)
	}
}
