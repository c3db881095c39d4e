package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// Store times every resource operation of st; the authorization records
// and Close pass through. (Timing is not access control: unlike the guard,
// this wrapper may embed the store.)
func (m *Metrics) Store(st store.Store) store.Store { return &timedStore{Store: st, m: m} }

type timedStore struct {
	store.Store
	m *Metrics
}

// failed: an error other than the answers a store gives in normal work.
func failed(err error) bool {
	return err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrGone) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, store.ErrVersionMismatch) && !errors.Is(err, store.ErrConflict)
}

func (t *timedStore) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	start := time.Now()
	r, err := t.Store.Read(ctx, typ, id)
	t.m.storeOp("read", start, failed(err))
	return r, err
}

func (t *timedStore) VRead(ctx context.Context, typ, id string, v int64) (store.Resource, error) {
	start := time.Now()
	r, err := t.Store.VRead(ctx, typ, id, v)
	t.m.storeOp("vread", start, failed(err))
	return r, err
}

func (t *timedStore) Transact(ctx context.Context, fn func(store.Tx) error) error {
	start := time.Now()
	err := t.Store.Transact(ctx, fn)
	t.m.storeOp("transact", start, failed(err))
	return err
}

func (t *timedStore) History(ctx context.Context, q store.HistoryQuery) (store.HistoryPage, error) {
	start := time.Now()
	p, err := t.Store.History(ctx, q)
	t.m.storeOp("history", start, failed(err))
	return p, err
}

func (t *timedStore) SearchIDs(ctx context.Context, q *fhir.SearchQuery, afterID string, limit int) ([]string, error) {
	start := time.Now()
	ids, err := t.Store.SearchIDs(ctx, q, afterID, limit)
	t.m.storeOp("search_ids", start, failed(err))
	return ids, err
}

func (t *timedStore) Count(ctx context.Context, q *fhir.SearchQuery) (int, error) {
	start := time.Now()
	n, err := t.Store.Count(ctx, q)
	t.m.storeOp("count", start, failed(err))
	return n, err
}

func (t *timedStore) ReadMany(ctx context.Context, typ string, ids []string) ([]store.Resource, error) {
	start := time.Now()
	rs, err := t.Store.ReadMany(ctx, typ, ids)
	t.m.storeOp("read_many", start, failed(err))
	return rs, err
}

func (t *timedStore) References(ctx context.Context, typ string, ids []string, param string) ([]fhir.RefKey, error) {
	start := time.Now()
	refs, err := t.Store.References(ctx, typ, ids, param)
	t.m.storeOp("references", start, failed(err))
	return refs, err
}

func (t *timedStore) ReferencedBy(ctx context.Context, srcType, param, targetType string, targetIDs []string) ([]string, error) {
	start := time.Now()
	ids, err := t.Store.ReferencedBy(ctx, srcType, param, targetType, targetIDs)
	t.m.storeOp("referenced_by", start, failed(err))
	return ids, err
}

func (t *timedStore) CompartmentMembers(ctx context.Context, patientID string) ([]store.Member, error) {
	start := time.Now()
	ms, err := t.Store.CompartmentMembers(ctx, patientID)
	t.m.storeOp("compartment_members", start, failed(err))
	return ms, err
}

func (t *timedStore) ReferencingMembers(ctx context.Context, typ, id string) ([]store.Member, error) {
	start := time.Now()
	ms, err := t.Store.ReferencingMembers(ctx, typ, id)
	t.m.storeOp("referencing_members", start, failed(err))
	return ms, err
}

func (t *timedStore) SaveSnapshot(ctx context.Context, ids []string) (string, error) {
	start := time.Now()
	tok, err := t.Store.SaveSnapshot(ctx, ids)
	t.m.storeOp("save_snapshot", start, failed(err))
	return tok, err
}

func (t *timedStore) LoadSnapshot(ctx context.Context, token string) ([]string, error) {
	start := time.Now()
	ids, err := t.Store.LoadSnapshot(ctx, token)
	t.m.storeOp("load_snapshot", start, failed(err))
	return ids, err
}
