package store

import (
	"context"
	"strings"
	"time"
)

// AuditRecord is one entry of the audit trail as a store keeps it: the
// AuditEvent's bytes, and the keys the trail is searched by. Records are
// immutable: appended, never updated, deleted only once past retention.
type AuditRecord struct {
	ID       string // the AuditEvent's id, given by the store when appended
	Recorded time.Time
	Type     string // AuditEvent.type code: "rest", or a security event's
	Subtype  string // AuditEvent.subtype code: "read", "search-type", "login" …
	Action   string // C, R, U, D or E
	Outcome  string // 0, 4, 8 or 12
	// Patients are the ids of the Patients whose data the event touched
	// (or who acted, or were acted for).
	Patients []string
	// Agents are who acted: "Patient/x", "RelatedPerson/y", "Practitioner/z",
	// and the client app as "Device/client-id" (its id in the trail).
	Agents []string
	// Entities are the resources touched, as "Type/id".
	Entities []string
	// Data is the rest of the event, as the audit trail encodes it
	// (opaque to the store).
	Data []byte
}

// EntityPatient is the patient an entity reference names when it is a
// Patient ("Patient/x", not a version of it). Every patient of an event is
// one of its entities: a search by either finds the other.
func EntityPatient(ref string) (string, bool) {
	id, ok := strings.CutPrefix(ref, "Patient/")
	return id, ok && !strings.Contains(id, "/")
}

// AuditQuery selects audit records. Empty fields do not filter; a list
// filters on any of its values.
type AuditQuery struct {
	IDs                        []string
	Patients, Agents, Entities []string
	Types, Subtypes, Outcomes  []string
	Actions                    []string
	Since, Until               time.Time // recorded ≥ Since, < Until
	Descending                 bool      // newest first
	After                      string    // keyset: continue after this record id
	Limit                      int       // at most this many (0: no limit)
}

// AuditLog keeps the audit trail, apart from the resources: AuditEvents
// are written by the server alone, never deleted by a resource's deletion,
// and searched by their own indexes.
type AuditLog interface {
	// AppendAudit stores records in one transaction of their own, and
	// gives each its ID (recs[i].ID is set; what it held is ignored).
	AppendAudit(ctx context.Context, recs []AuditRecord) error
	// SearchAudit answers records in recorded order (then in the order
	// appended), oldest first unless q.Descending.
	SearchAudit(ctx context.Context, q AuditQuery) ([]AuditRecord, error)
	// PruneAudit deletes the records recorded before a time (retention).
	PruneAudit(ctx context.Context, before time.Time) (int64, error)
}
