package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
)

// The decisions every backend's Tx makes the same way, so that they agree.

// NextVersion decides what updating w does, given what the Tx's Read of
// it returned (cur, err): the version to write and its Op, and whether the
// update creates the resource (new, or re-created after a deletion). An
// If-Match that does not hold is ErrVersionMismatch; any other read error
// is returned as it is.
func NextVersion(w Write, cur Resource, err error) (version int64, op Op, created bool, _ error) {
	switch {
	case errors.Is(err, ErrNotFound):
		if w.IfMatch != 0 {
			return 0, "", false, fmt.Errorf("%s/%s: If-Match on a resource that does not exist: %w", w.Type, w.ID, ErrVersionMismatch)
		}
		return 1, OpUpdateCreate, true, nil
	case errors.Is(err, ErrGone):
		if w.IfMatch != 0 && w.IfMatch != cur.VersionID {
			return 0, "", false, fmt.Errorf("%s/%s: %w", w.Type, w.ID, ErrVersionMismatch)
		}
		return cur.VersionID + 1, OpCreate, true, nil
	case err != nil:
		return 0, "", false, err
	}
	if w.IfMatch != 0 && w.IfMatch != cur.VersionID {
		return 0, "", false, fmt.Errorf("%s/%s: %w", w.Type, w.ID, ErrVersionMismatch)
	}
	return cur.VersionID + 1, OpUpdate, false, nil
}

// CreateCheck decides whether a Create with a chosen id may go ahead,
// given the Tx's Read of that id: only an id never used may be created.
func CreateCheck(w Write, err error) error {
	switch {
	case err == nil, errors.Is(err, ErrGone):
		return fmt.Errorf("%s/%s already exists: %w", w.Type, w.ID, ErrConflict)
	case errors.Is(err, ErrNotFound):
		return nil
	}
	return err
}

// DeleteVersion decides what deleting typ/id does, given the Tx's Read of
// it: the version of the deletion, or done when it is deleted already.
func DeleteVersion(typ, id string, ifMatch int64, cur Resource, err error) (version int64, done bool, _ error) {
	switch {
	case errors.Is(err, ErrGone):
		return 0, true, nil
	case err != nil:
		return 0, false, err
	case ifMatch != 0 && ifMatch != cur.VersionID:
		return 0, false, fmt.Errorf("%s/%s: %w", typ, id, ErrVersionMismatch)
	}
	return cur.VersionID + 1, false, nil
}

// StampAndIndex prepares version v of w written at now: the body with id,
// versionId and lastUpdated stamped in, and its search keys. The keys are
// extracted from the client's JSON with the store's id, since they depend
// on the id (a Patient's own compartment) and not on the version.
func StampAndIndex(w Write, v int64, now time.Time) ([]byte, fhir.Index, error) {
	// Indexed first, stamped after: the decoded copy is then no longer
	// needed while the stamped one is made (for a large resource, one
	// copy fewer held at once).
	decoded := w.Parsed
	if decoded == nil {
		var err error
		if decoded, err = fhir.DecodeResource(w.Body); err != nil {
			return nil, fhir.Index{}, fmt.Errorf("index: %w", err)
		}
	}
	id := decoded["id"]
	decoded["id"] = w.ID
	ix := fhir.Extract(w.Type, decoded)
	if id == nil {
		delete(decoded, "id")
	} else {
		decoded["id"] = id
	}
	body, err := fhir.Stamp(w.Body, w.ID, v, now)
	if err != nil {
		return nil, fhir.Index{}, err
	}
	return body, ix, nil
}
