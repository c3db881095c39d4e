package smart

import (
	"errors"
	"net/http"
	"time"

	"github.com/ory/fosite"

	"github.com/hearth-fhir/hearth/interact/audit"
)

// The authorization server records its security events in the audit trail
// (Config.Audit). What grants access — a sign-in, a consent, a token — is
// recorded before it is given, and not given when the trail cannot take
// it; refusals are recorded as well as can be, and refused regardless.

// security records an event of this request: who acts, from where.
func (p *Provider) security(r *http.Request, who audit.Agent, e audit.Event) error {
	if p.cfg.Audit == nil {
		return nil
	}
	from := audit.From(r)
	who.Address, who.RequestID = from.Address, from.RequestID
	if e.Type == "" {
		e.Type = audit.SecurityType
	}
	if e.Action == "" {
		e.Action = "E"
	}
	if e.Outcome == "" {
		e.Outcome = audit.Success
	}
	err := p.cfg.Audit.Record(r.Context(), who, e)
	if err != nil {
		p.log.ErrorContext(r.Context(), "audit trail: a security event went unrecorded", "event", e.Subtype, "request_id", from.RequestID, "error", err.Error())
	}
	return err
}

// recordLoginFailure records a failed sign-in, and the start of a pause
// when this failure paused sign-in.
func (p *Provider) recordLoginFailure(r *http.Request, who audit.Agent, err error) {
	detail := "unknown username or wrong password"
	var paused *PausedError
	switch {
	case errors.As(err, &paused):
		detail = "sign-in paused until " + paused.Until.UTC().Format(time.RFC3339)
	case errors.Is(err, errDisabled):
		detail = "the account is disabled or closed"
	case errors.Is(err, errUnconfirmed):
		detail = "the e-mail address is not confirmed"
	case !errors.Is(err, ErrBadLogin):
		detail = err.Error()
	}
	p.security(r, who, audit.Event{Type: audit.AuthenticationType, Subtype: audit.Login, Outcome: audit.Minor, Detail: detail})
	if paused != nil && paused.Started {
		p.security(r, who, audit.Event{Subtype: audit.Lockout, Detail: "sign-in paused after repeated failures"})
	}
}

// tokenAgent is who a token request acts for: its session's user and
// patient, and the client.
func tokenAgent(r *http.Request, ar fosite.AccessRequester) audit.Agent {
	var who audit.Agent
	if ar != nil && ar.GetClient() != nil {
		who.Client = ar.GetClient().GetID()
	} else if id, _, ok := r.BasicAuth(); ok {
		who.Client = id
	} else {
		who.Client = r.PostForm.Get("client_id")
	}
	if ar == nil {
		return who
	}
	if s, ok := ar.GetSession().(*Session); ok {
		who.User, who.FHIRUser, who.Patient = s.User, s.FHIRUser, s.Patient
	}
	return who
}

// tokenEvent is the event of a token request: issued or refreshed.
func tokenEvent(ar fosite.AccessRequester) string {
	if ar != nil && ar.GetGrantTypes().ExactOne("refresh_token") {
		return audit.TokenRefreshed
	}
	return audit.TokenIssued
}

func (u *User) fhirUser() string {
	if u.Patient == "" {
		return ""
	}
	return "Patient/" + u.Patient
}
