package audit

import (
	"context"
	"net"
	"net/http"
)

type requestIDKey struct{}

// WithRequestID carries a request's id (the one the logs carry) in its
// context, for the trail's records of it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the id WithRequestID put in ctx ("" if none).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// From is the agent of a request as far as the request itself tells: its
// network address and id; who acts is for the caller to add.
func From(r *http.Request) Agent {
	a := Agent{Address: r.RemoteAddr, RequestID: RequestID(r.Context())}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		a.Address = host
	}
	return a
}

// Recorder takes events: a *Trail, to those that record security events
// (the authorization server, the token check).
type Recorder interface {
	Record(ctx context.Context, a Agent, e Event) error
}

// Security event types (AuditEvent.type, DICOM) and subtypes (Hearth's
// own codes, system urn:hearth:security-event).
const (
	// AuthenticationType is DICOM "User Authentication": sign-in.
	AuthenticationType = "110114"

	Login          = "login"        // sign-in (outcome: success, or failure)
	Lockout        = "lockout"      // the account locked after failed sign-ins
	Consent        = "consent"      // the user granted an app access
	TokenIssued    = "token-issued" // an access token was issued (or refused)
	TokenRefreshed = "token-refreshed"
	TokenRevoked   = "token-revoked"
	Registration   = "registration"   // an app registered itself
	AccessRefused  = "access-refused" // a request's token was missing or invalid (401)
	AccountChanged = "account-changed"
	Import         = "import" // an operator loaded resources (hearth import into a data directory)
	ProxyLinked    = "proxy-linked"
)
