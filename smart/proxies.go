package smart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/mail"
	"github.com/hearth-fhir/hearth/smart/password"
	"github.com/hearth-fhir/hearth/store"
)

// A patient invites a proxy by e-mail; the invitee accepts by signing in
// or signing up, and the link is made. The mail names neither the patient
// nor anything about them: whoever opens it learns only that someone
// invited them.

const inviteTTL = 7 * 24 * time.Hour

type invitation struct {
	Patient      string `json:"patient"`
	Relationship string `json:"relationship"`
	Email        string `json:"email"`
	By           string `json:"by"`
}

// proxyRights is what a patient may do about the links of their proxies,
// by age: an adult manages them (sees, ends, invites) and an adolescent
// past the restricted age too where the operator allows it; from the year
// before 18 a patient may keep a link going past their birthday. A patient
// of unknown age counts as an adult.
type proxyRights struct{ manage, adult, renew bool }

func (p *Provider) proxyRightsOf(ctx context.Context, u *User) proxyRights {
	if u.Patient == "" {
		return proxyRights{}
	}
	age, known := p.patientAge(ctx, u.Patient)
	adult := !known || age >= adulthood
	return proxyRights{manage: adult || p.cfg.TeenManagesProxies && age >= p.restrictedAge(), adult: adult, renew: !known || age >= adulthood-1}
}

func (p *Provider) inviteProxy(w http.ResponseWriter, r *http.Request, s *signedIn) {
	ctx := r.Context()
	if !p.proxyRightsOf(ctx, s.user).manage {
		p.accountError(w, r, s, "invite", "Invitations are arranged with your clinic until you are 18.", http.StatusForbidden)
		return
	}
	email, err := checkEmail(r.PostForm.Get("email"))
	if err != nil {
		p.accountError(w, r, s, "invite", capitalise(err.Error())+".", http.StatusBadRequest)
		return
	}
	rel := r.PostForm.Get("relationship")
	if _, ok := Relationships[rel]; !ok || rel == "ONESELF" {
		p.accountError(w, r, s, "invite", "Choose how they are related to you.", http.StatusBadRequest)
		return
	}
	if !p.mailAllowed(ctx, "invite", s.user.Username) {
		p.accountError(w, r, s, "invite", "You sent an invitation a moment ago; wait two minutes before the next.", http.StatusTooManyRequests)
		return
	}
	token := randomToken()
	data, _ := json.Marshal(invitation{Patient: s.user.Patient, Relationship: rel, Email: email, By: s.user.Username})
	if err := p.st.CreateAuth(ctx, store.AuthRecord{Kind: kindInvite, Key: sha(token), Subject: s.user.Patient, Active: true, ExpiresAt: time.Now().Add(inviteTTL), Data: data}); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "The invitation could not be made; try again.")
		return
	}
	err = p.sendMail(ctx, mail.Message{To: email, Subject: "You are invited to help with someone's care — " + p.cfg.Brand.name(),
		Text: fmt.Sprintf("Hello,\n\nSomeone who is a patient at %s invited you to see their health record and help with their care. To accept, open this link (it works for 7 days):\n\n%s/account/invite?t=%s\n\nYou will sign in, or create an account. If you did not expect this, ignore this e-mail.\n", p.cfg.Brand.name(), p.root, token)})
	if err != nil {
		p.st.DeleteAuth(ctx, kindInvite, sha(token))
		p.accountError(w, r, s, "invite", "The invitation e-mail could not be sent; try again later.", http.StatusServiceUnavailable)
		return
	}
	p.security(r, accountAgent(s.user), audit.Event{Subtype: audit.ProxyLinked, Action: "C", Detail: "the patient invited a proxy (" + rel + ")"})
	p.done(w, r, "invited")
}

// loadInvite reads a live invitation.
func (p *Provider) loadInvite(ctx context.Context, token string) (*invitation, bool) {
	var inv invitation
	if !p.record(ctx, kindInvite, sha(token), &inv) {
		return nil, false
	}
	return &inv, true
}

func (p *Provider) invitePage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := r.URL.Query().Get("t")
	inv, ok := p.loadInvite(ctx, token)
	if !ok {
		p.errorPage(w, http.StatusBadRequest, "This invitation has expired or was already used. Ask the person who invited you for a new one.")
		return
	}
	p.renderInvite(w, r, http.StatusOK, token, inv, pageData{})
}

func (p *Provider) renderInvite(w http.ResponseWriter, r *http.Request, status int, token string, inv *invitation, errs pageData) {
	d := p.page("Accept an invitation")
	d.FieldErrors, d.Error = errs.FieldErrors, errs.Error
	d.Action, d.Hidden = p.root+"/account/invite", []field{{"csrf", p.formToken(w, r)}, {"t", token}}
	d.keep("relationship", relationshipWords(inv.Relationship))
	d.keep("signin", p.root+"/account/login?return=/account/invite?t="+token)
	d.keep("username", errs.Values["username"])
	if u, _, ls := p.currentSession(r.Context(), r); u != nil {
		d.User, d.SessionCSRF = u.Username, ls.CSRF
	}
	p.render(w, status, "invite", d)
}

// acceptInvite links the signed-in account, or a new one made here, to the
// patient who invited them.
func (p *Provider) acceptInvite(w http.ResponseWriter, r *http.Request) {
	if !p.formChecked(w, r) {
		return
	}
	ctx := r.Context()
	token := r.PostForm.Get("t")
	inv, ok := p.loadInvite(ctx, token)
	if !ok {
		p.errorPage(w, http.StatusBadRequest, "This invitation has expired or was already used.")
		return
	}
	records, ok := p.records.(ProxyRecords)
	if !ok {
		p.errorPage(w, http.StatusInternalServerError, "Invitations cannot be accepted on this server.")
		return
	}
	var u *User
	switch r.PostForm.Get("step") {
	case "accept":
		u, _ = p.currentUser(ctx, r)
		if u == nil {
			p.renderInvite(w, r, http.StatusUnauthorized, token, inv, pageData{Error: "Sign in first."})
			return
		}
	case "signup":
		// The link came to this address: the new account's e-mail is
		// confirmed by it.
		nu := &User{Username: r.PostForm.Get("username"), Email: inv.Email}
		var errs pageData
		errs.keep("username", nu.Username)
		if err := CheckUsername(nu.Username); err != nil {
			errs.fieldError("username", capitalise(err.Error())+".")
			p.renderInvite(w, r, http.StatusBadRequest, token, inv, errs)
			return
		}
		if r.PostForm.Get("new_password") != r.PostForm.Get("confirm_password") {
			errs.fieldError("confirm_password", "The two passwords are not the same.")
			p.renderInvite(w, r, http.StatusBadRequest, token, inv, errs)
			return
		}
		if err := password.Check(r.PostForm.Get("new_password"), nu.Username, nu.Email); err != nil {
			errs.fieldError("new_password", capitalise(err.Error())+".")
			p.renderInvite(w, r, http.StatusBadRequest, token, inv, errs)
			return
		}
		created, err := p.accounts.Create(ctx, nu, r.PostForm.Get("new_password"))
		if errors.Is(err, ErrUsernameTaken) {
			errs.fieldError("username", "This username cannot be used; choose another.")
			p.renderInvite(w, r, http.StatusBadRequest, token, inv, errs)
			return
		}
		if err != nil {
			p.errorPage(w, http.StatusServiceUnavailable, "The account could not be created; try again.")
			return
		}
		u = created
		p.security(r, audit.Agent{User: u.Username}, audit.Event{Subtype: audit.AccountChanged, Action: "C", Detail: "account created to accept a proxy invitation"})
	default:
		p.errorPage(w, http.StatusBadRequest, "Unknown step.")
		return
	}
	if u.Patient == inv.Patient || slices.ContainsFunc(u.Actors(), func(a Actor) bool { return a.Patient == inv.Patient }) {
		p.errorPage(w, http.StatusConflict, "Your account can already open this record.")
		return
	}
	if err := p.st.DeactivateAuth(ctx, kindInvite, sha(token)); err != nil {
		p.errorPage(w, http.StatusBadRequest, "This invitation has expired or was already used.")
		return
	}
	l, err := LinkProxy(ctx, p.st, records, u.Username, inv.Patient, inv.Relationship)
	if err != nil {
		p.log.ErrorContext(ctx, "accepting an invitation failed", "error", err.Error())
		p.errorPage(w, http.StatusServiceUnavailable, "The invitation could not be accepted; ask for a new one.")
		return
	}
	p.security(r, audit.Agent{User: u.Username, FHIRUser: "RelatedPerson/" + l.RelatedPerson, Patient: inv.Patient},
		audit.Event{Subtype: audit.ProxyLinked, Action: "C", Detail: "proxy invitation accepted", Entities: []string{"RelatedPerson/" + l.RelatedPerson}})
	if cur, _ := p.currentUser(ctx, r); cur == nil || cur.Username != u.Username {
		if u, _ := p.nextStage(w, r, u, "invitation", signInForm{action: p.root + "/account/login", hidden: []field{{"csrf", r.PostForm.Get("csrf")}}}); u == nil {
			return
		}
	}
	p.done(w, r, "invite-taken")
}

func (p *Provider) revokeProxy(w http.ResponseWriter, r *http.Request, s *signedIn) {
	ctx := r.Context()
	if !p.proxyRightsOf(ctx, s.user).manage {
		p.accountError(w, r, s, "invite", "Until you are 18, who can act for you is arranged with your clinic.", http.StatusForbidden)
		return
	}
	name := r.PostForm.Get("username")
	if err := Unlink(ctx, p.st, name, s.user.Patient); err != nil {
		p.accountError(w, r, s, "invite", "That person cannot act for you.", http.StatusNotFound)
		return
	}
	p.checked.clear()
	p.security(r, accountAgent(s.user), audit.Event{Subtype: audit.ProxyLinked, Action: "D", Detail: "the patient ended a proxy's access"})
	p.done(w, r, "proxy-revoked")
}

func (p *Provider) renewProxy(w http.ResponseWriter, r *http.Request, s *signedIn) {
	ctx := r.Context()
	if !p.proxyRightsOf(ctx, s.user).renew {
		p.accountError(w, r, s, "invite", "You can decide this from the year before you turn 18.", http.StatusForbidden)
		return
	}
	proxies, err := p.accounts.ProxiesOf(ctx, s.user.Patient)
	name := r.PostForm.Get("username")
	if err != nil || !slices.ContainsFunc(proxies, func(px Proxy) bool { return px.Username == name }) {
		p.accountError(w, r, s, "invite", "That person cannot act for you.", http.StatusNotFound)
		return
	}
	if err := p.accounts.RenewLink(ctx, name, s.user.Patient); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "The change could not be saved; try again.")
		return
	}
	p.security(r, accountAgent(s.user), audit.Event{Subtype: audit.ProxyLinked, Action: "U", Detail: "the patient kept a proxy's access past their 18th birthday"})
	p.done(w, r, "proxy-renewed")
}
