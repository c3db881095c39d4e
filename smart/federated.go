package smart

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// Federated sign-in: many health systems already run an OpenID Connect
// provider for their patients, and Hearth can let patients sign in
// through it. Hearth is then a relying party (authorization code with
// PKCE and a nonce; the ID token verified with go-oidc). The provider
// proves who signs in; which patient's record that person may open stays
// the health system's to say: the first federated sign-in links the
// external identity to a patient with an activation code and birth date,
// and later ones sign in directly.

// Federation configures the OpenID provider patients may sign in with.
type Federation struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// Name is the provider's name on the sign-in button ("Sign in with
	// <Name>").
	Name string
}

// federatedCookie binds a federated sign-in to the browser that started it.
const federatedCookie = "hearth_federated"

// federation is the relying party, set up on first use: the provider may
// start after Hearth.
type federation struct {
	cfg      Federation
	mu       sync.Mutex
	provider *oidc.Provider
}

func (f *federation) discover(ctx context.Context) (*oidc.Provider, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.provider != nil {
		return f.provider, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	op, err := oidc.NewProvider(ctx, f.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	f.provider = op
	return op, nil
}

func (p *Provider) federatedOAuth(op *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: p.fed.cfg.ClientID, ClientSecret: p.fed.cfg.ClientSecret, Endpoint: op.Endpoint(),
		RedirectURL: p.root + "/account/federated/callback", Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
}

// federatedStart is where a sign-in goes to the provider: what the
// sign-in was for (an app's authorization, or the account pages) waits in
// the store under the state value, with the nonce and the PKCE verifier.
type federatedStart struct {
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	// Browser is the hash of a cookie set on the browser that started:
	// the answer is taken only from it, so that nobody can sign a victim's
	// browser in as themselves by sending it their own callback URL.
	Browser string `json:"browser"`
	Pending string `json:"pending,omitempty"` // an app's authorization in progress
	Return  string `json:"return,omitempty"`  // an account page
}

// startFederated sends the browser to the provider. The form carries the
// sign-in page's hidden fields: an authorization's pending id and CSRF
// token, or the account pages' CSRF token.
func (p *Provider) startFederated(w http.ResponseWriter, r *http.Request) {
	if p.fed == nil {
		p.errorPage(w, http.StatusNotFound, "Sign-in with another provider is not set up here.")
		return
	}
	if err := r.ParseForm(); err != nil {
		p.errorPage(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	ctx := r.Context()
	st := federatedStart{Nonce: randomToken(), Verifier: oauth2.GenerateVerifier()}
	if id := r.PostForm.Get("pending"); id != "" {
		// An app's authorization: the same CSRF check as its own forms.
		var pend pending
		if !p.record(ctx, kindPending, id, &pend) || !pend.postedBy(r) {
			p.errorPage(w, http.StatusForbidden, "This sign-in has expired. Return to the app and start again.")
			return
		}
		st.Pending = id
	} else {
		if !p.formChecked(w, r) {
			return
		}
		if ret := r.PostForm.Get("return"); safeReturn(ret) {
			st.Return = ret
		}
	}
	op, err := p.fed.discover(ctx)
	if err != nil {
		p.log.ErrorContext(ctx, "the OpenID provider cannot be reached", "error", err.Error())
		p.errorPage(w, http.StatusBadGateway, p.fed.cfg.Name+" cannot be reached right now. Sign in with your username and password, or try again later.")
		return
	}
	state, browser := randomToken(), randomToken()
	st.Browser = sha(browser)
	http.SetCookie(w, &http.Cookie{Name: federatedCookie, Value: browser, Path: "/account/federated", MaxAge: int(pendingTTL.Seconds()), HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	data, _ := json.Marshal(st)
	if err := p.st.CreateAuth(ctx, store.AuthRecord{Kind: kindFederated, Key: sha(state), Active: true, ExpiresAt: time.Now().Add(pendingTTL), Data: data}); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "Signing in is not possible right now; try again later.")
		return
	}
	http.Redirect(w, r, p.federatedOAuth(op).AuthCodeURL(state, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), http.StatusSeeOther)
}

// federatedIdentity is an external identity, as its provider vouches.
type federatedIdentity struct {
	Issuer, Subject string
	Email           string `json:"email,omitempty"` // only if the provider verified it
	Username        string `json:"username,omitempty"`
}

func (id federatedIdentity) key() string { return sha(id.Issuer + "\n" + id.Subject) }

// federatedCallback receives the provider's answer, verifies the ID token
// and signs in the account linked to the identity, or asks for an
// activation code to link one.
func (p *Provider) federatedCallback(w http.ResponseWriter, r *http.Request) {
	if p.fed == nil {
		p.errorPage(w, http.StatusNotFound, "Sign-in with another provider is not set up here.")
		return
	}
	ctx := r.Context()
	q := r.URL.Query()
	key := sha(q.Get("state"))
	var st federatedStart
	if !p.record(ctx, kindFederated, key, &st) || p.st.DeleteAuth(ctx, kindFederated, key) != nil {
		p.errorPage(w, http.StatusBadRequest, "This sign-in has expired or was already used. Start again.")
		return
	}
	if c, err := r.Cookie(federatedCookie); err != nil || subtle.ConstantTimeCompare([]byte(sha(c.Value)), []byte(st.Browser)) != 1 {
		p.errorPage(w, http.StatusForbidden, "This sign-in was started in another browser. Start again here.")
		return
	}
	if e := q.Get("error"); e != "" {
		p.errorPage(w, http.StatusUnauthorized, p.fed.cfg.Name+" did not sign you in ("+e+"). Start again, or sign in with your username and password.")
		return
	}
	id, err := p.verifyFederated(ctx, q.Get("code"), st)
	if err != nil {
		p.log.WarnContext(ctx, "federated sign-in refused", "error", err.Error())
		p.recordLoginFailure(r, audit.Agent{}, fmt.Errorf("federated sign-in refused: %w", err))
		p.errorPage(w, http.StatusUnauthorized, "The sign-in with "+p.fed.cfg.Name+" could not be verified. Start again.")
		return
	}
	linked, err := p.st.GetAuth(ctx, kindFederatedID, id.key())
	if errors.Is(err, store.ErrNotFound) {
		p.renderLinkFederated(w, r, http.StatusOK, id, st, pageData{})
		return
	}
	if err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "Signing in is not possible right now; try again later.")
		return
	}
	u, err := p.accounts.Get(ctx, linked.Subject)
	if err != nil || !u.CanSignIn() {
		p.recordLoginFailure(r, audit.Agent{User: linked.Subject}, errDisabled)
		p.errorPage(w, http.StatusUnauthorized, "The account linked to this sign-in is closed or disabled. Contact your clinic.")
		return
	}
	p.finishFederated(w, r, u, st)
}

// verifyFederated exchanges the code (with the PKCE verifier) and checks
// the ID token: signature, issuer, audience, expiry (go-oidc) and nonce.
func (p *Provider) verifyFederated(ctx context.Context, code string, st federatedStart) (federatedIdentity, error) {
	op, err := p.fed.discover(ctx)
	if err != nil {
		return federatedIdentity{}, err
	}
	tok, err := p.federatedOAuth(op).Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return federatedIdentity{}, fmt.Errorf("code exchange: %w", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return federatedIdentity{}, errors.New("no id_token")
	}
	idt, err := op.Verifier(&oidc.Config{ClientID: p.fed.cfg.ClientID}).Verify(ctx, raw)
	if err != nil {
		return federatedIdentity{}, err
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return federatedIdentity{}, errors.New("the nonce does not match")
	}
	var claims struct {
		Email         string `json:"email"`
		EmailVerified bool   `json:"email_verified"`
		Preferred     string `json:"preferred_username"`
	}
	idt.Claims(&claims)
	id := federatedIdentity{Issuer: idt.Issuer, Subject: idt.Subject, Username: claims.Preferred}
	if claims.EmailVerified {
		id.Email = claims.Email
	}
	return id, nil
}

// finishFederated signs the user in and goes back to what the sign-in was
// for.
func (p *Provider) finishFederated(w http.ResponseWriter, r *http.Request, u *User, st federatedStart) {
	f := signInForm{action: p.root + "/account/login"}
	if u, _ := p.nextStage(w, r, u, "federated", f); u == nil {
		return
	}
	switch {
	case st.Pending != "":
		http.Redirect(w, r, p.root+"/oauth2/resume?pending="+st.Pending, http.StatusSeeOther)
	case st.Return != "":
		http.Redirect(w, r, p.root+st.Return, http.StatusSeeOther)
	default:
		http.Redirect(w, r, p.root+"/account", http.StatusSeeOther)
	}
}

// federatedLink is a first federated sign-in waiting for its activation
// code.
type federatedLink struct {
	Identity federatedIdentity `json:"identity"`
	Start    federatedStart    `json:"start"`
}

func (p *Provider) renderLinkFederated(w http.ResponseWriter, r *http.Request, status int, id federatedIdentity, st federatedStart, errs pageData) {
	ctx := r.Context()
	token := randomToken()
	data, _ := json.Marshal(federatedLink{Identity: id, Start: st})
	if err := p.st.CreateAuth(ctx, store.AuthRecord{Kind: kindFederatedLink, Key: sha(token), Active: true, ExpiresAt: time.Now().Add(pendingTTL), Data: data}); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "Signing in is not possible right now; try again later.")
		return
	}
	d := p.page("Connect your " + p.fed.cfg.Name + " sign-in")
	d.FieldErrors, d.Error, d.Values = errs.FieldErrors, errs.Error, errs.Values
	d.Action, d.Hidden = p.root+"/account/federated/link", []field{{"csrf", p.formToken(w, r)}, {"link", token}}
	d.keep("provider", p.fed.cfg.Name)
	p.render(w, status, "federated-link", d)
}

// linkFederated checks the activation code and birth date of a first
// federated sign-in, makes the patient's account (it has no password: it
// signs in through the provider) and links the identity to it.
func (p *Provider) linkFederated(w http.ResponseWriter, r *http.Request) {
	if p.fed == nil {
		p.errorPage(w, http.StatusNotFound, "Sign-in with another provider is not set up here.")
		return
	}
	if !p.formChecked(w, r) {
		return
	}
	ctx := r.Context()
	key := sha(r.PostForm.Get("link"))
	var fl federatedLink
	if !p.record(ctx, kindFederatedLink, key, &fl) || p.st.DeleteAuth(ctx, kindFederatedLink, key) != nil {
		p.errorPage(w, http.StatusBadRequest, "This sign-in has expired. Start again.")
		return
	}
	attempt, err := p.codeAttemptOf(r)
	if err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "Signing in is not possible right now; try again later.")
		return
	}
	var errs pageData
	errs.keep("code", r.PostForm.Get("code"))
	errs.keep("birth_date", r.PostForm.Get("birth_date"))
	if until, paused := attempt.pausedUntil(); paused {
		errs.Error = "Linking is paused after several unsuccessful attempts from your network. Try again after " + until.UTC().Format("15:04 UTC") + "."
		p.renderLinkFederated(w, r, http.StatusTooManyRequests, fl.Identity, fl.Start, errs)
		return
	}
	codeKey := sha(normaliseCode(r.PostForm.Get("code")))
	act, ok := p.checkActivation(ctx, codeKey, strings.TrimSpace(r.PostForm.Get("birth_date")))
	if !ok || p.st.DeactivateAuth(ctx, kindActivation, codeKey) != nil {
		p.codeFailed(ctx, attempt)
		errs.fieldError("code", "The activation code and date of birth do not match a code we issued. Check both; a code works once, and expires.")
		p.renderLinkFederated(w, r, http.StatusBadRequest, fl.Identity, fl.Start, errs)
		return
	}
	u, err := p.createFederatedAccount(ctx, fl.Identity, act.Patient)
	if err != nil {
		p.log.ErrorContext(ctx, "linking a federated identity failed", "error", err.Error())
		p.errorPage(w, http.StatusServiceUnavailable, "The account could not be created; try again later.")
		return
	}
	if err := p.st.CreateAuth(ctx, store.AuthRecord{Kind: kindFederatedID, Key: fl.Identity.key(), Subject: u.Username, Active: true, Data: []byte(`{}`)}); err != nil {
		p.errorPage(w, http.StatusConflict, "This "+p.fed.cfg.Name+" sign-in is already linked to an account. Sign in again.")
		return
	}
	p.security(r, accountAgent(u), audit.Event{Subtype: audit.AccountChanged, Action: "C", Detail: "account created by a federated sign-in with an activation code"})
	p.finishFederated(w, r, u, fl.Start)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._@-]+`)

// createFederatedAccount makes the account of a federated identity: its
// username from the provider's (or "patient"), made unique.
func (p *Provider) createFederatedAccount(ctx context.Context, id federatedIdentity, patient string) (*User, error) {
	base := strings.Trim(unsafeName.ReplaceAllString(id.Username, "-"), "-._@")
	if CheckUsername(base) != nil {
		base = "patient"
	}
	base = base[:min(len(base), 56)]
	for n := 1; n <= 50; n++ {
		name := base
		if n > 1 {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		u := &User{Username: name, Patient: patient, Email: id.Email, Created: time.Now().UTC()}
		err := p.accounts.insert(ctx, u)
		if errors.Is(err, ErrUsernameTaken) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return u, nil
	}
	return nil, errors.New("no free username")
}

// resume shows an app's authorization again once a federated sign-in came
// back: the next page it needs (picker, consent).
func (p *Provider) resume(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.URL.Query().Get("pending")
	var pend pending
	if !p.record(ctx, kindPending, id, &pend) {
		p.errorPage(w, http.StatusBadRequest, "This sign-in has expired. Return to the app and start again.")
		return
	}
	if !pend.openedBy(r) {
		p.errorPage(w, http.StatusForbidden, "This sign-in belongs to another browser. Return to the app and start again.")
		return
	}
	if pend.Portal != "" {
		c, err := p.clients.get(ctx, pend.Portal)
		if err != nil {
			p.errorPage(w, http.StatusBadRequest, "This app is not registered here.")
			return
		}
		p.portalNext(w, r, id, &pend, c)
		return
	}
	ar, err := p.rebuildAuthorize(ctx, &pend)
	if err != nil {
		p.authorizeError(w, r, ar, err)
		return
	}
	p.next(w, r, id, &pend, ar)
}
