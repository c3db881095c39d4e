package access

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/match"
)

// Guard is the store's resource data as one policy lets it be seen and
// changed. It implements every method of store.Resources itself — it does
// not embed the store — so a method added to the contract does not compile
// here until its rule is written.
type Guard struct {
	data store.Resources
	p    *Policy
}

var _ store.Resources = (*Guard)(nil)

// NewGuard returns data as policy p lets it be seen.
func NewGuard(data store.Resources, p *Policy) *Guard { return &Guard{data: data, p: p} }

// ErrCreateWithID refuses an update that would create a resource with an
// id of the client's choosing, for a token that cannot see every resource
// of the type: whether the id is taken by a resource the token may not see
// must not change the answer, so the answer is the same for every id that
// the token cannot see. POST creates with a server-assigned id.
var ErrCreateWithID = errors.New("this token cannot create a resource with an id of its choosing (update as create); use POST")

// bound reports whether typ is confined to the policy's patient.
func (g *Guard) bound(typ string) bool {
	return g.p.Patient != "" && g.p.kindOf(typ) == compartmentData
}

// partial reports whether the token may be unable to see some resources of
// typ: they are then indistinguishable from resources that do not exist.
func (g *Guard) partial(typ string) bool {
	_, readable := g.p.readable(typ)
	return !readable || g.hidesExistence(typ)
}

// hidesExistence reports whether, for writes of typ, some resources must
// look as if they did not exist: the token reads only part of the type. A
// token that may write a type but not read it at all (system/X.cu) sees
// nothing but may overwrite anything, so no existence is kept from it.
func (g *Guard) hidesExistence(typ string) bool {
	if g.bound(typ) || g.p.WithholdSensitive {
		return true
	}
	gr, ok := g.p.readable(typ)
	return ok && gr.Constraints != nil
}

// scopeOf is how the token's view of typ narrows a search of it: nil when
// it sees every resource of typ; ok false when it sees none.
func (g *Guard) scopeOf(typ string, gr scopes.Grant) (sc *fhir.Scope, ok bool) {
	extra, err := constraintParams(typ, gr.Constraints)
	if err != nil {
		return nil, false
	}
	extra = append(extra, g.p.withheld(typ)...)
	sc = &fhir.Scope{Params: extra}
	if g.bound(typ) {
		if typ == "Patient" {
			sc.Params = append(sc.Params, fhir.IDParam(g.p.Patient))
		} else {
			sc.Compartment = g.p.Patient
		}
	}
	if sc.Compartment == "" && len(sc.Params) == 0 {
		return nil, true
	}
	return sc, true
}

// viewOf is scopeOf for the grant that lets typ be read or searched; ok
// false when the token may see no resource of typ.
func (g *Guard) viewOf(typ string) (*fhir.Scope, bool) {
	gr, ok := g.p.readable(typ)
	if !ok {
		return nil, false
	}
	return g.scopeOf(typ, gr)
}

// restrict returns q narrowed to what the token may search: the top level
// by the search grant of its type, and every sub-query — chain targets,
// _has sources, _list members — by the token's view of its own type.
func (g *Guard) restrict(ctx context.Context, q *fhir.SearchQuery) (*fhir.SearchQuery, error) {
	gr, err := g.p.grant(q.Type, scopes.Search)
	if err != nil {
		return nil, err
	}
	sc, ok := g.scopeOf(q.Type, gr)
	if !ok {
		return nil, ErrForbidden
	}
	// Any compartment is narrowed to the token's own patient's below.
	if g.bound(q.Type) && q.Compartment != "" && q.Compartment != fhir.AnyCompartment && q.Compartment != g.p.Patient {
		return nil, ErrForbidden
	}
	cq := *q
	cq.Params = make([]*fhir.SearchParam, 0, len(q.Params)+3)
	for _, p := range q.Params {
		np, err := g.narrow(ctx, p)
		if err != nil {
			return nil, err
		}
		cq.Params = append(cq.Params, np)
	}
	if sc != nil {
		// The compartment of the top level stays the query's own field: the
		// backends drive patient-scoped searches from it.
		cq.Params = append(cq.Params, sc.Params...)
		if sc.Compartment != "" {
			cq.Compartment = sc.Compartment
		}
	}
	return &cq, nil
}

// narrow returns p with each of its sub-queries narrowed to what the token
// may see. p itself is never changed: parsed queries may be shared.
func (g *Guard) narrow(ctx context.Context, p *fhir.SearchParam) (*fhir.SearchParam, error) {
	switch {
	case p.Chain != nil:
		// The inner condition's own sub-queries concern other types, so
		// one narrowed copy serves every target type.
		inner, err := g.narrow(ctx, p.Chain.Param)
		if err != nil {
			return nil, err
		}
		c := &fhir.Chain{Param: inner, Scopes: map[string]*fhir.Scope{}}
		for _, t := range p.Chain.Types {
			sc, ok := g.viewOf(t)
			if !ok {
				continue // a type the token cannot see holds no target
			}
			c.Types = append(c.Types, t)
			if sc != nil {
				c.Scopes[t] = sc
			}
		}
		np := *p
		np.Chain = c
		return &np, nil
	case p.Has != nil:
		h := *p.Has
		sc, ok := g.viewOf(h.Type)
		if !ok {
			sc = &fhir.Scope{Params: []*fhir.SearchParam{nothing()}}
		}
		h.Scope = sc
		inner, err := g.narrow(ctx, h.Param)
		if err != nil {
			return nil, err
		}
		h.Param = inner
		np := *p
		np.Has = &h
		return &np, nil
	case p.Name == "_list":
		// Only the lists the token may see have members.
		var ids []string
		for _, v := range p.Values {
			ids = append(ids, v.RefID)
		}
		seen, err := g.visible(ctx, "List", ids)
		if err != nil {
			return nil, err
		}
		if len(seen) == 0 {
			return nothing(), nil
		}
		np := *p
		np.Values = slices.DeleteFunc(slices.Clone(p.Values), func(v fhir.SearchValue) bool { return !slices.Contains(seen, v.RefID) })
		return &np, nil
	}
	return p, nil
}

// nothing is a condition no resource meets (no resource has an empty id).
func nothing() *fhir.SearchParam { return fhir.IDParam("") }

// visible returns the ids of typ (in their order) the token may see.
func (g *Guard) visible(ctx context.Context, typ string, ids []string) ([]string, error) {
	sc, ok := g.viewOf(typ)
	if !ok || len(ids) == 0 {
		return nil, nil
	}
	if sc == nil {
		return ids, nil
	}
	keep := map[string]bool{}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		q := &fhir.SearchQuery{Type: typ, Compartment: sc.Compartment, Params: append([]*fhir.SearchParam{fhir.IDParam(chunk...)}, sc.Params...)}
		got, err := g.data.SearchIDs(ctx, q, "", len(chunk))
		if err != nil {
			return nil, err
		}
		for _, id := range got {
			keep[id] = true
		}
	}
	return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return !keep[id] }), nil
}

// admits judges one version from its own content, with the store's search
// semantics (store/match): used for old versions, whose index the store no
// longer keeps, and inside transactions, where a resource may have been
// written a moment before.
func (g *Guard) admits(r store.Resource) bool {
	if r.Deleted {
		return !g.partial(r.Type)
	}
	sc, ok := g.viewOf(r.Type)
	if !ok {
		return false
	}
	if sc == nil {
		return true
	}
	ix, ok := indexOf(r.Type, r.ID, r.JSON)
	if !ok {
		return false
	}
	mq, err := match.Prepare(&fhir.SearchQuery{Type: r.Type, Compartment: sc.Compartment, Params: sc.Params},
		func(string, *fhir.SearchParam) (map[string]bool, error) {
			return nil, errors.New("a granular scope that needs other resources cannot judge one version")
		})
	if err != nil {
		return false
	}
	return mq.Match(&match.Candidate{ID: r.ID, LastUpdated: r.LastUpdated.UnixMilli(), Index: ix, JSON: r.JSON})
}

// indexOf extracts the search keys of a resource body, with id as its id.
func indexOf(typ, id string, body []byte) (*fhir.Index, bool) {
	m, err := fhir.DecodeResource(body)
	if err != nil {
		return nil, false
	}
	m["id"] = id
	ix := fhir.Extract(typ, m)
	return &ix, true
}

// hidden answers for a resource the token may not see: as if it did not
// exist.
func hidden(typ, id string) error { return fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound) }

// readFailed is the answer to a read that failed: where the token sees
// only part of typ, a deleted resource is as absent as one that never was —
// its compartment and labels are not indexed any more, so nothing may be
// said of whether it existed.
func (g *Guard) readFailed(r store.Resource, typ, id string, err error) (store.Resource, error) {
	if g.partial(typ) && (errors.Is(err, store.ErrGone) || errors.Is(err, store.ErrNotFound)) {
		return store.Resource{}, hidden(typ, id)
	}
	return r, err
}

func (g *Guard) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	if _, err := g.p.grant(typ, scopes.Read); err != nil {
		return store.Resource{}, err
	}
	r, err := g.data.Read(ctx, typ, id)
	if err != nil {
		return g.readFailed(r, typ, id, err)
	}
	ok, err := g.visible(ctx, typ, []string{id})
	if err != nil {
		return store.Resource{}, err
	}
	if len(ok) == 0 {
		return store.Resource{}, hidden(typ, id)
	}
	return r, nil
}

func (g *Guard) VRead(ctx context.Context, typ, id string, version int64) (store.Resource, error) {
	if _, err := g.Read(ctx, typ, id); err != nil {
		return store.Resource{}, err
	}
	r, err := g.data.VRead(ctx, typ, id, version)
	if err != nil {
		return r, err
	}
	if !g.admits(r) {
		// A record moved to its rightful patient must not show its earlier
		// owner the later patient's data, nor the reverse.
		return store.Resource{}, fmt.Errorf("%s/%s/_history/%d: %w", typ, id, version, store.ErrNotFound)
	}
	return r, nil
}

// maxFilteredHistory bounds the versions of one resource read to filter
// its history for a token that may not see all of them.
const maxFilteredHistory = 10_000

// History: a resource's own history when the token may read the resource,
// with only the versions it may see (and their count); type and system
// history only for tokens that see every resource of the type, since a
// type's history holds every patient's versions.
func (g *Guard) History(ctx context.Context, q store.HistoryQuery) (store.HistoryPage, error) {
	switch {
	case q.ID != "":
		if _, err := g.Read(ctx, q.Type, q.ID); err != nil {
			return store.HistoryPage{}, err
		}
		if g.partial(q.Type) {
			return g.filteredHistory(ctx, q)
		}
	case g.p.Patient != "" || g.p.WithholdSensitive:
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
	return g.data.History(ctx, q)
}

// filteredHistory serves an instance history with only the versions the
// token may see: its total counts those alone, and its pages continue below
// a version number ("g.N"), which later writes never shift.
func (g *Guard) filteredHistory(ctx context.Context, q store.HistoryQuery) (store.HistoryPage, error) {
	below := int64(-1)
	if q.Cursor != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(q.Cursor, "g."), 10, 64)
		if !strings.HasPrefix(q.Cursor, "g.") || err != nil || n < 1 {
			return store.HistoryPage{}, fmt.Errorf("history cursor: %w", store.ErrInvalidCursor)
		}
		below = n
	}
	var all []store.Resource
	inner := store.HistoryQuery{Type: q.Type, ID: q.ID, Since: q.Since, Count: 1000}
	for {
		page, err := g.data.History(ctx, inner)
		if err != nil {
			return store.HistoryPage{}, err
		}
		for _, v := range page.Versions {
			if g.admits(v) {
				all = append(all, v)
			}
		}
		if page.Next == "" {
			break
		}
		if len(all) > maxFilteredHistory {
			return store.HistoryPage{}, fmt.Errorf("the resource has more than %d versions: %w", maxFilteredHistory, store.ErrTooCostly)
		}
		inner.Cursor = page.Next
	}
	out := store.HistoryPage{Total: len(all)}
	for _, v := range all {
		if below > 0 && v.VersionID >= below {
			continue
		}
		if len(out.Versions) == q.Count {
			out.Next = "g." + strconv.FormatInt(out.Versions[len(out.Versions)-1].VersionID, 10)
			break
		}
		out.Versions = append(out.Versions, v)
	}
	return out, nil
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
	rq, err := g.restrict(ctx, q)
	if err != nil {
		return nil, err
	}
	return g.data.SearchIDs(ctx, rq, afterID, limit)
}

func (g *Guard) Count(ctx context.Context, q *fhir.SearchQuery) (int, error) {
	rq, err := g.restrict(ctx, q)
	if err != nil {
		return 0, err
	}
	return g.data.Count(ctx, rq)
}

// ReadMany serves search pages, includes and $everything: what the token
// may not see is left out.
func (g *Guard) ReadMany(ctx context.Context, typ string, ids []string) ([]store.Resource, error) {
	ok, err := g.visible(ctx, typ, ids)
	if err != nil || len(ok) == 0 {
		return nil, err
	}
	return g.data.ReadMany(ctx, typ, ok)
}

// ScanType: only for a token that may search every resource of typ; one
// that sees part of it is answered ErrUnsupported, and searches instead.
func (g *Guard) ScanType(ctx context.Context, typ, afterID string, limit int) ([]store.Resource, error) {
	gr, err := g.p.grant(typ, scopes.Search)
	if err != nil {
		return nil, err
	}
	sc, ok := g.scopeOf(typ, gr)
	switch {
	case !ok:
		return nil, ErrForbidden
	case sc != nil:
		return nil, fmt.Errorf("%s: the token sees part of the type: %w", typ, store.ErrUnsupported)
	}
	return g.data.ScanType(ctx, typ, afterID, limit)
}

// References: only what resources the token may see refer to.
func (g *Guard) References(ctx context.Context, typ string, ids []string, param string) ([]fhir.RefKey, error) {
	ok, err := g.visible(ctx, typ, ids)
	if err != nil || len(ok) == 0 {
		return nil, err
	}
	return g.data.References(ctx, typ, ok, param)
}

// ReferencedBy: only the referring resources the token may see.
func (g *Guard) ReferencedBy(ctx context.Context, srcType, param, targetType string, targetIDs []string) ([]string, error) {
	if _, ok := g.p.readable(srcType); !ok {
		return nil, nil
	}
	targets, err := g.visible(ctx, targetType, targetIDs)
	if err != nil || len(targets) == 0 {
		return nil, err
	}
	src, err := g.data.ReferencedBy(ctx, srcType, param, targetType, targets)
	if err != nil {
		return nil, err
	}
	return g.visible(ctx, srcType, src)
}

// CompartmentMembers: the members of the token's own patient's compartment
// that the token may see.
func (g *Guard) CompartmentMembers(ctx context.Context, patientID string) ([]store.Member, error) {
	if _, err := g.Read(ctx, "Patient", patientID); err != nil {
		return nil, err
	}
	members, err := g.data.CompartmentMembers(ctx, patientID)
	if err != nil {
		return nil, err
	}
	return g.visibleMembers(ctx, members)
}

// ReferencingMembers: the resources referring to one the token may read,
// as far as the token may see them.
func (g *Guard) ReferencingMembers(ctx context.Context, typ, id string) ([]store.Member, error) {
	if _, err := g.Read(ctx, typ, id); err != nil {
		return nil, err
	}
	members, err := g.data.ReferencingMembers(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	return g.visibleMembers(ctx, members)
}

func (g *Guard) visibleMembers(ctx context.Context, members []store.Member) ([]store.Member, error) {
	byType := map[string][]string{}
	for _, m := range members {
		byType[m.Type] = append(byType[m.Type], m.ID)
	}
	keep := map[string]bool{}
	for typ, ids := range byType {
		ok, err := g.visible(ctx, typ, ids)
		if err != nil {
			return nil, err
		}
		for _, id := range ok {
			keep[typ+"/"+id] = true
		}
	}
	return slices.DeleteFunc(slices.Clone(members), func(m store.Member) bool { return !keep[m.Type+"/"+m.ID] }), nil
}

// fingerprint names the policy, so that a paging snapshot serves only the
// policy that took it: another token replaying a page link learns nothing,
// not even the size of a result it could not see.
func (g *Guard) fingerprint() string {
	b, _ := json.Marshal(struct {
		Patient, Client, Subject string
		Withhold                 bool
		Scopes                   []string
	}{g.p.Patient, g.p.ClientID, g.p.Subject, g.p.WithholdSensitive, scopeStrings(g.p.Scopes)})
	h := sha256.Sum256(b)
	return "policy:" + hex.EncodeToString(h[:16])
}

func scopeStrings(set scopes.Set) []string {
	out := make([]string, len(set))
	for i, r := range set {
		out[i] = r.String()
	}
	return out
}

func (g *Guard) SaveSnapshot(ctx context.Context, ids []string) (string, error) {
	return g.data.SaveSnapshot(ctx, append([]string{g.fingerprint()}, ids...))
}

func (g *Guard) LoadSnapshot(ctx context.Context, token string) ([]string, error) {
	ids, err := g.data.LoadSnapshot(ctx, token)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 || ids[0] != g.fingerprint() {
		return nil, fmt.Errorf("page token: %w", store.ErrInvalidCursor)
	}
	return ids[1:], nil
}

func (g *Guard) Transact(ctx context.Context, fn func(store.Tx) error) error {
	return g.data.Transact(ctx, func(tx store.Tx) error { return fn(&guardTx{tx: tx, g: g}) })
}

// guardTx applies the policy inside a transaction (bundles, conditional
// interactions). Visibility is judged from the resource itself, so that a
// resource written earlier in the same transaction is judged correctly.
type guardTx struct {
	tx store.Tx
	g  *Guard
}

var _ store.Tx = (*guardTx)(nil)

// AppendAudit passes the door's own audit records through: they describe
// what the token did and are written by the server, never by the token.
func (t *guardTx) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	return t.tx.AppendAudit(ctx, recs)
}

func (t *guardTx) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	if _, err := t.g.p.grant(typ, scopes.Read); err != nil {
		return store.Resource{}, err
	}
	return t.visibleRead(ctx, typ, id)
}

// visibleRead reads typ/id as the token sees it: what it may not see does
// not exist.
func (t *guardTx) visibleRead(ctx context.Context, typ, id string) (store.Resource, error) {
	r, err := t.tx.Read(ctx, typ, id)
	if err != nil {
		return t.g.readFailed(r, typ, id, err)
	}
	if !t.g.admits(r) {
		return store.Resource{}, hidden(typ, id)
	}
	return r, nil
}

// writeRead is the current version as a write judges it: what the token
// may not see does not exist, unless it hides no existence (see
// hidesExistence).
func (t *guardTx) writeRead(ctx context.Context, typ, id string) (store.Resource, error) {
	if !t.g.hidesExistence(typ) {
		return t.tx.Read(ctx, typ, id)
	}
	return t.visibleRead(ctx, typ, id)
}

// writable checks a body the token wants stored: a token bound to a
// patient writes only into that patient's record — the resource must
// belong to that patient's compartment and to no other's. Naming the
// patient somewhere in another patient's record does not make it theirs.
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
	if w.Type == "Patient" && w.ID != t.g.p.Patient {
		return fmt.Errorf("a token for Patient/%s may not write another Patient: %w", t.g.p.Patient, ErrForbidden)
	}
	if !t.ownsOnly(w.Type, w.ID, w.Body) {
		return fmt.Errorf("the %s must belong to the record of Patient/%s and of no other patient: %w", w.Type, t.g.p.Patient, ErrForbidden)
	}
	return nil
}

// ownsOnly reports whether a resource is in the token's patient's
// compartment and in no other.
func (t *guardTx) ownsOnly(typ, id string, body []byte) bool {
	ix, ok := indexOf(typ, id, body)
	return ok && slices.Equal(ix.Compartments, []string{t.g.p.Patient})
}

func (t *guardTx) Create(ctx context.Context, w store.Write) (store.Resource, error) {
	if err := t.writable(w, scopes.Create); err != nil {
		return store.Resource{}, err
	}
	if err := t.patientRule(w.Type, scopes.Create, &w, nil); err != nil {
		return store.Resource{}, err
	}
	return t.tx.Create(ctx, w)
}

// patientRule applies the patient write table (patientwrite.go) to a
// write of a patient-bound token into a patient's record: w is what is to
// be stored (nil for a delete), cur the current version (nil for a create).
func (t *guardTx) patientRule(typ string, perm scopes.Perm, w *store.Write, cur []byte) error {
	if !t.g.bound(typ) {
		return nil
	}
	var res map[string]any
	if w != nil {
		res = w.Parsed
		if res == nil {
			var err error
			if res, err = fhir.DecodeResource(w.Body); err != nil {
				return err
			}
		}
	}
	return t.g.p.patientMayWrite(typ, perm, res, cur)
}

func (t *guardTx) Update(ctx context.Context, w store.Write) (store.Resource, bool, error) {
	if err := t.writable(w, scopes.Update); err != nil {
		return store.Resource{}, false, err
	}
	cur, err := t.writeRead(ctx, w.Type, w.ID)
	switch {
	case err == nil:
		if t.g.bound(w.Type) && !t.ownsOnly(cur.Type, cur.ID, cur.JSON) {
			return store.Resource{}, false, fmt.Errorf("%s/%s belongs to another patient's record too: %w", w.Type, w.ID, ErrForbidden)
		}
		if err := t.patientRule(w.Type, scopes.Update, &w, cur.JSON); err != nil {
			return store.Resource{}, false, err
		}
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone):
		// Update as create: the token must be allowed to create too, and
		// to see every resource of the type (see ErrCreateWithID).
		if err := t.writable(w, scopes.Create); err != nil {
			return store.Resource{}, false, err
		}
		if t.g.hidesExistence(w.Type) {
			return store.Resource{}, false, ErrCreateWithID
		}
		if err := t.patientRule(w.Type, scopes.Create, &w, nil); err != nil {
			return store.Resource{}, false, err
		}
	default:
		return store.Resource{}, false, err
	}
	return t.tx.Update(ctx, w)
}

func (t *guardTx) Delete(ctx context.Context, typ, id string, ifMatch int64) (store.Resource, error) {
	if _, err := t.g.p.grant(typ, scopes.Delete); err != nil {
		return store.Resource{}, err
	}
	if t.g.hidesExistence(typ) {
		cur, err := t.visibleRead(ctx, typ, id)
		if err != nil {
			return store.Resource{}, err
		}
		if t.g.bound(typ) && !t.ownsOnly(typ, id, cur.JSON) {
			return store.Resource{}, fmt.Errorf("%s/%s belongs to another patient's record too: %w", typ, id, ErrForbidden)
		}
		if err := t.patientRule(typ, scopes.Delete, nil, cur.JSON); err != nil {
			return store.Resource{}, err
		}
	}
	return t.tx.Delete(ctx, typ, id, ifMatch)
}

func (t *guardTx) Search(ctx context.Context, q *fhir.SearchQuery, limit int) ([]store.Resource, error) {
	rq, err := t.g.restrict(ctx, q)
	if err != nil {
		return nil, err
	}
	return t.tx.Search(ctx, rq, limit)
}
