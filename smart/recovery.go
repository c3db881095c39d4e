package smart

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/mail"
	"github.com/hearth-fhir/hearth/store"
)

// Recovery of a forgotten password or username, by e-mail. The answer to a
// request is the same whether or not it matched an account, and comes at
// once: the mail, if any, goes out after it, so that its time tells
// nothing either.

const resetTTL = 30 * time.Minute

func (p *Provider) forgotPage(w http.ResponseWriter, r *http.Request) {
	p.formPage(w, r, "Forgot your password?", "forgot", "/account/forgot")
}

func (p *Provider) forgot(w http.ResponseWriter, r *http.Request) {
	if !p.formChecked(w, r) {
		return
	}
	who := strings.TrimSpace(r.PostForm.Get("who"))
	p.later(r, func(ctx context.Context) {
		var users []*User
		if strings.Contains(who, "@") {
			users, _ = p.accounts.ByEmail(ctx, who)
		} else if u, err := p.accounts.Get(ctx, who); err == nil {
			users = []*User{u}
		}
		for _, u := range users {
			if u.Email == "" || u.Disabled || !u.Deactivated.IsZero() || !p.mailAllowed(ctx, "reset", u.Username) {
				continue
			}
			token := randomToken()
			if p.st.CreateAuth(ctx, store.AuthRecord{Kind: kindReset, Key: sha(token), Subject: u.Username, Active: true, ExpiresAt: time.Now().Add(resetTTL), Data: []byte(`"` + u.Username + `"`)}) != nil {
				continue
			}
			p.sendMail(ctx, mail.Message{To: u.Email, Subject: "Choose a new password — " + p.cfg.Brand.name(),
				Text: fmt.Sprintf("Hello %s,\n\nSomeone asked to choose a new password for your account on %s. If it was you, open this link (it works once, for 30 minutes):\n\n%s/account/reset?t=%s\n\nIf it was not you, ignore this e-mail: your password stays as it is.\n", u.Username, p.cfg.Brand.name(), p.root, token)})
		}
	})
	d := p.page("Check your e-mail")
	d.Notice = "If that matches an account with an e-mail address, we sent a link to choose a new password to it. The link works once, for 30 minutes."
	p.render(w, http.StatusOK, "error", d)
}

func (p *Provider) forgotUsernamePage(w http.ResponseWriter, r *http.Request) {
	p.formPage(w, r, "Forgot your username?", "forgot-username", "/account/forgot-username")
}

func (p *Provider) forgotUsername(w http.ResponseWriter, r *http.Request) {
	if !p.formChecked(w, r) {
		return
	}
	email, err := checkEmail(r.PostForm.Get("email"))
	if err == nil {
		p.later(r, func(ctx context.Context) {
			users, _ := p.accounts.ByEmail(ctx, email)
			var names []string
			for _, u := range users {
				if !u.Disabled && u.Deactivated.IsZero() && p.mailAllowed(ctx, "username", u.Username) {
					names = append(names, u.Username)
				}
			}
			if len(names) == 0 {
				return
			}
			p.sendMail(ctx, mail.Message{To: email, Subject: "Your username — " + p.cfg.Brand.name(),
				Text: fmt.Sprintf("Hello,\n\nThe accounts on %s with this e-mail address have these usernames:\n\n  %s\n\nSign in at %s/account/login\n\nIf you did not ask for this, ignore this e-mail.\n", p.cfg.Brand.name(), strings.Join(names, "\n  "), p.root)})
		})
	}
	d := p.page("Check your e-mail")
	d.Notice = "If that address belongs to any accounts, we sent their usernames to it."
	p.render(w, http.StatusOK, "error", d)
}

// later runs a mail-sending task after the answer: with the request's
// values (audit request id) but not its cancellation, and a time limit.
func (p *Provider) later(r *http.Request, task func(ctx context.Context)) {
	ctx := context.WithoutCancel(r.Context())
	go func() {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		task(ctx)
	}()
}

func (p *Provider) resetPage(w http.ResponseWriter, r *http.Request) {
	p.formPage(w, r, "Choose a new password", "reset", "/account/reset", field{"t", r.URL.Query().Get("t")})
}

// reset sets a new password from a reset link, and ends everything the
// old password opened: sessions, and every app's tokens.
func (p *Provider) reset(w http.ResponseWriter, r *http.Request) {
	if !p.formChecked(w, r) {
		return
	}
	ctx := r.Context()
	token := r.PostForm.Get("t")
	key := sha(token)
	var name string
	if !p.record(ctx, kindReset, key, &name) {
		p.errorPage(w, http.StatusBadRequest, "This link has expired or was already used. Ask for a new one on the sign-in page.")
		return
	}
	u, err := p.accounts.Get(ctx, name)
	if err != nil || u.Disabled || !u.Deactivated.IsZero() {
		p.errorPage(w, http.StatusBadRequest, "This link has expired or was already used.")
		return
	}
	d := p.page("Choose a new password")
	d.Action, d.Hidden = p.root+"/account/reset", []field{{"csrf", r.PostForm.Get("csrf")}, {"t", token}}
	if !p.newPasswordFrom(r, u, &d) {
		p.render(w, http.StatusBadRequest, "reset", d)
		return
	}
	if err := p.st.DeactivateAuth(ctx, kindReset, key); err != nil {
		p.errorPage(w, http.StatusBadRequest, "This link has expired or was already used.")
		return
	}
	// The link came to the account's address: that confirms it.
	u.Unconfirmed = false
	if err := p.accounts.Put(ctx, u); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "The password could not be saved; try again.")
		return
	}
	if err := p.RevokeUser(ctx, u.Username); err != nil {
		p.log.ErrorContext(ctx, "revoking after a password reset failed", "error", err.Error())
	}
	p.resetThrottle(ctx, u.Username)
	p.security(r, accountAgent(u), audit.Event{Subtype: audit.AccountChanged, Action: "U", Detail: "password reset by e-mail link; sessions and app tokens revoked"})
	d = p.page("Your password is changed")
	d.Notice = "You are signed out everywhere, and apps you connected will ask you to sign in again."
	p.render(w, http.StatusOK, "notice", d)
}
