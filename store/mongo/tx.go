package mongo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// pendingWrite is one version a Tx will write.
type pendingWrite struct {
	res  store.Resource
	prev int64 // the version it replaces; 0 when the resource is new
	ix   fhir.Index
}

type tx struct {
	s      *Store
	now    time.Time
	writes []*pendingWrite
	latest map[string]*pendingWrite
}

var (
	clockMu  sync.Mutex
	lastTime time.Time
)

// nextTime is now, but never before the previous transaction of this
// process, so history order and _since agree.
func nextTime() time.Time {
	clockMu.Lock()
	defer clockMu.Unlock()
	now := time.Now().UTC().Truncate(time.Millisecond)
	if now.Before(lastTime) {
		now = lastTime
	}
	lastTime = now
	return now
}

// Transact buffers fn's writes and applies them when fn succeeds. A write
// that loses a race (ErrConflict) runs fn again on fresh data: an
// unconditional update then lands as the next version, a conditional one
// fails on its If-Match, so no write is lost and none is forced.
func (s *Store) Transact(ctx context.Context, fn func(store.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.transactOnce(ctx, fn)
		if !errors.Is(err, store.ErrConflict) || attempt == maxAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(rand.IntN(attempt*2)+1) * time.Millisecond):
		}
	}
}

const maxAttempts = 50

func (s *Store) transactOnce(ctx context.Context, fn func(store.Tx) error) error {
	t := &tx{s: s, now: nextTime(), latest: map[string]*pendingWrite{}}
	if err := fn(t); err != nil {
		return err
	}
	for _, w := range t.writes {
		if err := s.ensureType(ctx, w.res.Type); err != nil {
			return err
		}
	}
	switch {
	case len(t.writes) == 0:
		return nil
	case len(t.writes) == 1:
		return t.apply(ctx)
	case !s.txns:
		return fmt.Errorf("a transaction of %d writes needs a MongoDB replica set or sharded cluster (this deployment has no multi-document transactions); send a batch instead: %w", len(t.writes), store.ErrUnsupported)
	}
	sess, err := s.client.StartSession()
	if err != nil {
		return fmt.Errorf("mongo: session: %w", err)
	}
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(sc mongo.SessionContext) (any, error) {
		return nil, t.apply(sc)
	})
	return err
}

// apply writes the buffered versions: for each, a compare-and-set of the
// current document on its version (the lock), then the history entry.
func (t *tx) apply(ctx context.Context) error {
	first, err := t.s.nextSeq(ctx, int64(len(t.writes)))
	if err != nil {
		return err
	}
	for i, w := range t.writes {
		r := w.res
		key := resKey(r.Type, r.ID)
		doc := current{Key: key, Type: r.Type, ID: r.ID, V: r.VersionID, LU: r.LastUpdated.UnixMilli(), Op: string(r.Op), JSON: r.JSON,
			Keys: []string{}, Comp: []string{}}
		if !r.Deleted {
			ixJSON, err := json.Marshal(w.ix)
			if err != nil {
				return err
			}
			doc.IX = string(ixJSON)
			doc.Keys = searchKeys(&w.ix)
			doc.Comp = append(doc.Comp, w.ix.Compartments...)
		}
		// The history entry goes first: its unique (type, id, v) index is the
		// lock that FerretDB, which does not make an update's match and
		// write atomic, honours too. Whoever inserts version n+1 owns it.
		_, err = t.s.versions.InsertOne(ctx, version{Key: fmt.Sprintf("%s/%d", key, r.VersionID), Type: r.Type, ID: r.ID, V: r.VersionID,
			LU: doc.LU, Op: doc.Op, JSON: r.JSON, Seq: first + int64(i)})
		if mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("%s was changed by another request: %w", key, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("mongo: history %s: %w", key, err)
		}
		if w.prev == 0 {
			_, err = t.s.coll(r.Type).ReplaceOne(ctx, bson.D{{Key: "_id", Value: key}}, doc, options.Replace().SetUpsert(true))
		} else {
			_, err = t.s.coll(r.Type).ReplaceOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "v", Value: w.prev}}, doc)
		}
		if err != nil {
			return fmt.Errorf("mongo: write %s: %w", key, err)
		}
	}
	return nil
}

func (t *tx) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	if w, ok := t.latest[resKey(typ, id)]; ok {
		return w.res, readErr(w.res)
	}
	return t.s.Read(ctx, typ, id)
}

func (t *tx) Create(ctx context.Context, w store.Write) (store.Resource, error) {
	w.ID = uuid.NewString()
	return t.put(w, 1, 0, store.OpCreate)
}

func (t *tx) Update(ctx context.Context, w store.Write) (store.Resource, bool, error) {
	cur, err := t.Read(ctx, w.Type, w.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if w.IfMatch != 0 {
			return store.Resource{}, false, fmt.Errorf("%s/%s: If-Match on a resource that does not exist: %w", w.Type, w.ID, store.ErrVersionMismatch)
		}
		r, err := t.put(w, 1, 0, store.OpCreate)
		return r, true, err
	case errors.Is(err, store.ErrGone):
		if w.IfMatch != 0 && w.IfMatch != cur.VersionID {
			return store.Resource{}, false, fmt.Errorf("%s/%s: %w", w.Type, w.ID, store.ErrVersionMismatch)
		}
		r, err := t.put(w, cur.VersionID+1, cur.VersionID, store.OpCreate)
		return r, true, err
	case err != nil:
		return store.Resource{}, false, err
	}
	if w.IfMatch != 0 && w.IfMatch != cur.VersionID {
		return store.Resource{}, false, fmt.Errorf("%s/%s: %w", w.Type, w.ID, store.ErrVersionMismatch)
	}
	r, err := t.put(w, cur.VersionID+1, cur.VersionID, store.OpUpdate)
	return r, false, err
}

func (t *tx) Delete(ctx context.Context, typ, id string, ifMatch int64) (store.Resource, error) {
	cur, err := t.Read(ctx, typ, id)
	if errors.Is(err, store.ErrGone) {
		return cur, nil
	}
	if err != nil {
		return store.Resource{}, err
	}
	if ifMatch != 0 && ifMatch != cur.VersionID {
		return store.Resource{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrVersionMismatch)
	}
	return t.put(store.Write{Type: typ, ID: id}, cur.VersionID+1, cur.VersionID, store.OpDelete)
}

// put stamps and indexes one version and buffers it.
func (t *tx) put(w store.Write, v, prev int64, op store.Op) (store.Resource, error) {
	pw := &pendingWrite{prev: prev}
	var body []byte
	if op != store.OpDelete {
		var err error
		body, err = fhir.Stamp(w.Body, w.ID, v, t.now)
		if err != nil {
			return store.Resource{}, err
		}
		decoded := w.Parsed
		if decoded == nil {
			if decoded, err = fhir.DecodeResource(w.Body); err != nil {
				return store.Resource{}, fmt.Errorf("mongo: index: %w", err)
			}
		}
		id := decoded["id"]
		decoded["id"] = w.ID
		pw.ix = fhir.Extract(w.Type, decoded)
		if id == nil {
			delete(decoded, "id")
		} else {
			decoded["id"] = id
		}
	}
	pw.res = makeResource(w.Type, w.ID, v, t.now.UnixMilli(), string(op), body)
	// A resource written twice in one Tx: the second write replaces the
	// first version, which is itself new in this Tx.
	if earlier, ok := t.latest[resKey(w.Type, w.ID)]; ok {
		pw.prev = earlier.res.VersionID
	}
	t.writes = append(t.writes, pw)
	t.latest[resKey(w.Type, w.ID)] = pw
	return pw.res, nil
}
