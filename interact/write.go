package interact

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/fhir/fhirpath"
	"github.com/hearth-fhir/hearth/fhir/invariant"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// Outcome is what a write interaction did.
type Outcome int

const (
	Created Outcome = iota + 1
	Updated
	// Matched: a conditional create found its match; nothing was written.
	Matched
	Deleted
	// NothingToDelete: a conditional delete matched nothing, or a bundle
	// deleted what was not there (deletion is idempotent).
	NothingToDelete
)

// Result is what a write did: its outcome, the version written (or
// matched, or the deletion) and a sentence for an OperationOutcome.
type Result struct {
	Outcome  Outcome
	Resource store.Resource
	Info     string
}

// Body is a client's resource: the bytes to store and, once validated,
// the same resource decoded, which the store indexes.
type Body struct {
	Raw    []byte
	Parsed map[string]any
	// Warnings are the invariants of severity warning the resource breaks:
	// it is valid, and a client that asks (Prefer: return=OperationOutcome)
	// is told.
	Warnings []fhir.Issue
	// releaser stamps a result's release state when it is written (set
	// by the session that parsed it; nil writes the body as it is).
	releaser *releaser
	// author marks a body a patient or proxy writes (nil: anyone else).
	author *authorship
	// slotsClaimed: an Appointment whose slots book() has claimed.
	slotsClaimed bool
}

// checkContent applies the checks a resource's content needs against
// other resources, in the write's transaction: a QuestionnaireResponse
// against its Questionnaire; a patient's renewal request against the
// prescription it renews.
func checkContent(ctx context.Context, tx store.Tx, typ, id string, body Body) error {
	switch {
	case typ == "Appointment" && !body.slotsClaimed:
		changes, err := changesSlots(ctx, tx, id, body)
		if err != nil || !changes {
			return err
		}
		return problem(Invalid, "business-rule", "an appointment's slots are booked and freed by POST or PUT of the Appointment, not in a bundle or a patch")
	case typ == "QuestionnaireResponse":
		return checkResponse(ctx, tx, body)
	case typ == "MedicationRequest" && body.author != nil:
		return checkRenewal(ctx, tx, body)
	}
	return nil
}

// stamped is the body as the door writes it: its release state and its
// authorship set; prev is the current version (nil for a create).
func (b Body) stamped(typ string, prev []byte) (Body, error) {
	b, err := b.releaser.stamp(typ, b, prev)
	if err != nil {
		return b, err
	}
	return b.author.stamp(b)
}

// decoded is the resource decoded: Parsed, or the bytes decoded again
// where a large bundle let Parsed go.
func (b Body) decoded() (map[string]any, error) {
	if b.Parsed != nil {
		return b.Parsed, nil
	}
	return fhir.DecodeResource(b.Raw)
}

// ID is the id the resource carries ("" if none).
func (b Body) ID() string {
	if b.Parsed != nil {
		id, _ := b.Parsed["id"].(string)
		return id
	}
	_, id, _ := fhir.ResourceHeader(b.Raw)
	return id
}

// ParseResource validates a client's resource for the endpoint's type.
func ParseResource(raw []byte, wantType string) (Body, error) {
	rt, parsed, issues, err := fhir.ValidateDecoded(raw)
	var pe *fhir.ParseError
	if errors.As(err, &pe) {
		return Body{}, problem(Invalid, "structure", pe.Msg)
	}
	if err != nil {
		return Body{}, err
	}
	if rt != "" && rt != wantType {
		return Body{}, problem(Invalid, "invalid", "resourceType "+rt+" does not match the endpoint type "+wantType)
	}
	if len(issues) > 0 {
		return Body{}, &Problem{Kind: Invalid, Issues: issues}
	}
	errs, warnings := fhir.SplitIssues(invariant.Check(parsed))
	if len(errs) > 0 {
		return Body{}, &Problem{Kind: Invalid, Issues: errs}
	}
	return Body{Raw: raw, Parsed: parsed, Warnings: warnings}, nil
}

// ParseResource is the package's ParseResource and, where the door checks
// claimed profiles, that check: a resource that does not conform to a
// profile it claims is refused; the profiles' warnings join the body's.
func (s *Session) ParseResource(raw []byte, wantType string) (Body, error) {
	body, err := ParseResource(raw, wantType)
	if err != nil {
		return body, err
	}
	body.releaser = s.door.releaser
	body.author = s.author
	if s.door.cfg.Profiles == nil {
		return body, nil
	}
	errs, warnings := fhir.SplitIssues(s.door.cfg.Profiles.ValidateClaims(body.Parsed))
	if len(errs) > 0 {
		return Body{}, &Problem{Kind: Invalid, Issues: errs}
	}
	for _, w := range warnings {
		if w.Severity == "warning" {
			body.Warnings = append(body.Warnings, w)
		}
	}
	return body, nil
}

// CheckBodyID: an update's resource must carry the id of its URL.
func CheckBodyID(body []byte, id string) error {
	if _, bodyID, _ := fhir.ResourceHeader(body); bodyID != id {
		return problem(Invalid, "invalid", "the resource id must be present and equal the id in the URL")
	}
	return nil
}

// ConditionQuery parses the search of a conditional interaction.
func (s *Session) ConditionQuery(typ, raw string) (*fhir.SearchQuery, error) {
	q, err := conditionQuery(typ, raw, s.door.cfg.BaseURL)
	return q, searchProblem(err)
}

// write runs one write interaction in a transaction of the session.
// Its audit record commits with it; a failed write is recorded on its own.
func (s *Session) write(ctx context.Context, typ string, e audit.Event, op func(tx store.Tx) (Result, error)) (Result, error) {
	if typ == auditType {
		return Result{}, auditFailed(errAuditReadOnly, s.record(ctx, e, errAuditReadOnly))
	}
	var res Result
	err := s.data.Transact(ctx, func(tx store.Tx) error {
		var err error
		if res, err = op(tx); err != nil {
			return err
		}
		return s.recordInTx(ctx, tx, writeEvent(e, res))
	})
	if err != nil {
		return res, auditFailed(err, s.record(ctx, e, err))
	}
	s.provenance(ctx, res.Resource, wrote(res))
	return res, nil
}

// wrote is the data operation a write's result did, "" when it wrote no
// version (a conditional create that matched, an unchanged update).
func wrote(res Result) string {
	switch {
	case strings.HasPrefix(res.Info, "unchanged"):
		return ""
	case res.Outcome == Created:
		return "CREATE"
	case res.Outcome == Updated:
		return "UPDATE"
	case res.Outcome == Deleted:
		return "DELETE"
	}
	return ""
}

// writeEvent completes a write's event with what the write did.
func writeEvent(e audit.Event, res Result) audit.Event {
	if r := res.Resource; r.ID != "" {
		e.Entities = []string{r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.VersionID, 10)}
		e.Patients = patientsOf([]store.Resource{r})
	}
	return e
}

// writeEvents are the audit events of the write interactions.
var (
	createEvent = audit.Event{Subtype: "create", Action: "C"}
	updateEvent = audit.Event{Subtype: "update", Action: "U"}
	patchEvent  = audit.Event{Subtype: "patch", Action: "U"}
	deleteEvent = audit.Event{Subtype: "delete", Action: "D"}
)

func about(e audit.Event, typ, id string) audit.Event {
	if id != "" {
		e.Entities = []string{typ + "/" + id}
	}
	return e
}

// Create is POST [type]; with ifNoneExist, a conditional create.
func (s *Session) Create(ctx context.Context, typ string, body Body, ifNoneExist *fhir.SearchQuery) (Result, error) {
	write := func(body Body) (Result, error) {
		return s.write(ctx, typ, createEvent, func(tx store.Tx) (Result, error) { return create(ctx, tx, typ, "", body, ifNoneExist) })
	}
	if typ == "Appointment" && ifNoneExist == nil {
		return s.book(ctx, "", body, write)
	}
	return write(body)
}

// Update is PUT [type]/[id]: an update, or a create with the client's id.
func (s *Session) Update(ctx context.Context, typ, id string, body Body, ifMatch int64) (Result, error) {
	write := func(body Body) (Result, error) {
		return s.write(ctx, typ, about(updateEvent, typ, id), func(tx store.Tx) (Result, error) { return update(ctx, tx, typ, id, body, ifMatch) })
	}
	if typ == "Appointment" {
		return s.book(ctx, id, body, write)
	}
	return write(body)
}

// ConditionalUpdate is PUT [type]?search.
func (s *Session) ConditionalUpdate(ctx context.Context, typ string, cond *fhir.SearchQuery, body Body, ifMatch int64) (Result, error) {
	return s.write(ctx, typ, updateEvent, func(tx store.Tx) (Result, error) { return conditionalUpdate(ctx, tx, typ, cond, body, ifMatch) })
}

// Patch is PATCH [type]/[id] with a JSON Patch document.
func (s *Session) Patch(ctx context.Context, typ, id string, p Patch, ifMatch int64) (Result, error) {
	return s.write(ctx, typ, about(patchEvent, typ, id), func(tx store.Tx) (Result, error) {
		return patch(ctx, tx, typ, id, p, ifMatch, s.ParseResource)
	})
}

// ConditionalPatch is PATCH [type]?search: exactly one match is patched.
func (s *Session) ConditionalPatch(ctx context.Context, typ string, cond *fhir.SearchQuery, p Patch, ifMatch int64) (Result, error) {
	return s.write(ctx, typ, patchEvent, func(tx store.Tx) (Result, error) {
		id, err := matchOne(ctx, tx, cond, true)
		if err != nil {
			return Result{}, err
		}
		return patch(ctx, tx, typ, id, p, ifMatch, s.ParseResource)
	})
}

// Delete is DELETE [type]/[id].
func (s *Session) Delete(ctx context.Context, typ, id string, ifMatch int64) (Result, error) {
	return s.write(ctx, typ, about(deleteEvent, typ, id), func(tx store.Tx) (Result, error) { return remove(ctx, tx, typ, id, ifMatch) })
}

// ConditionalDelete is DELETE [type]?search: no match is a success with
// nothing to do; several matches are refused.
func (s *Session) ConditionalDelete(ctx context.Context, typ string, cond *fhir.SearchQuery) (Result, error) {
	return s.write(ctx, typ, deleteEvent, func(tx store.Tx) (Result, error) { return conditionalDelete(ctx, tx, typ, cond) })
}

// create stores a new resource, with id when it is set (a transaction's
// POST entry, whose id was given out before anything was written).
func create(ctx context.Context, tx store.Tx, typ, id string, body Body, cond *fhir.SearchQuery) (Result, error) {
	if cond != nil {
		match, err := matchOne(ctx, tx, cond, false)
		if err != nil {
			return Result{}, err
		}
		if match != "" {
			// A conditional create that matches is ignored: the match is the answer.
			res, err := tx.Read(ctx, typ, match)
			return Result{Outcome: Matched, Resource: res, Info: "matched existing " + typ + "/" + match}, err
		}
	}
	body, err := body.stamped(typ, nil)
	if err != nil {
		return Result{}, err
	}
	if err := checkContent(ctx, tx, typ, id, body); err != nil {
		return Result{}, err
	}
	res, err := tx.Create(ctx, store.Write{Type: typ, ID: id, Body: body.Raw, Parsed: body.Parsed})
	return Result{Outcome: Created, Resource: res, Info: "created " + typ + "/" + res.ID}, err
}

// update stores the next version — unless the content is that of the
// current version: then nothing is written and the current version is the
// answer (200, its ETag). A no-op update keeps the version, as servers
// commonly do, so that re-running an import or a sync writes no history.
func update(ctx context.Context, tx store.Tx, typ, id string, body Body, ifMatch int64) (Result, error) {
	cur, err := tx.Read(ctx, typ, id)
	var prev []byte
	if err == nil {
		prev = cur.JSON
	}
	if body, err = body.stamped(typ, prev); err != nil {
		return Result{}, err
	}
	if err := checkContent(ctx, tx, typ, id, body); err != nil {
		return Result{}, err
	}
	if prev != nil && (ifMatch == 0 || ifMatch == cur.VersionID) && sameContent(cur.JSON, body) {
		return Result{Outcome: Updated, Resource: cur, Info: "unchanged: " + typ + "/" + id + " already has this content"}, nil
	}
	res, created, err := tx.Update(ctx, store.Write{Type: typ, ID: id, Body: body.Raw, Parsed: body.Parsed, IfMatch: ifMatch})
	if err != nil {
		return Result{}, err
	}
	if created {
		return Result{Outcome: Created, Resource: res, Info: "created " + typ + "/" + id}, nil
	}
	return Result{Outcome: Updated, Resource: res, Info: "updated " + typ + "/" + id}, nil
}

// sameContent reports whether a stored version and a client's resource
// are the same resource content: equal as JSON, apart from the version and
// time the store stamps into meta.
func sameContent(stored []byte, body Body) bool {
	cur, err := fhir.DecodeResource(stored)
	if err != nil {
		return false
	}
	parsed := body.Parsed
	if parsed == nil {
		if parsed, err = fhir.DecodeResource(body.Raw); err != nil {
			return false
		}
	}
	return reflect.DeepEqual(withoutStamp(cur), withoutStamp(parsed))
}

// withoutStamp is a shallow copy of r without meta.versionId and
// meta.lastUpdated (and without meta when nothing else is in it).
func withoutStamp(r map[string]any) map[string]any {
	out := maps.Clone(r)
	meta, ok := out["meta"].(map[string]any)
	if !ok {
		return out
	}
	meta = maps.Clone(meta)
	delete(meta, "versionId")
	delete(meta, "lastUpdated")
	if len(meta) == 0 {
		delete(out, "meta")
	} else {
		out["meta"] = meta
	}
	return out
}

// conditionalUpdate: one match is updated (a body id must be that one);
// no match creates, with the body's id if it has one.
func conditionalUpdate(ctx context.Context, tx store.Tx, typ string, cond *fhir.SearchQuery, body Body, ifMatch int64) (Result, error) {
	id, err := matchOne(ctx, tx, cond, false)
	if err != nil {
		return Result{}, err
	}
	bodyID := body.ID()
	switch {
	case id != "" && bodyID != "" && bodyID != id:
		return Result{}, problem(Invalid, "invalid", "the resource id does not match the resource the condition found")
	case id != "":
		return update(ctx, tx, typ, id, body, ifMatch)
	case bodyID != "":
		return update(ctx, tx, typ, bodyID, body, ifMatch)
	}
	return create(ctx, tx, typ, "", body, nil)
}

// Patch is a patch document PATCH accepts: a JSON Patch (RFC 6902,
// jsonpatch.Patch) or a FHIRPath Patch (*fhirpath.Patch).
type Patch interface {
	Apply(doc []byte) ([]byte, error)
}

var (
	_ Patch = jsonpatch.Patch(nil)
	_ Patch = (*fhirpath.Patch)(nil)
)

// patch applies a patch to the current version. The result is
// validated like any update and written conditional on the version patched,
// so a concurrent update is never lost.
func patch(ctx context.Context, tx store.Tx, typ, id string, p Patch, ifMatch int64, parse func([]byte, string) (Body, error)) (Result, error) {
	cur, err := tx.Read(ctx, typ, id)
	if err != nil {
		return Result{}, err
	}
	if ifMatch != 0 && ifMatch != cur.VersionID {
		return Result{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrVersionMismatch)
	}
	patched, err := applyPatch(p, cur.JSON)
	if err != nil {
		return Result{}, problem(Unprocessable, "processing", "the patch could not be applied: "+patchErrorText(err))
	}
	body, err := parse(patched, typ)
	if err != nil {
		var pr *Problem
		if errors.As(err, &pr) {
			pr.Kind = Unprocessable
		}
		return Result{}, err
	}
	if pid, _ := body.Parsed["id"].(string); pid != id {
		return Result{}, problem(Unprocessable, "processing", "a patch may not change the resource id")
	}
	res, _, err := tx.Update(ctx, store.Write{Type: typ, ID: id, Body: body.Raw, Parsed: body.Parsed, IfMatch: cur.VersionID})
	return Result{Outcome: Updated, Resource: res, Info: "patched " + typ + "/" + id}, err
}

// applyPatch applies p, turning a panic of the patch library into an
// error: a patch document is client input, and no input may bring a
// request down.
func applyPatch(p Patch, doc []byte) (out []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, fmt.Errorf("the patch library failed on this document: %v", v)
		}
	}()
	return p.Apply(doc)
}

// patchErrorText describes a patch failure without echoing resource values.
func patchErrorText(err error) string {
	var fp *fhirpath.PatchError
	if errors.As(err, &fp) {
		return fp.Msg // operations and paths, never values
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "testing value"):
		return "a test operation failed"
	case strings.Contains(msg, "missing"):
		return "a path does not exist in the resource"
	}
	return "an operation is invalid for this resource"
}

func remove(ctx context.Context, tx store.Tx, typ, id string, ifMatch int64) (Result, error) {
	res, err := tx.Delete(ctx, typ, id, ifMatch)
	if err != nil {
		return Result{}, err
	}
	return Result{Outcome: Deleted, Resource: res, Info: fmt.Sprintf("deleted %s/%s (version %d)", typ, id, res.VersionID)}, nil
}

func conditionalDelete(ctx context.Context, tx store.Tx, typ string, cond *fhir.SearchQuery) (Result, error) {
	id, err := matchOne(ctx, tx, cond, false)
	if err != nil {
		return Result{}, err
	}
	if id == "" {
		return Result{Outcome: NothingToDelete, Info: "no " + typ + " matched; nothing deleted"}, nil
	}
	return remove(ctx, tx, typ, id, 0)
}

// Put validates raw as a resource of typ and creates it, returning its id:
// the authorization server writes a proxy link's RelatedPerson with it.
func (s *Session) Put(ctx context.Context, typ string, raw []byte) (string, error) {
	body, err := s.ParseResource(raw, typ)
	if err != nil {
		return "", err
	}
	res, err := s.Create(ctx, typ, body, nil)
	return res.Resource.ID, err
}
