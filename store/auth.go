package store

import (
	"context"
	"time"
)

// AuthRecord is one piece of authorization-server state: an authorization
// code, an access or refresh token, a PKCE or OpenID request, a used client
// assertion id, a client, a user account, a login session, a pending
// authorization, a signing key. One record shape serves every kind (the way
// ory/hydra persists fosite), so a backend needs one table or collection and
// two secondary lookups: by grant (RequestID) and by user (Subject).
type AuthRecord struct {
	Kind string // what the record is: "access", "refresh", "code", "client", "user", …
	Key  string // unique within Kind: a token signature, a client id, a username
	// RequestID names the grant a token belongs to, so that everything one
	// grant issued can be revoked together (code replay, refresh reuse,
	// RFC 7009 revocation).
	RequestID string
	// Subject is the user the record belongs to, if any, so that a user's
	// grants can be listed and revoked.
	Subject string
	// Active is false once a code was redeemed or a refresh token rotated:
	// the record is kept so that a replay can be recognised.
	Active bool
	// ExpiresAt is when the record stops existing; zero means never.
	// Expired records are never returned and may be removed at any time.
	ExpiresAt time.Time
	Data      []byte // the kind's own JSON
}

// AuthStore keeps authorization-server state next to the resources, so that
// every Hearth process on one database sees the same codes, tokens, users
// and revocations at once.
type AuthStore interface {
	// CreateAuth inserts a record; ErrConflict if an unexpired record of
	// that Kind and Key exists (single use: client assertion ids, codes).
	CreateAuth(ctx context.Context, rec AuthRecord) error
	// PutAuth inserts or replaces a record.
	PutAuth(ctx context.Context, rec AuthRecord) error
	// GetAuth returns a record; ErrNotFound if it is missing or expired.
	// Inactive records are returned with Active false.
	GetAuth(ctx context.Context, kind, key string) (AuthRecord, error)
	// DeleteAuth removes a record; removing a missing one is not an error.
	DeleteAuth(ctx context.Context, kind, key string) error
	// DeactivateAuth marks a record inactive; ErrNotFound if it is missing.
	DeactivateAuth(ctx context.Context, kind, key string) error
	// DeactivateGrant marks every record of kind issued by one grant inactive.
	DeactivateGrant(ctx context.Context, kind, requestID string) error
	// DeleteGrant removes every record of kind issued by one grant.
	DeleteGrant(ctx context.Context, kind, requestID string) error
	// ListAuth returns the unexpired records of kind that belong to subject
	// ("" lists every record of kind), ordered by Key.
	ListAuth(ctx context.Context, kind, subject string) ([]AuthRecord, error)
}
