package smart

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/scopes"
)

// maxAssertionLifetime bounds a client assertion's exp (SMART: at most
// five minutes ahead).
const maxAssertionLifetime = 5*time.Minute + 30*time.Second

// token is the token endpoint.
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		p.writeAccessError(w, r, nil, fosite.ErrInvalidRequest.WithHint("The body is not a valid form."))
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "" && !slices.Contains(grantTypes, g) {
		// RFC 6749 §5.2: a grant type the server does not support.
		p.writeAccessError(w, r, nil, fosite.ErrUnsupportedGrantType.WithHintf("Hearth supports the grant types %s.", strings.Join(grantTypes, ", ")))
		return
	}
	if a := r.PostForm.Get("client_assertion"); a != "" && !assertionTimesOK(a) {
		p.writeAccessError(w, r, nil, fosite.ErrInvalidClient.WithHint("The client assertion has expired, is not yet valid, or its exp is more than five minutes ahead."))
		return
	}
	sess := p.newSession()
	ar, err := p.oauth.NewAccessRequest(ctx, r, sess)
	if err != nil {
		p.writeAccessError(w, r, ar, err)
		return
	}
	switch {
	case ar.GetGrantTypes().ExactOne("client_credentials"):
		// Backend services: system/ scopes only, and only those asked for.
		for _, s := range ar.GetRequestedScopes() {
			rs, ok := scopes.ParseResource(s)
			if !ok || rs.Context != "system" {
				p.writeAccessError(w, r, ar, fosite.ErrInvalidScope.WithHintf("Backend services may ask for system/ scopes only, not %q.", s))
				return
			}
			ar.GrantScope(s)
		}
	case ar.GetGrantTypes().ExactOne("refresh_token"):
		s := ar.GetSession().(*Session)
		if err := p.stillAllowed(r, s); err != nil {
			p.writeAccessError(w, r, ar, fosite.ErrInvalidGrant.WithHint(err.Error()))
			return
		}
		// A refresh may narrow the grant (RFC 6749 §6) but never widen it.
		if want := splitScope(r.PostForm.Get("scope")); len(want) > 0 {
			granted := ar.GetGrantedScopes()
			for _, s := range want {
				if !granted.Has(s) {
					p.writeAccessError(w, r, ar, fosite.ErrInvalidScope.WithHintf("%q was not part of the original grant.", s))
					return
				}
			}
			if req, ok := ar.(*fosite.AccessRequest); ok {
				req.GrantedScope = fosite.Arguments(want)
			}
		}
	}
	resp, err := p.oauth.NewAccessResponse(ctx, ar)
	if err != nil {
		p.writeAccessError(w, r, ar, err)
		return
	}
	if s, ok := ar.GetSession().(*Session); ok && s.User != "" {
		if s.Patient != "" {
			resp.SetExtra("patient", s.Patient)
		}
		if s.Encounter != "" {
			resp.SetExtra("encounter", s.Encounter)
		}
		resp.SetExtra("need_patient_banner", s.NeedBanner)
		resp.SetExtra("smart_style_url", p.root+"/oauth2/style.json")
	}
	if err := p.security(r, tokenAgent(r, ar), audit.Event{Subtype: tokenEvent(ar)}); err != nil {
		p.oauth.WriteAccessError(ctx, w, ar, fosite.ErrTemporarilyUnavailable)
		return
	}
	p.oauth.WriteAccessResponse(ctx, w, ar, resp)
}

// grantTypes are the grant types the token endpoint serves.
var grantTypes = []string{"authorization_code", "refresh_token", "client_credentials"}

// writeAccessError answers a token request with an RFC 6749 §5.2 error. A
// 401 invalid_client to a client that authenticated with HTTP Basic names
// the scheme it must use in WWW-Authenticate, as §5.2 requires.
func (p *Provider) writeAccessError(w http.ResponseWriter, r *http.Request, ar fosite.AccessRequester, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	p.security(r, tokenAgent(r, ar), audit.Event{Subtype: tokenEvent(ar), Outcome: audit.Minor, Detail: rfc.ErrorField})
	if rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
		if _, _, basic := r.BasicAuth(); basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+p.root+`/oauth2/token"`)
		}
	}
	p.oauth.WriteAccessError(r.Context(), w, ar, err)
}

// stillAllowed re-checks, at refresh, what may have changed since the
// grant: the account and its link to the patient, and for online_access
// the login session.
func (p *Provider) stillAllowed(r *http.Request, s *Session) error {
	if s.User == "" {
		return nil
	}
	u, err := p.accounts.Get(r.Context(), s.User)
	if err != nil {
		return errors.New("the account no longer exists")
	}
	if _, ok := u.ActorFor(s.Patient); !ok {
		return errors.New("the account may no longer act for this patient")
	}
	if s.LoginSession != "" {
		if rec, err := p.st.GetAuth(r.Context(), kindLogin, s.LoginSession); err != nil || !rec.Active {
			return errors.New("online access ended with the sign-in session")
		}
	}
	return nil
}

// assertionTimesOK checks the exp and nbf of an (as yet unverified) client
// assertion; fosite checks the signature and everything else. fosite
// itself answers an expired assertion with a 500, hence the check here.
func assertionTimesOK(jwt string) bool {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return true // malformed: fosite rejects it with the right error
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return true
	}
	var claims struct {
		Exp float64 `json:"exp"`
		Nbf float64 `json:"nbf"`
	}
	if json.Unmarshal(body, &claims) != nil || claims.Exp == 0 {
		return true
	}
	now := time.Now()
	exp := time.Unix(int64(claims.Exp), 0)
	if !exp.After(now) || !exp.Before(now.Add(maxAssertionLifetime)) {
		return false
	}
	return claims.Nbf == 0 || !time.Unix(int64(claims.Nbf), 0).After(now.Add(time.Minute))
}

// introspect is RFC 7662 with SMART's additions (patient, fhirUser, iss).
func (p *Provider) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ir, err := p.oauth.NewIntrospectionRequest(ctx, r, p.newSession())
	if err != nil {
		p.oauth.WriteIntrospectionError(ctx, w, err)
		return
	}
	if !ir.IsActive() || ir.GetTokenUse() != fosite.AccessToken {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	ar := ir.GetAccessRequester()
	out := map[string]any{
		"active":     true,
		"client_id":  ar.GetClient().GetID(),
		"scope":      strings.Join(ar.GetGrantedScopes(), " "),
		"exp":        ar.GetSession().GetExpiresAt(fosite.AccessToken).Unix(),
		"iat":        ar.GetRequestedAt().Unix(),
		"token_type": "Bearer",
		"iss":        p.cfg.FHIRBase,
		"aud":        p.cfg.FHIRBase,
	}
	if s, ok := ar.GetSession().(*Session); ok {
		if s.User != "" {
			out["sub"] = s.User
			out["username"] = s.User
		}
		if s.Patient != "" {
			out["patient"] = s.Patient
		}
		if s.Encounter != "" {
			out["encounter"] = s.Encounter
		}
		if s.FHIRUser != "" {
			out["fhirUser"] = p.cfg.FHIRBase + "/" + s.FHIRUser
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// revoke is RFC 7009.
func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	err := p.oauth.NewRevocationRequest(ctx, r)
	e := audit.Event{Subtype: audit.TokenRevoked}
	if err != nil {
		e.Outcome, e.Detail = audit.Minor, fosite.ErrorToRFC6749Error(err).ErrorField
	}
	p.security(r, tokenAgent(r, nil), e)
	p.oauth.WriteRevocationResponse(ctx, w, err)
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Del("Pragma")
	writeJSON(w, http.StatusOK, p.keys.JWKS())
}

// style is the smart_style_url document (context-style).
func (p *Provider) style(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"color_background": "#ffffff", "color_error": "#aa0000", "color_highlight": "#1f5fa8",
		"color_modal_backdrop": "", "color_success": "#2e7d32", "color_text": "#222222",
		"dim_border_radius": "4px", "dim_font_size": "16px", "dim_spacing_size": "16px",
		"font_family_body": "system-ui, sans-serif", "font_family_heading": "system-ui, sans-serif",
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
