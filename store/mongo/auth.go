package mongo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/hearth-fhir/hearth/store"
)

// authDoc is a store.AuthRecord. exp is a Date for the TTL index (absent
// for records that never expire); expms is what reads compare, since TTL
// deletion runs only once a minute.
type authDoc struct {
	ID     string     `bson:"_id"`
	Kind   string     `bson:"kind"`
	Key    string     `bson:"key"`
	RID    string     `bson:"rid"`
	Sub    string     `bson:"sub"`
	Active bool       `bson:"active"`
	Exp    *time.Time `bson:"exp,omitempty"`
	ExpMS  int64      `bson:"expms"`
	Data   []byte     `bson:"data"`
}

func authID(kind, key string) string { return kind + "\x00" + key }

func toDoc(r store.AuthRecord) authDoc {
	d := authDoc{ID: authID(r.Kind, r.Key), Kind: r.Kind, Key: r.Key, RID: r.RequestID, Sub: r.Subject, Active: r.Active, Data: r.Data}
	if !r.ExpiresAt.IsZero() {
		t := r.ExpiresAt.UTC()
		d.Exp, d.ExpMS = &t, t.UnixMilli()
	}
	return d
}

func (d authDoc) record() store.AuthRecord {
	r := store.AuthRecord{Kind: d.Kind, Key: d.Key, RequestID: d.RID, Subject: d.Sub, Active: d.Active, Data: d.Data}
	if d.ExpMS != 0 {
		r.ExpiresAt = time.UnixMilli(d.ExpMS).UTC()
	}
	return r
}

// unexpired selects records that have not expired.
func unexpired() bson.D {
	return bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "expms", Value: int64(0)}},
		bson.D{{Key: "expms", Value: bson.D{{Key: "$gt", Value: time.Now().UnixMilli()}}}},
	}}}
}

func (s *Store) CreateAuth(ctx context.Context, rec store.AuthRecord) error {
	// An expired record of the same key no longer counts.
	s.auth.DeleteOne(ctx, bson.D{{Key: "_id", Value: authID(rec.Kind, rec.Key)}, {Key: "expms", Value: bson.D{{Key: "$gt", Value: int64(0)}, {Key: "$lte", Value: time.Now().UnixMilli()}}}})
	_, err := s.auth.InsertOne(ctx, toDoc(rec))
	if mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("auth %s record exists: %w", rec.Kind, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("mongo: auth: %w", err)
	}
	return nil
}

// sweep removes expired records of a kind where the server has no TTL
// index to do it; reads ignore expired records either way.
func (s *Store) sweep(ctx context.Context, kind string) {
	if s.noTTL {
		s.auth.DeleteMany(ctx, bson.D{{Key: "kind", Value: kind}, {Key: "expms", Value: bson.D{{Key: "$gt", Value: int64(0)}, {Key: "$lte", Value: time.Now().UnixMilli()}}}})
	}
}

func (s *Store) PutAuth(ctx context.Context, rec store.AuthRecord) error {
	defer s.sweep(ctx, rec.Kind)
	d := toDoc(rec)
	_, err := s.auth.ReplaceOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, d, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("mongo: auth: %w", err)
	}
	return nil
}

func (s *Store) GetAuth(ctx context.Context, kind, key string) (store.AuthRecord, error) {
	var d authDoc
	err := s.auth.FindOne(ctx, bson.D{{Key: "_id", Value: authID(kind, key)}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) || (err == nil && d.ExpMS != 0 && d.ExpMS <= time.Now().UnixMilli()) {
		return store.AuthRecord{Kind: kind, Key: key}, fmt.Errorf("auth %s record: %w", kind, store.ErrNotFound)
	}
	if err != nil {
		return store.AuthRecord{}, fmt.Errorf("mongo: auth: %w", err)
	}
	return d.record(), nil
}

func (s *Store) DeleteAuth(ctx context.Context, kind, key string) error {
	if _, err := s.auth.DeleteOne(ctx, bson.D{{Key: "_id", Value: authID(kind, key)}}); err != nil {
		return fmt.Errorf("mongo: auth: %w", err)
	}
	return nil
}

func (s *Store) DeactivateAuth(ctx context.Context, kind, key string) error {
	res, err := s.auth.UpdateOne(ctx, bson.D{{Key: "_id", Value: authID(kind, key)}, {Key: "$and", Value: bson.A{unexpired()}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "active", Value: false}}}})
	if err != nil {
		return fmt.Errorf("mongo: auth: %w", err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("auth %s record: %w", kind, store.ErrNotFound)
	}
	return nil
}

func (s *Store) DeactivateGrant(ctx context.Context, kind, requestID string) error {
	if _, err := s.auth.UpdateMany(ctx, bson.D{{Key: "kind", Value: kind}, {Key: "rid", Value: requestID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "active", Value: false}}}}); err != nil {
		return fmt.Errorf("mongo: auth: %w", err)
	}
	return nil
}

func (s *Store) DeleteGrant(ctx context.Context, kind, requestID string) error {
	if _, err := s.auth.DeleteMany(ctx, bson.D{{Key: "kind", Value: kind}, {Key: "rid", Value: requestID}}); err != nil {
		return fmt.Errorf("mongo: auth: %w", err)
	}
	return nil
}

func (s *Store) ListAuth(ctx context.Context, kind, subject string) ([]store.AuthRecord, error) {
	filter := bson.D{{Key: "kind", Value: kind}, {Key: "$and", Value: bson.A{unexpired()}}}
	if subject != "" {
		filter = append(filter, bson.E{Key: "sub", Value: subject})
	}
	cur, err := s.auth.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "key", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongo: auth: %w", err)
	}
	defer cur.Close(ctx)
	var out []store.AuthRecord
	for cur.Next(ctx) {
		var d authDoc
		if err := cur.Decode(&d); err != nil {
			return nil, err
		}
		out = append(out, d.record())
	}
	return out, cur.Err()
}
