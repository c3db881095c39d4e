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

// auditDoc is a document of the audit collection: one AuditEvent, with
// the codes and keys the trail is searched by.
type auditDoc struct {
	ID       string    `bson:"_id"`
	Recorded time.Time `bson:"rec"`
	Type     string    `bson:"type"`
	Subtype  string    `bson:"sub"`
	Action   string    `bson:"act"`
	Outcome  string    `bson:"out"`
	Patients []string  `bson:"p"`
	Agents   []string  `bson:"a"`
	Entities []string  `bson:"e"`
	Data     []byte    `bson:"json"` // named json since the first version, which stored the rendered AuditEvent
}

// auditIndexes serve the trail's searches: by time, and by patient, agent
// or entity then time.
var auditIndexes = []mongo.IndexModel{
	{Keys: bson.D{{Key: "rec", Value: 1}, {Key: "_id", Value: 1}}},
	{Keys: bson.D{{Key: "p", Value: 1}, {Key: "rec", Value: 1}}},
	{Keys: bson.D{{Key: "a", Value: 1}, {Key: "rec", Value: 1}}},
	{Keys: bson.D{{Key: "e", Value: 1}, {Key: "rec", Value: 1}}},
}

var _ store.AuditLog = (*Store)(nil)

// giveAuditIDs gives records their ids: time-ordered, unique across the
// processes that share a database.
func giveAuditIDs(recs []store.AuditRecord) {
	for i := range recs {
		recs[i].ID = store.NewID()
	}
}

func auditDocs(recs []store.AuditRecord) []any {
	docs := make([]any, len(recs))
	for i, r := range recs {
		docs[i] = auditDoc{ID: r.ID, Recorded: r.Recorded.UTC(), Type: r.Type, Subtype: r.Subtype, Action: r.Action, Outcome: r.Outcome,
			Patients: nonNil(r.Patients), Agents: nonNil(r.Agents), Entities: nonNil(r.Entities), Data: r.Data}
	}
	return docs
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// AppendAudit inserts records.
func (s *Store) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	giveAuditIDs(recs)
	return s.insertAudit(ctx, recs)
}

func (s *Store) insertAudit(ctx context.Context, recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	if _, err := s.audit.InsertMany(ctx, auditDocs(recs), options.InsertMany().SetOrdered(true)); err != nil {
		return fmt.Errorf("mongo: audit: %w", err)
	}
	return nil
}

// AppendAudit buffers records; they are inserted with the transaction's
// writes (in its multi-document transaction where there is one).
func (t *tx) AppendAudit(_ context.Context, recs []store.AuditRecord) error {
	giveAuditIDs(recs)
	t.audit = append(t.audit, recs...)
	return nil
}

// SearchAudit answers the records q selects.
func (s *Store) SearchAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	filter := bson.D{}
	in := func(field string, vals []string) {
		if len(vals) > 0 {
			filter = append(filter, bson.E{Key: field, Value: bson.D{{Key: "$in", Value: vals}}})
		}
	}
	in("_id", q.IDs)
	in("a", q.Agents)
	// Every patient is an entity of the AuditEvent (role patient), and a
	// Patient entity is about that patient: each finds the other.
	var and bson.A
	either := func(patients, entities []string) {
		if len(patients)+len(entities) > 0 {
			and = append(and, bson.D{{Key: "$or", Value: bson.A{
				bson.D{{Key: "p", Value: bson.D{{Key: "$in", Value: nonNil(patients)}}}},
				bson.D{{Key: "e", Value: bson.D{{Key: "$in", Value: nonNil(entities)}}}},
			}}})
		}
	}
	if len(q.Patients) > 0 {
		var asEntities []string
		for _, p := range q.Patients {
			asEntities = append(asEntities, "Patient/"+p)
		}
		either(q.Patients, asEntities)
	}
	if len(q.Entities) > 0 {
		var asPatients []string
		for _, e := range q.Entities {
			if id, ok := store.EntityPatient(e); ok {
				asPatients = append(asPatients, id)
			}
		}
		either(asPatients, q.Entities)
	}
	if len(and) > 0 {
		filter = append(filter, bson.E{Key: "$and", Value: and})
	}
	in("type", q.Types)
	in("sub", q.Subtypes)
	in("out", q.Outcomes)
	in("act", q.Actions)
	rec := bson.D{}
	if !q.Since.IsZero() {
		rec = append(rec, bson.E{Key: "$gte", Value: q.Since.UTC()})
	}
	if !q.Until.IsZero() {
		rec = append(rec, bson.E{Key: "$lt", Value: q.Until.UTC()})
	}
	if len(rec) > 0 {
		filter = append(filter, bson.E{Key: "rec", Value: rec})
	}
	dir := 1
	cmp := "$gt"
	if q.Descending {
		dir, cmp = -1, "$lt"
	}
	if q.After != "" {
		var after auditDoc
		err := s.audit.FindOne(ctx, bson.D{{Key: "_id", Value: q.After}}).Decode(&after)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, fmt.Errorf("audit cursor: %w", store.ErrInvalidCursor)
		}
		if err != nil {
			return nil, fmt.Errorf("mongo: audit search: %w", err)
		}
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "rec", Value: bson.D{{Key: cmp, Value: after.Recorded}}}},
			bson.D{{Key: "rec", Value: after.Recorded}, {Key: "_id", Value: bson.D{{Key: cmp, Value: after.ID}}}},
		}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "rec", Value: dir}, {Key: "_id", Value: dir}})
	if q.Limit > 0 {
		opts.SetLimit(int64(q.Limit))
	}
	cur, err := s.audit.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("mongo: audit search: %w", err)
	}
	defer cur.Close(ctx)
	var out []store.AuditRecord
	for cur.Next(ctx) {
		var d auditDoc
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("mongo: audit search: %w", err)
		}
		out = append(out, store.AuditRecord{ID: d.ID, Recorded: d.Recorded.UTC(), Type: d.Type, Subtype: d.Subtype, Action: d.Action,
			Outcome: d.Outcome, Patients: d.Patients, Agents: d.Agents, Entities: d.Entities, Data: d.Data})
	}
	return out, cur.Err()
}

// PruneAudit deletes the records recorded before a time.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.audit.DeleteMany(ctx, bson.D{{Key: "rec", Value: bson.D{{Key: "$lt", Value: before.UTC()}}}})
	if err != nil {
		return 0, fmt.Errorf("mongo: audit prune: %w", err)
	}
	return res.DeletedCount, nil
}
