package interact

import (
	"context"
	"errors"
	"slices"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// A renewal request is a MedicationRequest of intent proposal that a
// patient (or proxy) writes, basedOn one of the patient's own active
// prescriptions (the patient write table in smart/access requires its
// shape). Staff answer it by its status: completed when approved (with
// the new order basedOn the proposal), cancelled with a statusReason when
// denied; the patient sees the state by reading or searching
// MedicationRequest?intent=proposal.

// checkRenewal: the prescription a patient's renewal request is based on
// must be one of theirs that they may see, active, and an order or plan.
func checkRenewal(ctx context.Context, tx store.Tx, body Body) error {
	res, err := body.decoded()
	if err != nil {
		return err
	}
	if res["intent"] != "proposal" {
		return nil
	}
	for _, b := range fhir.AsList(res["basedOn"]) {
		ref, _ := b.(map[string]any)["reference"].(string)
		key := fhir.ParseReference(ref)
		if key.Type != "MedicationRequest" || key.ID == "" {
			return problem(Invalid, "business-rule", "a renewal request is basedOn a MedicationRequest of this server")
		}
		cur, err := tx.Read(ctx, key.Type, key.ID)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
			return problem(Invalid, "business-rule", "the prescription to renew, "+fhir.QuoteSafe(ref)+", is not one of this patient's")
		}
		if err != nil {
			return err
		}
		rx, err := fhir.DecodeResource(cur.JSON)
		if err != nil {
			return err
		}
		if rx["status"] != "active" || !slices.Contains([]any{"order", "plan", "original-order", "reflex-order", "filler-order", "instance-order"}, rx["intent"]) {
			return problem(Invalid, "business-rule", "only an active prescription can be renewed; "+fhir.QuoteSafe(ref)+" is not")
		}
	}
	return nil
}
