package smart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hearth-fhir/hearth/store"
)

// User is a portal account: a patient, a proxy (parent, caregiver), or
// both. Each proxy link is one RelatedPerson resource tied to one patient,
// as in Epic's MyChart.
type User struct {
	Username     string `json:"username"`
	PasswordHash []byte `json:"passwordHash"`
	// Patient is the user's own Patient id, if the user is a patient.
	Patient string `json:"patient,omitempty"`
	// Links are the patients the user may act for as a proxy.
	Links []Link `json:"links,omitempty"`
	// FailedLogins counts consecutive failures; at maxFailedLogins the
	// account is locked until LockedUntil.
	FailedLogins int       `json:"failedLogins,omitempty"`
	LockedUntil  time.Time `json:"lockedUntil,omitempty"`
}

// Link is one proxy relationship.
type Link struct {
	Patient       string `json:"patient"`       // Patient id
	RelatedPerson string `json:"relatedPerson"` // RelatedPerson id
}

const (
	maxFailedLogins = 5
	lockout         = 15 * time.Minute
)

// Actor is one identity a user can act as for one patient.
type Actor struct {
	Patient  string // the patient in context
	FHIRUser string // Patient/… for self access, RelatedPerson/… for a proxy
}

// Actors lists whom the user may act for, self first.
func (u *User) Actors() []Actor {
	var out []Actor
	if u.Patient != "" {
		out = append(out, Actor{Patient: u.Patient, FHIRUser: "Patient/" + u.Patient})
	}
	for _, l := range u.Links {
		out = append(out, Actor{Patient: l.Patient, FHIRUser: "RelatedPerson/" + l.RelatedPerson})
	}
	return out
}

// ActorFor returns how the user acts for patient, if at all.
func (u *User) ActorFor(patient string) (Actor, bool) {
	for _, a := range u.Actors() {
		if a.Patient == patient {
			return a, true
		}
	}
	return Actor{}, false
}

// Accounts keeps users in the AuthStore.
type Accounts struct{ st store.AuthStore }

// NewAccounts returns the account manager over st.
func NewAccounts(st store.AuthStore) *Accounts { return &Accounts{st: st} }

// ErrBadLogin is the one answer to a wrong username, a wrong password or a
// locked account, so that none can be told apart.
var ErrBadLogin = errors.New("unknown username or wrong password")

// What the audit trail is told of a failed sign-in, never the user: the
// account is locked (errLocked), or this failure locked it (errLockedNow).
var (
	errLocked    = fmt.Errorf("%w: the account is locked", ErrBadLogin)
	errLockedNow = fmt.Errorf("%w: the account locked after repeated failures", ErrBadLogin)
)

// Get returns a user.
func (a *Accounts) Get(ctx context.Context, username string) (*User, error) {
	rec, err := a.st.GetAuth(ctx, kindUser, username)
	if err != nil {
		return nil, err
	}
	var u User
	if err := json.Unmarshal(rec.Data, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// Put saves a user.
func (a *Accounts) Put(ctx context.Context, u *User) error {
	data, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return a.st.PutAuth(ctx, store.AuthRecord{Kind: kindUser, Key: u.Username, Subject: u.Username, Active: true, Data: data})
}

// SetPassword hashes and sets a password.
func (u *User) SetPassword(pw string) error {
	if len(pw) < 8 {
		return errors.New("the password must have at least 8 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	u.PasswordHash = h
	return nil
}

// Login checks a password, counting failures and locking the account after
// maxFailedLogins in a row.
func (a *Accounts) Login(ctx context.Context, username, password string) (*User, error) {
	u, err := a.Get(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		// Spend the time a hash comparison takes, so timing does not tell
		// which usernames exist.
		bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return nil, ErrBadLogin
	}
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if now.Before(u.LockedUntil) {
		return nil, errLocked
	}
	if bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(password)) != nil {
		failure := ErrBadLogin
		u.FailedLogins++
		if u.FailedLogins >= maxFailedLogins {
			u.LockedUntil = now.Add(lockout)
			u.FailedLogins = 0
			failure = errLockedNow
		}
		if err := a.Put(ctx, u); err != nil {
			return nil, err
		}
		return nil, failure
	}
	if u.FailedLogins != 0 {
		u.FailedLogins = 0
		if err := a.Put(ctx, u); err != nil {
			return nil, err
		}
	}
	return u, nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)

// AddUser creates a user; patient may be empty for a proxy-only account.
func (a *Accounts) AddUser(ctx context.Context, username, password, patient string) (*User, error) {
	if username == "" {
		return nil, errors.New("a username is required")
	}
	if _, err := a.Get(ctx, username); err == nil {
		return nil, fmt.Errorf("user %q exists", username)
	}
	u := &User{Username: username, Patient: patient}
	if err := u.SetPassword(password); err != nil {
		return nil, err
	}
	return u, a.Put(ctx, u)
}

// ProxyRecords is what linking a proxy reads and writes of the FHIR data:
// the patient, and the new RelatedPerson (Put validates and creates a
// resource and returns its id).
type ProxyRecords interface {
	PatientReader
	Put(ctx context.Context, typ string, body []byte) (string, error)
}

// LinkProxy makes username a proxy for patient: it writes a RelatedPerson
// for the link (the proxy's FHIR identity for that patient) and records
// the link. relationship is a v3 RoleCode such as PRN (parent) or CHILD.
func LinkProxy(ctx context.Context, st store.AuthStore, records ProxyRecords, username, patient, relationship string) (*Link, error) {
	a := NewAccounts(st)
	u, err := a.Get(ctx, username)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", username, err)
	}
	if _, ok := u.ActorFor(patient); ok {
		return nil, fmt.Errorf("user %q already acts for Patient/%s", username, patient)
	}
	if _, err := records.Read(ctx, "Patient", patient); err != nil {
		return nil, fmt.Errorf("Patient/%s: %w", patient, err)
	}
	if relationship == "" {
		relationship = "PRN"
	}
	body, _ := json.Marshal(map[string]any{
		"resourceType": "RelatedPerson",
		"active":       true,
		"patient":      map[string]string{"reference": "Patient/" + patient},
		"relationship": []any{map[string]any{"coding": []any{map[string]string{
			"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": relationship}}}},
		"name": []any{map[string]string{"text": username}},
	})
	rp, err := records.Put(ctx, "RelatedPerson", body)
	if err != nil {
		return nil, err
	}
	l := Link{Patient: patient, RelatedPerson: rp}
	u.Links = append(u.Links, l)
	return &l, a.Put(ctx, u)
}

// Unlink ends a proxy link; tokens issued through it stop working at once
// (the bearer check looks the link up on every request).
func Unlink(ctx context.Context, st store.AuthStore, username, patient string) error {
	a := NewAccounts(st)
	u, err := a.Get(ctx, username)
	if err != nil {
		return err
	}
	n := len(u.Links)
	u.Links = slices.DeleteFunc(u.Links, func(l Link) bool { return l.Patient == patient })
	if len(u.Links) == n {
		return fmt.Errorf("user %q is not a proxy for Patient/%s", username, patient)
	}
	return a.Put(ctx, u)
}
