package mongo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/match"
)

const sep = "\x00"

// searchKeys are the exact-match keys a resource is narrowed by.
func searchKeys(ix *fhir.Index) []string {
	keys := []string{}
	for _, t := range ix.Tokens {
		keys = append(keys, "t"+sep+t.Param+sep+t.System+sep+t.Code, "tc"+sep+t.Param+sep+t.Code, "ts"+sep+t.Param+sep+t.System)
	}
	for _, r := range ix.Refs {
		if r.ID == "" {
			continue
		}
		keys = append(keys, "r"+sep+r.Param+sep+r.Type+"/"+r.ID, "ri"+sep+r.Param+sep+r.ID, "rt"+sep+r.Type+"/"+r.ID)
	}
	sort.Strings(keys)
	out := keys[:0]
	for i, k := range keys {
		if i == 0 || k != keys[i-1] {
			out = append(out, k)
		}
	}
	return out
}

// maxInList bounds the $in lists built from resolved sets; beyond it the
// condition is left to Go alone.
const maxInList = 1000

// narrow returns the database filter for q: every condition that exact
// keys can express; the rest (and these again) are decided by match.
func narrow(q *fhir.SearchQuery, sets func(*fhir.SearchParam) map[string]bool) bson.D {
	and := bson.A{bson.D{{Key: "op", Value: bson.D{{Key: "$ne", Value: "delete"}}}}}
	switch q.Compartment {
	case "":
	case fhir.AnyCompartment:
		// Some element of comp: an empty or missing array has none.
		and = append(and, bson.D{{Key: "comp", Value: bson.D{{Key: "$gt", Value: ""}}}})
	default:
		and = append(and, bson.D{{Key: "comp", Value: q.Compartment}})
	}
	for _, p := range q.Params {
		var in bson.A
		switch {
		case p.Has != nil, p.Name == "_list":
			if set := sets(p); len(set) <= maxInList {
				ids := bson.A{}
				for id := range set {
					ids = append(ids, id)
				}
				and = append(and, bson.D{{Key: "id", Value: bson.D{{Key: "$in", Value: ids}}}})
			}
			continue
		case p.Chain != nil:
			if set := sets(p); len(set) <= maxInList {
				in = bson.A{}
				for target := range set {
					in = append(in, "r"+sep+p.Name+sep+target)
				}
			}
		case p.Name == "_id" && p.Modifier == "":
			ids := bson.A{}
			for _, v := range p.Values {
				ids = append(ids, v.Code)
			}
			and = append(and, bson.D{{Key: "id", Value: bson.D{{Key: "$in", Value: ids}}}})
			continue
		case p.Type == "token" && p.Modifier == "" && p.Name != "_id":
			for _, v := range p.Values {
				switch {
				case v.AnySystem:
					in = append(in, "tc"+sep+p.Name+sep+v.Code)
				case v.Code == "":
					in = append(in, "ts"+sep+p.Name+sep+v.System)
				default:
					in = append(in, "t"+sep+p.Name+sep+v.System+sep+v.Code)
				}
			}
		case p.Type == "reference" && p.Modifier != "missing" && p.Modifier != "identifier" && p.Modifier != "not":
			exact := true
			for _, v := range p.Values {
				switch {
				case v.RefURL != "":
					exact = false // absolute URLs are matched in Go
				case v.RefType != "":
					in = append(in, "r"+sep+p.Name+sep+v.RefType+"/"+v.RefID)
				default:
					in = append(in, "ri"+sep+p.Name+sep+v.RefID)
				}
			}
			if !exact {
				in = nil
			}
		}
		if in != nil {
			and = append(and, bson.D{{Key: "keys", Value: bson.D{{Key: "$in", Value: in}}}})
		}
	}
	return bson.D{{Key: "$and", Value: and}}
}

// doc is what a search reads of a resource.
type doc struct {
	ID   string `bson:"id"`
	LU   int64  `bson:"lu"`
	IX   string `bson:"ix"`
	JSON []byte `bson:"json"`
}

// prepare resolves chains, _has and _list through this store.
func (s *Store) prepare(ctx context.Context, q *fhir.SearchQuery) (*match.Query, map[*fhir.SearchParam]map[string]bool, error) {
	sets := map[*fhir.SearchParam]map[string]bool{}
	mq, err := match.Prepare(q, func(typ string, p *fhir.SearchParam) (map[string]bool, error) {
		set, err := s.resolve(ctx, typ, p)
		sets[p] = set
		return set, err
	})
	return mq, sets, err
}

func (s *Store) resolve(ctx context.Context, typ string, p *fhir.SearchParam) (map[string]bool, error) {
	set := map[string]bool{}
	switch {
	case p.Chain != nil:
		for _, t := range p.Chain.Types {
			ids, err := s.SearchIDs(ctx, scoped(t, p.Chain.Param, p.Chain.Scopes[t]), "", 0)
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				set[t+"/"+id] = true
			}
		}
	case p.Has != nil:
		src, err := s.SearchIDs(ctx, scoped(p.Has.Type, p.Has.Param, p.Has.Scope), "", 0)
		if err != nil {
			return nil, err
		}
		refs, err := s.References(ctx, p.Has.Type, src, p.Has.RefParam)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if r.Type == typ {
				set[r.ID] = true
			}
		}
	case p.Name == "_list":
		var lists []string
		for _, v := range p.Values {
			lists = append(lists, v.RefID)
		}
		refs, err := s.References(ctx, "List", lists, "item")
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if r.Type == typ {
				set[r.ID] = true
			}
		}
	}
	return set, nil
}

// scoped is the sub-query of a chain or _has: the inner condition, and the
// session's narrowing of that type when it has one.
func scoped(typ string, inner *fhir.SearchParam, sc *fhir.Scope) *fhir.SearchQuery {
	q := &fhir.SearchQuery{Type: typ, Params: []*fhir.SearchParam{inner}}
	if sc != nil {
		q.Compartment = sc.Compartment
		q.Params = append(q.Params, sc.Params...)
	}
	return q
}

// matches streams the resources of q that match, in id order, after
// afterID; it stops when each returns false.
func (s *Store) matches(ctx context.Context, q *fhir.SearchQuery, afterID string, each func(*match.Candidate) bool) error {
	mq, sets, err := s.prepare(ctx, q)
	if err != nil {
		return err
	}
	filter := narrow(q, func(p *fhir.SearchParam) map[string]bool { return sets[p] })
	if afterID != "" {
		filter = bson.D{{Key: "$and", Value: bson.A{filter, bson.D{{Key: "id", Value: bson.D{{Key: "$gt", Value: afterID}}}}}}}
	}
	proj := bson.D{{Key: "id", Value: 1}, {Key: "lu", Value: 1}, {Key: "ix", Value: 1}}
	for _, p := range q.Params {
		if p.Name == "_content" {
			proj = append(proj, bson.E{Key: "json", Value: 1})
		}
	}
	cur, err := s.coll(q.Type).Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "id", Value: 1}}).SetProjection(proj))
	if err != nil {
		return fmt.Errorf("mongo: search: %w", err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var d doc
		if err := cur.Decode(&d); err != nil {
			return fmt.Errorf("mongo: search: %w", err)
		}
		c, err := candidate(d)
		if err != nil {
			return err
		}
		if mq.Match(c) && !each(c) {
			return nil
		}
	}
	return cur.Err()
}

func candidate(d doc) (*match.Candidate, error) {
	var ix fhir.Index
	if err := json.Unmarshal([]byte(d.IX), &ix); err != nil {
		return nil, fmt.Errorf("mongo: stored index of %s: %w", d.ID, err)
	}
	return &match.Candidate{ID: d.ID, LastUpdated: d.LU, Index: &ix, JSON: d.JSON}, nil
}

func (s *Store) SearchIDs(ctx context.Context, q *fhir.SearchQuery, afterID string, limit int) ([]string, error) {
	var out []*match.Candidate
	sorted := len(q.Sort) > 0
	err := s.matches(ctx, q, afterID, func(c *match.Candidate) bool {
		out = append(out, c)
		return sorted || limit <= 0 || len(out) < limit
	})
	if err != nil {
		return nil, err
	}
	if sorted {
		match.Sort(q, out)
		if limit > 0 && len(out) > limit {
			out = out[:limit]
		}
	}
	ids := make([]string, len(out))
	for i, c := range out {
		ids[i] = c.ID
	}
	return ids, nil
}

func (s *Store) Count(ctx context.Context, q *fhir.SearchQuery) (int, error) {
	n := 0
	err := s.matches(ctx, q, "", func(*match.Candidate) bool { n++; return true })
	return n, err
}

func (s *Store) ScanType(ctx context.Context, typ, afterID string, limit int) ([]store.Resource, error) {
	// _id is "Type/id": the type's keys lie between "Type/" and "Type0"
	// ('0' follows '/'), in id order.
	filter := bson.D{
		{Key: "_id", Value: bson.D{{Key: "$gt", Value: resKey(typ, afterID)}, {Key: "$lt", Value: typ + "0"}}},
		{Key: "op", Value: bson.D{{Key: "$ne", Value: string(store.OpDelete)}}},
	}
	cur, err := s.coll(typ).Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)).
		SetProjection(bson.D{{Key: "id", Value: 1}, {Key: "v", Value: 1}, {Key: "lu", Value: 1}, {Key: "op", Value: 1}, {Key: "json", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongo: scan: %w", err)
	}
	defer cur.Close(ctx)
	out := make([]store.Resource, 0, limit)
	for cur.Next(ctx) {
		var d current
		if err := cur.Decode(&d); err != nil {
			return nil, err
		}
		out = append(out, makeResource(typ, d.ID, d.V, d.LU, d.Op, d.JSON))
	}
	return out, cur.Err()
}

func (s *Store) ReadMany(ctx context.Context, typ string, ids []string) ([]store.Resource, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := bson.A{}
	for _, id := range ids {
		keys = append(keys, resKey(typ, id))
	}
	cur, err := s.coll(typ).Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}}},
		options.Find().SetProjection(bson.D{{Key: "id", Value: 1}, {Key: "v", Value: 1}, {Key: "lu", Value: 1}, {Key: "op", Value: 1}, {Key: "json", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongo: read many: %w", err)
	}
	defer cur.Close(ctx)
	byID := map[string]store.Resource{}
	for cur.Next(ctx) {
		var d current
		if err := cur.Decode(&d); err != nil {
			return nil, err
		}
		if d.Op != string(store.OpDelete) {
			byID[d.ID] = makeResource(typ, d.ID, d.V, d.LU, d.Op, d.JSON)
		}
	}
	out := make([]store.Resource, 0, len(ids))
	for _, id := range ids {
		if r, ok := byID[id]; ok {
			out = append(out, r)
		}
	}
	return out, cur.Err()
}

func (s *Store) References(ctx context.Context, typ string, ids []string, param string) ([]fhir.RefKey, error) {
	var out []fhir.RefKey
	for start := 0; start < len(ids); start += maxInList {
		chunk := ids[start:min(start+maxInList, len(ids))]
		keys := bson.A{}
		for _, id := range chunk {
			keys = append(keys, resKey(typ, id))
		}
		cur, err := s.coll(typ).Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}}, {Key: "op", Value: bson.D{{Key: "$ne", Value: "delete"}}}},
			options.Find().SetProjection(bson.D{{Key: "id", Value: 1}, {Key: "ix", Value: 1}}))
		if err != nil {
			return nil, fmt.Errorf("mongo: references: %w", err)
		}
		for cur.Next(ctx) {
			var d doc
			if err := cur.Decode(&d); err != nil {
				cur.Close(ctx)
				return nil, err
			}
			c, err := candidate(d)
			if err != nil {
				cur.Close(ctx)
				return nil, err
			}
			for _, r := range c.Index.Refs {
				if r.ID != "" && (param == "*" || r.Param == param) {
					out = append(out, r)
				}
			}
		}
		err = cur.Err()
		cur.Close(ctx)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) ReferencedBy(ctx context.Context, srcType, param, targetType string, targetIDs []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for start := 0; start < len(targetIDs); start += maxInList {
		chunk := targetIDs[start:min(start+maxInList, len(targetIDs))]
		in := bson.A{}
		for _, id := range chunk {
			in = append(in, "r"+sep+param+sep+targetType+"/"+id)
		}
		ids, err := s.distinctIDs(ctx, srcType, bson.D{{Key: "keys", Value: bson.D{{Key: "$in", Value: in}}},
			{Key: "op", Value: bson.D{{Key: "$ne", Value: "delete"}}}})
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func (s *Store) distinctIDs(ctx context.Context, typ string, filter bson.D) ([]string, error) {
	cur, err := s.coll(typ).Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongo: search: %w", err)
	}
	defer cur.Close(ctx)
	var out []string
	for cur.Next(ctx) {
		var d doc
		if err := cur.Decode(&d); err != nil {
			return nil, err
		}
		out = append(out, d.ID)
	}
	return out, cur.Err()
}

// members lists the current resources of every type that match filter,
// ordered by type and id: one indexed query per resource collection.
func (s *Store) members(ctx context.Context, filter bson.D) ([]store.Member, error) {
	filter = append(filter, bson.E{Key: "op", Value: bson.D{{Key: "$ne", Value: "delete"}}})
	types, err := s.types(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.Member
	for _, typ := range types {
		cur, err := s.coll(typ).Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "id", Value: 1}, {Key: "lu", Value: 1}}).
			SetSort(bson.D{{Key: "id", Value: 1}}))
		if err != nil {
			return nil, fmt.Errorf("mongo: members: %w", err)
		}
		for cur.Next(ctx) {
			var d current
			if err := cur.Decode(&d); err != nil {
				cur.Close(ctx)
				return nil, err
			}
			out = append(out, store.Member{Type: typ, ID: d.ID, LastUpdated: time.UnixMilli(d.LU).UTC()})
		}
		err = cur.Err()
		cur.Close(ctx)
		if err != nil {
			return nil, fmt.Errorf("mongo: members: %w", err)
		}
	}
	return out, nil
}

func (s *Store) CompartmentMembers(ctx context.Context, patientID string) ([]store.Member, error) {
	return s.members(ctx, bson.D{{Key: "comp", Value: patientID}})
}

func (s *Store) ReferencingMembers(ctx context.Context, typ, id string) ([]store.Member, error) {
	return s.members(ctx, bson.D{{Key: "keys", Value: "rt" + sep + typ + "/" + id}})
}

const snapshotTTL = time.Hour

func (s *Store) SaveSnapshot(ctx context.Context, ids []string) (string, error) {
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	if s.noTTL {
		s.snapshots.DeleteMany(ctx, bson.D{{Key: "exp", Value: bson.D{{Key: "$lt", Value: time.Now()}}}})
	}
	_, err := s.snapshots.InsertOne(ctx, bson.D{{Key: "_id", Value: token}, {Key: "exp", Value: time.Now().Add(snapshotTTL)}, {Key: "ids", Value: ids}})
	if err != nil {
		return "", fmt.Errorf("mongo: snapshot: %w", err)
	}
	return token, nil
}

func (s *Store) LoadSnapshot(ctx context.Context, token string) ([]string, error) {
	var d struct {
		Exp time.Time `bson:"exp"`
		IDs []string  `bson:"ids"`
	}
	err := s.snapshots.FindOne(ctx, bson.D{{Key: "_id", Value: token}}).Decode(&d)
	if err != nil || d.Exp.Before(time.Now()) {
		return nil, fmt.Errorf("search page expired or unknown; run the search again: %w", store.ErrInvalidCursor)
	}
	return d.IDs, nil
}

// Search inside a Tx: the committed matches, corrected by the Tx's own
// buffered writes, so a conditional write sees the writes before it.
func (t *tx) Search(ctx context.Context, q *fhir.SearchQuery, limit int) ([]store.Resource, error) {
	ids, err := t.s.SearchIDs(ctx, q, "", 0)
	if err != nil {
		return nil, err
	}
	mq, _, err := t.s.prepare(ctx, q)
	if err != nil {
		return nil, err
	}
	hit := map[string]bool{}
	for _, id := range ids {
		hit[id] = true
	}
	for _, w := range t.latest {
		if w.res.Type != q.Type {
			continue
		}
		hit[w.res.ID] = !w.res.Deleted && mq.Match(&match.Candidate{ID: w.res.ID, LastUpdated: w.res.LastUpdated.UnixMilli(), Index: &w.ix, JSON: w.res.JSON})
	}
	var out []store.Resource
	keys := make([]string, 0, len(hit))
	for id, ok := range hit {
		if ok {
			keys = append(keys, id)
		}
	}
	sort.Strings(keys)
	for _, id := range keys {
		if limit > 0 && len(out) == limit {
			break
		}
		r, err := t.Read(ctx, q.Type, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
