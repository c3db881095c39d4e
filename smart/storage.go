package smart

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"sync"
	"time"

	"github.com/ory/fosite"

	"github.com/hearth-fhir/hearth/store"
)

// Record kinds in the store's AuthStore.
const (
	kindCode    = "code"
	kindAccess  = "access"
	kindRefresh = "refresh"
	kindPKCE    = "pkce"
	kindOIDC    = "oidc"
	kindJTI     = "jti"
	kindClient  = "client"
	kindUser    = "user"
	kindLogin   = "login"
	kindPending = "pending"
	kindLaunch  = "launch"
	kindKey     = "key"
	// Accounts: the e-mail and proxy indexes, pending sign-ins, sign-in
	// throttles, single-use codes and links.
	kindEmail = "email"
	// kindPatientAccount: from a patient to their own account(s).
	kindPatientAccount = "patientaccount"
	// kindMigration marks a one-time change to the records as done.
	kindMigration  = "migration"
	kindProxyOf    = "proxyof"
	kindSignIn     = "signin"
	kindThrottle   = "throttle"
	kindActivation = "activation"
	kindConfirm    = "confirm"
	kindReset      = "reset"
	kindInvite     = "invite"
	// Passkeys: a WebAuthn ceremony between its halves, and the lookup
	// from a passkey's user handle to its account.
	kindCeremony      = "webauthn"
	kindPasskeyHandle = "passkeyhandle"
	// Federated sign-in: a sign-in gone to the provider, a first one
	// waiting for its activation code, and the link from an external
	// identity to its account.
	kindFederated     = "federated"
	kindFederatedLink = "federatedlink"
	kindFederatedID   = "federatedid"
)

// storage implements fosite's storage interfaces over store.AuthStore, in
// the manner of ory/hydra: one record per token signature, holding the
// whole request; a used code or rotated refresh token is kept inactive so
// that a replay is recognised and everything its grant issued revoked.
type storage struct {
	st      store.AuthStore
	clients *clientStore
	decoded decodedCache
	// revoked is told when this process revokes access tokens, so that
	// the bearer check forgets what it remembered of them at once (other
	// processes forget within checkedFor).
	revoked func()
}

func (s *storage) forget() {
	if s.revoked != nil {
		s.revoked()
	}
}

// decodedCache keeps access-token requests already decoded, keyed by token
// signature. A token's record never changes once written — it is only
// deleted — so a cached decode stays right as long as the record exists,
// and the store is still asked on every request whether it does: a
// revocation takes effect at once.
type decodedCache struct {
	mu sync.Mutex
	m  map[string]*fosite.Request
}

const decodedCacheSize = 10_000

func (c *decodedCache) get(sig string) *fosite.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[sig]
}

func (c *decodedCache) put(sig string, r *fosite.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= decodedCacheSize {
		c.m = make(map[string]*fosite.Request, 1024)
	}
	c.m[sig] = r
}

// storedRequest is fosite.Request as JSON. The client is stored by id and
// loaded afresh, so a deleted client's tokens stop working.
type storedRequest struct {
	ID                string          `json:"id"`
	RequestedAt       time.Time       `json:"requestedAt"`
	ClientID          string          `json:"clientId"`
	RequestedScope    []string        `json:"requestedScope"`
	GrantedScope      []string        `json:"grantedScope"`
	RequestedAudience []string        `json:"requestedAudience"`
	GrantedAudience   []string        `json:"grantedAudience"`
	Form              url.Values      `json:"form"`
	Session           json.RawMessage `json:"session"`
}

// secretFormKeys are never stored with a request.
var secretFormKeys = []string{"client_secret", "client_assertion", "password", "code", "refresh_token", "code_verifier", "token"}

func encodeRequest(r fosite.Requester) ([]byte, error) {
	sess, err := json.Marshal(r.GetSession())
	if err != nil {
		return nil, err
	}
	form := url.Values{}
	for k, v := range r.GetRequestForm() {
		form[k] = v
	}
	for _, k := range secretFormKeys {
		delete(form, k)
	}
	return json.Marshal(storedRequest{
		ID: r.GetID(), RequestedAt: r.GetRequestedAt(), ClientID: r.GetClient().GetID(),
		RequestedScope: r.GetRequestedScopes(), GrantedScope: r.GetGrantedScopes(),
		RequestedAudience: r.GetRequestedAudience(), GrantedAudience: r.GetGrantedAudience(),
		Form: form, Session: sess,
	})
}

func (s *storage) decodeRequest(ctx context.Context, data []byte, sess fosite.Session) (fosite.Requester, error) {
	var sr storedRequest
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, err
	}
	client, err := s.clients.get(ctx, sr.ClientID)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		sess = newSession()
	}
	if err := json.Unmarshal(sr.Session, sess); err != nil {
		return nil, err
	}
	return &fosite.Request{
		ID: sr.ID, RequestedAt: sr.RequestedAt, Client: client,
		RequestedScope: sr.RequestedScope, GrantedScope: sr.GrantedScope,
		RequestedAudience: sr.RequestedAudience, GrantedAudience: sr.GrantedAudience,
		Form: sr.Form, Session: sess,
	}, nil
}

func (s *storage) create(ctx context.Context, kind, key string, r fosite.Requester, exp time.Time) error {
	data, err := encodeRequest(r)
	if err != nil {
		return err
	}
	subject := ""
	if sess, ok := r.GetSession().(*Session); ok {
		subject = sess.User
	}
	return s.st.PutAuth(ctx, store.AuthRecord{Kind: kind, Key: key, RequestID: r.GetID(), Subject: subject, Active: true, ExpiresAt: exp, Data: data})
}

// get loads a request; inactive records come back with
// fosite.ErrInactiveToken (and the request, so its grant can be revoked).
func (s *storage) get(ctx context.Context, kind, key string, sess fosite.Session, inactive error) (fosite.Requester, error) {
	rec, err := s.st.GetAuth(ctx, kind, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	r, err := s.decodeRequest(ctx, rec.Data, sess)
	if err != nil {
		return nil, fosite.ErrNotFound.WithWrap(err)
	}
	if !rec.Active {
		return r, inactive
	}
	return r, nil
}

func expiry(r fosite.Requester, tt fosite.TokenType, fallback time.Duration) time.Time {
	if e := r.GetSession().GetExpiresAt(tt); !e.IsZero() {
		return e
	}
	return time.Now().Add(fallback)
}

// Authorization codes.

func (s *storage) CreateAuthorizeCodeSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.create(ctx, kindCode, code, r, expiry(r, fosite.AuthorizeCode, time.Minute))
}

func (s *storage) GetAuthorizeCodeSession(ctx context.Context, code string, sess fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, kindCode, code, sess, fosite.ErrInvalidatedAuthorizeCode)
}

func (s *storage) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	return s.st.DeactivateAuth(ctx, kindCode, code)
}

// Access tokens.

func (s *storage) CreateAccessTokenSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.create(ctx, kindAccess, sig, r, expiry(r, fosite.AccessToken, time.Hour))
}

func (s *storage) GetAccessTokenSession(ctx context.Context, sig string, sess fosite.Session) (fosite.Requester, error) {
	rec, err := s.st.GetAuth(ctx, kindAccess, sig)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if !rec.Active {
		return nil, fosite.ErrNotFound
	}
	if r := s.decoded.get(sig); r != nil {
		// A copy, so that fosite's handling of one request cannot touch
		// another's; the session is only read.
		c := *r
		return &c, nil
	}
	r, err := s.decodeRequest(ctx, rec.Data, sess)
	if err != nil {
		return nil, fosite.ErrNotFound.WithWrap(err)
	}
	if fr, ok := r.(*fosite.Request); ok {
		c := *fr
		s.decoded.put(sig, &c)
	}
	return r, nil
}

func (s *storage) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	defer s.forget()
	return s.st.DeleteAuth(ctx, kindAccess, sig)
}

// Refresh tokens. They live up to a year (F-10 wants at least three months).

func (s *storage) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, r fosite.Requester) error {
	return s.create(ctx, kindRefresh, sig, r, expiry(r, fosite.RefreshToken, 365*24*time.Hour))
}

func (s *storage) GetRefreshTokenSession(ctx context.Context, sig string, sess fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, kindRefresh, sig, sess, fosite.ErrInactiveToken)
}

func (s *storage) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.st.DeleteAuth(ctx, kindRefresh, sig)
}

// RotateRefreshToken retires the used refresh token (kept inactive to catch
// reuse) and the access tokens issued before it.
func (s *storage) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	defer s.forget()
	if err := s.st.DeactivateAuth(ctx, kindRefresh, sig); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return s.st.DeleteGrant(ctx, kindAccess, requestID)
}

func (s *storage) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return s.st.DeactivateGrant(ctx, kindRefresh, requestID)
}

func (s *storage) RevokeAccessToken(ctx context.Context, requestID string) error {
	defer s.forget()
	return s.st.DeleteGrant(ctx, kindAccess, requestID)
}

// PKCE and OpenID Connect requests, keyed by the code.

func (s *storage) CreatePKCERequestSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.create(ctx, kindPKCE, sig, r, time.Now().Add(10*time.Minute))
}

func (s *storage) GetPKCERequestSession(ctx context.Context, sig string, sess fosite.Session) (fosite.Requester, error) {
	return s.get(ctx, kindPKCE, sig, sess, fosite.ErrNotFound)
}

func (s *storage) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return s.st.DeleteAuth(ctx, kindPKCE, sig)
}

func (s *storage) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.create(ctx, kindOIDC, code, r, time.Now().Add(10*time.Minute))
}

func (s *storage) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	return s.get(ctx, kindOIDC, code, r.GetSession(), fosite.ErrNotFound)
}

func (s *storage) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.st.DeleteAuth(ctx, kindOIDC, code)
}

// Clients and client assertion ids.

func (s *storage) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	return s.clients.get(ctx, id)
}

func (s *storage) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	_, err := s.st.GetAuth(ctx, kindJTI, jti)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err == nil {
		return fosite.ErrJTIKnown
	}
	return err
}

func (s *storage) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	err := s.st.CreateAuth(ctx, store.AuthRecord{Kind: kindJTI, Key: jti, Active: true, ExpiresAt: exp})
	if errors.Is(err, store.ErrConflict) {
		return fosite.ErrJTIKnown
	}
	return err
}
