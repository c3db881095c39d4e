package smart

import (
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
)

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

// register is open dynamic client registration (RFC 7591): patients bring
// their own apps, as Epic allows.
func (p *Provider) register(w http.ResponseWriter, r *http.Request) {
	var reg registration
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&reg); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client_metadata", "error_description": "the body is not JSON client metadata"})
		return
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
		Scope: reg.Scope, AuthMethod: reg.TokenEndpointAuthMethod, JWKS: reg.JWKS, JWKSURI: reg.JWKSURI, SigningAlg: reg.SigningAlg, LaunchURI: reg.LaunchURI}
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
