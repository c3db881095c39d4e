package smart

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/ory/fosite"

	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/smart/scopes"
)

// ErrInvalidToken is a missing, unknown, expired or revoked token (401).
var ErrInvalidToken = errors.New("invalid access token")

// BearerToken extracts the token of an "Authorization: Bearer" header.
// Tokens in query strings are not accepted: they end up in logs.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return "", false
	}
	t := strings.TrimSpace(h[7:])
	return t, t != ""
}

// Authenticate turns an access token into the policy it carries. The token
// is looked up in the store on every request, so revocation takes effect at
// once on every Hearth process; the account and its proxy link are checked
// too, so that an ended link stops outstanding tokens.
func (p *Provider) Authenticate(ctx context.Context, token string) (*access.Policy, error) {
	_, ar, err := p.oauth.IntrospectToken(ctx, token, fosite.AccessToken, p.newSession())
	if err != nil {
		return nil, ErrInvalidToken
	}
	s, ok := ar.GetSession().(*Session)
	if !ok {
		return nil, ErrInvalidToken
	}
	pol := &access.Policy{Patient: s.Patient, ClientID: ar.GetClient().GetID(), Subject: s.User}
	if s.User != "" {
		u, err := p.accounts.Get(ctx, s.User)
		if err != nil {
			return nil, ErrInvalidToken
		}
		if _, ok := u.ActorFor(s.Patient); !ok || s.Patient == "" {
			return nil, ErrInvalidToken
		}
	}
	// A user's token acts for one patient: its patient/ and user/ scopes
	// are bound to that patient. system/ scopes come only from backend
	// services, which have no user.
	for _, g := range ar.GetGrantedScopes() {
		rs, ok := scopes.ParseResource(g)
		if !ok {
			continue
		}
		if (rs.Context == "system") == (s.User == "") {
			pol.Scopes = append(pol.Scopes, rs)
		}
	}
	return pol, nil
}
