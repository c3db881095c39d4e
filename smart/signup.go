package smart

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/mail"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
)

// Activation codes: the clinic hands one to a patient (on a visit
// summary, by letter), and with it and their birth date the patient
// creates their account. A code is 15 characters of Crockford's base32
// (75 random bits), single-use, and kept only as its hash.

const (
	// DefaultActivationTTL is how long a code works unless told otherwise.
	DefaultActivationTTL = 30 * 24 * time.Hour
	confirmTTL           = 24 * time.Hour
	// mailInterval: at most one mail of a kind to an account this often.
	mailInterval = 2 * time.Minute
)

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// activation is what a code stands for.
type activation struct {
	Patient string    `json:"patient"`
	Issued  time.Time `json:"issued"`
	By      string    `json:"by"` // the operator or client that issued it
}

// newActivationCode is XXXXX-XXXXX-XXXXX.
func newActivationCode() string {
	b := make([]byte, 15)
	rand.Read(b)
	var sb strings.Builder
	for i, c := range b {
		if i > 0 && i%5 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(crockford[int(c)%32])
	}
	return sb.String()
}

// normaliseCode reads a code as typed: case, dashes and spaces do not
// matter, and O, I and L are read as 0, 1 and 1 (Crockford).
func normaliseCode(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', ' ', '\t':
			return -1
		case 'O', 'o':
			return '0'
		case 'I', 'i', 'L', 'l':
			return '1'
		}
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// IssueActivation makes a single-use activation code for patient, valid
// for ttl (DefaultActivationTTL if 0). by names who issued it, for the
// audit trail.
func (p *Provider) IssueActivation(ctx context.Context, patient string, ttl time.Duration, by string) (string, time.Time, error) {
	return p.IssueActivationCode(ctx, patient, newActivationCode(), ttl, by)
}

// IssueActivationCode is IssueActivation with a code of the caller's: the
// demo data's published one, which no real patient should have.
func (p *Provider) IssueActivationCode(ctx context.Context, patient, code string, ttl time.Duration, by string) (string, time.Time, error) {
	if ttl <= 0 {
		ttl = DefaultActivationTTL
	}
	if _, err := p.records.Read(ctx, "Patient", patient); err != nil {
		return "", time.Time{}, fmt.Errorf("Patient/%s: %w", patient, err)
	}
	expires := time.Now().Add(ttl).UTC().Truncate(time.Second)
	data, _ := json.Marshal(activation{Patient: patient, Issued: time.Now().UTC(), By: by})
	if err := p.st.CreateAuth(ctx, store.AuthRecord{Kind: kindActivation, Key: sha(normaliseCode(code)), Subject: patient, Active: true, ExpiresAt: expires, Data: data}); err != nil {
		return "", time.Time{}, err
	}
	return code, expires, nil
}

// activationAPI issues a code to a backend service holding a system/
// scope that may update Patients (the health system's registration
// system, typically):
//
//	POST /account/api/activation   {"patient":"Patient/ID","expires":"720h"}
//	→ 201 {"code":"…","patient":"Patient/ID","expires":"2027-01-02T…Z"}
func (p *Provider) activationAPI(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hearth"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "a bearer token is required"})
		return
	}
	pol, err := p.Authenticate(ctx, token)
	if errors.Is(err, ErrInvalidToken) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hearth", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	if pol.Patient != "" || !pol.Scopes.HasContext("system") || !pol.Scopes.For("Patient", scopes.Update).Allowed || pol.Scopes.For("Patient", scopes.Update).Constraints != nil {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "error_description": "issuing activation codes needs a backend token with system/Patient.u (or system/*.u)"})
		return
	}
	var req struct {
		Patient string `json:"patient"`
		Expires string `json:"expires"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "the body must be JSON: {\"patient\":\"Patient/ID\",\"expires\":\"720h\"}"})
		return
	}
	var ttl time.Duration
	if req.Expires != "" {
		if ttl, err = ParseTTL(req.Expires); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": err.Error()})
			return
		}
	}
	id, ok := strings.CutPrefix(req.Patient, "Patient/")
	if !ok || id == "" || strings.Contains(id, "/") {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "patient must be Patient/ID"})
		return
	}
	code, expires, err := p.IssueActivation(ctx, id, ttl, "client "+pol.ClientID)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "no such patient"})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	p.security(r, audit.Agent{Client: pol.ClientID}, audit.Event{Subtype: audit.AccountChanged, Action: "C", Detail: "activation code issued", Patients: []string{id}})
	writeJSON(w, http.StatusCreated, map[string]string{"code": code, "patient": "Patient/" + id, "expires": expires.Format(time.RFC3339)})
}

// ParseTTL reads a lifetime: a Go duration ("720h") or days ("30d").
func ParseTTL(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err == nil && n > 0 && n <= 365 && fmt.Sprint(n) == d {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	t, err := time.ParseDuration(s)
	if err != nil || t <= 0 || t > 365*24*time.Hour {
		return 0, fmt.Errorf("expires %q: want a duration such as 30d or 72h, at most a year", s)
	}
	return t, nil
}

func (p *Provider) signupPage(w http.ResponseWriter, r *http.Request) {
	p.formPage(w, r, "Create your account", "signup", "/account/signup")
}

// signup creates an account from an activation code and the patient's
// birth date — or, where the operator allows it (Config.MatchSignUp), from
// the patient's family name, birth date and medical record number, for a
// patient who has no account yet. Wrong answers count against the address
// like wrong passwords; the answer to one never says which part was
// wrong, or whether the patient exists.
func (p *Provider) signup(w http.ResponseWriter, r *http.Request) {
	if !p.formChecked(w, r) {
		return
	}
	ctx := r.Context()
	f := r.PostForm
	d := p.page("Create your account")
	d.Action, d.Hidden = p.root+"/account/signup", []field{{"csrf", f.Get("csrf")}}
	for _, k := range []string{"code", "birth_date", "username", "email", "family", "mrn"} {
		d.keep(k, strings.TrimSpace(f.Get(k)))
	}
	attempt, err := p.codeAttemptOf(r)
	if err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "Sign-up is not possible right now; try again later.")
		return
	}
	if until, paused := attempt.pausedUntil(); paused {
		d.Error = fmt.Sprintf("Sign-up is paused after several unsuccessful attempts from your network. Try again after %s.", until.UTC().Format("15:04 UTC"))
		p.render(w, http.StatusTooManyRequests, "signup", d)
		return
	}
	proof, ok := p.proveIdentity(ctx, f)
	if !ok {
		p.codeFailed(ctx, attempt)
		p.security(r, audit.Agent{}, audit.Event{Subtype: audit.AccountChanged, Action: "C", Outcome: audit.Minor, Detail: "sign-up refused: " + proof.how + " did not match"})
		d.fieldError("code", proof.refusal)
		p.render(w, http.StatusBadRequest, "signup", d)
		return
	}
	email, emailErr := checkEmail(f.Get("email"))
	u := &User{Username: strings.TrimSpace(f.Get("username")), Patient: proof.patient, Email: email, Unconfirmed: true}
	valid := true
	if err := CheckUsername(u.Username); err != nil {
		d.fieldError("username", capitalise(err.Error())+".")
		valid = false
	}
	if emailErr != nil {
		d.fieldError("email", capitalise(emailErr.Error())+".")
		valid = false
	}
	if !p.newPasswordFrom(r, u, &d) || !valid {
		d.Error = "Something needs your attention below."
		p.render(w, http.StatusBadRequest, "signup", d)
		return
	}
	// A code is taken before the account is made: two sign-ups with one
	// code make one account.
	if proof.codeKey != "" {
		if err := p.st.DeactivateAuth(ctx, kindActivation, proof.codeKey); err != nil {
			d.fieldError("code", proof.refusal)
			p.render(w, http.StatusBadRequest, "signup", d)
			return
		}
	}
	u.Created = time.Now().UTC()
	if err := p.accounts.insert(ctx, u); err != nil {
		if proof.codeKey != "" {
			// Give the code back: the patient chooses another username.
			if rec, gerr := p.st.GetAuth(ctx, kindActivation, proof.codeKey); gerr == nil {
				rec.Active = true
				p.st.PutAuth(ctx, rec)
			}
		}
		if errors.Is(err, ErrUsernameTaken) {
			d.fieldError("username", "This username cannot be used; choose another.")
			d.Error = "Something needs your attention below."
			p.render(w, http.StatusBadRequest, "signup", d)
			return
		}
		p.errorPage(w, http.StatusServiceUnavailable, "Sign-up is not possible right now; try again later.")
		return
	}
	p.security(r, audit.Agent{User: u.Username, FHIRUser: u.fhirUser(), Patient: u.Patient}, audit.Event{Subtype: audit.AccountChanged, Action: "C", Detail: "account created with " + proof.how})
	if err := p.sendConfirmation(ctx, u, email, false); err != nil {
		p.log.ErrorContext(ctx, "confirmation mail failed", "error", err.Error())
	}
	d = p.page("Check your e-mail")
	d.Notice = "Your account is created. We sent a link to " + email + ": open it to confirm your address, then sign in. The link works for 24 hours."
	p.render(w, http.StatusCreated, "error", d)
}

// patientSearcher is the door's search, which sign-up without a code
// matches demographics with.
type patientSearcher interface {
	Search(ctx context.Context, q *fhir.SearchQuery, token string) (*interact.SearchPage, error)
}

// identityProof is how a sign-up showed whose record it is.
type identityProof struct {
	patient string
	codeKey string // the activation code's key, if one was used
	how     string // for the audit trail
	refusal string // what the page says when it fails
}

// proveIdentity checks the sign-up form's answers: an activation code and
// birth date, or (where allowed) family name, birth date and medical
// record number matching exactly one patient who has no account yet.
func (p *Provider) proveIdentity(ctx context.Context, f url.Values) (identityProof, bool) {
	birth := strings.TrimSpace(f.Get("birth_date"))
	searcher, canMatch := p.records.(patientSearcher)
	if code := f.Get("code"); code != "" || !p.cfg.SignUpWithoutCode || !canMatch {
		proof := identityProof{how: "an activation code", codeKey: sha(normaliseCode(code)),
			refusal: "The activation code and date of birth do not match a code we issued. Check both; a code works once, and expires."}
		act, ok := p.checkActivation(ctx, proof.codeKey, birth)
		if ok {
			proof.patient = act.Patient
		}
		return proof, ok
	}
	proof := identityProof{how: "family name, birth date and medical record number",
		refusal: "These details do not match a patient who can sign up here. Check them, or ask your clinic for an activation code."}
	family, mrn := strings.TrimSpace(f.Get("family")), strings.TrimSpace(f.Get("mrn"))
	if family == "" || mrn == "" || len(birth) != 10 {
		return proof, false
	}
	q, err := fhir.ParseSearch("Patient", url.Values{"identifier": {mrn}, "birthdate": {birth}, "_count": {"5"}}, fhir.SearchOptions{DefaultCount: 5, MaxCount: 5})
	if err != nil {
		return proof, false
	}
	found, err := searcher.Search(ctx, q, "")
	if err != nil {
		return proof, false
	}
	var ids []string
	for _, res := range found.Matches {
		if hasFamily(res.JSON, family) {
			ids = append(ids, res.ID)
		}
	}
	if len(ids) != 1 {
		return proof, false
	}
	// Without a code, an account is made only for a patient without one:
	// details others may know must not open an existing patient's record
	// a second way.
	if has, err := p.accounts.HasAccount(ctx, ids[0]); err != nil || has {
		return proof, false
	}
	proof.patient = ids[0]
	return proof, true
}

// hasFamily tells whether a Patient has a name whose family is family
// (letter case aside).
func hasFamily(patient []byte, family string) bool {
	var pt struct {
		Name []struct {
			Family string `json:"family"`
		} `json:"name"`
	}
	if json.Unmarshal(patient, &pt) != nil {
		return false
	}
	for _, n := range pt.Name {
		if strings.EqualFold(strings.TrimSpace(n.Family), family) {
			return true
		}
	}
	return false
}

// checkActivation finds a live code and checks the birth date against the
// patient's record.
func (p *Provider) checkActivation(ctx context.Context, codeKey, birth string) (*activation, bool) {
	var act activation
	if !p.record(ctx, kindActivation, codeKey, &act) {
		return nil, false
	}
	res, err := p.records.Read(ctx, "Patient", act.Patient)
	if err != nil {
		return nil, false
	}
	born, ok := birthDate(res.JSON)
	if !ok || len(birth) != 10 || born.Format("2006-01-02") != birth {
		return nil, false
	}
	return &act, true
}

// confirmation is what an e-mail confirmation link stands for.
type confirmation struct {
	Username string `json:"username"`
	Email    string `json:"email"`
}

// sendConfirmation mails a single-use link that confirms email as the
// account's address (a new account's, or a change). At most one such mail
// per account every mailInterval.
func (p *Provider) sendConfirmation(ctx context.Context, u *User, email string, change bool) error {
	if !p.mailAllowed(ctx, "confirm", u.Username) {
		return nil
	}
	token := randomToken()
	data, _ := json.Marshal(confirmation{Username: u.Username, Email: email})
	if err := p.st.CreateAuth(ctx, store.AuthRecord{Kind: kindConfirm, Key: sha(token), Subject: u.Username, Active: true, ExpiresAt: time.Now().Add(confirmTTL), Data: data}); err != nil {
		return err
	}
	what := "finish creating your account"
	if change {
		what = "make it your account's e-mail address"
	}
	return p.sendMail(ctx, mail.Message{To: email, Subject: "Confirm your e-mail address — " + p.cfg.Brand.name(),
		Text: fmt.Sprintf("Hello,\n\nTo confirm this address and %s on %s, open this link (it works once, for 24 hours):\n\n%s/account/confirm?t=%s\n\nIf you did not ask for this, ignore this e-mail.\n", what, p.cfg.Brand.name(), p.root, token)})
}

// mailAllowed is the rate limit of account mails: one of a kind per
// account per mailInterval (a record that expires).
func (p *Provider) mailAllowed(ctx context.Context, kind, username string) bool {
	err := p.st.CreateAuth(ctx, store.AuthRecord{Kind: kindThrottle, Key: "mail:" + kind + ":" + username, Active: true, ExpiresAt: time.Now().Add(mailInterval), Data: []byte("{}")})
	return err == nil
}

func (p *Provider) sendMail(ctx context.Context, m mail.Message) error {
	if p.cfg.Mail == nil {
		return errors.New("no mail sender is configured")
	}
	return p.cfg.Mail.Send(ctx, m)
}

// confirmPage shows a button: the link itself changes nothing, so that a
// mail scanner that follows links does not use it up.
func (p *Provider) confirmPage(w http.ResponseWriter, r *http.Request) {
	p.formPage(w, r, "Confirm your e-mail address", "confirm", "/account/confirm", field{"t", r.URL.Query().Get("t")})
}

func (p *Provider) confirm(w http.ResponseWriter, r *http.Request) {
	if !p.formChecked(w, r) {
		return
	}
	ctx := r.Context()
	key := sha(r.PostForm.Get("t"))
	var c confirmation
	if !p.record(ctx, kindConfirm, key, &c) || p.st.DeactivateAuth(ctx, kindConfirm, key) != nil {
		p.errorPage(w, http.StatusBadRequest, "This link has expired or was already used. Sign in to get a new one.")
		return
	}
	u, err := p.accounts.Get(ctx, c.Username)
	if err != nil {
		p.errorPage(w, http.StatusBadRequest, "This link has expired or was already used.")
		return
	}
	u.Unconfirmed = false
	if err := p.accounts.SetEmail(ctx, u, c.Email); err != nil {
		p.errorPage(w, http.StatusServiceUnavailable, "The address could not be confirmed; try again.")
		return
	}
	p.security(r, accountAgent(u), audit.Event{Subtype: audit.AccountChanged, Action: "U", Detail: "e-mail address confirmed"})
	d := p.page("Your e-mail address is confirmed")
	d.Notice = "Thank you. You can now sign in."
	p.render(w, http.StatusOK, "notice", d)
}
