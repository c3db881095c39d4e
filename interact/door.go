// Package interact is the door to the data: it carries out every FHIR
// interaction — read, vread, search with includes, chains and _has,
// history, create, update, patch, delete and their conditional forms,
// batch and transaction bundles, $everything, paging — for a session bound
// to one access policy. It speaks FHIR, not HTTP: the server decodes a
// request, calls a session and encodes the answer.
//
// A Session is the only way to resource data. Door.Session binds one to a
// token's policy, and every store call it makes goes through the policy's
// guard (smart/access), which narrows each sub-query — chain targets, _has
// sources, includes, $everything members, conditional matches, paging
// snapshots — as a top-level search of that type would be. Door.Unrestricted
// is asked for by name, by the importer and `hearth serve --open`.
package interact

import (
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/store"
)

// Config is what the door needs to know of the server it serves.
type Config struct {
	// BaseURL is the FHIR base: references under it are local, and
	// conditional references and search values may use it.
	BaseURL string
	// Limits bound the work of one search (zero fields: the defaults).
	Limits SearchLimits
	// MaxBundleEntries bounds the entries of a batch or transaction
	// (default 10,000).
	MaxBundleEntries int
	// MaxBundleResults bounds the resources the reads and searches of one
	// batch or transaction return together (default 10,000).
	MaxBundleResults int
	// Audit is the trail every interaction is recorded in. Nil only for
	// the tools that load data as an operator (import, the demo seed,
	// admin commands): `hearth serve` always has one.
	Audit *audit.Trail
	// Profiles, when set, checks the profiles a written resource claims in
	// meta.profile (hearth serve --validate-profiles): a resource that
	// does not conform to one it claims is refused.
	Profiles ProfileValidator
	// ReleaseDelays is how long a final result of each release category
	// (ReleaseLaboratory, ReleaseImaging, ReleaseClinicalNote) waits for a
	// clinician's release before it releases itself; a category not
	// named releases at once, as the Cures Act expects by default.
	ReleaseDelays map[string]time.Duration
	// Now is the clock of release delays (default time.Now).
	Now func() time.Time
}

// ProfileValidator validates a resource against the profiles it claims;
// issues of severity error refuse the write.
type ProfileValidator interface {
	ValidateClaims(res map[string]any) []fhir.Issue
}

// Door opens sessions over one store.
type Door struct {
	data store.Resources
	cfg  Config
	// trail is where AuditEvents are read from (AuditEvent searches):
	// the store's audit log, when it keeps one.
	trail store.AuditLog
	// releaser stamps results' release state on every write.
	releaser *releaser
}

// New returns the door to st's resources. Every path that writes data —
// the API, the importer, the demo seed — comes through a door, so each
// declares the same base URL as local (fhir.AddLocalBase) before it writes.
func New(st store.Resources, cfg Config) *Door {
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.MaxBundleEntries == 0 {
		cfg.MaxBundleEntries = 10_000
	}
	if cfg.MaxBundleResults == 0 {
		cfg.MaxBundleResults = 10_000
	}
	fhir.AddLocalBase(cfg.BaseURL)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Door{data: st, cfg: cfg, releaser: &releaser{delays: cfg.ReleaseDelays, now: cfg.Now}}
	d.trail, _ = st.(store.AuditLog)
	return d
}

// BaseURL is the FHIR base the door was configured with.
func (d *Door) BaseURL() string { return d.cfg.BaseURL }

// Session returns a session that sees and changes only what p allows. A
// nil policy is a programming error answered by ErrNoPolicy on every call,
// never by open access.
// who is recorded as the agent of each interaction in the audit trail.
func (d *Door) Session(p *access.Policy, who audit.Agent) *Session {
	if p == nil {
		return &Session{door: d, data: closed{}, who: who}
	}
	ss := &Session{door: d, data: access.NewGuard(d.data, p), who: who, pol: p}
	if p.Patient != "" {
		user := p.FHIRUser
		if user == "" {
			user = "Patient/" + p.Patient
		}
		ss.author = &authorship{user: user, patient: p.Patient}
	}
	return ss
}

// Unrestricted returns a session that sees everything: for the importer,
// the demo seed and `hearth serve --open`, which ask for it by name. who
// is recorded as the agent of its interactions.
func (d *Door) Unrestricted(who audit.Agent) *Session {
	return &Session{door: d, data: d.data, who: who, unrestricted: true}
}

// Session carries out interactions for one policy.
type Session struct {
	door *Door
	data store.Resources // the policy's guard, or the store itself
	who  audit.Agent
	// pol is the session's policy; unrestricted sessions have none.
	pol          *access.Policy
	unrestricted bool
	// author is who a patient-bound session writes as (patient-authored
	// data); nil for every other session.
	author *authorship
	// recorded: the session's request has an audit record (RecordRefused
	// adds none then).
	recorded atomic.Bool
}

// BaseURL is the FHIR base of the door the session came from.
func (s *Session) BaseURL() string { return s.door.cfg.BaseURL }

// ErrNoPolicy: a session was asked for without a policy. It is a bug in
// the caller and maps to a 500, so a missing policy never opens the data.
var ErrNoPolicy = errors.New("no access policy for this request")

// Kind says what sort of refusal a Problem is; the HTTP layer maps kinds to
// status codes in one place.
type Kind int

const (
	// Invalid: the request itself is wrong (a 400).
	Invalid Kind = iota
	// Unprocessable: well-formed, but it cannot be carried out on the
	// resource as it is (a 422: a patch that fails, an invalid result).
	Unprocessable
	// NotSupported: valid FHIR that Hearth does not do (a 400).
	NotSupported
)

// Problem is a request the door refuses, with the OperationOutcome issues
// that say why. The issues never hold resource content.
type Problem struct {
	Kind   Kind
	Issues []fhir.Issue
}

func (p *Problem) Error() string {
	if len(p.Issues) == 0 {
		return "invalid request"
	}
	return p.Issues[0].Error()
}

// problem builds a Problem with one issue.
func problem(kind Kind, code, diagnostics string) *Problem {
	return &Problem{Kind: kind, Issues: []fhir.Issue{{Severity: "error", Code: code, Diagnostics: diagnostics}}}
}

// searchProblem turns a search parsing error into a Problem.
func searchProblem(err error) error {
	var se *fhir.SearchError
	if errors.As(err, &se) {
		return problem(Invalid, "invalid", se.Msg)
	}
	return err
}
