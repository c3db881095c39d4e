package interact

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
)

// Appointments book the clinic's free Slots. An Appointment that is booked,
// pending or proposed holds its slots busy; one cancelled, or no longer
// naming a slot, frees it. Of concurrent bookings of one slot exactly one
// wins: a slot is claimed by updating it from free to busy on the version
// read (compare-and-set, which SQLite and MongoDB alike settle by
// versionId, across processes too), before the Appointment is written; an
// Appointment that then fails frees what it claimed, and a claim no
// appointment came to hold (a process stopped between the two) is freed
// after five minutes (FreeOrphanSlots). The claim is the door's own
// write, not the token's: a patient may not write Slots.
//
// Booking takes POST or PUT of the Appointment; a bundle or patch that
// would change an Appointment's slots is refused, so that no path books
// without the claim.

// holdsSlots: the statuses in which an Appointment keeps its slots.
var holdsSlots = []string{"proposed", "pending", "booked", "arrived", "fulfilled", "checked-in", "waitlist"}

// slotsOf lists the Slot ids an Appointment body holds busy.
func slotsOf(res map[string]any) []string {
	status, _ := res["status"].(string)
	if !slices.Contains(holdsSlots, status) {
		return nil
	}
	var ids []string
	for _, s := range fhir.AsList(res["slot"]) {
		ref, _ := s.(map[string]any)["reference"].(string)
		if k := fhir.ParseReference(ref); k.Type == "Slot" && k.ID != "" {
			ids = append(ids, k.ID)
		}
	}
	return ids
}

// ErrSlotTaken: the slot is not free (another booking has it): a 409.
var ErrSlotTaken = fmt.Errorf("the slot is not free: %w", store.ErrConflict)

// setSlot moves one slot between free and busy on the version read; a
// slot not in the state expected is ErrSlotTaken (or, releasing, left).
// It is the door's own write, recorded in the audit trail as done for the
// session's user.
func (s *Session) setSlot(ctx context.Context, id, from, to string) error {
	_, err := s.door.Unrestricted(s.who).write(ctx, "Slot", about(updateEvent, "Slot", id), func(tx store.Tx) (Result, error) {
		cur, err := tx.Read(ctx, "Slot", id)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
			return Result{}, problem(Invalid, "not-found", "Slot/"+fhir.QuoteSafe(id)+" does not exist")
		}
		if err != nil {
			return Result{}, err
		}
		slot, err := fhir.DecodeResource(cur.JSON)
		if err != nil {
			return Result{}, err
		}
		if slot["status"] != from {
			return Result{}, fmt.Errorf("Slot/%s: %w", id, ErrSlotTaken)
		}
		body, err := withStatus(Body{Raw: cur.JSON, Parsed: slot}, to)
		if err != nil {
			return Result{}, err
		}
		res, _, err := tx.Update(ctx, store.Write{Type: "Slot", ID: id, Body: body.Raw, Parsed: body.Parsed, IfMatch: cur.VersionID})
		if errors.Is(err, store.ErrVersionMismatch) {
			return Result{}, fmt.Errorf("Slot/%s: %w", id, ErrSlotTaken)
		}
		return Result{Outcome: Updated, Resource: res, Info: "Slot/" + id + " " + to}, err
	})
	return err
}

func withStatus(body Body, status string) (Body, error) {
	body.Parsed["status"] = status
	raw, err := fhir.SetMember(body.Raw, "status", []byte(`"`+status+`"`))
	body.Raw = raw
	return body, err
}

// book writes an Appointment with its slot claims: it claims the slots the
// new version holds that the current one does not, writes, and then frees
// the slots the current version held that the new one does not. A failed
// write frees what it claimed.
func (s *Session) book(ctx context.Context, id string, body Body, write func(Body) (Result, error)) (Result, error) {
	want := slotsOf(body.Parsed)
	// What the token cannot read it holds nothing of: the write itself
	// then answers for the refusal.
	had, _ := heldSlots(ctx, s.data, id)
	var claimed []string
	release := func(ids []string) {
		for _, sid := range ids {
			_ = s.setSlot(context.WithoutCancel(ctx), sid, "busy", "free")
		}
	}
	for _, sid := range want {
		if slices.Contains(had, sid) {
			continue
		}
		if err := s.setSlot(ctx, sid, "free", "busy"); err != nil {
			release(claimed)
			return Result{}, err
		}
		claimed = append(claimed, sid)
	}
	body.slotsClaimed = true
	res, err := write(body)
	if err != nil {
		release(claimed)
		return res, err
	}
	release(slices.DeleteFunc(slices.Clone(had), func(sid string) bool { return slices.Contains(want, sid) }))
	return res, nil
}

// heldSlots lists the slots Appointment/id holds now: none when there is
// no such appointment (yet), or none the reader may see.
func heldSlots(ctx context.Context, r interface {
	Read(ctx context.Context, typ, id string) (store.Resource, error)
}, id string) ([]string, error) {
	if id == "" {
		return nil, nil
	}
	cur, err := r.Read(ctx, "Appointment", id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	old, err := fhir.DecodeResource(cur.JSON)
	if err != nil {
		return nil, err
	}
	return slotsOf(old), nil
}

// changesSlots reports whether writing body over the current Appointment
// would change the slots it holds: bundles and patches may not.
func changesSlots(ctx context.Context, tx store.Tx, id string, body Body) (bool, error) {
	res, err := body.decoded()
	if err != nil {
		return false, err
	}
	want := slotsOf(res)
	had, err := heldSlots(ctx, tx, id)
	if err != nil {
		return false, err
	}
	slices.Sort(want)
	slices.Sort(had)
	return !slices.Equal(want, had), nil
}

// orphanAge is how long a busy slot may go without an appointment holding
// it before it is freed: longer than any booking takes between its claim
// and its appointment's write.
const orphanAge = 5 * time.Minute

// FreeOrphanSlots frees the slots a booking claimed and then never held:
// a process that stopped between a claim and its appointment's write.
// `hearth serve` runs it every minute, beside ReleaseDue. It returns how
// many it freed.
func (d *Door) FreeOrphanSlots(ctx context.Context) (int, error) {
	s := d.Unrestricted(audit.Agent{User: "hearth-slots"})
	before := d.cfg.Now().Add(-orphanAge)
	q, err := fhir.ParseSearch("Slot", url.Values{"status": {"busy"}, "_lastUpdated": {"lt" + fhir.FormatInstant(before)}, "_count": {"500"}},
		fhir.SearchOptions{DefaultCount: 500, MaxCount: 500})
	if err != nil {
		return 0, err
	}
	busy, err := s.data.SearchIDs(ctx, q, "", 500)
	if err != nil {
		return 0, err
	}
	freed := 0
	for _, id := range busy {
		held, err := fhir.ParseSearch("Appointment", url.Values{"slot": {"Slot/" + id}, "status": {strings.Join(holdsSlots, ",")}, "_count": {"1"}},
			fhir.SearchOptions{DefaultCount: 1, MaxCount: 1})
		if err != nil {
			return freed, err
		}
		holders, err := s.data.SearchIDs(ctx, held, "", 1)
		if err != nil {
			return freed, err
		}
		if len(holders) > 0 {
			continue
		}
		if err := s.setSlot(ctx, id, "busy", "free"); err == nil {
			freed++
		}
	}
	return freed, nil
}
