package smart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hearth-fhir/hearth/smart/password"
	"github.com/hearth-fhir/hearth/store"
)

// User is a portal account: a patient, a proxy (parent, caregiver), or
// both. Each proxy link is one RelatedPerson resource tied to one patient,
// as in Epic's MyChart.
type User struct {
	Username     string `json:"username"`
	PasswordHash []byte `json:"passwordHash"`
	// PasswordChanged is when the password was last set; past
	// Config.PasswordMaxAge the user must choose a new one at sign-in.
	// Zero (accounts from before it was kept) is never too old.
	PasswordChanged time.Time `json:"passwordChanged,omitzero"`
	// Patient is the user's own Patient id, if the user is a patient.
	Patient string `json:"patient,omitempty"`
	// Links are the patients the user may act for as a proxy.
	Links []Link `json:"links,omitempty"`
	// Email is where account mail goes (confirmation, reset, invitations).
	// Unconfirmed is set until its owner opens the link mailed to it; an
	// account with an unconfirmed address cannot sign in.
	Email       string `json:"email,omitempty"`
	Unconfirmed bool   `json:"unconfirmed,omitempty"`
	// Disabled is set by an operator (hearth user disable); Deactivated
	// by the user (closing the account). Neither signs in nor holds a
	// working token; the records stay.
	Disabled    bool      `json:"disabled,omitempty"`
	Deactivated time.Time `json:"deactivated,omitzero"`
	// TOTP is the secret of the user's authenticator app (RFC 6238), if
	// two-step sign-in is on.
	TOTP string `json:"totp,omitempty"`
	// TOTPStep is the time step of the last code accepted: a code is
	// good once.
	TOTPStep int64 `json:"totpStep,omitempty"`
	// PasskeyHandle is the account's WebAuthn user handle (random, not
	// the username); Passkeys its registered authenticators.
	PasskeyHandle []byte    `json:"passkeyHandle,omitempty"`
	Passkeys      []Passkey `json:"passkeys,omitempty"`
	Created       time.Time `json:"created,omitzero"`
}

// Link is one proxy relationship.
type Link struct {
	Patient       string `json:"patient"`       // Patient id
	RelatedPerson string `json:"relatedPerson"` // RelatedPerson id
	// Relationship is the v3 RoleCode (PRN parent, GUARD guardian …).
	Relationship string `json:"relationship,omitempty"`
	// Ends is when the link stops working (zero: it does not). A link to
	// a minor ends on their 18th birthday unless they renew it.
	Ends time.Time `json:"ends,omitzero"`
}

// Live reports whether the link works at t.
func (l Link) Live(t time.Time) bool { return l.Ends.IsZero() || t.Before(l.Ends) }

// CanSignIn reports whether the account may sign in and hold tokens.
func (u *User) CanSignIn() bool { return !u.Disabled && u.Deactivated.IsZero() && !u.Unconfirmed }

// Actor is one identity a user can act as for one patient.
type Actor struct {
	Patient  string // the patient in context
	FHIRUser string // Patient/… for self access, RelatedPerson/… for a proxy
	// Relationship is a proxy link's v3 RoleCode; empty for self.
	Relationship string
}

// Actors lists whom the user may act for now, self first. An ended link
// is not one.
func (u *User) Actors() []Actor {
	var out []Actor
	if u.Patient != "" {
		out = append(out, Actor{Patient: u.Patient, FHIRUser: "Patient/" + u.Patient})
	}
	now := time.Now()
	for _, l := range u.Links {
		if l.Live(now) {
			out = append(out, Actor{Patient: l.Patient, FHIRUser: "RelatedPerson/" + l.RelatedPerson, Relationship: l.Relationship})
		}
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

// ErrBadLogin is the one answer to a wrong username, a wrong password or
// a disabled account, so that none can be told apart.
var ErrBadLogin = errors.New("unknown username or wrong password")

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

// SetPassword checks a new password against the policy and sets it.
func (u *User) SetPassword(pw string) error {
	if err := password.Check(pw, u.Username, u.Email); err != nil {
		return err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	u.PasswordHash = h
	u.PasswordChanged = time.Now().UTC()
	return nil
}

// passwordMatches compares in constant time for a given hash cost.
func (u *User) passwordMatches(pw string) bool {
	return bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(pw)) == nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)

// usernameRE is what a username may be: what a person can type and a log
// line can hold without escaping.
var usernameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{2,63}$`)

// ErrUsernameTaken is the answer to a username already in use.
var ErrUsernameTaken = errors.New("this username cannot be used; choose another")

// CheckUsername tells whether a username is well formed.
func CheckUsername(name string) error {
	if !usernameRE.MatchString(name) {
		return errors.New("a username has 3 to 64 letters, digits, dots, dashes, underscores or @, and starts with a letter or digit")
	}
	return nil
}

// AddUser creates a user; patient may be empty for a proxy-only account.
func (a *Accounts) AddUser(ctx context.Context, username, password, patient string) (*User, error) {
	return a.Create(ctx, &User{Username: username, Patient: patient}, password)
}

// Create stores a new account with its password; ErrUsernameTaken if the
// username is in use.
func (a *Accounts) Create(ctx context.Context, u *User, password string) (*User, error) {
	if err := CheckUsername(u.Username); err != nil {
		return nil, err
	}
	if err := u.SetPassword(password); err != nil {
		return nil, err
	}
	u.Created = time.Now().UTC()
	if err := a.insert(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// insert stores a new account and its indexes; ErrUsernameTaken if the
// username is in use. CreateAuth, not Put: two sign-ups racing for one
// name get one each.
func (a *Accounts) insert(ctx context.Context, u *User) error {
	data, err := json.Marshal(u)
	if err != nil {
		return err
	}
	err = a.st.CreateAuth(ctx, store.AuthRecord{Kind: kindUser, Key: u.Username, Subject: u.Username, Active: true, Data: data})
	if errors.Is(err, store.ErrConflict) {
		return ErrUsernameTaken
	}
	if err != nil {
		return err
	}
	if err := a.indexPatient(ctx, u); err != nil {
		return err
	}
	return a.indexEmail(ctx, u, "")
}

// indexPatient keeps the lookup from a patient to their own account.
func (a *Accounts) indexPatient(ctx context.Context, u *User) error {
	if u.Patient == "" {
		return nil
	}
	return a.st.PutAuth(ctx, store.AuthRecord{Kind: kindPatientAccount, Key: u.Patient + "\n" + u.Username, Subject: u.Patient, Active: true, Data: []byte(`"` + u.Username + `"`)})
}

// indexOnce writes the account indexes (e-mail, proxy links, patients'
// own accounts) for accounts made before they were kept: once per store,
// by whichever process gets there first.
func (a *Accounts) indexOnce(ctx context.Context) error {
	err := a.st.CreateAuth(ctx, store.AuthRecord{Kind: kindMigration, Key: "account-indexes-1", Active: true, Data: []byte(`{}`)})
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	if err != nil {
		return err
	}
	recs, err := a.st.ListAuth(ctx, kindUser, "")
	if err != nil {
		return err
	}
	for _, rec := range recs {
		var u User
		if json.Unmarshal(rec.Data, &u) != nil {
			continue
		}
		if err := a.indexEmail(ctx, &u, ""); err != nil {
			return err
		}
		if err := a.indexPatient(ctx, &u); err != nil {
			return err
		}
		for _, l := range u.Links {
			if err := a.indexProxy(ctx, u.Username, l.Patient, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// HasAccount tells whether a patient has an account of their own.
func (a *Accounts) HasAccount(ctx context.Context, patient string) (bool, error) {
	recs, err := a.st.ListAuth(ctx, kindPatientAccount, patient)
	return len(recs) > 0, err
}

// indexEmail keeps the lookup from an e-mail address to the accounts that
// use it (forgotten usernames), dropping the one for old.
func (a *Accounts) indexEmail(ctx context.Context, u *User, old string) error {
	if old != "" && !strings.EqualFold(old, u.Email) {
		if err := a.st.DeleteAuth(ctx, kindEmail, emailKey(old, u.Username)); err != nil {
			return err
		}
	}
	if u.Email == "" {
		return nil
	}
	return a.st.PutAuth(ctx, store.AuthRecord{Kind: kindEmail, Key: emailKey(u.Email, u.Username), Subject: strings.ToLower(u.Email), Active: true, Data: []byte(`"` + u.Username + `"`)})
}

func emailKey(email, username string) string { return strings.ToLower(email) + "\n" + username }

// ByEmail lists the accounts whose address is email.
func (a *Accounts) ByEmail(ctx context.Context, email string) ([]*User, error) {
	recs, err := a.st.ListAuth(ctx, kindEmail, strings.ToLower(email))
	if err != nil {
		return nil, err
	}
	var out []*User
	for _, r := range recs {
		var name string
		if json.Unmarshal(r.Data, &name) != nil {
			continue
		}
		u, err := a.Get(ctx, name)
		if err == nil && strings.EqualFold(u.Email, email) {
			out = append(out, u)
		}
	}
	return out, nil
}

// SetEmail changes the address and keeps the index.
func (a *Accounts) SetEmail(ctx context.Context, u *User, email string) error {
	old := u.Email
	u.Email = email
	if err := a.Put(ctx, u); err != nil {
		return err
	}
	return a.indexEmail(ctx, u, old)
}

// ProxyRecords is what linking a proxy reads and writes of the FHIR data:
// the patient, and the new RelatedPerson (Put validates and creates a
// resource and returns its id).
type ProxyRecords interface {
	PatientReader
	Put(ctx context.Context, typ string, body []byte) (string, error)
}

// adulthood is the age at which a proxy link to a minor ends unless the
// patient renews it.
const adulthood = 18

// LinkProxy makes username a proxy for patient: it writes a RelatedPerson
// for the link (the proxy's FHIR identity for that patient) and records
// the link. relationship is a v3 RoleCode such as PRN (parent) or CHILD.
// A link to a minor ends on their 18th birthday.
func LinkProxy(ctx context.Context, st store.AuthStore, records ProxyRecords, username, patient, relationship string) (*Link, error) {
	a := NewAccounts(st)
	u, err := a.Get(ctx, username)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", username, err)
	}
	if _, ok := u.ActorFor(patient); ok {
		return nil, fmt.Errorf("user %q already acts for Patient/%s", username, patient)
	}
	pt, err := records.Read(ctx, "Patient", patient)
	if err != nil {
		return nil, fmt.Errorf("Patient/%s: %w", patient, err)
	}
	if relationship == "" {
		relationship = "PRN"
	}
	if _, ok := Relationships[relationship]; !ok {
		return nil, fmt.Errorf("relationship %q: want one of %s", relationship, strings.Join(slices.Sorted(maps.Keys(Relationships)), ", "))
	}
	l := Link{Patient: patient, Relationship: relationship}
	if born, ok := birthDate(pt.JSON); ok {
		if grown := born.AddDate(adulthood, 0, 0); time.Now().Before(grown) {
			l.Ends = grown
		}
	}
	rp := map[string]any{
		"resourceType": "RelatedPerson",
		"active":       true,
		"patient":      map[string]string{"reference": "Patient/" + patient},
		"relationship": []any{map[string]any{"coding": []any{map[string]string{
			"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": relationship}}}},
		"name": []any{map[string]string{"text": username}},
	}
	if !l.Ends.IsZero() {
		rp["period"] = map[string]string{"end": l.Ends.Format("2006-01-02")}
	}
	body, _ := json.Marshal(rp)
	if l.RelatedPerson, err = records.Put(ctx, "RelatedPerson", body); err != nil {
		return nil, err
	}
	// Drop an ended link to the same patient: the new one replaces it.
	u.Links = slices.DeleteFunc(u.Links, func(old Link) bool { return old.Patient == patient })
	u.Links = append(u.Links, l)
	if err := a.Put(ctx, u); err != nil {
		return nil, err
	}
	return &l, a.indexProxy(ctx, username, patient, true)
}

// Relationships are the v3 RoleCodes a proxy link may carry, with the words
// the pages use.
var Relationships = map[string]string{
	"PRN": "parent", "GUARD": "legal guardian", "SPS": "spouse or partner", "CHILD": "adult child",
	"FAMMEMB": "family member", "FRND": "friend", "ONESELF": "self", "POWATT": "power of attorney",
}

// indexProxy keeps the lookup from a patient to the accounts linked to
// them, which the patient's own account page lists.
func (a *Accounts) indexProxy(ctx context.Context, username, patient string, linked bool) error {
	key := patient + "\n" + username
	if !linked {
		return a.st.DeleteAuth(ctx, kindProxyOf, key)
	}
	return a.st.PutAuth(ctx, store.AuthRecord{Kind: kindProxyOf, Key: key, Subject: patient, Active: true, Data: []byte(`"` + username + `"`)})
}

// Proxy is one account's link to a patient, as the patient sees it.
type Proxy struct {
	Username string
	Link     Link
}

// ProxiesOf lists the accounts linked to patient, ended links included.
func (a *Accounts) ProxiesOf(ctx context.Context, patient string) ([]Proxy, error) {
	recs, err := a.st.ListAuth(ctx, kindProxyOf, patient)
	if err != nil {
		return nil, err
	}
	var out []Proxy
	for _, r := range recs {
		var name string
		if json.Unmarshal(r.Data, &name) != nil {
			continue
		}
		u, err := a.Get(ctx, name)
		if err != nil {
			continue
		}
		for _, l := range u.Links {
			if l.Patient == patient {
				out = append(out, Proxy{Username: name, Link: l})
			}
		}
	}
	return out, nil
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
	if err := a.Put(ctx, u); err != nil {
		return err
	}
	return a.indexProxy(ctx, username, patient, false)
}

// RenewLink lets a link to a patient who came of age go on: it no longer
// ends. The patient's own decision (their account page).
func (a *Accounts) RenewLink(ctx context.Context, username, patient string) error {
	u, err := a.Get(ctx, username)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(u.Links, func(l Link) bool { return l.Patient == patient })
	if i < 0 {
		return fmt.Errorf("user %q is not a proxy for Patient/%s", username, patient)
	}
	u.Links[i].Ends = time.Time{}
	return a.Put(ctx, u)
}

// birthDate reads Patient.birthDate; a partial date counts from its
// earliest possible day.
func birthDate(patient []byte) (time.Time, bool) {
	var pt struct {
		BirthDate string `json:"birthDate"`
	}
	if json.Unmarshal(patient, &pt) != nil || len(pt.BirthDate) < 4 {
		return time.Time{}, false
	}
	var born time.Time
	var err error
	switch len(pt.BirthDate) {
	case 4:
		born, err = time.Parse("2006", pt.BirthDate)
	case 7:
		born, err = time.Parse("2006-01", pt.BirthDate)
	default:
		born, err = time.Parse("2006-01-02", pt.BirthDate[:min(10, len(pt.BirthDate))])
	}
	return born, err == nil
}

// ageAt is how old someone born then is at t, in whole years.
func ageAt(born, t time.Time) int {
	age := t.Year() - born.Year()
	if t.Before(born.AddDate(age, 0, 0)) {
		age--
	}
	return age
}
