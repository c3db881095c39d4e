package smart

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// The patient's own account pages, under /account: sign-in, sign-up with
// an activation code, e-mail confirmation, recovery, and once signed in
// the account itself — details, two-step sign-in, connected apps, proxies,
// recent sign-ins, closing the account.

// formCookie carries the CSRF token of the forms a browser fills before it
// is signed in (sign-in, sign-up, recovery); signed-in forms carry their
// login session's own token.
const formCookie = "hearth_form"

// AccountRoutes returns the account pages, mounted at /account.
func (p *Provider) AccountRoutes() http.Handler {
	r := chi.NewRouter()
	r.Use(noStoreHeaders)
	r.Get("/logo", p.logo)
	r.Get("/login", p.accountLoginPage)
	r.Post("/login", p.accountLogin)
	r.Post("/logout", p.accountLogout)
	r.Get("/signup", p.signupPage)
	r.Post("/signup", p.signup)
	r.Get("/confirm", p.confirmPage)
	r.Post("/confirm", p.confirm)
	r.Get("/forgot", p.forgotPage)
	r.Post("/forgot", p.forgot)
	r.Get("/forgot-username", p.forgotUsernamePage)
	r.Post("/forgot-username", p.forgotUsername)
	r.Get("/reset", p.resetPage)
	r.Post("/reset", p.reset)
	r.Get("/invite", p.invitePage)
	r.Post("/invite", p.acceptInvite)
	r.Post("/api/activation", p.activationAPI)
	r.Get("/passkey.js", servePasskeyScript)
	r.Post("/passkey/options", p.passkeyLoginOptions)
	r.Post("/federated/start", p.startFederated)
	r.Get("/federated/callback", p.federatedCallback)
	r.Post("/federated/link", p.linkFederated)
	r.Group(func(r chi.Router) {
		r.Use(p.requireSession)
		r.Get("/", p.withSession(p.accountHome))
		r.Post("/email", p.withSession(p.changeEmail))
		r.Post("/password", p.withSession(p.changePassword))
		r.Post("/totp/setup", p.withSession(p.totpSetup))
		r.Post("/totp/confirm", p.withSession(p.totpConfirm))
		r.Post("/totp/remove", p.withSession(p.totpRemove))
		r.Post("/apps/revoke", p.withSession(p.revokeApp))
		r.Post("/proxies/invite", p.withSession(p.inviteProxy))
		r.Post("/proxies/revoke", p.withSession(p.revokeProxy))
		r.Post("/proxies/renew", p.withSession(p.renewProxy))
		r.Post("/deactivate", p.withSession(p.deactivate))
		r.Post("/passkeys/options", p.withSession(p.passkeyRegisterOptions))
		r.Post("/passkeys/add", p.withSession(p.passkeyRegister))
		r.Post("/passkeys/remove", p.withSession(p.passkeyRemove))
	})
	return r
}

type sessionKey struct{}

// signedIn is the session a request of the signed-in account pages runs in.
type signedIn struct {
	user *User
	key  string
	ls   *loginSession
}

// requireSession lets signed-in browsers through to the account pages,
// with their session in the context; a POST must carry the session's CSRF
// token. Others go to the sign-in page.
func (p *Provider) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, key, ls := p.currentSession(r.Context(), r)
		if u == nil {
			http.Redirect(w, r, p.root+"/account/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				p.errorPage(w, http.StatusBadRequest, "The form could not be read.")
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(ls.CSRF)) != 1 {
				p.errorPage(w, http.StatusForbidden, "The form did not come from this browser's session (CSRF check failed). Go back, reload the page and try again.")
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, &signedIn{user: u, key: key, ls: ls})))
	})
}

// withSession adapts a handler of the signed-in account pages: it is given
// the session requireSession put in the context, and a request that
// reaches it without one fails closed.
func (p *Provider) withSession(h func(w http.ResponseWriter, r *http.Request, s *signedIn)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := r.Context().Value(sessionKey{}).(*signedIn)
		if !ok || s == nil || s.user == nil {
			p.errorPage(w, http.StatusInternalServerError, "The account page is not available.")
			return
		}
		h(w, r, s)
	}
}

// formToken returns this browser's CSRF token for the forms it fills
// before signing in, setting the cookie on first use.
func (p *Provider) formToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(formCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	t := randomToken()
	http.SetCookie(w, &http.Cookie{Name: formCookie, Value: t, Path: "/account", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	return t
}

// formPage shows a page whose form is posted before sign-in: to action,
// with this browser's CSRF token and the extra hidden fields.
func (p *Provider) formPage(w http.ResponseWriter, r *http.Request, title, name, action string, extra ...field) {
	d := p.page(title)
	d.Action, d.Hidden = p.root+action, append([]field{{"csrf", p.formToken(w, r)}}, extra...)
	p.render(w, http.StatusOK, name, d)
}

// formChecked parses a form posted before sign-in and checks its CSRF
// token; on failure it has written the error page.
func (p *Provider) formChecked(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		p.errorPage(w, http.StatusBadRequest, "The form could not be read.")
		return false
	}
	c, err := r.Cookie(formCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostForm.Get("csrf"))) != 1 {
		p.errorPage(w, http.StatusForbidden, "The form did not come from this browser (CSRF check failed). Go back, reload the page and try again.")
		return false
	}
	return true
}

// record reads a live record of kind and decodes its data into v: false
// if it is missing, expired, spent (inactive) or unreadable.
func (p *Provider) record(ctx context.Context, kind, key string, v any) bool {
	rec, err := p.st.GetAuth(ctx, kind, key)
	return err == nil && rec.Active && json.Unmarshal(rec.Data, v) == nil
}

// accountForm is how the account's sign-in pages post.
func (p *Provider) accountForm(w http.ResponseWriter, r *http.Request) signInForm {
	f := signInForm{action: p.root + "/account/login", hidden: []field{{"csrf", p.formToken(w, r)}}}
	if ret := r.FormValue("return"); safeReturn(ret) {
		f.hidden = append(f.hidden, field{"return", ret})
	}
	return f
}

// safeReturn: the account pages go back only to one of their own paths.
func safeReturn(path string) bool {
	return strings.HasPrefix(path, "/account/") && !strings.HasPrefix(path, "//") && !strings.ContainsAny(path, "\\\r\n")
}

func (p *Provider) accountLoginPage(w http.ResponseWriter, r *http.Request) {
	if u, _ := p.currentUser(r.Context(), r); u != nil {
		http.Redirect(w, r, p.root+"/account", http.StatusSeeOther)
		return
	}
	p.render(w, http.StatusOK, "login", p.signInPage("Sign in", p.accountForm(w, r)))
}

func (p *Provider) accountLogin(w http.ResponseWriter, r *http.Request) {
	if !p.formChecked(w, r) {
		return
	}
	if u, _ := p.signInStep(w, r, p.accountForm(w, r)); u == nil {
		return
	}
	to := p.root + "/account"
	if ret := r.PostForm.Get("return"); safeReturn(ret) {
		to = p.root + ret
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// accountLogout ends this browser's session. Its form carries the
// session's CSRF token; without a session there is nothing to end.
func (p *Provider) accountLogout(w http.ResponseWriter, r *http.Request) {
	if u, key, ls := p.currentSession(r.Context(), r); u != nil {
		if r.ParseForm() != nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(ls.CSRF)) != 1 {
			p.errorPage(w, http.StatusForbidden, "The form did not come from this browser's session (CSRF check failed).")
			return
		}
		p.st.DeleteAuth(r.Context(), kindLogin, key)
	}
	p.logout(w, r)
}

// logout ends the browser's login session; refresh tokens granted with
// online_access stop working with it. It is a POST: the session cookie is
// SameSite=Lax, so another site cannot sign the user out.
func (p *Provider) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		p.st.DeleteAuth(r.Context(), kindLogin, sha(c.Value))
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	d := p.page("Signed out")
	d.Notice = "You are signed out."
	p.render(w, http.StatusOK, "notice", d)
}

func (p *Provider) logo(w http.ResponseWriter, r *http.Request) {
	if len(p.cfg.Brand.Logo) == 0 {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", p.cfg.Brand.LogoType)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(p.cfg.Brand.Logo)
}

// accountView is what the account page shows.
type accountView struct {
	Username, Email string
	PasswordChanged time.Time
	HasTOTP         bool
	Passkeys        []passkeyView
	Apps            []connectedApp
	Proxies         []proxyView
	// ProxiesHidden says why a minor does not see their proxies.
	ProxiesHidden string
	CanInvite     bool
	Relationships []scopeChoice
	Acting        []actingView
	SignIns       []signInView
}

type passkeyView struct {
	ID, Name          string
	Created, LastUsed time.Time
}

type proxyView struct {
	Username, Relationship string
	Ends                   time.Time
	Ended, CanRenew        bool
}

type actingView struct {
	Name, Relationship string
	Ends               time.Time
}

type signInView struct {
	At            time.Time
	What, Address string
}

// accountPage is the account page of s, with what the caller adds.
func (p *Provider) accountPage(ctx context.Context, s *signedIn) pageData {
	d := p.page("Your account")
	d.User, d.SessionCSRF = s.user.Username, s.ls.CSRF
	u := s.user
	v := &accountView{Username: u.Username, Email: u.Email, PasswordChanged: u.PasswordChanged, HasTOTP: u.TOTP != ""}
	v.Apps, _ = p.connectedApps(ctx, u.Username)
	for _, pk := range u.Passkeys {
		v.Passkeys = append(v.Passkeys, passkeyView{ID: b64(pk.Credential.ID), Name: pk.Name, Created: pk.Created, LastUsed: pk.LastUsed})
	}
	rights := p.proxyRightsOf(ctx, u)
	switch {
	case u.Patient == "":
	case !rights.manage:
		v.ProxiesHidden = "Until you are 18, who can act for you is arranged with your clinic."
	default:
		proxies, _ := p.accounts.ProxiesOf(ctx, u.Patient)
		now := time.Now()
		for _, px := range proxies {
			v.Proxies = append(v.Proxies, proxyView{Username: px.Username, Relationship: relationshipWords(px.Link.Relationship),
				Ends: px.Link.Ends, Ended: !px.Link.Live(now), CanRenew: !px.Link.Ends.IsZero() && rights.renew})
		}
		v.CanInvite = rights.adult
		for _, code := range []string{"PRN", "GUARD", "SPS", "CHILD", "FAMMEMB", "FRND", "POWATT"} {
			v.Relationships = append(v.Relationships, scopeChoice{Value: code, Label: Relationships[code]})
		}
	}
	now := time.Now()
	for _, l := range u.Links {
		if l.Live(now) {
			v.Acting = append(v.Acting, actingView{Name: p.patientName(ctx, l.Patient), Relationship: relationshipWords(l.Relationship), Ends: l.Ends})
		}
	}
	v.SignIns = p.recentSignIns(ctx, u.Username)
	d.Account = v
	return d
}

func (p *Provider) accountHome(w http.ResponseWriter, r *http.Request, s *signedIn) {
	d := p.accountPage(r.Context(), s)
	d.Notice = accountNotices[r.URL.Query().Get("done")]
	p.render(w, http.StatusOK, "account", d)
}

// accountNotices are what the account page says after a change (its
// ?done= names one; nothing else a link carries is shown).
var accountNotices = map[string]string{
	"email":           "We sent a link to your new address. Your e-mail changes when you open it.",
	"password":        "Your password is changed. Other browsers were signed out.",
	"totp":            "Two-step sign-in is on.",
	"totp-off":        "Two-step sign-in is off.",
	"app":             "The app's access is revoked.",
	"invited":         "The invitation is sent.",
	"proxy-revoked":   "Their access is ended.",
	"proxy-renewed":   "Their access goes on.",
	"invite-taken":    "You can now open their record.",
	"passkey":         "The passkey is added: you can sign in with it.",
	"passkey-removed": "The passkey is removed.",
	"email-verified":  "Your e-mail address is confirmed.",
}

// done sends the browser back to the account page with a notice.
func (p *Provider) done(w http.ResponseWriter, r *http.Request, notice string) {
	http.Redirect(w, r, p.root+"/account?done="+notice+"#main", http.StatusSeeOther)
}

// accountError shows the account page again with a field's error.
func (p *Provider) accountError(w http.ResponseWriter, r *http.Request, s *signedIn, fieldName, msg string, status int) {
	d := p.accountPage(r.Context(), s)
	d.fieldError(fieldName, msg)
	d.Error = "Something needs your attention below: " + msg
	p.render(w, status, "account", d)
}

// accountAgent is the audit agent of the signed-in user.
func accountAgent(u *User) audit.Agent {
	return audit.Agent{User: u.Username, FHIRUser: u.fhirUser(), Patient: u.Patient}
}

func (p *Provider) changeEmail(w http.ResponseWriter, r *http.Request, s *signedIn) {
	addr, err := checkEmail(r.PostForm.Get("email"))
	if err != nil {
		p.accountError(w, r, s, "email", err.Error(), http.StatusBadRequest)
		return
	}
	if err := p.sendConfirmation(r.Context(), s.user, addr, true); err != nil {
		p.accountError(w, r, s, "email", "The e-mail could not be sent; try again later.", http.StatusServiceUnavailable)
		return
	}
	p.done(w, r, "email")
}

// checkEmail reads an e-mail address: one bare address.
func checkEmail(s string) (string, error) {
	a, err := mail.ParseAddress(strings.TrimSpace(s))
	if err != nil || a.Name != "" || len(a.Address) > 254 {
		return "", errors.New("type an e-mail address such as name@example.org")
	}
	return a.Address, nil
}

func (p *Provider) changePassword(w http.ResponseWriter, r *http.Request, s *signedIn) {
	u := s.user
	if !u.passwordMatches(r.PostForm.Get("password")) {
		p.accountError(w, r, s, "password", "Your current password is not right.", http.StatusUnauthorized)
		return
	}
	d := p.accountPage(r.Context(), s)
	if !p.newPasswordFrom(r, u, &d) {
		d.Error = "Something needs your attention below."
		p.render(w, http.StatusBadRequest, "account", d)
		return
	}
	if err := p.accounts.Put(r.Context(), u); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "Saving the password failed; try again.")
		return
	}
	// Other browsers signed in with the old password are signed out;
	// this one goes on.
	recs, _ := p.st.ListAuth(r.Context(), kindLogin, u.Username)
	for _, rec := range recs {
		if rec.Key != s.key {
			p.st.DeleteAuth(r.Context(), kindLogin, rec.Key)
		}
	}
	p.security(r, accountAgent(u), audit.Event{Subtype: audit.AccountChanged, Action: "U", Detail: "password changed"})
	p.done(w, r, "password")
}

func (p *Provider) totpSetup(w http.ResponseWriter, r *http.Request, s *signedIn) {
	secret, err := p.newTOTPKey(s.user.Username)
	if err != nil {
		p.errorPage(w, http.StatusInternalServerError, "Two-step sign-in could not be set up; try again.")
		return
	}
	// The secret waits in a pending sign-in record until a code proves
	// the app has it.
	key := randomToken()
	if err := p.saveSignIn(r.Context(), key, signInState{Username: s.user.Username, Stage: "enroll", Secret: secret}); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "Two-step sign-in could not be set up; try again.")
		return
	}
	d := p.accountPage(r.Context(), s)
	d.TOTP = p.totpEnrollment(s.user.Username, secret)
	d.Action = p.root + "/account/totp/confirm"
	d.Hidden = []field{{"csrf", s.ls.CSRF}, {"signin", key}}
	p.render(w, http.StatusOK, "account", d)
}

func (p *Provider) totpConfirm(w http.ResponseWriter, r *http.Request, s *signedIn) {
	ctx := r.Context()
	key := r.PostForm.Get("signin")
	var st signInState
	if !p.record(ctx, kindSignIn, sha(key), &st) || st.Username != s.user.Username || st.Stage != "enroll" {
		p.accountError(w, r, s, "code", "The set-up expired; start again.", http.StatusBadRequest)
		return
	}
	step, ok := totpStep(st.Secret, r.PostForm.Get("code"), time.Now(), 0)
	if !ok {
		d := p.accountPage(ctx, s)
		d.TOTP = p.totpEnrollment(s.user.Username, st.Secret)
		d.Action = p.root + "/account/totp/confirm"
		d.Hidden = []field{{"csrf", s.ls.CSRF}, {"signin", key}}
		d.fieldError("code", "That code is not right. Type the code your app shows now.")
		p.render(w, http.StatusBadRequest, "account", d)
		return
	}
	s.user.TOTP, s.user.TOTPStep = st.Secret, step
	if err := p.accounts.Put(ctx, s.user); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "Two-step sign-in could not be saved; try again.")
		return
	}
	p.st.DeleteAuth(ctx, kindSignIn, sha(key))
	p.security(r, accountAgent(s.user), audit.Event{Subtype: audit.AccountChanged, Action: "U", Detail: "two-step sign-in turned on"})
	p.done(w, r, "totp")
}

func (p *Provider) totpRemove(w http.ResponseWriter, r *http.Request, s *signedIn) {
	if p.cfg.ProxyMFA && len(s.user.Links) > 0 {
		p.accountError(w, r, s, "totp", "Accounts that act for someone else must keep two-step sign-in on.", http.StatusForbidden)
		return
	}
	s.user.TOTP, s.user.TOTPStep = "", 0
	if err := p.accounts.Put(r.Context(), s.user); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "The change could not be saved; try again.")
		return
	}
	p.security(r, accountAgent(s.user), audit.Event{Subtype: audit.AccountChanged, Action: "U", Detail: "two-step sign-in turned off"})
	p.done(w, r, "totp-off")
}

// deactivate closes the user's own account: no more sign-in, every
// session and token ended; the records stay.
func (p *Provider) deactivate(w http.ResponseWriter, r *http.Request, s *signedIn) {
	if !s.user.passwordMatches(r.PostForm.Get("password")) {
		p.accountError(w, r, s, "close", "Your password is not right; the account stays open.", http.StatusUnauthorized)
		return
	}
	ctx := r.Context()
	s.user.Deactivated = time.Now().UTC()
	if err := p.accounts.Put(ctx, s.user); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "The account could not be closed; try again.")
		return
	}
	if err := p.RevokeUser(ctx, s.user.Username); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "The account is closed, but not every app's access could be ended yet; they end when they next ask.")
		return
	}
	p.security(r, accountAgent(s.user), audit.Event{Subtype: audit.AccountChanged, Action: "D", Detail: "account closed by its user"})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	d := p.page("Your account is closed")
	d.Notice = "You are signed out, and no app can use your account any more. Your health records stay with the clinic; ask the clinic if you want to open an account again."
	p.render(w, http.StatusOK, "error", d)
}

// patientAge is how old a patient is today, if their birth date is known.
func (p *Provider) patientAge(ctx context.Context, patient string) (int, bool) {
	res, err := p.records.Read(ctx, "Patient", patient)
	if err != nil {
		return 0, false
	}
	born, ok := birthDate(res.JSON)
	if !ok {
		return 0, false
	}
	return ageAt(born, time.Now()), true
}

func (p *Provider) restrictedAge() int {
	if p.cfg.ProxyRestrictedAge <= 0 {
		return 12
	}
	return p.cfg.ProxyRestrictedAge
}

// recentSignIns reads the user's last sign-ins, and failed attempts, from
// the audit trail, where the store keeps one.
func (p *Provider) recentSignIns(ctx context.Context, username string) []signInView {
	trail, ok := p.st.(store.AuditLog)
	if !ok {
		return nil
	}
	recs, err := trail.SearchAudit(ctx, store.AuditQuery{Agents: []string{audit.UserAgent(username)}, Subtypes: []string{audit.Login}, Descending: true, Limit: 10})
	if err != nil {
		return nil
	}
	var out []signInView
	for _, rec := range recs {
		a, e, err := audit.Parse(rec)
		if err != nil {
			continue
		}
		what := "Signed in"
		if e.Outcome != audit.Success {
			what = "Failed: " + e.Detail
		} else if m, ok := strings.CutPrefix(e.Detail, "signed in with "); ok {
			what = "Signed in with " + strings.ReplaceAll(m, "+totp", " and a code")
		}
		out = append(out, signInView{At: rec.Recorded, What: what, Address: a.Address})
	}
	return out
}
