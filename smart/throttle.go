package smart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// Sign-in throttling. A lockout that anyone can trigger by typing a
// username five times is a way to keep a patient out; so failures pause
// sign-in instead, for a time that grows with each failure made while not
// paused, per username (known or not, so that a pause tells nothing) and
// per client address. A paused account still signs in with its password
// and a second factor: the attacker who pauses it has neither. Every
// failure costs the same: one bcrypt comparison and one throttle write.
const (
	accountFreeFailures = 5  // failures before an account pauses
	addressFreeFailures = 20 // failures before an address pauses
	firstPause          = 30 * time.Second
	longestPause        = time.Hour
	// forgetFailures: a throttle with no failure for this long starts over.
	forgetFailures = 24 * time.Hour
)

// throttle is the failure count of one username or address.
type throttle struct {
	Failures int       `json:"failures"`
	Last     time.Time `json:"last"`
	Until    time.Time `json:"until,omitzero"` // paused until
	// SecondFactor counts wrong authenticator codes, throttled apart: they
	// come after a right password and are not bypassed by anything.
	SecondFactor      int       `json:"secondFactor,omitempty"`
	SecondFactorUntil time.Time `json:"secondFactorUntil,omitzero"`
}

func throttleKey(scope, name string) string { return scope + ":" + name }

func (p *Provider) loadThrottle(ctx context.Context, key string, now time.Time) (throttle, error) {
	rec, err := p.st.GetAuth(ctx, kindThrottle, key)
	if errors.Is(err, store.ErrNotFound) {
		return throttle{}, nil
	}
	if err != nil {
		return throttle{}, err
	}
	var t throttle
	if json.Unmarshal(rec.Data, &t) != nil || now.Sub(t.Last) > forgetFailures {
		return throttle{}, nil
	}
	return t, nil
}

func (p *Provider) saveThrottle(ctx context.Context, key string, t throttle) error {
	data, _ := json.Marshal(t)
	return p.st.PutAuth(ctx, store.AuthRecord{Kind: kindThrottle, Key: key, Active: true, ExpiresAt: t.Last.Add(forgetFailures), Data: data})
}

// pauseAfter is the pause a failure count earns past free failures: 30 s,
// then doubling, at most an hour.
func pauseAfter(failures, free int) time.Duration {
	if failures < free {
		return 0
	}
	d := firstPause
	for range failures - free {
		d *= 2
		if d >= longestPause {
			return longestPause
		}
	}
	return d
}

// PausedError says sign-in is paused until a time, for the username or
// for the address the attempt came from.
type PausedError struct {
	Until   time.Time
	Address bool // the address is paused, not the username
	Started bool // this attempt's failure started the pause
}

func (e *PausedError) Error() string {
	return fmt.Sprintf("sign-in paused until %s after repeated failures", e.Until.UTC().Format(time.RFC3339))
}

// Unwrap makes a pause a kind of bad login for callers that only care
// that it failed.
func (e *PausedError) Unwrap() error { return ErrBadLogin }

// errDisabled: the right password of an account that may not sign in.
var errDisabled = fmt.Errorf("%w: the account is disabled or closed", ErrBadLogin)

// errUnconfirmed: the right password of an account whose e-mail address
// is not confirmed yet.
var errUnconfirmed = errors.New("confirm your e-mail address first: open the link we sent to it")

// checkPassword is the first step of a sign-in. It returns the user for a
// right password of an account that may sign in; a PausedError when the
// username or address is paused (and the password was wrong, or was right
// but the account has no second factor to sign in with during a pause);
// errUnconfirmed for an account waiting for its e-mail confirmation; or
// ErrBadLogin. The user is also returned with a PausedError when the
// password was right, so that the caller can offer the second factor.
func (p *Provider) checkPassword(ctx context.Context, username, pw, address string, now time.Time) (*User, error) {
	acctKey, addrKey := throttleKey("user", username), throttleKey("addr", address)
	acct, err := p.loadThrottle(ctx, acctKey, now)
	if err != nil {
		return nil, err
	}
	addr, err := p.loadThrottle(ctx, addrKey, now)
	if err != nil {
		return nil, err
	}
	u, err := p.accounts.Get(ctx, username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	right := false
	if u != nil {
		right = u.passwordMatches(pw)
	} else {
		// Spend the time a comparison takes: timing does not tell which
		// usernames exist.
		bcrypt.CompareHashAndPassword(dummyHash, []byte(pw))
	}
	var paused *PausedError
	switch {
	case now.Before(addr.Until):
		paused = &PausedError{Until: addr.Until, Address: true}
	case now.Before(acct.Until):
		paused = &PausedError{Until: acct.Until}
	}
	if right && u.CanSignIn() {
		if paused == nil {
			if u.TOTP != "" {
				// The failures are forgotten once the second step is
				// passed too: a password alone must not reset the
				// count of wrong codes.
				return u, nil
			}
			return u, p.resetThrottle(ctx, username)
		}
		// A paused account lets its password and second factor in; a
		// paused address does not (it is guessing across accounts).
		if !paused.Address && u.TOTP != "" {
			return u, paused
		}
		return nil, paused
	}
	if right && u.Unconfirmed && u.Deactivated.IsZero() && !u.Disabled {
		return u, errUnconfirmed
	}
	// A failure: counted only while not paused, so that attempts during a
	// pause do not lengthen it; written either way, so that it costs the
	// same.
	acct.Last, addr.Last = now, now
	if paused == nil {
		acct.Failures++
		addr.Failures++
		if d := pauseAfter(acct.Failures, accountFreeFailures); d > 0 {
			acct.Until = now.Add(d)
			paused = &PausedError{Until: acct.Until, Started: true}
		}
		if d := pauseAfter(addr.Failures, addressFreeFailures); d > 0 {
			addr.Until = now.Add(d)
			paused = &PausedError{Until: addr.Until, Address: true, Started: true}
		}
	}
	if err := p.saveThrottle(ctx, acctKey, acct); err != nil {
		return nil, err
	}
	if err := p.saveThrottle(ctx, addrKey, addr); err != nil {
		return nil, err
	}
	if paused != nil {
		return nil, paused
	}
	if right {
		return nil, errDisabled
	}
	return nil, ErrBadLogin
}

// secondFactorPaused tells whether the second step of a sign-in is paused.
func (p *Provider) secondFactorPaused(ctx context.Context, username string, now time.Time) (*PausedError, error) {
	t, err := p.loadThrottle(ctx, throttleKey("user", username), now)
	if err != nil {
		return nil, err
	}
	if now.Before(t.SecondFactorUntil) {
		return &PausedError{Until: t.SecondFactorUntil}, nil
	}
	return nil, nil
}

// secondFactorFailed counts a wrong authenticator code against the
// account; after free failures the second step pauses like the first.
func (p *Provider) secondFactorFailed(ctx context.Context, username string, now time.Time) error {
	key := throttleKey("user", username)
	t, err := p.loadThrottle(ctx, key, now)
	if err != nil {
		return err
	}
	t.Last = now
	t.SecondFactor++
	if d := pauseAfter(t.SecondFactor, accountFreeFailures); d > 0 {
		t.SecondFactorUntil = now.Add(d)
	}
	return p.saveThrottle(ctx, key, t)
}

// resetThrottle forgets an account's failures: a completed sign-in or a
// password reset.
func (p *Provider) resetThrottle(ctx context.Context, username string) error {
	return p.st.DeleteAuth(ctx, kindThrottle, throttleKey("user", username))
}

// codeAttempt is an attempt with an activation code (a sign-up, a first
// federated sign-in) from one client address, throttled like passwords.
type codeAttempt struct {
	key string
	t   throttle
	now time.Time
}

// codeAttemptOf loads the throttle of the request's address.
func (p *Provider) codeAttemptOf(r *http.Request) (*codeAttempt, error) {
	a := &codeAttempt{key: throttleKey("addr", audit.From(r).Address), now: time.Now()}
	var err error
	a.t, err = p.loadThrottle(r.Context(), a.key, a.now)
	return a, err
}

// pausedUntil is when the address may try again, if it is paused now.
func (a *codeAttempt) pausedUntil() (time.Time, bool) { return a.t.Until, a.now.Before(a.t.Until) }

// failed counts a wrong code against the address, as a wrong password is.
func (p *Provider) codeFailed(ctx context.Context, a *codeAttempt) {
	a.t.Last = a.now
	a.t.Failures++
	if d := pauseAfter(a.t.Failures, addressFreeFailures); d > 0 {
		a.t.Until = a.now.Add(d)
	}
	if err := p.saveThrottle(ctx, a.key, a.t); err != nil {
		p.log.ErrorContext(ctx, "a failed attempt went uncounted", "error", err.Error())
	}
}
