// Package smart is Hearth's SMART on FHIR authorization server, built on
// ory/fosite: discovery, the authorize endpoint with its login, patient
// picker and consent pages, token, introspection, revocation and dynamic
// registration endpoints, accounts with proxy links, and the bearer-token
// check that turns a token into an access.Policy.
package smart

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/token/jwt"

	"golang.org/x/crypto/bcrypt"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/mail"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
)

const cryptoSHA256 = crypto.SHA256

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return b64(h[:])
}

func splitScope(s string) []string { return strings.Fields(s) }

// Config configures the authorization server.
type Config struct {
	// FHIRBase is the FHIR base URL (http://host/fhir): the `aud` apps must
	// name, and the OpenID issuer.
	FHIRBase string
	// AccessTokenLifespan defaults to one hour (SMART: at most one hour).
	AccessTokenLifespan time.Duration
	// IdleTimeout ends a login session after this much inactivity
	// (default 15 minutes); online_access refresh tokens end with it.
	IdleTimeout time.Duration
	// ProxyRestrictedAge is the age from which a proxy (a parent acting
	// for a child) no longer sees the patient's restricted and sensitive
	// records (0: the default, 12, as many US health systems set it;
	// negative: never).
	ProxyRestrictedAge int
	// Registration is the dynamic registration mode: RegistrationOpen (the
	// default), RegistrationToken or RegistrationOff.
	Registration string
	// SessionLifetime ends a login session this long after sign-in, however
	// active (default 12 hours).
	SessionLifetime time.Duration
	// PasswordMaxAge makes a user choose a new password at sign-in once
	// theirs is older (0: never).
	PasswordMaxAge time.Duration
	// ProxyMFA requires a second factor (an authenticator app) of every
	// account that acts for someone else.
	ProxyMFA bool
	// TeenManagesProxies lets a patient between ProxyRestrictedAge and 18
	// see and end their proxies' links on their account page (whether an
	// adolescent may is a matter of state law; off by default).
	TeenManagesProxies bool
	// Mail sends the account e-mails; nil: features that need mail say
	// so and do nothing.
	Mail mail.Sender
	// Brand is the operator's name, logo and colour on the pages.
	Brand Brand
	// SignUpWithoutCode lets a patient sign up without an activation
	// code: with family name, birth date and medical record number that
	// match exactly one patient who has no account yet
	// (--signup-without-code). The patient reader must search.
	SignUpWithoutCode bool
	// Federation, if set, lets patients sign in through the health
	// system's OpenID provider.
	Federation *Federation
	// Audit records the security events: sign-ins, lockouts, consents,
	// tokens issued, refreshed, refused and revoked, registrations. Nil:
	// none are recorded (tests, tools).
	Audit audit.Recorder
}

// Provider is the authorization server.
type Provider struct {
	cfg      Config
	root     string // the server root URL (FHIRBase without /fhir)
	st       store.AuthStore
	records  PatientReader
	oauth    fosite.OAuth2Provider
	keys     *Keys
	clients  *clientStore
	accounts *Accounts
	log      *slog.Logger
	// hmac and storage check bearer tokens (Authenticate) without fosite's
	// introspection, which would also accept a refresh token.
	// passkeys is the WebAuthn relying party; nil where the server's
	// host is an IP address (browsers refuse one).
	passkeys *webauthn.WebAuthn
	// fed is the relying party of federated sign-in, if configured.
	fed     *federation
	hmac    *oauth2.HMACSHAStrategy
	storage *storage
	checked checkedTokens
}

// PatientReader is all the authorization server reads of the FHIR data,
// through the door to it: a patient's name (the picker) and birth date (a
// proxy's view of a teenager). Read is asked for Patients only.
type PatientReader interface {
	Read(ctx context.Context, typ, id string) (store.Resource, error)
}

// New creates the provider over the authorization records st and the
// patients' records, creating its keys on first use.
func New(ctx context.Context, cfg Config, st store.AuthStore, records PatientReader, log *slog.Logger) (*Provider, error) {
	cfg.FHIRBase = strings.TrimSuffix(cfg.FHIRBase, "/")
	if cfg.AccessTokenLifespan == 0 {
		cfg.AccessTokenLifespan = time.Hour
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.SessionLifetime == 0 {
		cfg.SessionLifetime = 12 * time.Hour
	}
	if err := cfg.Brand.checkColor(); err != nil {
		return nil, err
	}
	switch cfg.Registration {
	case "":
		cfg.Registration = RegistrationOpen
	case RegistrationOpen, RegistrationToken, RegistrationOff:
	default:
		return nil, fmt.Errorf("registration mode %q: want open, token or off", cfg.Registration)
	}
	keys, err := loadKeys(ctx, st)
	if err != nil {
		return nil, err
	}
	p := &Provider{cfg: cfg, root: strings.TrimSuffix(cfg.FHIRBase, "/fhir"), st: st, records: records, keys: keys,
		clients: &clientStore{st: st}, accounts: NewAccounts(st), log: log}
	if err := p.accounts.indexOnce(ctx); err != nil {
		return nil, fmt.Errorf("account indexes: %w", err)
	}
	if cfg.SignUpWithoutCode {
		if _, ok := records.(patientSearcher); !ok {
			return nil, errors.New("sign-up without a code needs a patient reader that searches")
		}
	}
	if f := cfg.Federation; f != nil {
		if f.Issuer == "" || f.ClientID == "" {
			return nil, errors.New("federated sign-in needs the provider's issuer URL and a client id")
		}
		if f.Name == "" {
			f.Name = "your health system's account"
		}
		p.fed = &federation{cfg: *f}
	}
	if p.passkeys, err = newPasskeys(p.root, cfg.Brand.name()); err != nil {
		return nil, fmt.Errorf("passkeys: %w", err)
	}
	fc := &fosite.Config{
		AccessTokenLifespan:         cfg.AccessTokenLifespan,
		RefreshTokenLifespan:        365 * 24 * time.Hour,
		AuthorizeCodeLifespan:       time.Minute,
		IDTokenLifespan:             time.Hour,
		IDTokenIssuer:               cfg.FHIRBase,
		AccessTokenIssuer:           cfg.FHIRBase,
		GlobalSecret:                keys.HMAC,
		ScopeStrategy:               clientAllowsScope,
		AudienceMatchingStrategy:    fosite.DefaultAudienceMatchingStrategy,
		EnforcePKCE:                 true,
		EnforcePKCEForPublicClients: true,
		TokenURL:                    p.root + "/oauth2/token",
		RefreshTokenScopes:          []string{"offline_access", "online_access"},
		SendDebugMessagesToClients:  false,
		MinParameterEntropy:         8,
		JWKSFetcherStrategy:         fosite.NewDefaultJWKSFetcherStrategy(),
	}
	getKey := func(context.Context) (interface{}, error) { return keys.Signing, nil }
	p.hmac = compose.NewOAuth2HMACStrategy(fc)
	strategy := &compose.CommonStrategy{
		CoreStrategy:               p.hmac,
		OpenIDConnectTokenStrategy: compose.NewOpenIDConnectStrategy(getKey, fc),
		Signer:                     &jwt.DefaultSigner{GetPrivateKey: getKey},
	}
	p.storage = &storage{st: st, clients: p.clients}
	p.storage.revoked = p.checked.clear
	p.oauth = compose.Compose(fc, p.storage, strategy,
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.OAuth2PKCEFactory,
	)
	return p, nil
}

// Accounts manages users.
func (p *Provider) Accounts() *Accounts { return p.accounts }

// AddClient registers (or replaces) a client; secret, if set, is hashed.
func (p *Provider) AddClient(ctx context.Context, c *Client, secret string) error {
	if secret != "" {
		h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.DefaultCost)
		if err != nil {
			return err
		}
		c.SecretHash = h
	}
	if err := c.normalise(); err != nil {
		return err
	}
	return p.clients.put(ctx, c)
}

// clientAllowsScope is fosite's scope strategy: may a client with scopes
// haystack ask for needle? Resource scopes are covered by a client scope of
// the same context whose type is the same or "*" and whose permissions are
// a superset, whatever the granular constraint; other scopes match exactly.
func clientAllowsScope(haystack []string, needle string) bool {
	want, isResource := scopes.ParseResource(needle)
	for _, h := range haystack {
		if h == needle {
			return true
		}
		if !isResource {
			continue
		}
		have, ok := scopes.ParseResource(h)
		if ok && have.Query == nil && have.Context == want.Context && (have.Type == "*" || have.Type == want.Type) && have.Perm&want.Perm == want.Perm {
			return true
		}
	}
	return false
}

// Routes returns the OAuth endpoints, mounted at /oauth2.
func (p *Provider) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(noStoreHeaders)
	r.Get("/authorize", p.authorize)
	r.Post("/authorize", p.authorize)
	r.Post("/interact", p.interact)
	r.Post("/token", p.token)
	r.Post("/introspect", p.introspect)
	r.Post("/revoke", p.revoke)
	r.Post("/register", p.register)
	r.Get("/jwks", p.jwks)
	r.Get("/style.json", p.style)
	r.Get("/launch", p.portalLaunch)
	r.Post("/logout", p.logout)
	r.Get("/resume", p.resume)
	return r
}

func noStoreHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// newSession is the session prototype fosite fills from storage.
func (p *Provider) newSession() *Session { return newSession() }

// idTokenClaims fills the OpenID claims at the time of consent.
func (p *Provider) idTokenClaims(s *Session, now time.Time) {
	s.Claims = &jwt.IDTokenClaims{
		Issuer:      p.cfg.FHIRBase,
		Subject:     s.User,
		AuthTime:    now,
		RequestedAt: now,
		Extra:       map[string]interface{}{},
	}
	if s.FHIRUser != "" {
		s.Claims.Extra["fhirUser"] = p.cfg.FHIRBase + "/" + s.FHIRUser
	}
	s.Headers = &jwt.Headers{Extra: map[string]interface{}{"kid": p.keys.KeyID}}
	s.Subject = s.User
	s.Username = s.User
}
