package access

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
)

// Guard is a store.Store that answers only what its policy allows. The
// FHIR server hands each authorised request a Guard instead of the store,
// so no handler can forget a check.
type Guard struct {
	store.Store
	p *Policy
}

// NewGuard wraps st with policy p.
func NewGuard(st store.Store, p *Policy) *Guard { return &Guard{Store: st, p: p} }

// Policy returns the policy the guard enforces.
func (g *Guard) Policy() *Policy { return g.p }

func (g *Guard) bound(typ string) bool {
	return g.p.Patient != "" && g.p.kindOf(typ) == compartmentData
}

// restrict returns q narrowed to what the token may search: the patient's
// compartment (or the patient itself) and the granular constraints.
func (g *Guard) restrict(q *fhir.SearchQuery) (*fhir.SearchQuery, error) {
	gr, err := g.p.grant(q.Type, scopes.Search)
	if err != nil {
		return nil, err
	}
	extra, err := constraintParams(q.Type, gr.Constraints)
	if err != nil {
		return nil, err
	}
	cq := *q
	cq.Params = append(append(slices.Clone(q.Params), extra...), g.p.withheld(q.Type)...)
	if g.bound(q.Type) {
		if q.Compartment != "" && q.Compartment != g.p.Patient {
			return nil, ErrForbidden
		}
		if q.Type == "Patient" {
			cq.Params = append(cq.Params, idParam(g.p.Patient))
		} else {
			cq.Compartment = g.p.Patient
		}
	}
	return &cq, nil
}

func idParam(ids ...string) *fhir.SearchParam {
	q, err := fhir.ParseSearch("Patient", url.Values{"_id": {strings.Join(ids, ",")}}, fhir.SearchOptions{})
	if err != nil {
		panic(err) // ids come from the store and are valid
	}
	return q.Params[0]
}

// visible returns the ids of typ (in their order) the token may see.
func (g *Guard) visible(ctx context.Context, typ string, ids []string) ([]string, error) {
	gr, ok := g.p.readable(typ)
	if !ok {
		return nil, nil
	}
	if !g.bound(typ) && gr.Constraints == nil && !g.p.WithholdSensitive {
		return ids, nil
	}
	if typ == "Patient" && g.p.Patient != "" {
		ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id != g.p.Patient })
	}
	extra, err := constraintParams(typ, gr.Constraints)
	if err != nil {
		return nil, nil
	}
	extra = append(extra, g.p.withheld(typ)...)
	keep := map[string]bool{}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		q := &fhir.SearchQuery{Type: typ, Params: append([]*fhir.SearchParam{idParam(chunk...)}, extra...)}
		if g.bound(typ) && typ != "Patient" {
			q.Compartment = g.p.Patient
		}
		got, err := g.Store.SearchIDs(ctx, q, "", len(chunk))
		if err != nil {
			return nil, err
		}
		for _, id := range got {
			keep[id] = true
		}
	}
	return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return !keep[id] }), nil
}

func (g *Guard) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	if _, err := g.p.grant(typ, scopes.Read); err != nil {
		return store.Resource{}, err
	}
	r, err := g.Store.Read(ctx, typ, id)
	if err != nil {
		if g.bound(typ) {
			// A deleted resource's compartment is not indexed any more;
			// say nothing about whether it existed.
			return store.Resource{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
		}
		return r, err
	}
	ok, err := g.visible(ctx, typ, []string{id})
	if err != nil {
		return store.Resource{}, err
	}
	if len(ok) == 0 {
		return store.Resource{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
	}
	return r, nil
}

// versionVisible reports whether an old version was itself in the
// patient's compartment: a record moved to its rightful patient must not
// show its earlier owner the later patient's data, nor the reverse.
func (g *Guard) versionVisible(r store.Resource) bool {
	if !r.Deleted && g.p.hides(r.JSON) {
		return false
	}
	if !g.bound(r.Type) || r.Deleted {
		return !r.Deleted || !g.bound(r.Type)
	}
	return inCompartment(r.Type, r.ID, r.JSON, g.p.Patient)
}

func inCompartment(typ, id string, body []byte, patient string) bool {
	if typ == "Patient" {
		return id == patient
	}
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	return slices.Contains(fhir.Extract(typ, m).Compartments, patient)
}

func (g *Guard) VRead(ctx context.Context, typ, id string, version int64) (store.Resource, error) {
	if _, err := g.Read(ctx, typ, id); err != nil {
		return store.Resource{}, err
	}
	r, err := g.Store.VRead(ctx, typ, id, version)
	if err != nil {
		return r, err
	}
	if !g.versionVisible(r) {
		return store.Resource{}, fmt.Errorf("%s/%s/_history/%d: %w", typ, id, version, store.ErrNotFound)
	}
	return r, nil
}

// History: a resource's own history when the token may read the resource;
// type and system history only for tokens not bound to a patient, since a
// type's history holds every patient's versions.
func (g *Guard) History(ctx context.Context, q store.HistoryQuery) (store.HistoryPage, error) {
	switch {
	case q.ID != "":
		if _, err := g.Read(ctx, q.Type, q.ID); err != nil {
			return store.HistoryPage{}, err
		}
	case g.p.Patient != "":
		return store.HistoryPage{}, ErrForbidden
	case q.Type != "":
		if gr, err := g.p.grant(q.Type, scopes.Read); err != nil || gr.Constraints != nil {
			return store.HistoryPage{}, ErrForbidden
		}
	default:
		if gr := g.p.Scopes.For("*", scopes.Read); !gr.Allowed || gr.Constraints != nil || !g.wildcard() {
			return store.HistoryPage{}, ErrForbidden
		}
	}
	page, err := g.Store.History(ctx, q)
	if err != nil {
		return page, err
	}
	page.Versions = slices.DeleteFunc(page.Versions, func(r store.Resource) bool { return !g.versionVisible(r) })
	return page, nil
}

func (g *Guard) wildcard() bool {
	for _, r := range g.p.Scopes {
		if r.Type == "*" && r.Perm&scopes.Read != 0 && r.Query == nil {
			return true
		}
	}
	return false
}

func (g *Guard) SearchIDs(ctx context.Context, q *fhir.SearchQuery, afterID string, limit int) ([]string, error) {
	rq, err := g.restrict(q)
	if err != nil {
		return nil, err
	}
	return g.Store.SearchIDs(ctx, rq, afterID, limit)
}

func (g *Guard) Count(ctx context.Context, q *fhir.SearchQuery) (int, error) {
	rq, err := g.restrict(q)
	if err != nil {
		return 0, err
	}
	return g.Store.Count(ctx, rq)
}

// ReadMany serves search pages, includes and $everything: what the token
// may not see is left out.
func (g *Guard) ReadMany(ctx context.Context, typ string, ids []string) ([]store.Resource, error) {
	ok, err := g.visible(ctx, typ, ids)
	if err != nil || len(ok) == 0 {
		return nil, err
	}
	return g.Store.ReadMany(ctx, typ, ok)
}

func (g *Guard) CompartmentMembers(ctx context.Context, patientID string) ([]store.Member, error) {
	if g.p.Patient != "" && patientID != g.p.Patient {
		return nil, fmt.Errorf("Patient/%s: %w", patientID, store.ErrNotFound)
	}
	if _, ok := g.p.readable("Patient"); !ok {
		return nil, ErrForbidden
	}
	return g.Store.CompartmentMembers(ctx, patientID)
}

func (g *Guard) Transact(ctx context.Context, fn func(store.Tx) error) error {
	return g.Store.Transact(ctx, func(tx store.Tx) error { return fn(&guardTx{tx: tx, g: g}) })
}

// guardTx applies the policy inside a transaction (bundles, conditional
// interactions). Visibility is judged from the resource itself, so that a
// resource written earlier in the same transaction is judged correctly.
type guardTx struct {
	tx store.Tx
	g  *Guard
}

func (t *guardTx) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	gr, err := t.g.p.grant(typ, scopes.Read)
	if err != nil {
		return store.Resource{}, err
	}
	r, err := t.tx.Read(ctx, typ, id)
	if err != nil {
		if t.g.bound(typ) {
			return store.Resource{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
		}
		return r, err
	}
	if !t.visible(r, gr) {
		return store.Resource{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
	}
	return r, nil
}

func (t *guardTx) visible(r store.Resource, gr scopes.Grant) bool {
	if gr.Constraints != nil {
		return false // granular scopes grant reads through search only
	}
	if t.g.p.hides(r.JSON) {
		return false
	}
	return !t.g.bound(r.Type) || inCompartment(r.Type, r.ID, r.JSON, t.g.p.Patient)
}

// writable checks a body the token wants stored.
func (t *guardTx) writable(w store.Write, perm scopes.Perm) error {
	gr, err := t.g.p.grant(w.Type, perm)
	if err != nil {
		return err
	}
	if gr.Constraints != nil {
		return ErrForbidden // writes need a whole-type scope
	}
	if !t.g.bound(w.Type) {
		return nil
	}
	if w.Type == "Patient" {
		if w.ID != t.g.p.Patient {
			return ErrForbidden
		}
		return nil
	}
	if !inCompartment(w.Type, w.ID, w.Body, t.g.p.Patient) {
		return fmt.Errorf("the %s is not in the compartment of Patient/%s: %w", w.Type, t.g.p.Patient, ErrForbidden)
	}
	return nil
}

func (t *guardTx) Create(ctx context.Context, w store.Write) (store.Resource, error) {
	if err := t.writable(w, scopes.Create); err != nil {
		return store.Resource{}, err
	}
	return t.tx.Create(ctx, w)
}

func (t *guardTx) Update(ctx context.Context, w store.Write) (store.Resource, bool, error) {
	if err := t.writable(w, scopes.Update); err != nil {
		return store.Resource{}, false, err
	}
	cur, err := t.tx.Read(ctx, w.Type, w.ID)
	switch {
	case err == nil:
		if t.g.bound(w.Type) && !inCompartment(cur.Type, cur.ID, cur.JSON, t.g.p.Patient) {
			return store.Resource{}, false, ErrForbidden
		}
		if t.g.p.hides(cur.JSON) {
			return store.Resource{}, false, ErrForbidden
		}
	default:
		// Update as create: the token must be allowed to create too.
		if err := t.writable(w, scopes.Create); err != nil {
			return store.Resource{}, false, err
		}
	}
	return t.tx.Update(ctx, w)
}

func (t *guardTx) Delete(ctx context.Context, typ, id string, ifMatch int64) (store.Resource, error) {
	if _, err := t.g.p.grant(typ, scopes.Delete); err != nil {
		return store.Resource{}, err
	}
	if t.g.bound(typ) || t.g.p.WithholdSensitive {
		cur, err := t.tx.Read(ctx, typ, id)
		if err == nil && t.g.p.hides(cur.JSON) {
			return store.Resource{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
		}
		if t.g.bound(typ) && (err != nil || !inCompartment(typ, id, cur.JSON, t.g.p.Patient)) {
			return store.Resource{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
		}
	}
	return t.tx.Delete(ctx, typ, id, ifMatch)
}

func (t *guardTx) Search(ctx context.Context, q *fhir.SearchQuery, limit int) ([]store.Resource, error) {
	rq, err := t.g.restrict(q)
	if err != nil {
		return nil, err
	}
	return t.tx.Search(ctx, rq, limit)
}
