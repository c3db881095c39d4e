package smart

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"

	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
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

// checkedFor is how long a checked token's policy is reused without asking
// the store again: the longest a revocation, an ended proxy link or a
// deactivated account takes to stop a token on any Hearth process.
const checkedFor = time.Second

// maxChecked bounds the tokens whose policy is kept.
const maxChecked = 10_000

// checkedTokens remembers, for up to checkedFor, the policy of each access
// token that passed the check, keyed by the whole token (so a reuse is the
// same bytes that were verified, never a forgery sharing a part).
type checkedTokens struct {
	mu sync.RWMutex // every request reads it; a token checked anew writes
	m  map[string]checkedToken
}

type checkedToken struct {
	pol   *access.Policy
	until time.Time
}

func (c *checkedTokens) get(token string, now time.Time) (*access.Policy, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.m[token]
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e.pol, true
}

// clear forgets every token: this process revoked one.
func (c *checkedTokens) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}

func (c *checkedTokens) put(token string, pol *access.Policy, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxChecked {
		c.m = make(map[string]checkedToken, 256)
	}
	c.m[token] = checkedToken{pol: pol, until: until}
}

// Authenticate turns an access token into the policy it carries:
// ErrInvalidToken for a token that is not a live access token (a refresh
// token or an authorization code is not one), another error when the
// store cannot answer. The token, the account and its proxy link are
// looked up in the store, and the answer is reused for at most checkedFor,
// so that a revocation takes effect within that time on every process.
func (p *Provider) Authenticate(ctx context.Context, token string) (*access.Policy, error) {
	now := time.Now()
	if pol, ok := p.checked.get(token, now); ok {
		return pol, nil
	}
	sig := p.hmac.AccessTokenSignature(ctx, token)
	if sig == "" || !strings.HasPrefix(token, "ory_at_") {
		return nil, ErrInvalidToken
	}
	ar, err := p.storage.GetAccessTokenSession(ctx, sig, p.newSession())
	switch {
	case errors.Is(err, fosite.ErrNotFound):
		return nil, ErrInvalidToken
	case err != nil:
		return nil, fmt.Errorf("access token lookup: %w", err)
	}
	if err := p.hmac.ValidateAccessToken(ctx, ar, token); err != nil {
		return nil, ErrInvalidToken
	}
	s, ok := ar.GetSession().(*Session)
	if !ok {
		return nil, ErrInvalidToken
	}
	pol := &access.Policy{Patient: s.Patient, ClientID: ar.GetClient().GetID(), Subject: s.User}
	if s.User != "" {
		u, err := p.accounts.Get(ctx, s.User)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, ErrInvalidToken
		case err != nil:
			return nil, fmt.Errorf("account lookup: %w", err)
		}
		actor, ok := u.ActorFor(s.Patient)
		if !ok || s.Patient == "" || !u.CanSignIn() {
			return nil, ErrInvalidToken
		}
		pol.FHIRUser = actor.FHIRUser
		if strings.HasPrefix(actor.FHIRUser, "RelatedPerson/") {
			pol.WithholdSensitive = p.confidentialAge(ctx, s.Patient)
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
	until := now.Add(checkedFor)
	if exp := ar.GetSession().GetExpiresAt(fosite.AccessToken); !exp.IsZero() && exp.Before(until) {
		until = exp
	}
	p.checked.put(token, pol, until)
	return pol, nil
}

// confidentialAge reports whether a patient is old enough for a proxy to be
// kept from their restricted and sensitive records (Config.ProxyRestrictedAge),
// judged on the day of the request, so that a birthday takes effect on
// tokens already issued. A patient whose age is unknown is treated as old
// enough: withholding is the safe mistake.
func (p *Provider) confidentialAge(ctx context.Context, patient string) bool {
	if p.cfg.ProxyRestrictedAge < 0 {
		return false
	}
	age, known := p.patientAge(ctx, patient)
	return !known || age >= p.restrictedAge()
}
