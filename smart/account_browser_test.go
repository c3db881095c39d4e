package smart_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/smart/oidctest"
	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/mongo"
	"github.com/hearth-fhir/hearth/store/mongo/mongotest"
)

// screenshots is where the browser tests leave their pictures of each
// page: $HEARTH_ARTIFACTS/screenshots in CI, a temporary directory
// otherwise.
func screenshots(t *testing.T) string {
	dir := os.Getenv("HEARTH_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shoot takes the page as a phone (390 px) and a laptop (1280 px) see it.
func shoot(t *testing.T, dir, name string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for _, width := range []int64{390, 1280} {
			var png []byte
			if err := chromedp.Run(ctx, chromedp.EmulateViewport(width, 844), chromedp.FullScreenshot(&png, 100)); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, name+"-"+map[int64]string{390: "phone", 1280: "laptop"}[width]+".png"), png, 0o644); err != nil {
				return err
			}
		}
		return nil
	})
}

// runSteps runs actions one by one, naming the one that fails and the
// page it failed on.
func runSteps(t *testing.T, ctx context.Context) func(actions ...chromedp.Action) {
	if err := chromedp.Run(ctx); err != nil { // the browser starts with ctx
		t.Fatal(err)
	}
	return func(actions ...chromedp.Action) {
		t.Helper()
		for i, a := range actions {
			start := time.Now()
			// The browser lives as long as ctx; a step gets 15 seconds.
			c, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := chromedp.Run(c, a)
			cancel()
			if testing.Verbose() {
				t.Logf("step %d: %v (%v)", i, err, time.Since(start))
			}
			if err != nil {
				var loc, text string
				c, cancel := context.WithTimeout(ctx, 2*time.Second)
				chromedp.Run(c, chromedp.Location(&loc), chromedp.Text("body", &text))
				cancel()
				t.Fatalf("step %d: %v on %s: %.600s", i, err, loc, text)
			}
		}
	}
}

// goTo starts loading url without waiting for the load to finish: an
// app's launch page moves on to the authorization server before it does.
func goTo(url string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		_, _, _, _, err := cdppage.Navigate(url).Do(ctx)
		return err
	})
}

var axeSource = sync.OnceValues(func() ([]byte, error) {
	return os.ReadFile(filepath.Join("..", "testdata", "axe", "axe.min.js"))
})

// axeViolations runs axe-core on the page: the WCAG 2.1 A and AA rules it
// finds broken, each with where.
func axeViolations(ctx context.Context) ([]string, error) {
	src, err := axeSource()
	if err != nil {
		return nil, err
	}
	var violations []struct {
		ID, Help string
		Nodes    []struct{ Target []string }
	}
	await := func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }
	if err := chromedp.Run(ctx, chromedp.EmulateViewport(1280, 844),
		chromedp.Evaluate(string(src)+";0", nil),
		chromedp.Evaluate(`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}).then(r => r.violations.map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => ({target: n.target}))})))`, &violations, await)); err != nil {
		return nil, err
	}
	var out []string
	for _, v := range violations {
		var where []string
		for _, n := range v.Nodes {
			where = append(where, strings.Join(n.Target, " "))
		}
		out = append(out, fmt.Sprintf("%s (%s) at %s", v.ID, v.Help, strings.Join(where, "; ")))
	}
	return out, nil
}

// accessible fails the test on every WCAG 2.1 A or AA violation axe-core
// finds on the page.
func accessible(t *testing.T, name string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		found, err := axeViolations(ctx)
		for _, v := range found {
			t.Errorf("%s: %s", name, v)
		}
		return err
	})
}

// TestAxeFindsViolations: the accessibility check can fail — on a page
// with an unlabelled field, grey-on-grey text and no language.
func TestAxeFindsViolations(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><html><head><title>bad</title></head><body><main><p style="color:#aaa;background:#bbb">faint</p><input type="text" name="x"></main></body></html>`))
	}))
	defer srv.Close()
	ctx := newChrome(t)
	var found []string
	err := chromedp.Run(ctx, chromedp.Navigate(srv.URL), chromedp.ActionFunc(func(ctx context.Context) (err error) {
		found, err = axeViolations(ctx)
		return err
	}))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(found, "\n")
	for _, rule := range []string{"html-has-lang", "color-contrast", "label"} {
		if !strings.Contains(joined, rule+" (") {
			t.Errorf("axe did not find %s; it found:\n%s", rule, joined)
		}
	}
}

// focused fails unless the element sel has the keyboard focus.
func focused(sel string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var ok bool
		if err := chromedp.Evaluate(fmt.Sprintf(`document.activeElement && document.activeElement.matches(%q)`, sel), &ok).Do(ctx); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s does not have the focus", sel)
		}
		return nil
	})
}

// tabTo presses Tab until sel has the focus (at most 30 times): the
// element is reachable with the keyboard.
func tabTo(sel string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		for range 30 {
			if focused(sel).Do(ctx) == nil {
				return nil
			}
			if err := chromedp.KeyEvent(kb.Tab).Do(ctx); err != nil {
				return err
			}
		}
		return fmt.Errorf("Tab never reaches %s", sel)
	})
}

// noOverflow fails when the page is wider than the window: at 390 px,
// nothing may need sideways scrolling.
func noOverflow(t *testing.T, name string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var over bool
		if err := chromedp.Run(ctx, chromedp.EmulateViewport(390, 844), chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth`, &over)); err != nil {
			return err
		}
		if over {
			t.Errorf("%s: wider than a 390 px phone", name)
		}
		return nil
	})
}

// TestBrowserSignUpToFirstLaunch walks a new patient, in Chromium, from
// the activation code the clinic gave them to their first SMART app: sign
// up, confirm the e-mail from the link in the mail, sign in through the
// app's launch, consent, and the app reads their record. Every page is
// photographed at 390 px and 1280 px.
func TestBrowserSignUpToFirstLaunch(t *testing.T) {
	e := newEnvAt(t, openSQLite(t), "localhost")
	e.adult("newbie", "1980-05-17")
	code, _, err := e.provider.IssueActivation(context.Background(), "newbie", 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	app := fhirClientApp(t, e, "diary", "launch/patient openid fhirUser patient/*.rs offline_access")
	dir := screenshots(t)
	ctx := newChrome(t)
	steps := runSteps(t, ctx)
	steps(
		chromedp.Navigate(e.root+"/account/signup"),
		chromedp.WaitVisible(`#code`, chromedp.ByQuery),
		shoot(t, dir, "signup"), noOverflow(t, "signup"), accessible(t, "signup"),
		chromedp.SendKeys(`#code`, code),
		chromedp.SetValue(`#birth-date`, "1980-05-17"),
		chromedp.SendKeys(`#username`, "newbie"),
		chromedp.SendKeys(`#email`, "newbie@example.org"),
		chromedp.SendKeys(`#new-password`, "short"),
		chromedp.SendKeys(`#confirm-password`, "short"),
		chromedp.Click(`main button[type=submit]`),
		chromedp.WaitVisible(`#new-password-error`, chromedp.ByQuery),
		shoot(t, dir, "signup-error"), accessible(t, "signup-error"),
	)
	// The error is tied to its field, and what was typed is kept.
	var described, kept string
	steps(chromedp.AttributeValue(`#new-password`, "aria-describedby", &described, nil), chromedp.Value(`#username`, &kept))
	if !strings.Contains(described, "new-password-error") || kept != "newbie" {
		t.Fatalf("the error page: aria-describedby %q, username kept %q", described, kept)
	}
	steps(
		chromedp.SetValue(`#code`, code),
		chromedp.SendKeys(`#new-password`, "lantern-orchid-fjord"),
		chromedp.SendKeys(`#confirm-password`, "lantern-orchid-fjord"),
		chromedp.Click(`main button[type=submit]`),
		chromedp.WaitVisible(`p.notice`, chromedp.ByQuery),
		shoot(t, dir, "signup-done"), accessible(t, "signup-done"),
	)
	link := e.mail.Wait(t, "newbie@example.org").Link(t)
	steps(
		chromedp.Navigate(link),
		chromedp.WaitVisible(`main button[type=submit]`, chromedp.ByQuery),
		shoot(t, dir, "confirm"), accessible(t, "confirm"),
		chromedp.Click(`main button[type=submit]`),
		chromedp.WaitVisible(`p.notice`, chromedp.ByQuery),
	)
	var result string
	steps(
		goTo(app+"/launch.html"),
		chromedp.WaitVisible(`#username`, chromedp.ByQuery),
		shoot(t, dir, "login"), noOverflow(t, "login"), accessible(t, "login"),
		// With the keyboard alone: the username has the focus, Tab goes
		// to the password, Enter signs in; on the consent page Tab
		// reaches Allow, and Enter allows.
		focused(`#username`),
		chromedp.KeyEvent("newbie"),
		chromedp.KeyEvent(kb.Tab),
		focused(`#password`),
		chromedp.KeyEvent("lantern-orchid-fjord"),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(`button[value=allow]`, chromedp.ByQuery),
		shoot(t, dir, "consent"), noOverflow(t, "consent"), accessible(t, "consent"),
		tabTo(`button[value=allow]`),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(`#result`, chromedp.ByQuery),
		chromedp.Text(`#result`, &result, chromedp.ByQuery),
	)
	if !strings.HasPrefix(result, "READ Patient/newbie") {
		t.Fatalf("the app showed %q", result)
	}
	// The account page lists the app just connected.
	var apps string
	steps(
		chromedp.Navigate(e.root+"/account"),
		chromedp.WaitVisible(`#apps`, chromedp.ByQuery),
		shoot(t, dir, "account"), noOverflow(t, "account"), accessible(t, "account"),
		chromedp.Text(`main`, &apps, chromedp.ByQuery),
	)
	if !strings.Contains(apps, "Health Diary") || !strings.Contains(apps, "keeps access when closed") {
		t.Fatalf("the account page does not list the app: %.500s", apps)
	}
	// An unknown app gets a page, not JSON.
	var body string
	steps(
		chromedp.Navigate(e.root+"/oauth2/authorize?response_type=code&client_id=nobody&redirect_uri=https://evil.example/cb&scope=openid&state=abcdefgh"),
		chromedp.WaitVisible(`main`, chromedp.ByQuery),
		shoot(t, dir, "unknown-app"), accessible(t, "unknown-app"),
		chromedp.Text(`main`, &body, chromedp.ByQuery),
	)
	if !strings.Contains(body, "not registered") {
		t.Fatalf("the unknown app's page: %q", body)
	}
	// A proxy's picker shows birth dates and the relationship.
	steps(
		chromedp.Navigate(e.root+"/account"),
		chromedp.Click(`header button[type=submit]`),
		chromedp.WaitNotPresent(`header form`, chromedp.ByQuery), // signed out
		goTo(app+"/launch.html"),
		chromedp.WaitVisible(`#username`, chromedp.ByQuery),
		chromedp.SendKeys(`#username`, "parent"),
		chromedp.SendKeys(`#password`, password),
		chromedp.Click(`main form button[type=submit]`),
		chromedp.WaitVisible(`input[name=patient]`, chromedp.ByQuery),
		shoot(t, dir, "pick"), noOverflow(t, "pick"), accessible(t, "pick"),
		chromedp.Text(`main`, &body, chromedp.ByQuery),
	)
	if !strings.Contains(body, "Born 1 Jan 2010") || !strings.Contains(body, "you are their parent") {
		t.Fatalf("the picker: %q", body)
	}
}

// TestBrowserPasskeySignIn: a patient adds a passkey on their account page
// (Chromium's virtual authenticator stands in for Touch ID), signs out,
// and signs in to an app with the passkey alone; on SQLite and MongoDB.
func TestBrowserPasskeySignIn(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { passkeySignIn(t, openSQLite(t)) })
	t.Run("mongo", func(t *testing.T) {
		st, err := mongo.Open(context.Background(), mongotest.URI(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		passkeySignIn(t, st)
	})
}

func passkeySignIn(t *testing.T, st store.Store) {
	e := newEnvAt(t, st, "localhost")
	app := fhirClientApp(t, e, "diary", "launch/patient openid fhirUser patient/*.rs")
	dir := screenshots(t)
	ctx := newChrome(t)
	steps := runSteps(t, ctx)
	steps(
		chromedp.Navigate(e.root+"/account/login"),
		webauthn.Enable(),
		chromedp.ActionFunc(func(ctx context.Context) error {
			_, err := webauthn.AddVirtualAuthenticator(&webauthn.VirtualAuthenticatorOptions{Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
				Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true}).Do(ctx)
			return err
		}),
		chromedp.WaitVisible(`#username`, chromedp.ByQuery),
		chromedp.SendKeys(`#username`, "alice"),
		chromedp.SendKeys(`#password`, password),
		chromedp.Click(`main form button[type=submit]`),
		chromedp.WaitVisible(`#passkey-add`, chromedp.ByQuery),
		chromedp.SendKeys(`#passkey-name`, "My phone"),
		chromedp.Click(`#passkey-add button[type=submit]`),
		chromedp.WaitVisible(`p.notice`, chromedp.ByQuery),
	)
	var listed string
	steps(chromedp.Text(`main`, &listed, chromedp.ByQuery))
	if !strings.Contains(listed, "My phone") {
		t.Fatalf("the passkey is not listed: %.400s", listed)
	}
	var result string
	steps(
		chromedp.Click(`header button[type=submit]`),
		chromedp.WaitNotPresent(`header form`, chromedp.ByQuery), // signed out
		goTo(app+"/launch.html"),
		chromedp.WaitVisible(`#passkey-signin button`, chromedp.ByQuery),
		shoot(t, dir, "login-passkey"), accessible(t, "login-passkey"),
		chromedp.Click(`#passkey-signin button`),
		chromedp.WaitVisible(`button[value=allow]`, chromedp.ByQuery),
		chromedp.Click(`button[value=allow]`),
		chromedp.WaitVisible(`#result`, chromedp.ByQuery),
		chromedp.Text(`#result`, &result, chromedp.ByQuery),
	)
	if !strings.HasPrefix(result, "READ Patient/alice") {
		t.Fatalf("the app showed %q", result)
	}
	u, err := smartAccount(e, "alice")
	if err != nil || len(u.Passkeys) != 1 || u.Passkeys[0].LastUsed.IsZero() {
		t.Fatalf("alice's passkeys: %+v %v", u, err)
	}
}

func smartAccount(e *env, name string) (*smart.User, error) {
	return smart.NewAccounts(e.st).Get(context.Background(), name)
}

// TestBrowserFederatedSignInToLaunch: a patient whose health system runs
// an OpenID provider (zitadel/oidc's example provider, a real one) signs
// in through it from an app's launch; the first time Hearth asks for the
// activation code that links the identity to the patient, the second time
// the provider's sign-in is enough.
func TestBrowserFederatedSignInToLaunch(t *testing.T) {
	op := oidctest.Reserve(t)
	e := newEnvAt(t, openSQLite(t), "localhost", func(c *smart.Config) {
		c.Federation = &smart.Federation{Issuer: op.Issuer, ClientID: op.ClientID, ClientSecret: op.ClientSecret, Name: "General Hospital"}
	})
	op.Run(t, e.root+"/account/federated/callback")
	e.adult("fedpat", "1975-11-30")
	code, _, err := e.provider.IssueActivation(context.Background(), "fedpat", 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	app := fhirClientApp(t, e, "diary", "launch/patient openid fhirUser patient/*.rs")
	dir := screenshots(t)
	ctx := newChrome(t)
	steps := runSteps(t, ctx)
	providerSignIn := []chromedp.Action{
		goTo(app + "/launch.html"),
		chromedp.WaitVisible(`#federated-signin button`, chromedp.ByQuery),
		chromedp.Click(`#federated-signin button`, chromedp.ByQuery),
		// The provider's own page: its form, not Hearth's (whose fields
		// have the same ids, and are still there until the browser has
		// left).
		chromedp.WaitVisible(`form[action="/login/username"] #username`, chromedp.ByQuery),
		chromedp.SendKeys(`form[action="/login/username"] #username`, op.Username, chromedp.ByQuery),
		chromedp.SendKeys(`form[action="/login/username"] #password`, op.Password, chromedp.ByQuery),
		chromedp.Submit(`form[action="/login/username"] #password`, chromedp.ByQuery),
	}
	steps(providerSignIn...)
	steps(
		chromedp.WaitVisible(`#code`, chromedp.ByQuery),
		shoot(t, dir, "federated-link"), noOverflow(t, "federated-link"), accessible(t, "federated-link"),
		chromedp.SendKeys(`#code`, "WRONG-CODE-00000", chromedp.ByQuery),
		chromedp.SetValue(`#birth-date`, "1975-11-30", chromedp.ByQuery),
		chromedp.Click(`main button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#code-error`, chromedp.ByQuery),
		chromedp.SetValue(`#code`, code, chromedp.ByQuery),
		chromedp.SetValue(`#birth-date`, "1975-11-30", chromedp.ByQuery),
		chromedp.Click(`main button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`button[value=allow]`, chromedp.ByQuery),
		chromedp.Click(`button[value=allow]`, chromedp.ByQuery),
	)
	var result string
	steps(chromedp.WaitVisible(`#result`, chromedp.ByQuery), chromedp.Text(`#result`, &result, chromedp.ByQuery))
	if !strings.HasPrefix(result, "READ Patient/fedpat") {
		t.Fatalf("the app showed %q", result)
	}
	// Later: the provider's sign-in alone, in a browser Hearth forgot.
	steps(network.ClearBrowserCookies())
	steps(providerSignIn...)
	steps(
		chromedp.WaitVisible(`button[value=allow]`, chromedp.ByQuery),
		chromedp.Click(`button[value=allow]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#result`, chromedp.ByQuery),
		chromedp.Text(`#result`, &result, chromedp.ByQuery),
	)
	if !strings.HasPrefix(result, "READ Patient/fedpat") {
		t.Fatalf("the second sign-in: the app showed %q", result)
	}
}
