package smart

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// Passkeys (WebAuthn, with go-webauthn): a phone's or laptop's
// fingerprint, face or PIN signs in without a password. A passkey is
// discoverable (the device knows the account), requires user
// verification, and counts as two factors: a passkey sign-in needs no
// authenticator code and is not held up by a paused account. The pages
// need JavaScript for it — the browser's WebAuthn API has no form — and
// work without it otherwise.

// Passkey is one registered authenticator of a user.
type Passkey struct {
	Name       string              `json:"name"`
	Created    time.Time           `json:"created"`
	LastUsed   time.Time           `json:"lastUsed,omitzero"`
	Credential webauthn.Credential `json:"credential"`
}

// passkeyUser is a User as go-webauthn sees it.
type passkeyUser struct{ u *User }

func (w passkeyUser) WebAuthnID() []byte          { return w.u.PasskeyHandle }
func (w passkeyUser) WebAuthnName() string        { return w.u.Username }
func (w passkeyUser) WebAuthnDisplayName() string { return w.u.Username }
func (w passkeyUser) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, len(w.u.Passkeys))
	for i, pk := range w.u.Passkeys {
		out[i] = pk.Credential
	}
	return out
}

const ceremonyTTL = 5 * time.Minute

// newPasskeys configures the relying party from the server's URL. Browsers
// refuse an IP address as a relying party id: served at one, Hearth
// offers no passkeys (serve it at a name, such as localhost).
func newPasskeys(root, name string) (*webauthn.WebAuthn, error) {
	u, err := url.Parse(root)
	if err != nil {
		return nil, err
	}
	if net.ParseIP(u.Hostname()) != nil {
		return nil, nil
	}
	return webauthn.New(&webauthn.Config{RPID: u.Hostname(), RPDisplayName: name, RPOrigins: []string{u.Scheme + "://" + u.Host},
		AuthenticatorSelection: protocol.AuthenticatorSelection{ResidentKey: protocol.ResidentKeyRequirementRequired, UserVerification: protocol.VerificationRequired}})
}

// saveCeremony keeps a ceremony's session data for its second half.
func (p *Provider) saveCeremony(ctx context.Context, subject string, s *webauthn.SessionData) (string, error) {
	id := randomToken()
	data, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	return id, p.st.CreateAuth(ctx, store.AuthRecord{Kind: kindCeremony, Key: sha(id), Subject: subject, Active: true, ExpiresAt: time.Now().Add(ceremonyTTL), Data: data})
}

// takeCeremony reads a ceremony's session data once.
func (p *Provider) takeCeremony(ctx context.Context, id, subject string) (*webauthn.SessionData, error) {
	rec, err := p.st.GetAuth(ctx, kindCeremony, sha(id))
	if err != nil || !rec.Active || rec.Subject != subject {
		return nil, errors.New("the passkey ceremony expired")
	}
	if err := p.st.DeleteAuth(ctx, kindCeremony, sha(id)); err != nil {
		return nil, err
	}
	var s webauthn.SessionData
	if err := json.Unmarshal(rec.Data, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// passkeyRegisterOptions begins adding a passkey to the signed-in account:
// the options navigator.credentials.create takes, and the ceremony id.
func (p *Provider) passkeyRegisterOptions(w http.ResponseWriter, r *http.Request, s *signedIn) {
	if p.passkeys == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "passkeys are not available here"})
		return
	}
	ctx := r.Context()
	u := s.user
	if len(u.PasskeyHandle) == 0 {
		u.PasskeyHandle = make([]byte, 32)
		rand.Read(u.PasskeyHandle)
		if err := p.accounts.Put(ctx, u); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
			return
		}
		if err := p.st.PutAuth(ctx, store.AuthRecord{Kind: kindPasskeyHandle, Key: b64(u.PasskeyHandle), Subject: u.Username, Active: true, Data: []byte(`"` + u.Username + `"`)}); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
			return
		}
	}
	creation, sd, err := p.passkeys.BeginRegistration(passkeyUser{u},
		webauthn.WithExclusions(webauthn.Credentials(passkeyUser{u}.WebAuthnCredentials()).CredentialDescriptors()),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	id, err := p.saveCeremony(ctx, u.Username, sd)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ceremony": id, "options": creation})
}

// passkeyRegister finishes adding a passkey: the form carries the
// ceremony id and the browser's credential as JSON.
func (p *Provider) passkeyRegister(w http.ResponseWriter, r *http.Request, s *signedIn) {
	if p.passkeys == nil {
		p.errorPage(w, http.StatusNotFound, "Passkeys are not available here.")
		return
	}
	ctx := r.Context()
	sd, err := p.takeCeremony(ctx, r.PostForm.Get("ceremony"), s.user.Username)
	if err != nil {
		p.accountError(w, r, s, "passkey", "Adding the passkey took too long; try again.", http.StatusBadRequest)
		return
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes([]byte(r.PostForm.Get("credential")))
	if err != nil {
		p.accountError(w, r, s, "passkey", "The browser's answer could not be read; try again.", http.StatusBadRequest)
		return
	}
	cred, err := p.passkeys.CreateCredential(passkeyUser{s.user}, *sd, parsed)
	if err != nil {
		p.accountError(w, r, s, "passkey", "The passkey could not be verified; try again.", http.StatusBadRequest)
		return
	}
	name := r.PostForm.Get("name")
	if name == "" || len(name) > 60 {
		name = fmt.Sprintf("Passkey %d", len(s.user.Passkeys)+1)
	}
	s.user.Passkeys = append(s.user.Passkeys, Passkey{Name: name, Created: time.Now().UTC(), Credential: *cred})
	if err := p.accounts.Put(ctx, s.user); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "The passkey could not be saved; try again.")
		return
	}
	p.security(r, accountAgent(s.user), audit.Event{Subtype: audit.AccountChanged, Action: "U", Detail: "passkey added"})
	p.done(w, r, "passkey")
}

func (p *Provider) passkeyRemove(w http.ResponseWriter, r *http.Request, s *signedIn) {
	id := r.PostForm.Get("id")
	n := len(s.user.Passkeys)
	s.user.Passkeys = slices.DeleteFunc(s.user.Passkeys, func(pk Passkey) bool { return b64(pk.Credential.ID) == id })
	if len(s.user.Passkeys) == n {
		p.accountError(w, r, s, "passkey", "No such passkey.", http.StatusNotFound)
		return
	}
	if err := p.accounts.Put(r.Context(), s.user); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "The change could not be saved; try again.")
		return
	}
	p.security(r, accountAgent(s.user), audit.Event{Subtype: audit.AccountChanged, Action: "U", Detail: "passkey removed"})
	p.done(w, r, "passkey-removed")
}

// passkeyLoginOptions begins a passkey sign-in: the options
// navigator.credentials.get takes, for any account (the device picks).
func (p *Provider) passkeyLoginOptions(w http.ResponseWriter, r *http.Request) {
	if p.passkeys == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "passkeys are not available here"})
		return
	}
	assertion, sd, err := p.passkeys.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	id, err := p.saveCeremony(r.Context(), "", sd)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ceremony": id, "options": assertion})
}

// passkeyStep is the sign-in step of a passkey: the form carries the
// ceremony id and the browser's assertion as JSON.
func (p *Provider) passkeyStep(w http.ResponseWriter, r *http.Request, f signInForm) (*User, string) {
	ctx := r.Context()
	fail := func(msg string) (*User, string) {
		p.recordLoginFailure(r, audit.Agent{Client: f.clientID}, errors.New("passkey refused"))
		d := p.signInPage("Sign in", f)
		d.Error = msg
		p.render(w, http.StatusUnauthorized, "login", d)
		return nil, ""
	}
	if p.passkeys == nil {
		return fail("Passkeys are not available here; sign in with your password.")
	}
	sd, err := p.takeCeremony(ctx, r.PostForm.Get("ceremony"), "")
	if err != nil {
		return fail("The passkey sign-in took too long; try again.")
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes([]byte(r.PostForm.Get("assertion")))
	if err != nil {
		return fail("The browser's answer could not be read; try again.")
	}
	var found *User
	_, cred, err := p.passkeys.ValidatePasskeyLogin(func(rawID, handle []byte) (webauthn.User, error) {
		rec, err := p.st.GetAuth(ctx, kindPasskeyHandle, b64(handle))
		if err != nil {
			return nil, err
		}
		u, err := p.accounts.Get(ctx, rec.Subject)
		if err != nil {
			return nil, err
		}
		found = u
		return passkeyUser{u}, nil
	}, *sd, parsed)
	if err != nil || found == nil || !found.CanSignIn() {
		return fail("That passkey does not sign in to an account here. Sign in with your password.")
	}
	// Keep the signature counter: a cloned authenticator shows up as one
	// whose counter goes back.
	for i := range found.Passkeys {
		if string(found.Passkeys[i].Credential.ID) == string(cred.ID) {
			if cred.Authenticator.CloneWarning {
				return fail("This passkey looks copied; it is refused. Sign in with your password.")
			}
			found.Passkeys[i].Credential.Authenticator = cred.Authenticator
			found.Passkeys[i].LastUsed = time.Now().UTC()
		}
	}
	if err := p.accounts.Put(ctx, found); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "Signing in is not possible right now; try again later.")
		return nil, ""
	}
	p.resetThrottle(ctx, found.Username)
	return p.nextStage(w, r, found, "passkey", f)
}
