// Package store defines Hearth's storage contract: the versioned resource
// store every backend implements, its sentinel errors and value types. The
// conformance suite in store/storetest checks a backend against it.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/hearth-fhir/hearth/fhir"
)

// Sentinel errors. Backends wrap them with %w; the HTTP layer maps them to
// status codes in one place.
var (
	// ErrNotFound: no resource with that type and id (or version) exists.
	ErrNotFound = errors.New("resource not found")
	// ErrGone: the resource exists but its current version is a deletion.
	ErrGone = errors.New("resource deleted")
	// ErrVersionMismatch: an If-Match precondition named another version.
	ErrVersionMismatch = errors.New("version mismatch")
	// ErrConflict: a concurrent writer changed the resource first.
	ErrConflict = errors.New("concurrent modification")
	// ErrMultipleMatches: a conditional operation matched more than one resource.
	ErrMultipleMatches = errors.New("multiple matches")
	// ErrLocked: the data directory is in use by another process.
	ErrLocked = errors.New("store in use by another process")
	// ErrInvalidCursor: a paging cursor that this store did not issue.
	ErrInvalidCursor = errors.New("invalid paging cursor")
	// ErrTooCostly: the request would need more work than the server allows.
	ErrTooCostly = errors.New("too costly")
	// ErrUnsupported: the backend cannot answer this query exactly.
	ErrUnsupported = errors.New("query not supported")
)

// NewID returns a new server-assigned resource id: a version 7 UUID, which
// begins with the time, so that resources created together sort together.
// A bulk load then appends to the indexes keyed by (type, id) instead of
// dirtying a random page of each for every resource, as random (version 4)
// UUIDs did.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// Op is the interaction that produced a version, as history reports it.
type Op string

const (
	OpCreate Op = "create" // POST, or a PUT re-creating a deleted resource
	OpUpdate Op = "update"
	OpDelete Op = "delete"
	// OpUpdateCreate is an update (PUT) that created the resource with the
	// client's id: history reports it as the PUT it was.
	OpUpdateCreate Op = "update-create"
)

// Resource is one stored version of a resource.
type Resource struct {
	Type        string
	ID          string
	VersionID   int64
	LastUpdated time.Time // UTC, millisecond precision
	Deleted     bool
	Op          Op
	// JSON is the resource exactly as served, with id and meta stamped by the
	// store. Nil for a deletion.
	JSON []byte
}

// Write is a resource body to store as the next version of Type/ID.
type Write struct {
	Type string
	ID   string // empty on Create: the store assigns one
	// Body is the client's validated JSON; the store stamps id, versionId and
	// lastUpdated into it and keeps every other byte's meaning.
	Body []byte
	// IfMatch, when non-zero, is the version the current one must be.
	IfMatch int64
	// Parsed, when set, is Body already decoded (numbers as json.Number),
	// so the store can index it without decoding it again. It must be
	// equal to Body.
	Parsed map[string]any
}

// Tx is the view of the store inside one atomic unit of work.
type Tx interface {
	// Read returns the current version; ErrGone (with the deletion version)
	// if it was deleted, ErrNotFound if it never existed.
	Read(ctx context.Context, typ, id string) (Resource, error)
	// Create stores version 1 of a new resource: with a server-assigned id
	// when w.ID is empty, or with w.ID (a transaction's POST entries get
	// their ids before any entry is written), which must never have been
	// used: ErrConflict otherwise.
	Create(ctx context.Context, w Write) (Resource, error)
	// Update stores the next version of w.Type/w.ID, creating the resource
	// (version 1, or the next version after a deletion) if it does not
	// exist. created reports whether it did not exist before.
	Update(ctx context.Context, w Write) (res Resource, created bool, err error)
	// Delete records a deletion. Deleting a deleted resource is a no-op that
	// returns the existing deletion; a resource that never existed is ErrNotFound.
	Delete(ctx context.Context, typ, id string, ifMatch int64) (Resource, error)
	// Search returns current resources matching q, at most limit (0 for no
	// limit), in q's order. Conditional operations use it inside their
	// transaction.
	Search(ctx context.Context, q *fhir.SearchQuery, limit int) ([]Resource, error)
	// AppendAudit stores audit records in this transaction: a write's
	// AuditEvent commits, or rolls back, with the write.
	AppendAudit(ctx context.Context, recs []AuditRecord) error
}

// HistoryQuery selects versions for a history interaction: all resources
// (Type and ID empty), one type, or one resource.
type HistoryQuery struct {
	Type  string
	ID    string
	Since time.Time // only versions updated at or after Since, if set
	Count int       // page size
	// Cursor continues a previous page; empty for the first page.
	Cursor string
}

// HistoryPage is one page of versions, newest first.
type HistoryPage struct {
	Versions []Resource
	// Next is the cursor of the following page, empty on the last page.
	// Pages are stable: versions written after the first page was served
	// never appear on later pages.
	Next string
	// Total is the number of versions the whole history query selects.
	Total int
}

// Member names a current resource and when it last changed.
type Member struct {
	Type        string
	ID          string
	LastUpdated time.Time
}

// Resources is the resource data: every method through which FHIR
// interactions read or write resources. The access guard implements each
// one itself (never by embedding), so a method added here stays closed to
// tokens until its rule is written.
type Resources interface {
	// Read and VRead serve stored bytes; they never decode the resource.
	Read(ctx context.Context, typ, id string) (Resource, error)
	VRead(ctx context.Context, typ, id string, version int64) (Resource, error)
	// Transact runs fn atomically: every write in it lands, or none does.
	// fn may be retried by a backend and must not have other side effects.
	Transact(ctx context.Context, fn func(Tx) error) error
	History(ctx context.Context, q HistoryQuery) (HistoryPage, error)
	Searcher
}

// Store is a FHIR resource store with full version history, and the
// authorization server's records next to it.
type Store interface {
	Resources
	AuthStore
	AuditLog
	Files
	Close() error
}

// Searcher is what a backend provides for search; the paging, _include and
// _revinclude logic on top of it is shared (see Search).
type Searcher interface {
	// SearchIDs returns the ids of current resources matching q, in q.Sort
	// order then by id, at most limit (0: no limit). afterID, when set and
	// q has no sort, continues after that id (keyset paging).
	SearchIDs(ctx context.Context, q *fhir.SearchQuery, afterID string, limit int) ([]string, error)
	// Count returns how many current resources match q.
	Count(ctx context.Context, q *fhir.SearchQuery) (int, error)
	// ReadMany returns the current versions of ids, in the order given,
	// leaving out ids that do not exist or are deleted.
	ReadMany(ctx context.Context, typ string, ids []string) ([]Resource, error)
	// ScanType returns the current resources of typ whose id sorts after
	// afterID, in id order, at most limit: a bulk export's read of a whole
	// type as one range of the (type, id) key, instead of a search and a
	// read by ids (two index seeks per resource).
	ScanType(ctx context.Context, typ, afterID string, limit int) ([]Resource, error)
	// References returns the references the given resources hold in the
	// reference parameter param ("*" for every reference parameter).
	References(ctx context.Context, typ string, ids []string, param string) ([]fhir.RefKey, error)
	// ReferencedBy returns the ids of current resources of srcType whose
	// parameter param references any of the targets (all of targetType).
	ReferencedBy(ctx context.Context, srcType, param, targetType string, targetIDs []string) ([]string, error)
	// CompartmentMembers lists the current resources in a Patient's
	// compartment (the Patient itself included).
	CompartmentMembers(ctx context.Context, patientID string) ([]Member, error)
	// ReferencingMembers lists the current resources that hold a reference to
	// Type/id in any reference parameter.
	ReferencingMembers(ctx context.Context, typ, id string) ([]Member, error)
	// SaveSnapshot keeps an ordered result list for paging; LoadSnapshot
	// returns it, or ErrInvalidCursor once it has expired.
	SaveSnapshot(ctx context.Context, ids []string) (string, error)
	LoadSnapshot(ctx context.Context, token string) ([]string, error)
}

type scanKey struct{}

// Scanning marks ctx as a scan through many resources (a bulk export):
// backends keep what it reads out of their read caches, where it would
// push out what interactive reads use and grow the server by the cache's
// whole size.
func Scanning(ctx context.Context) context.Context { return context.WithValue(ctx, scanKey{}, true) }

// IsScanning reports whether ctx is a scan (see Scanning).
func IsScanning(ctx context.Context) bool {
	scan, _ := ctx.Value(scanKey{}).(bool)
	return scan
}
