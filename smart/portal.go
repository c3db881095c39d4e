package smart

import (
	"net/http"
	"net/url"
)

// portalLaunch is the portal side of an EHR launch: a signed-in user picks
// a patient and Hearth opens the app's launch URL with iss (the FHIR base)
// and an opaque, single-use launch value bound to that patient and app.
//
//	GET /oauth2/launch?client_id=ID
func (p *Provider) portalLaunch(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, err := p.clients.get(ctx, r.URL.Query().Get("client_id"))
	if err != nil || c.LaunchURI == "" {
		p.errorPage(w, http.StatusBadRequest, "This app is not registered here, or it cannot be opened from the portal.")
		return
	}
	pend := pending{CSRF: randomToken(), Portal: c.ID}
	id := randomToken()
	if err := p.savePending(ctx, id, &pend); err != nil {
		p.errorPage(w, http.StatusInternalServerError, "The app could not be opened; try again.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: pend.CSRF, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	p.portalNext(w, r, id, &pend, c)
}

func (p *Provider) portalNext(w http.ResponseWriter, r *http.Request, id string, pend *pending, c *Client) {
	ctx := r.Context()
	u, _, ls := p.currentSession(ctx, r)
	if u == nil {
		p.render(w, http.StatusOK, "login", p.signInPage("Sign in", p.authorizeForm(id, pend, c)))
		return
	}
	actors := u.Actors()
	if pend.Patient == "" {
		switch len(actors) {
		case 0:
			p.errorPage(w, http.StatusForbidden, "Your account is not linked to any record.")
			return
		case 1:
			pend.Patient = actors[0].Patient
		default:
			d := p.page("")
			d.Action, d.Hidden, d.ClientName = p.root+"/oauth2/interact", pendingFields(id, pend), clientName(c)
			d.User, d.SessionCSRF = u.Username, ls.CSRF
			p.renderPicker(ctx, w, d, u)
			return
		}
	}
	launch, err := p.CreateLaunch(ctx, c.ID, pend.Patient)
	if err != nil {
		p.errorPage(w, http.StatusInternalServerError, "The app could not be opened; try again.")
		return
	}
	p.st.DeleteAuth(ctx, kindPending, id)
	target, _ := url.Parse(c.LaunchURI)
	q := target.Query()
	q.Set("iss", p.cfg.FHIRBase)
	q.Set("launch", launch)
	target.RawQuery = q.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

// portalInteract receives the sign-in and picker forms of a portal launch.
func (p *Provider) portalInteract(w http.ResponseWriter, r *http.Request, id string, pend *pending) {
	ctx := r.Context()
	c, err := p.clients.get(ctx, pend.Portal)
	if err != nil {
		p.errorPage(w, http.StatusBadRequest, "This app is not registered here.")
		return
	}
	switch r.PostForm.Get("step") {
	case "login", "passkey", "totp", "enroll", "change":
		if u, _ := p.signInStep(w, r, p.authorizeForm(id, pend, c)); u == nil {
			return
		}
	case "pick":
		u, _ := p.currentUser(ctx, r)
		if u != nil {
			if _, ok := u.ActorFor(r.PostForm.Get("patient")); !ok {
				p.errorPage(w, http.StatusForbidden, "You may not act for that patient.")
				return
			}
			pend.Patient = r.PostForm.Get("patient")
			p.savePending(ctx, id, pend)
		}
	}
	p.portalNext(w, r, id, pend, c)
}
