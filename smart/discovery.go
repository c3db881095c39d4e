package smart

import (
	"net/http"
)

// Capabilities are the SMART capabilities Hearth implements.
var Capabilities = []string{
	"launch-ehr", "launch-standalone", "authorize-post",
	"client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
	"context-ehr-patient", "context-standalone-patient", "context-banner", "context-style",
	"sso-openid-connect", "permission-offline", "permission-online", "permission-patient",
	"permission-user", "permission-v1", "permission-v2",
}

// Endpoints are the absolute URLs of the OAuth endpoints.
type Endpoints struct {
	Authorize, Token, Introspect, Revoke, Register, JWKS string
}

// Endpoints returns the provider's endpoint URLs.
func (p *Provider) Endpoints() Endpoints {
	o := p.root + "/oauth2"
	e := Endpoints{Authorize: o + "/authorize", Token: o + "/token", Introspect: o + "/introspect",
		Revoke: o + "/revoke", Register: o + "/register", JWKS: o + "/jwks"}
	if p.cfg.Registration == RegistrationOff {
		e.Register = ""
	}
	return e
}

var supportedScopes = []string{
	"openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access",
	"patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds",
	"patient/*.read", "patient/*.write", "user/*.read", "user/*.write", "system/*.read",
}

// SMARTConfiguration serves [base]/.well-known/smart-configuration: JSON
// whatever the Accept header says.
func (p *Provider) SMARTConfiguration(w http.ResponseWriter, r *http.Request) {
	e := p.Endpoints()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, withoutEmpty(map[string]any{
		"issuer":                                           p.cfg.FHIRBase,
		"jwks_uri":                                         e.JWKS,
		"authorization_endpoint":                           e.Authorize,
		"token_endpoint":                                   e.Token,
		"introspection_endpoint":                           e.Introspect,
		"revocation_endpoint":                              e.Revoke,
		"registration_endpoint":                            e.Register,
		"grant_types_supported":                            []string{"authorization_code", "refresh_token", "client_credentials"},
		"response_types_supported":                         []string{"code"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"token_endpoint_auth_methods_supported":            []string{"none", "client_secret_basic", "client_secret_post", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"scopes_supported":                                 supportedScopes,
		"capabilities":                                     Capabilities,
	}))
}

// OpenIDConfiguration serves {issuer}/.well-known/openid-configuration.
func (p *Provider) OpenIDConfiguration(w http.ResponseWriter, r *http.Request) {
	e := p.Endpoints()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, withoutEmpty(map[string]any{
		"issuer":                                p.cfg.FHIRBase,
		"authorization_endpoint":                e.Authorize,
		"token_endpoint":                        e.Token,
		"jwks_uri":                              e.JWKS,
		"registration_endpoint":                 e.Register,
		"introspection_endpoint":                e.Introspect,
		"revocation_endpoint":                   e.Revoke,
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      supportedScopes,
		"token_endpoint_auth_methods_supported": []string{"none", "client_secret_basic", "client_secret_post", "private_key_jwt"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"},
		"code_challenge_methods_supported":      []string{"S256"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials"},
	}))
}

// withoutEmpty leaves unset URLs (registration when it is off) out of a
// discovery document instead of advertising "".
func withoutEmpty(doc map[string]any) map[string]any {
	for k, v := range doc {
		if v == "" {
			delete(doc, k)
		}
	}
	return doc
}
