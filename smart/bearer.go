package smart

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

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
		actor, ok := u.ActorFor(s.Patient)
		if !ok || s.Patient == "" {
			return nil, ErrInvalidToken
		}
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
	return pol, nil
}

// confidentialAge reports whether a patient is old enough for a proxy to be
// kept from their restricted and sensitive records (Config.ProxyRestrictedAge),
// judged on the day of the request, so that a birthday takes effect on
// tokens already issued. A patient whose age is unknown is treated as old
// enough: withholding is the safe mistake.
func (p *Provider) confidentialAge(ctx context.Context, patient string) bool {
	limit := p.cfg.ProxyRestrictedAge
	if limit < 0 {
		return false
	}
	if limit == 0 {
		limit = 12
	}
	r, err := p.records.Read(ctx, "Patient", patient)
	if err != nil {
		return true
	}
	var pt struct {
		BirthDate string `json:"birthDate"`
	}
	if json.Unmarshal(r.JSON, &pt) != nil || len(pt.BirthDate) < 4 {
		return true
	}
	// A partial date counts from its earliest possible day: the patient
	// is at least that old.
	var born time.Time
	switch len(pt.BirthDate) {
	case 4:
		born, err = time.Parse("2006", pt.BirthDate)
	case 7:
		born, err = time.Parse("2006-01", pt.BirthDate)
	default:
		born, err = time.Parse("2006-01-02", pt.BirthDate[:min(10, len(pt.BirthDate))])
	}
	if err != nil {
		return true
	}
	return !time.Now().Before(born.AddDate(limit, 0, 0))
}
