package interact

import (
	"context"

	"github.com/hearth-fhir/hearth/store"
)

// LoadItem is one resource to load: with the id it keeps, or none for a
// server-assigned one.
type LoadItem struct {
	Type string
	ID   string
	Body Body
}

// Load writes items in one transaction, as `hearth import` loads NDJSON:
// an item with an id is an update (creating it with that id; nothing is
// written when it equals the current version), one without is a create. Conditional references are resolved first; an item whose
// reference cannot be resolved yet (ErrUnresolved) or matches several
// resources is left out, with its error in the returned slice, so that the
// caller may retry it later. Any other error fails the whole load.
func (s *Session) Load(ctx context.Context, items []LoadItem) ([]error, error) {
	errs := make([]error, len(items))
	err := s.data.Transact(ctx, func(tx store.Tx) error {
		for i, it := range items {
			it.Body.releaser = s.door.releaser
			body, err := s.resolveReferences(ctx, tx, it.Body, nil)
			errs[i] = err
			if err != nil {
				continue
			}
			if it.ID == "" {
				_, err = create(ctx, tx, it.Type, "", body, nil)
			} else {
				// An item equal to its current version writes nothing, so
				// an interrupted import resumes without duplicate versions.
				_, err = update(ctx, tx, it.Type, it.ID, body, 0)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	return errs, err
}
