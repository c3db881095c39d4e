package smart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// A sign-in is a password, then what the account needs besides: a code
// from its authenticator app, the enrolment of one (a proxy, under
// --proxy-mfa), a new password (past --password-max-age). The same steps
// serve the authorization pages and the account pages; each knows where
// its forms post and what they carry.

// signInForm is where a sign-in's pages post and what they carry.
type signInForm struct {
	action string
	hidden []field
	client string // the app's name, on the authorization pages
	// clientID is the app the sign-in is for, for the audit trail.
	clientID string
}

// signInState is a sign-in between its password and its last step,
// kept in the store under a random key the pages carry.
type signInState struct {
	Username string `json:"username"`
	Stage    string `json:"stage"`            // totp, enroll or change
	Secret   string `json:"secret,omitempty"` // enroll: the new authenticator secret
	Tries    int    `json:"tries"`
	Method   string `json:"method"` // how the user proved who they are so far
}

const (
	signInTTL = 10 * time.Minute
	// maxCodeTries per pending sign-in: then the password again.
	maxCodeTries = 5
)

// signInStep carries out one posted step of a sign-in. It returns the
// user and the login session's key once signed in (the cookie is set and
// r carries it), or writes the page of the next step and returns nil.
func (p *Provider) signInStep(w http.ResponseWriter, r *http.Request, f signInForm) (*User, string) {
	ctx := r.Context()
	step := r.PostForm.Get("step")
	switch step {
	case "login":
		return p.passwordStep(w, r, f)
	case "passkey":
		return p.passkeyStep(w, r, f)
	}
	key := r.PostForm.Get("signin")
	var st signInState
	var u *User
	if p.record(ctx, kindSignIn, sha(key), &st) && st.Stage == step {
		u, _ = p.accounts.Get(ctx, st.Username)
	}
	if u == nil || !u.CanSignIn() {
		p.st.DeleteAuth(ctx, kindSignIn, sha(key))
		d := p.signInPage("Sign in", f)
		d.Error = "This sign-in has expired. Sign in again."
		p.render(w, http.StatusBadRequest, "login", d)
		return nil, ""
	}
	now := time.Now()
	switch step {
	case "totp", "enroll":
		secret := u.TOTP
		if step == "enroll" {
			secret = st.Secret
		}
		if paused, err := p.secondFactorPaused(ctx, u.Username, now); err != nil || paused != nil {
			p.st.DeleteAuth(ctx, kindSignIn, sha(key))
			d := p.signInPage("Sign in", f)
			d.keep("username", u.Username)
			if paused != nil {
				d.Paused = paused
			} else {
				d.Error = "Signing in is not possible right now; try again later."
			}
			p.render(w, http.StatusTooManyRequests, "login", d)
			return nil, ""
		}
		stepNo, ok := totpStep(secret, r.PostForm.Get("code"), now, u.TOTPStep)
		if !ok {
			p.recordLoginFailure(r, audit.Agent{User: u.Username, Client: f.clientID}, errors.New("wrong authenticator code"))
			if err := p.secondFactorFailed(ctx, u.Username, now); err != nil {
				p.errorPage(w, http.StatusServiceUnavailable, "Signing in is not possible right now; try again later.")
				return nil, ""
			}
			st.Tries++
			if st.Tries >= maxCodeTries {
				p.st.DeleteAuth(ctx, kindSignIn, sha(key))
				d := p.signInPage("Sign in", f)
				d.keep("username", u.Username)
				d.Error = "Too many wrong codes. Sign in again."
				p.render(w, http.StatusUnauthorized, "login", d)
				return nil, ""
			}
			p.saveSignIn(ctx, key, st)
			d := p.stagePage(u, key, st, f)
			d.fieldError("code", "That code is not right, or was already used. Type the code your app shows now.")
			p.render(w, http.StatusUnauthorized, st.Stage, d)
			return nil, ""
		}
		u.TOTPStep = stepNo
		if step == "enroll" {
			u.TOTP = secret
		}
		if err := p.accounts.Put(ctx, u); err != nil {
			p.errorPage(w, http.StatusServiceUnavailable, "Signing in is not possible right now; try again later.")
			return nil, ""
		}
		if err := p.resetThrottle(ctx, u.Username); err != nil {
			p.errorPage(w, http.StatusServiceUnavailable, "Signing in is not possible right now; try again later.")
			return nil, ""
		}
		st.Method += "+totp"
	case "change":
		d := p.stagePage(u, key, st, f)
		if u.passwordMatches(r.PostForm.Get("new_password")) {
			d.fieldError("new_password", "Choose a password other than your old one.")
			p.render(w, http.StatusBadRequest, "change", d)
			return nil, ""
		}
		if !p.newPasswordFrom(r, u, &d) {
			p.render(w, http.StatusBadRequest, "change", d)
			return nil, ""
		}
		if err := p.accounts.Put(ctx, u); err != nil {
			p.errorPage(w, http.StatusServiceUnavailable, "Saving the password failed; try again.")
			return nil, ""
		}
		p.security(r, audit.Agent{User: u.Username, FHIRUser: u.fhirUser(), Patient: u.Patient}, audit.Event{Subtype: audit.AccountChanged, Action: "U", Detail: "password changed at sign-in (it was too old)"})
	default:
		p.errorPage(w, http.StatusBadRequest, "Unknown step.")
		return nil, ""
	}
	p.st.DeleteAuth(ctx, kindSignIn, sha(key))
	return p.nextStage(w, r, u, st.Method, f)
}

// passwordStep checks the username and password.
func (p *Provider) passwordStep(w http.ResponseWriter, r *http.Request, f signInForm) (*User, string) {
	ctx := r.Context()
	username := r.PostForm.Get("username")
	who := audit.Agent{User: username, Client: f.clientID}
	u, err := p.checkPassword(ctx, username, r.PostForm.Get("password"), audit.From(r).Address, time.Now())
	var paused *PausedError
	switch {
	case u != nil && (err == nil || errors.As(err, &paused)):
		// The right password; a paused account goes on to its second
		// factor (checkPassword returns it only when it has one).
		return p.nextStage(w, r, u, "password", f)
	case errors.Is(err, errUnconfirmed):
		p.recordLoginFailure(r, who, err)
		p.sendConfirmation(ctx, u, u.Email, false)
		d := p.signInPage("Sign in", f)
		d.keep("username", username)
		d.Error = "Confirm your e-mail address first: we sent a new link to it. Open it, then sign in."
		p.render(w, http.StatusUnauthorized, "login", d)
		return nil, ""
	case errors.As(err, &paused):
		p.recordLoginFailure(r, who, err)
		d := p.signInPage("Sign in", f)
		d.keep("username", username)
		d.Paused = paused
		p.render(w, http.StatusTooManyRequests, "login", d)
		return nil, ""
	case errors.Is(err, ErrBadLogin):
		p.recordLoginFailure(r, who, err)
		d := p.signInPage("Sign in", f)
		d.keep("username", username)
		d.Error = "The username or password is not right. Check them and try again."
		p.render(w, http.StatusUnauthorized, "login", d)
		return nil, ""
	default:
		p.log.ErrorContext(ctx, "sign-in check failed", "error", err.Error())
		p.errorPage(w, http.StatusServiceUnavailable, "Signing in is not possible right now; try again later.")
		return nil, ""
	}
}

// nextStage goes on from a proven step: to the authenticator code, the
// enrolment of one, a new password, or the end of the sign-in.
func (p *Provider) nextStage(w http.ResponseWriter, r *http.Request, u *User, method string, f signInForm) (*User, string) {
	ctx := r.Context()
	st := signInState{Username: u.Username, Method: method}
	switch {
	case method == "password" && u.TOTP != "":
		st.Stage = "totp"
	case method == "password" && p.cfg.ProxyMFA && len(u.Links) > 0:
		secret, err := p.newTOTPKey(u.Username)
		if err != nil {
			p.errorPage(w, http.StatusInternalServerError, "Signing in failed; try again.")
			return nil, ""
		}
		st.Stage, st.Secret = "enroll", secret
	case method == "password" && p.passwordExpired(u):
		st.Stage = "change"
	default:
		return p.startSession(w, r, u, method, f)
	}
	key := randomToken()
	if err := p.saveSignIn(ctx, key, st); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "Signing in is not possible right now; try again later.")
		return nil, ""
	}
	d := p.stagePage(u, key, st, f)
	p.render(w, http.StatusOK, st.Stage, d)
	return nil, ""
}

func (p *Provider) passwordExpired(u *User) bool {
	return p.cfg.PasswordMaxAge > 0 && !u.PasswordChanged.IsZero() && time.Since(u.PasswordChanged) > p.cfg.PasswordMaxAge
}

func (p *Provider) saveSignIn(ctx context.Context, key string, st signInState) error {
	data, _ := json.Marshal(st)
	return p.st.PutAuth(ctx, store.AuthRecord{Kind: kindSignIn, Key: sha(key), Subject: st.Username, Active: true, ExpiresAt: time.Now().Add(signInTTL), Data: data})
}

// signInPage is a page of the sign-in, posting where f says.
func (p *Provider) signInPage(title string, f signInForm) pageData {
	d := p.page(title)
	d.Action, d.Hidden, d.ClientName = f.action, f.hidden, f.client
	return d
}

// stagePage is the page of a pending sign-in's stage.
func (p *Provider) stagePage(u *User, key string, st signInState, f signInForm) pageData {
	titles := map[string]string{"totp": "Enter your code", "enroll": "Set up two-step sign-in", "change": "Choose a new password"}
	d := p.signInPage(titles[st.Stage], f)
	d.Hidden = append(append([]field{}, f.hidden...), field{"signin", key})
	switch st.Stage {
	case "enroll":
		// The same secret, shown again: the QR code is made from it.
		d.TOTP = p.totpEnrollment(u.Username, st.Secret)
	case "change":
		d.Notice = fmt.Sprintf("Your password is more than %d days old. Choose a new one to continue.", int(p.cfg.PasswordMaxAge.Hours()/24))
	}
	return d
}

// newPasswordFrom reads new_password and confirm_password into u, or
// marks the fields of d with what is wrong.
func (p *Provider) newPasswordFrom(r *http.Request, u *User, d *pageData) bool {
	pw := r.PostForm.Get("new_password")
	if pw != r.PostForm.Get("confirm_password") {
		d.fieldError("confirm_password", "The two passwords are not the same.")
		return false
	}
	if err := u.SetPassword(pw); err != nil {
		d.fieldError("new_password", capitalise(err.Error())+".")
		return false
	}
	return true
}

// loginSession is a signed-in browser.
type loginSession struct {
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	// CSRF is the token the account pages' forms carry.
	CSRF   string `json:"csrf"`
	Method string `json:"method,omitempty"`
}

// startSession ends a sign-in: it records it, and gives the browser its
// session.
func (p *Provider) startSession(w http.ResponseWriter, r *http.Request, u *User, method string, f signInForm) (*User, string) {
	ctx := r.Context()
	who := audit.Agent{User: u.Username, FHIRUser: u.fhirUser(), Patient: u.Patient, Client: f.clientID}
	if err := p.security(r, who, audit.Event{Type: audit.AuthenticationType, Subtype: audit.Login, Outcome: audit.Success, Detail: "signed in with " + method}); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "Signing in is not possible right now; try again later.")
		return nil, ""
	}
	token := randomToken()
	now := time.Now()
	data, _ := json.Marshal(loginSession{User: u.Username, Created: now.UTC(), CSRF: randomToken(), Method: method})
	key := sha(token)
	if err := p.st.PutAuth(ctx, store.AuthRecord{Kind: kindLogin, Key: key, Subject: u.Username, Active: true, ExpiresAt: now.Add(p.cfg.IdleTimeout), Data: data}); err != nil {
		p.errorPage(w, http.StatusInternalServerError, "Signing in failed; try again.")
		return nil, ""
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	r.AddCookie(&http.Cookie{Name: sessionCookie, Value: token})
	return u, key
}

// currentSession returns the signed-in user of this browser and its
// session, extending the idle timeout, or nil. A session ends after
// IdleTimeout without a request and SessionLifetime after sign-in,
// whichever comes first, and with the account's ability to sign in.
func (p *Provider) currentSession(ctx context.Context, r *http.Request) (*User, string, *loginSession) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, "", nil
	}
	key := sha(c.Value)
	rec, err := p.st.GetAuth(ctx, kindLogin, key)
	if err != nil || !rec.Active {
		return nil, "", nil
	}
	var ls loginSession
	if json.Unmarshal(rec.Data, &ls) != nil {
		return nil, "", nil
	}
	now := time.Now()
	end := ls.Created.Add(p.cfg.SessionLifetime)
	if !now.Before(end) {
		p.st.DeleteAuth(ctx, kindLogin, key)
		return nil, "", nil
	}
	u, err := p.accounts.Get(ctx, ls.User)
	if err != nil || !u.CanSignIn() {
		return nil, "", nil
	}
	rec.ExpiresAt = now.Add(p.cfg.IdleTimeout)
	if end.Before(rec.ExpiresAt) {
		rec.ExpiresAt = end
	}
	p.st.PutAuth(ctx, rec)
	return u, key, &ls
}

// currentUser is currentSession without the session.
func (p *Provider) currentUser(ctx context.Context, r *http.Request) (*User, string) {
	u, key, _ := p.currentSession(ctx, r)
	return u, key
}

// endSessions signs a user out everywhere: every login session, and with
// them the online_access refresh tokens.
func (p *Provider) endSessions(ctx context.Context, username string) error {
	recs, err := p.st.ListAuth(ctx, kindLogin, username)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if err := p.st.DeleteAuth(ctx, kindLogin, rec.Key); err != nil {
			return err
		}
	}
	return nil
}
