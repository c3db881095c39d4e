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
		renderPage(w, http.StatusBadRequest, "error", pageData{Title: "Error", Error: "Unknown app, or the app has no launch URL."})
		return
	}
	pend := pending{CSRF: randomToken(), Portal: c.ID}
	id := randomToken()
	if err := p.savePending(ctx, id, &pend); err != nil {
		renderPage(w, http.StatusInternalServerError, "error", pageData{Title: "Error", Error: "The launch could not be started."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: pend.CSRF, Path: "/oauth2", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	p.portalNext(w, r, id, &pend, c)
}

func (p *Provider) portalNext(w http.ResponseWriter, r *http.Request, id string, pend *pending, c *Client) {
	ctx := r.Context()
	d := pageData{Action: p.root + "/oauth2/interact", Pending: id, CSRF: pend.CSRF, ClientName: clientName(c)}
	u, _ := p.currentUser(ctx, w, r)
	if u == nil {
		d.Title = "Sign in"
		renderPage(w, http.StatusOK, "login", d)
		return
	}
	actors := u.Actors()
	if pend.Patient == "" {
		switch len(actors) {
		case 0:
			renderPage(w, http.StatusForbidden, "error", pageData{Title: "Error", Error: "Your account is not linked to any patient."})
			return
		case 1:
			pend.Patient = actors[0].Patient
		default:
			p.renderPicker(ctx, w, d, u)
			return
		}
	}
	launch, err := p.CreateLaunch(ctx, c.ID, pend.Patient)
	if err != nil {
		renderPage(w, http.StatusInternalServerError, "error", pageData{Title: "Error", Error: "The launch could not be started."})
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

// portalInteract receives the login and picker forms of a portal launch.
func (p *Provider) portalInteract(w http.ResponseWriter, r *http.Request, id string, pend *pending) {
	ctx := r.Context()
	c, err := p.clients.get(ctx, pend.Portal)
	if err != nil {
		renderPage(w, http.StatusBadRequest, "error", pageData{Title: "Error", Error: "Unknown app."})
		return
	}
	switch r.PostForm.Get("step") {
	case "login":
		if _, ok := p.signIn(w, r, id, pend, clientName(c)); !ok {
			return
		}
	case "pick":
		u, _ := p.currentUser(ctx, w, r)
		if u != nil {
			if _, ok := u.ActorFor(r.PostForm.Get("patient")); !ok {
				renderPage(w, http.StatusForbidden, "error", pageData{Title: "Error", Error: "You may not act for that patient."})
				return
			}
			pend.Patient = r.PostForm.Get("patient")
			p.savePending(ctx, id, pend)
		}
	}
	p.portalNext(w, r, id, pend, c)
}

// logout ends the browser's login session; refresh tokens granted with
// online_access stop working with it. It is a POST: the session cookie is
// SameSite=Lax, so another site cannot sign the user out.
func (p *Provider) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		p.st.DeleteAuth(r.Context(), kindLogin, sha(c.Value))
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/oauth2", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	renderPage(w, http.StatusOK, "error", pageData{Title: "Signed out", Error: "You are signed out."})
}
