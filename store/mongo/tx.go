package mongo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

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
	audit  []store.AuditRecord // inserted after the writes, with them
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
		var c *conflict
		if errors.As(err, &c) {
			if err := s.completeOrphan(ctx, c); err != nil {
				return err
			}
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
		return s.insertAudit(ctx, t.audit)
	case len(t.writes) == 1 && !s.txns:
		// One write and its audit records: without multi-document
		// transactions a crash between the two can lose the records
		// (README: the audit trail's loss window).
		if err := t.apply(ctx); err != nil {
			return err
		}
		return s.insertAudit(ctx, t.audit)
	case !s.txns:
		return fmt.Errorf("a transaction of %d writes needs a MongoDB replica set or sharded cluster (this deployment has no multi-document transactions); send a batch instead: %w", len(t.writes), store.ErrUnsupported)
	}
	sess, err := s.client.StartSession()
	if err != nil {
		return fmt.Errorf("mongo: session: %w", err)
	}
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(sc mongo.SessionContext) (any, error) {
		if err := t.apply(sc); err != nil {
			return nil, err
		}
		return nil, s.insertAudit(sc, t.audit)
	})
	return err
}

// apply writes the buffered versions: for each, the history entry (the
// lock), then the current document.
func (t *tx) apply(ctx context.Context) error {
	first, err := t.s.nextSeq(ctx, int64(len(t.writes)))
	if err != nil {
		return err
	}
	for i, w := range t.writes {
		r := w.res
		key := resKey(r.Type, r.ID)
		ix := &w.ix
		if r.Deleted {
			ix = nil
		}
		doc, err := currentDoc(r.Type, r.ID, r.VersionID, r.LastUpdated.UnixMilli(), string(r.Op), r.JSON, ix)
		if err != nil {
			return err
		}
		// The history entry goes first: its _id "Type/id/v" is the lock, which
		// FerretDB, which does not make an update's match and write atomic,
		// honours too. Whoever inserts version n+1 owns it.
		_, err = t.s.versions.InsertOne(ctx, version{Key: fmt.Sprintf("%s/%d", key, r.VersionID), Type: r.Type, ID: r.ID, V: r.VersionID,
			LU: doc.LU, Op: doc.Op, JSON: r.JSON, Seq: first + int64(i)})
		if mongo.IsDuplicateKeyError(err) {
			return &conflict{key: key, typ: r.Type, v: r.VersionID}
		}
		if err != nil {
			return fmt.Errorf("mongo: history %s: %w", key, err)
		}
		// Owning version n+1, this writer alone moves the current document
		// from n to n+1, and the writer of n+2 read n+1 before it began: no
		// further condition is needed, and a filter of _id alone is the one
		// FerretDB pushes down to SQLite instead of decoding every document.
		_, err = t.s.coll(r.Type).ReplaceOne(ctx, bson.D{{Key: "_id", Value: key}}, doc, options.Replace().SetUpsert(true))
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
	if w.ID == "" {
		w.ID = store.NewID()
	} else if _, err := t.Read(ctx, w.Type, w.ID); store.CreateCheck(w, err) != nil {
		return store.Resource{}, store.CreateCheck(w, err)
	}
	return t.put(w, 1, 0, store.OpCreate)
}

func (t *tx) Update(ctx context.Context, w store.Write) (store.Resource, bool, error) {
	cur, err := t.Read(ctx, w.Type, w.ID)
	version, op, created, err := store.NextVersion(w, cur, err)
	if err != nil {
		return store.Resource{}, false, err
	}
	r, err := t.put(w, version, cur.VersionID, op)
	return r, created, err
}

func (t *tx) Delete(ctx context.Context, typ, id string, ifMatch int64) (store.Resource, error) {
	cur, err := t.Read(ctx, typ, id)
	version, done, err := store.DeleteVersion(typ, id, ifMatch, cur, err)
	if err != nil || done {
		return cur, err
	}
	return t.put(store.Write{Type: typ, ID: id}, version, cur.VersionID, store.OpDelete)
}

// put stamps and indexes one version and buffers it.
func (t *tx) put(w store.Write, v, prev int64, op store.Op) (store.Resource, error) {
	pw := &pendingWrite{prev: prev}
	var body []byte
	if op != store.OpDelete {
		var err error
		if body, pw.ix, err = store.StampAndIndex(w, v, t.now); err != nil {
			return store.Resource{}, fmt.Errorf("mongo: %w", err)
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

// conflict: version v of key exists already — another writer got there
// first, or a writer stopped after the history entry and before the
// current document (a crash between the two; see completeOrphan).
type conflict struct {
	key, typ string
	v        int64
}

func (c *conflict) Error() string {
	return fmt.Sprintf("%s was changed by another request", c.key)
}

func (c *conflict) Unwrap() error { return store.ErrConflict }

// orphanAge is how old a history entry whose current document was never
// written must be before another writer completes it: far longer than a
// live writer takes between its two writes (each bounded by the client's
// 30 s operation timeout), so a slow writer is never overtaken.
const orphanAge = 10 * time.Minute

// completeOrphan rolls forward a write that stopped halfway: if version
// c.v is in the history, older than orphanAge, and the current document
// is still at c.v-1, the current document is brought to c.v from the
// history entry. Without it a crash at the wrong moment would leave the
// resource refusing every later write. The writer's client never had an
// answer, so applying its write is as if the acknowledgement was lost.
func (s *Store) completeOrphan(ctx context.Context, c *conflict) error {
	var cur struct {
		V int64 `bson:"v"`
	}
	err := s.coll(c.typ).FindOne(ctx, bson.D{{Key: "_id", Value: c.key}}, options.FindOne().SetProjection(bson.D{{Key: "v", Value: 1}})).Decode(&cur)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("mongo: read %s: %w", c.key, err)
	}
	if cur.V >= c.v {
		return nil // an ordinary race: the current document moved on
	}
	var v version
	err = s.versions.FindOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("%s/%d", c.key, c.v)}}).Decode(&v)
	if err != nil {
		return nil // gone or unreadable: the retry decides
	}
	if time.Since(time.UnixMilli(v.LU)) < orphanAge || cur.V != c.v-1 {
		return nil // a writer may still be between its two writes
	}
	var ix *fhir.Index
	if v.Op != string(store.OpDelete) {
		decoded, err := fhir.DecodeResource(v.JSON)
		if err != nil {
			return fmt.Errorf("mongo: history entry %s/%d: %w", c.key, c.v, err)
		}
		x := fhir.Extract(v.Type, decoded)
		ix = &x
	}
	doc, err := currentDoc(v.Type, v.ID, v.V, v.LU, v.Op, v.JSON, ix)
	if err != nil {
		return err
	}
	if c.v == 1 {
		_, err = s.coll(c.typ).ReplaceOne(ctx, bson.D{{Key: "_id", Value: c.key}}, doc, options.Replace().SetUpsert(true))
		if mongo.IsDuplicateKeyError(err) {
			return nil
		}
	} else {
		_, err = s.coll(c.typ).ReplaceOne(ctx, bson.D{{Key: "_id", Value: c.key}, {Key: "v", Value: c.v - 1}}, doc)
	}
	if err != nil {
		return fmt.Errorf("mongo: complete %s/%d: %w", c.key, c.v, err)
	}
	return nil
}

// currentDoc is the res_<Type> document of a version; ix is nil for a
// deletion.
func currentDoc(typ, id string, v, lu int64, op string, body []byte, ix *fhir.Index) (current, error) {
	doc := current{Key: resKey(typ, id), ID: id, V: v, LU: lu, Op: op, JSON: body, Keys: []string{}, Comp: []string{}}
	if ix != nil {
		ixJSON, err := json.Marshal(ix)
		if err != nil {
			return doc, err
		}
		doc.IX = string(ixJSON)
		doc.Keys = searchKeys(ix)
		doc.Comp = append(doc.Comp, ix.Compartments...)
	}
	return doc, nil
}
