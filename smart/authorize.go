package smart

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
)

const (
	sessionCookie = "hearth_session"
	csrfCookie    = "hearth_csrf"
	pendingTTL    = 10 * time.Minute
)

// pending is an authorization request between its arrival and the user's
// decision: the original parameters, the browser it is bound to (CSRF
// token) and what the user has done so far.
type pending struct {
	Form    url.Values `json:"form"`
	CSRF    string     `json:"csrf"`
	Patient string     `json:"patient,omitempty"` // chosen or from the launch
	Launch  string     `json:"launch,omitempty"`
	Banner  bool       `json:"banner"`
	// Portal is set for a portal (EHR) launch in progress: the client to
	// launch once the user has signed in and chosen a patient.
	Portal string `json:"portal,omitempty"`
}

// openedBy reports whether r comes from the browser the authorization
// started in (its CSRF cookie).
func (pend *pending) openedBy(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(pend.CSRF)) == 1
}

// postedBy reports whether r is a form of the authorization's pages posted
// by its browser: the cookie, and the token in the form.
func (pend *pending) postedBy(r *http.Request) bool {
	return pend.openedBy(r) && subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(pend.CSRF)) == 1
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return b64(b)
}

// launchContext is what an EHR (portal) launch binds to the `launch`
// parameter.
type launchContext struct {
	Patient  string `json:"patient"`
	ClientID string `json:"clientId"`
}

// CreateLaunch records an EHR launch of client for patient and returns the
// opaque, single-use `launch` value (valid for five minutes).
func (p *Provider) CreateLaunch(ctx context.Context, clientID, patient string) (string, error) {
	id := randomToken()
	data, _ := json.Marshal(launchContext{Patient: patient, ClientID: clientID})
	return id, p.st.CreateAuth(ctx, store.AuthRecord{Kind: kindLaunch, Key: id, Active: true, ExpiresAt: time.Now().Add(5 * time.Minute), Data: data})
}

// authorize is the authorization endpoint (GET and POST).
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := p.oauth.NewAuthorizeRequest(ctx, r)
	if err != nil {
		p.authorizeError(w, r, ar, err)
		return
	}
	form := ar.GetRequestForm()
	if form.Get("code_challenge") == "" || form.Get("code_challenge_method") != "S256" {
		p.oauth.WriteAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint("PKCE is required: send code_challenge with code_challenge_method=S256."))
		return
	}
	if strings.TrimSuffix(form.Get("aud"), "/") != p.cfg.FHIRBase {
		p.oauth.WriteAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHintf("aud must be this server's FHIR base URL, %s.", p.cfg.FHIRBase))
		return
	}
	pend := pending{Form: form, CSRF: randomToken(), Banner: true}
	if launch := form.Get("launch"); launch != "" || ar.GetRequestedScopes().Has("launch") {
		lc, err := p.useLaunch(ctx, launch, ar.GetClient().GetID())
		if err != nil {
			p.oauth.WriteAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint("The launch parameter is missing, expired, already used or issued to another app."))
			return
		}
		pend.Patient, pend.Launch, pend.Banner = lc.Patient, launch, false
	}
	id := randomToken()
	data, _ := json.Marshal(pend)
	if err := p.st.PutAuth(ctx, store.AuthRecord{Kind: kindPending, Key: id, Active: true, ExpiresAt: time.Now().Add(pendingTTL), Data: data}); err != nil {
		p.oauth.WriteAuthorizeError(ctx, w, ar, fosite.ErrServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: pend.CSRF, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	p.next(w, r, id, &pend, ar)
}

// authorizeError answers an authorization request that cannot go on. fosite
// sends the error back to the app only when client and redirect_uri are
// valid; otherwise it is shown here — never sent to an unchecked URI — as a
// page a person can read, not fosite's JSON.
func (p *Provider) authorizeError(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, err error) {
	if ar != nil && ar.IsRedirectURIValid() {
		p.oauth.WriteAuthorizeError(r.Context(), w, ar, err)
		return
	}
	msg := "This app could not be connected: it is not registered here, or it asked to return to an address it did not register. Nothing was shared. Go back to the app, or tell its maker."
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) && rfc.ErrorField != "invalid_client" && rfc.ErrorField != "invalid_request" {
		msg = "This app's request could not be accepted (" + rfc.ErrorField + "). Nothing was shared. Go back to the app and try again."
	}
	p.errorPage(w, http.StatusBadRequest, msg)
}

// useLaunch consumes a launch value: one use, one client.
func (p *Provider) useLaunch(ctx context.Context, launch, clientID string) (*launchContext, error) {
	if launch == "" {
		return nil, errors.New("no launch")
	}
	rec, err := p.st.GetAuth(ctx, kindLaunch, launch)
	if err != nil || !rec.Active {
		return nil, errors.New("unknown launch")
	}
	var lc launchContext
	if err := json.Unmarshal(rec.Data, &lc); err != nil || lc.ClientID != clientID {
		return nil, errors.New("launch for another client")
	}
	if err := p.st.DeactivateAuth(ctx, kindLaunch, launch); err != nil {
		return nil, err
	}
	return &lc, nil
}

// next shows the page the request needs now: login, patient picker or
// consent.
func (p *Provider) next(w http.ResponseWriter, r *http.Request, id string, pend *pending, ar fosite.AuthorizeRequester) {
	ctx := r.Context()
	u, _, ls := p.currentSession(ctx, r)
	if u == nil {
		f := p.authorizeForm(id, pend, ar.GetClient())
		p.render(w, http.StatusOK, "login", p.signInPage("Sign in", f))
		return
	}
	d := p.page("")
	d.Action, d.Hidden, d.ClientName = p.root+"/oauth2/interact", pendingFields(id, pend), clientName(ar.GetClient())
	d.User, d.SessionCSRF = u.Username, ls.CSRF
	actors := u.Actors()
	if pend.Patient != "" {
		if _, ok := u.ActorFor(pend.Patient); !ok {
			p.oauth.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The signed-in user may not act for the launch patient."))
			return
		}
	} else {
		switch len(actors) {
		case 0:
			p.oauth.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The account is not linked to any patient."))
			return
		case 1:
			pend.Patient = actors[0].Patient
		default:
			p.renderPicker(ctx, w, d, u)
			return
		}
		p.savePending(ctx, id, pend)
	}
	d.Title = "Allow " + d.ClientName + " to see your record?"
	d.PatientName = p.patientName(ctx, pend.Patient)
	if c, ok := ar.GetClient().(*Client); ok {
		d.Unverified = c.Unverified
	}
	if ru := ar.GetRedirectURI(); ru != nil {
		d.ClientHost = ru.Host
	}
	for _, s := range ar.GetRequestedScopes() {
		d.Scopes = append(d.Scopes, scopeChoice{Value: s, Label: describeScope(s)})
		if s == "offline_access" {
			d.Offline = true
		}
	}
	p.render(w, http.StatusOK, "consent", d)
}

// pendingFields are the hidden fields of an authorization's pages.
func pendingFields(id string, pend *pending) []field {
	return []field{{"pending", id}, {"csrf", pend.CSRF}}
}

// authorizeForm is how the sign-in pages of an authorization post.
func (p *Provider) authorizeForm(id string, pend *pending, c fosite.Client) signInForm {
	return signInForm{action: p.root + "/oauth2/interact", hidden: pendingFields(id, pend), client: clientName(c), clientID: c.GetID()}
}

func (p *Provider) savePending(ctx context.Context, id string, pend *pending) error {
	data, _ := json.Marshal(pend)
	return p.st.PutAuth(ctx, store.AuthRecord{Kind: kindPending, Key: id, Active: true, ExpiresAt: time.Now().Add(pendingTTL), Data: data})
}

// rebuildAuthorize makes the pending authorization's original request
// again; fosite checks it again.
func (p *Provider) rebuildAuthorize(ctx context.Context, pend *pending) (fosite.AuthorizeRequester, error) {
	orig, err := http.NewRequestWithContext(ctx, http.MethodGet, "/oauth2/authorize?"+pend.Form.Encode(), nil)
	if err != nil {
		return nil, err
	}
	return p.oauth.NewAuthorizeRequest(ctx, orig)
}

// interact receives the pages' forms.
func (p *Provider) interact(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		p.errorPage(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	id := r.PostForm.Get("pending")
	var pend pending
	if !p.record(ctx, kindPending, id, &pend) {
		p.errorPage(w, http.StatusBadRequest, "This sign-in has expired. Return to the app and start again.")
		return
	}
	if !pend.postedBy(r) {
		p.errorPage(w, http.StatusForbidden, "The form did not come from this browser's sign-in (CSRF check failed). Return to the app and start again.")
		return
	}
	if pend.Portal != "" {
		p.portalInteract(w, r, id, &pend)
		return
	}
	ar, err := p.rebuildAuthorize(ctx, &pend)
	if err != nil {
		p.authorizeError(w, r, ar, err)
		return
	}
	switch r.PostForm.Get("step") {
	case "login", "passkey", "totp", "enroll", "change":
		if u, _ := p.signInStep(w, r, p.authorizeForm(id, &pend, ar.GetClient())); u != nil {
			p.next(w, r, id, &pend, ar)
		}
	case "pick":
		u, _ := p.currentUser(ctx, r)
		if u == nil {
			p.next(w, r, id, &pend, ar)
			return
		}
		if _, ok := u.ActorFor(r.PostForm.Get("patient")); !ok {
			p.errorPage(w, http.StatusForbidden, "You may not act for that patient.")
			return
		}
		pend.Patient = r.PostForm.Get("patient")
		p.savePending(ctx, id, &pend)
		p.next(w, r, id, &pend, ar)
	case "consent":
		u, loginKey := p.currentUser(ctx, r)
		if u == nil || pend.Patient == "" {
			p.next(w, r, id, &pend, ar)
			return
		}
		p.st.DeleteAuth(ctx, kindPending, id) // one decision per request
		if r.PostForm.Get("decision") != "allow" {
			p.oauth.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The user denied access."))
			return
		}
		p.finish(w, r, ar, u, &pend, r.PostForm["scope"], loginKey)
	default:
		p.errorPage(w, http.StatusBadRequest, "Unknown step.")
	}
}

// finish grants what the user allowed and redirects to the app with a code.
func (p *Provider) finish(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, u *User, pend *pending, allowed []string, loginKey string) {
	ctx := r.Context()
	actor, ok := u.ActorFor(pend.Patient)
	if !ok {
		p.oauth.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied)
		return
	}
	for _, s := range ar.GetRequestedScopes() {
		if !slices.Contains(allowed, s) {
			continue
		}
		// system/ scopes belong to backend services, never to a user.
		if rs, ok := scopes.ParseResource(s); ok && rs.Context == "system" {
			continue
		}
		ar.GrantScope(s)
	}
	sess := p.newSession()
	sess.User = u.Username
	sess.Patient = actor.Patient
	sess.FHIRUser = actor.FHIRUser
	sess.NeedBanner = pend.Banner
	if ar.GetGrantedScopes().Has("online_access") {
		sess.LoginSession = loginKey
	}
	p.idTokenClaims(sess, time.Now().UTC())
	resp, err := p.oauth.NewAuthorizeResponse(ctx, ar, sess)
	if err != nil {
		p.oauth.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	who := audit.Agent{User: u.Username, FHIRUser: actor.FHIRUser, Client: ar.GetClient().GetID(), Patient: actor.Patient}
	if err := p.security(r, who, audit.Event{Type: audit.SecurityType, Subtype: audit.Consent, Outcome: audit.Success,
		Detail: "granted " + strings.Join(ar.GetGrantedScopes(), " ")}); err != nil {
		p.oauth.WriteAuthorizeError(ctx, w, ar, fosite.ErrTemporarilyUnavailable)
		return
	}
	p.oauth.WriteAuthorizeResponse(ctx, w, ar, resp)
}

func clientName(c fosite.Client) string {
	if hc, ok := c.(*Client); ok && hc.Name != "" {
		return hc.Name
	}
	return c.GetID()
}

// renderPicker shows the patient picker: the user's own record and each
// patient the user is a proxy for, with their birth dates and how the user
// is related to them.
func (p *Provider) renderPicker(ctx context.Context, w http.ResponseWriter, d pageData, u *User) {
	d.Title = "Choose a record"
	for _, a := range u.Actors() {
		pp := pickPatient{ID: a.Patient, Name: p.patientName(ctx, a.Patient), Self: a.Patient == u.Patient, Relationship: relationshipWords(a.Relationship)}
		if res, err := p.records.Read(ctx, "Patient", a.Patient); err == nil {
			if born, ok := birthDate(res.JSON); ok {
				pp.Born = born.Format("2 Jan 2006")
			}
		}
		d.Patients = append(d.Patients, pp)
	}
	p.render(w, http.StatusOK, "pick", d)
}

// relationshipWords is what the proxy is to the patient, in words ("" for
// none).
func relationshipWords(code string) string {
	if w, ok := Relationships[code]; ok {
		return w
	}
	return code
}

// patientName reads the patient's name for the pages.
func (p *Provider) patientName(ctx context.Context, id string) string {
	res, err := p.records.Read(ctx, "Patient", id)
	if err != nil {
		return "Patient " + id
	}
	var pt struct {
		Name []struct {
			Text   string   `json:"text"`
			Given  []string `json:"given"`
			Family string   `json:"family"`
		} `json:"name"`
	}
	if json.Unmarshal(res.JSON, &pt) != nil || len(pt.Name) == 0 {
		return "Patient " + id
	}
	n := pt.Name[0]
	if n.Text != "" {
		return n.Text
	}
	return strings.TrimSpace(strings.Join(append(n.Given, n.Family), " "))
}

// describeScope labels a scope for the consent page, in a patient's words.
func describeScope(s string) string {
	switch s {
	case "openid", "profile":
		return "Know who you are"
	case "fhirUser":
		return "Know your identity in the record"
	case "launch", "launch/patient":
		return "Know whose record is open"
	case "offline_access":
		return "Keep access after you close the app, until you revoke it"
	case "online_access":
		return "Keep access while you are signed in"
	}
	rs, ok := scopes.ParseResource(s)
	if !ok {
		return s
	}
	var verbs []string
	if rs.Perm&(scopes.Read|scopes.Search) != 0 {
		verbs = append(verbs, "see")
	}
	if rs.Perm&scopes.Create != 0 {
		verbs = append(verbs, "add to")
	}
	if rs.Perm&scopes.Update != 0 {
		verbs = append(verbs, "change")
	}
	if rs.Perm&scopes.Delete != 0 {
		verbs = append(verbs, "delete")
	}
	what := typeWords(rs.Type)
	if rs.Type == "*" {
		what = "all of the record"
	}
	label := strings.Join(verbs, ", ") + " " + what
	if rs.Query != nil {
		label += ", only where " + rs.Query.Encode()
	}
	return capitalise(label)
}
