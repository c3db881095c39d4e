package smart

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
)

// Registration modes (Config.Registration, --registration).
const (
	// RegistrationOpen: anyone may register a user-facing app; backend
	// clients need an initial access token.
	RegistrationOpen = "open"
	// RegistrationToken: every registration needs an initial access token.
	RegistrationToken = "token"
	// RegistrationOff: no dynamic registration; clients come from the CLI.
	RegistrationOff = "off"
)

// kindRegistrationToken records an initial access token (RFC 7591 §3),
// keyed by its hash.
const kindRegistrationToken = "regtoken"

// registration is the RFC 7591 client metadata Hearth understands.
type registration struct {
	RedirectURIs            []string            `json:"redirect_uris"`
	ClientName              string              `json:"client_name,omitempty"`
	TokenEndpointAuthMethod string              `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string            `json:"grant_types,omitempty"`
	ResponseTypes           []string            `json:"response_types,omitempty"`
	Scope                   string              `json:"scope,omitempty"`
	JWKS                    *jose.JSONWebKeySet `json:"jwks,omitempty"`
	JWKSURI                 string              `json:"jwks_uri,omitempty"`
	SigningAlg              string              `json:"token_endpoint_auth_signing_alg,omitempty"`
	LaunchURI               string              `json:"launch_uri,omitempty"`
}

// userFacingScopes are the non-resource scopes an openly registered app may
// hold; its resource scopes must be patient/ or user/ ones.
var userFacingScopes = []string{"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter", "offline_access", "online_access"}

// userFacing reports why reg is not a user-facing app ("" when it is):
// open registration must never grant more than a patient signing in can.
func (reg *registration) userFacing() string {
	for _, g := range reg.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			return "grant type " + g + " needs an initial access token from the operator"
		}
	}
	for _, s := range splitScope(reg.Scope) {
		if slices.Contains(userFacingScopes, s) {
			continue
		}
		rs, ok := scopes.ParseResource(s)
		if !ok || (rs.Context != "patient" && rs.Context != "user") {
			return "scope " + s + " needs an initial access token from the operator"
		}
	}
	return ""
}

// IssueRegistrationToken returns a new initial access token (RFC 7591 §3)
// that lets one registration create any kind of client, backend services
// included; it expires after ttl and is used up by the registration.
func (p *Provider) IssueRegistrationToken(ctx context.Context, ttl time.Duration) (string, error) {
	tok := randomToken()
	err := p.st.CreateAuth(ctx, store.AuthRecord{Kind: kindRegistrationToken, Key: sha(tok), Active: true, ExpiresAt: time.Now().Add(ttl)})
	return tok, err
}

// errNoRegistrationToken: the request carries no valid initial access token.
var errNoRegistrationToken = errors.New("no valid initial access token")

// useRegistrationToken spends the request's initial access token, if any:
// (false, nil) when there is none, an error when it is not valid.
func (p *Provider) useRegistrationToken(r *http.Request) (bool, error) {
	tok, ok := BearerToken(r)
	if !ok {
		return false, nil
	}
	rec, err := p.st.GetAuth(r.Context(), kindRegistrationToken, sha(tok))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, errNoRegistrationToken
	case err != nil:
		return false, err
	case !rec.Active:
		return false, errNoRegistrationToken
	}
	if err := p.st.DeactivateAuth(r.Context(), kindRegistrationToken, sha(tok)); err != nil {
		return false, err
	}
	return true, nil
}

// register is dynamic client registration (RFC 7591). Open, it registers
// user-facing apps only — patients bring their own apps, as Epic allows —
// whose tokens can never reach past the patient who signs in; backend
// services and system/ scopes need an initial access token the operator
// issued (hearth client token).
func (p *Provider) register(w http.ResponseWriter, r *http.Request) {
	if p.cfg.Registration == RegistrationOff {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "access_denied", "error_description": "dynamic registration is off on this server; ask its operator for a client"})
		return
	}
	authorized, err := p.useRegistrationToken(r)
	switch {
	case errors.Is(err, errNoRegistrationToken):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="the initial access token is invalid, expired or used"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "the initial access token is invalid, expired or used"})
		return
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	case !authorized && p.cfg.Registration == RegistrationToken:
		w.Header().Set("WWW-Authenticate", `Bearer realm="registration"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "registration needs an initial access token from the operator"})
		return
	}
	var reg registration
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&reg); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client_metadata", "error_description": "the body is not JSON client metadata"})
		return
	}
	if len(reg.GrantTypes) == 0 {
		reg.GrantTypes = []string{"authorization_code", "refresh_token"}
	}
	if !authorized {
		if why := reg.userFacing(); why != "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client_metadata", "error_description": "open registration is for user-facing apps: " + why})
			return
		}
	}
	for _, u := range reg.RedirectURIs {
		pu, err := url.Parse(u)
		if err != nil || !pu.IsAbs() || pu.Fragment != "" || !fosite.IsRedirectURISecure(r.Context(), pu) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_redirect_uri", "error_description": "redirect URIs must be absolute https (or loopback http) URLs without a fragment: " + u})
			return
		}
	}
	for _, rt := range reg.ResponseTypes {
		if rt != "code" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client_metadata", "error_description": "only the code response type is supported"})
			return
		}
	}
	c := &Client{ID: randomToken()[:22], Name: reg.ClientName, RedirectURIs: reg.RedirectURIs, GrantTypes: reg.GrantTypes,
		Scope: reg.Scope, AuthMethod: reg.TokenEndpointAuthMethod, JWKS: reg.JWKS, JWKSURI: reg.JWKSURI, SigningAlg: reg.SigningAlg, LaunchURI: reg.LaunchURI, Unverified: !authorized}
	var secret string
	if c.AuthMethod == "client_secret_basic" || c.AuthMethod == "client_secret_post" || (c.AuthMethod == "" && c.JWKS == nil && c.JWKSURI == "") {
		if c.AuthMethod == "" {
			c.AuthMethod = "client_secret_basic"
		}
		secret = randomToken()
	}
	if err := p.AddClient(r.Context(), c, secret); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client_metadata", "error_description": err.Error()})
		return
	}
	if err := p.security(r, audit.Agent{Client: c.ID}, audit.Event{Subtype: audit.Registration}); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	out := map[string]any{
		"client_id": c.ID, "client_id_issued_at": time.Now().Unix(), "redirect_uris": c.RedirectURIs,
		"grant_types": c.GrantTypes, "response_types": []string{"code"}, "token_endpoint_auth_method": c.AuthMethod, "scope": c.Scope,
	}
	if c.Name != "" {
		out["client_name"] = c.Name
	}
	if secret != "" {
		out["client_secret"] = secret
		out["client_secret_expires_at"] = 0
	}
	if c.JWKSURI != "" {
		out["jwks_uri"] = c.JWKSURI
	}
	writeJSON(w, http.StatusCreated, out)
}
