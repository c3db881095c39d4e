// Package mongo is Hearth's production store on MongoDB (go.mongodb.org/
// mongo-driver v1). It passes the same conformance suite as the embedded
// store and is tested in CI against FerretDB 1.24, so it uses only what
// both MongoDB ≥ 6.0 and FerretDB 1.24 do.
//
// # Documents
//
// res_<Type> — one collection per resource type (res_Patient,
// res_Observation …) holding the current version of each resource,
// _id "Type/id". A collection per type keeps each type's indexes small,
// lets an operator shard or size the big types (Observation) on their own,
// and means a search of a small type (Organization?identifier=…, the
// conditional references of every Synthea bundle) never touches the big
// ones — on FerretDB 1.24, which reads the whole collection for every
// query (its SQLite backend pushes down only an _id filter, and evaluates
// even that row by row), that is the difference between seconds and hours.
// Documents:
//
//	id         resource id (the collection names the type)
//	v, lu, op  version, lastUpdated (Unix ms), create|update|delete
//	json       the stored bytes, served as they are (never decoded on read)
//	ix         the search keys (fhir.Index) extracted at write time, as JSON
//	keys       exact-match keys for narrowing searches in the database:
//	           "t\x00param\x00system\x00code", "tc\x00param\x00code",
//	           "ts\x00param\x00system", "r\x00param\x00Type/id",
//	           "ri\x00param\x00id", "rt\x00Type/id"
//	comp       ids of the Patients whose compartment holds the resource
//
// versions — every version, _id "Type/id/v", with seq (a counter) ordering
// history. Its _id is the optimistic lock: two writers of version n+1
// cannot both insert it, so no write is ever lost; the one that does then
// replaces the current document. A writer that stops between the two is
// completed from its history entry by the next writer, ten minutes on.
//
// auth — OAuth state (store.AuthRecord), _id kind + NUL + key, with exp a
// Date for the TTL index; snapshots — sorted search results for paging;
// counters — the history sequence.
//
// # Indexes (created at start-up, a new type's before its first write;
// creating an existing index is a no-op)
//
//	res_<Type> {keys:1}   token/reference/identifier searches
//	res_<Type> {comp:1}   compartment search, $everything, patient-bound tokens
//	res_<Type> {id:1}     a type's resources in id order (keyset paging)
//	versions  {type:1, id:1, v:1} unique: instance history (the lock itself is _id)
//	versions  {seq:1}, {type:1, seq:1}  system and type history
//	auth      {kind:1, rid:1}    revoke everything one grant issued
//	auth      {kind:1, sub:1}    a user's grants
//	auth      {exp:1} TTL        expired codes and tokens disappear
//	audit     {rec:1, _id:1}; {p:1, rec:1}, {a:1, rec:1}, {e:1, rec:1}
//	          the audit trail by time, and by patient, agent or entity
//
// # Operators used
//
// Equality, $in, $gt, $ne, $and, $inc, $set, $setOnInsert (upsert), sort,
// projection, limit, findOneAndUpdate, insertOne/insertMany, updateOne,
// deleteOne/deleteMany, countDocuments, listCollections, createIndexes
// (one index per command; with unique and expireAfterSeconds), and
// sessions with transactions where hello reports a replica set or mongos:
// all in MongoDB 6.0; FerretDB 1.24 has all but TTL and transactions,
// which the store detects and works without. No $elemMatch,
// $lookup, aggregation or change streams. Conditions that need more (date
// and number ranges, string prefixes, :missing, :not, sorting by search
// parameters) are narrowed by keys in the database and decided in Go by
// store/match, with the embedded store's semantics.
//
// # Transactions
//
// A Tx buffers its writes and applies them when fn returns: a write is
// then an insert of the version (the lock) and a replace of the current
// document, both by _id alone (the one filter FerretDB pushes down). A Tx
// of several writes runs in a multi-document transaction when the
// deployment supports one (a replica set or mongos, from hello); otherwise
// it is refused with store.ErrUnsupported before anything is written.
package mongo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/hearth-fhir/hearth/store"
)

// Store is the MongoDB backend.
type Store struct {
	client    *mongo.Client
	db        *mongo.Database
	versions  *mongo.Collection
	auth      *mongo.Collection
	snapshots *mongo.Collection
	counters  *mongo.Collection
	audit     *mongo.Collection // the audit trail (store.AuditLog)
	// txns is whether the deployment runs multi-document transactions.
	txns bool
	// indexed holds the types whose collection this process has indexed.
	indexed sync.Map
	// noTTL: the server has no TTL indexes (FerretDB); expired auth
	// records and snapshots are deleted by the store.
	noTTL bool
}

var _ store.Store = (*Store)(nil)

// Open connects to uri (mongodb://…/dbname; the database defaults to
// "hearth") and creates the indexes.
func Open(ctx context.Context, uri string) (*Store, error) {
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(uri).SetTimeout(30*time.Second))
	if err != nil {
		return nil, fmt.Errorf("mongo: connect: %w", err)
	}
	name := "hearth"
	if cs, err := parseDBName(uri); err == nil && cs != "" {
		name = cs
	}
	db := client.Database(name)
	s := &Store{client: client, db: db, versions: db.Collection("versions"),
		auth: db.Collection("auth"), snapshots: db.Collection("snapshots"), counters: db.Collection("counters"), audit: db.Collection("audit")}
	var hello bson.M
	if err := db.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		client.Disconnect(ctx)
		return nil, fmt.Errorf("mongo: hello: %w", err)
	}
	_, replSet := hello["setName"]
	s.txns = replSet || hello["msg"] == "isdbgrid"
	if err := s.createIndexes(ctx); err != nil {
		client.Disconnect(ctx)
		return nil, err
	}
	return s, nil
}

func parseDBName(uri string) (string, error) {
	rest := uri[strings.Index(uri, "://")+3:]
	slash := strings.Index(rest, "/")
	if slash < 0 {
		return "", nil
	}
	name := rest[slash+1:]
	if q := strings.IndexByte(name, '?'); q >= 0 {
		name = name[:q]
	}
	return name, nil
}

// Empty reports whether the database holds no resources yet.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	types, err := s.types(ctx)
	return len(types) == 0, err
}

// collPrefix starts the name of every resource collection.
const collPrefix = "res_"

// coll is the collection of one resource type's current versions.
func (s *Store) coll(typ string) *mongo.Collection { return s.db.Collection(collPrefix + typ) }

// types lists the resource types that have a collection.
func (s *Store) types(ctx context.Context) ([]string, error) {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("mongo: list collections: %w", err)
	}
	var out []string
	for _, n := range names {
		if t, ok := strings.CutPrefix(n, collPrefix); ok {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out, nil
}

// typeIndexes are the indexes of every res_<Type> collection.
var typeIndexes = []mongo.IndexModel{
	{Keys: bson.D{{Key: "keys", Value: 1}}},
	{Keys: bson.D{{Key: "comp", Value: 1}}},
	{Keys: bson.D{{Key: "id", Value: 1}}},
}

// ensureType creates typ's collection indexes once per process, before
// its first write (index builds cannot run inside a transaction).
func (s *Store) ensureType(ctx context.Context, typ string) error {
	if _, ok := s.indexed.Load(typ); ok {
		return nil
	}
	// One at a time: FerretDB 1.24 panics on a createIndexes of several
	// indexes some of which exist.
	for _, m := range typeIndexes {
		if _, err := s.coll(typ).Indexes().CreateOne(ctx, m); err != nil {
			return fmt.Errorf("mongo: indexes of %s: %w", typ, err)
		}
	}
	s.indexed.Store(typ, true)
	return nil
}

// SupportsTransactions reports whether multi-resource transactions run.
func (s *Store) SupportsTransactions() bool { return s.txns }

func (s *Store) createIndexes(ctx context.Context) error {
	idx := []struct {
		c      *mongo.Collection
		models []mongo.IndexModel
	}{
		{s.versions, []mongo.IndexModel{
			{Keys: bson.D{{Key: "type", Value: 1}, {Key: "id", Value: 1}, {Key: "v", Value: 1}}, Options: options.Index().SetUnique(true)},
			{Keys: bson.D{{Key: "seq", Value: 1}}},
			{Keys: bson.D{{Key: "type", Value: 1}, {Key: "seq", Value: 1}}},
		}},
		{s.auth, []mongo.IndexModel{
			{Keys: bson.D{{Key: "kind", Value: 1}, {Key: "rid", Value: 1}}},
			{Keys: bson.D{{Key: "kind", Value: 1}, {Key: "sub", Value: 1}}},
			{Keys: bson.D{{Key: "exp", Value: 1}}, Options: options.Index().SetExpireAfterSeconds(0)},
		}},
		{s.snapshots, []mongo.IndexModel{
			{Keys: bson.D{{Key: "exp", Value: 1}}, Options: options.Index().SetExpireAfterSeconds(0)},
		}},
		{s.audit, auditIndexes},
	}
	types, err := s.types(ctx)
	if err != nil {
		return err
	}
	for _, t := range types {
		if err := s.ensureType(ctx, t); err != nil {
			return err
		}
	}
	for _, i := range idx {
		for _, m := range i.models {
			_, err := i.c.Indexes().CreateOne(ctx, m)
			var ce mongo.CommandError
			if err != nil && m.Options != nil && m.Options.ExpireAfterSeconds != nil && errors.As(err, &ce) && ce.Code == notImplemented {
				// FerretDB 1.24 has no TTL indexes: index exp plainly; the
				// store then removes expired records itself on writes.
				s.noTTL = true
				_, err = i.c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: m.Keys})
			}
			if err != nil {
				return fmt.Errorf("mongo: indexes of %s: %w", i.c.Name(), err)
			}
		}
	}
	return nil
}

// notImplemented is the server error code FerretDB answers for what it
// does not support.
const notImplemented = 238

// Close disconnects.
func (s *Store) Close() error { return s.client.Disconnect(context.Background()) }

// current is a document of a res_<Type> collection.
type current struct {
	Key  string   `bson:"_id"`
	ID   string   `bson:"id"`
	V    int64    `bson:"v"`
	LU   int64    `bson:"lu"`
	Op   string   `bson:"op"`
	JSON []byte   `bson:"json"`
	IX   string   `bson:"ix"`
	Keys []string `bson:"keys"`
	Comp []string `bson:"comp"`
}

// version is a document of versions.
type version struct {
	Key  string `bson:"_id"`
	Type string `bson:"type"`
	ID   string `bson:"id"`
	V    int64  `bson:"v"`
	LU   int64  `bson:"lu"`
	Op   string `bson:"op"`
	JSON []byte `bson:"json"`
	Seq  int64  `bson:"seq"`
}

func resKey(typ, id string) string { return typ + "/" + id }

func makeResource(typ, id string, v, lu int64, op string, body []byte) store.Resource {
	return store.Resource{Type: typ, ID: id, VersionID: v, LastUpdated: time.UnixMilli(lu).UTC(),
		Op: store.Op(op), Deleted: op == string(store.OpDelete), JSON: body}
}

func readErr(r store.Resource) error {
	if r.Deleted {
		return fmt.Errorf("%s/%s: %w", r.Type, r.ID, store.ErrGone)
	}
	return nil
}

var readProjection = options.FindOne().SetProjection(bson.D{{Key: "v", Value: 1}, {Key: "lu", Value: 1}, {Key: "op", Value: 1}, {Key: "json", Value: 1}})

func (s *Store) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	var d current
	err := s.coll(typ).FindOne(ctx, bson.D{{Key: "_id", Value: resKey(typ, id)}}, readProjection).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Resource{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
	}
	if err != nil {
		return store.Resource{}, fmt.Errorf("mongo: read: %w", err)
	}
	r := makeResource(typ, id, d.V, d.LU, d.Op, d.JSON)
	return r, readErr(r)
}

func (s *Store) VRead(ctx context.Context, typ, id string, v int64) (store.Resource, error) {
	var d version
	err := s.versions.FindOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("%s/%d", resKey(typ, id), v)}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Resource{}, fmt.Errorf("%s/%s/_history/%d: %w", typ, id, v, store.ErrNotFound)
	}
	if err != nil {
		return store.Resource{}, fmt.Errorf("mongo: vread: %w", err)
	}
	r := makeResource(typ, id, d.V, d.LU, d.Op, d.JSON)
	return r, readErr(r)
}

// nextSeq allocates history sequence numbers.
func (s *Store) nextSeq(ctx context.Context, n int64) (int64, error) {
	var d struct {
		N int64 `bson:"n"`
	}
	err := s.counters.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "seq"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: n}}}},
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&d)
	if err != nil {
		return 0, fmt.Errorf("mongo: sequence: %w", err)
	}
	return d.N - n + 1, nil
}

func (s *Store) History(ctx context.Context, q store.HistoryQuery) (store.HistoryPage, error) {
	var snapshot, before int64
	if q.Cursor != "" {
		if _, err := fmt.Sscanf(q.Cursor, "%d.%d", &snapshot, &before); err != nil || snapshot <= 0 {
			return store.HistoryPage{}, fmt.Errorf("history cursor %q: %w", q.Cursor, store.ErrInvalidCursor)
		}
	} else {
		var d version
		err := s.versions.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "seq", Value: -1}}).SetProjection(bson.D{{Key: "seq", Value: 1}})).Decode(&d)
		if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return store.HistoryPage{}, fmt.Errorf("mongo: history: %w", err)
		}
		snapshot = d.Seq
		before = snapshot + 1
	}
	filter := bson.D{{Key: "seq", Value: bson.D{{Key: "$lte", Value: snapshot}}}}
	if q.Type != "" {
		filter = append(filter, bson.E{Key: "type", Value: q.Type})
	}
	if q.ID != "" {
		filter = append(filter, bson.E{Key: "id", Value: q.ID})
	}
	if !q.Since.IsZero() {
		filter = append(filter, bson.E{Key: "lu", Value: bson.D{{Key: "$gte", Value: q.Since.UnixMilli()}}})
	}
	var page store.HistoryPage
	total, err := s.versions.CountDocuments(ctx, filter)
	if err != nil {
		return page, fmt.Errorf("mongo: history count: %w", err)
	}
	page.Total = int(total)
	count := q.Count
	if count <= 0 {
		count = 50
	}
	pageFilter := append(bson.D{}, filter...)
	pageFilter[0] = bson.E{Key: "seq", Value: bson.D{{Key: "$lte", Value: snapshot}, {Key: "$lt", Value: before}}}
	cur, err := s.versions.Find(ctx, pageFilter, options.Find().SetSort(bson.D{{Key: "seq", Value: -1}}).SetLimit(int64(count+1)))
	if err != nil {
		return page, fmt.Errorf("mongo: history: %w", err)
	}
	defer cur.Close(ctx)
	var lastSeq int64
	for cur.Next(ctx) {
		var d version
		if err := cur.Decode(&d); err != nil {
			return page, fmt.Errorf("mongo: history: %w", err)
		}
		if len(page.Versions) == count {
			page.Next = fmt.Sprintf("%d.%d", snapshot, lastSeq)
			break
		}
		page.Versions = append(page.Versions, makeResource(d.Type, d.ID, d.V, d.LU, d.Op, d.JSON))
		lastSeq = d.Seq
	}
	return page, cur.Err()
}
