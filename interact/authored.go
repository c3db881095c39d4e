package interact

import (
	"context"
	"encoding/json"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/store"
)

// What a patient or proxy writes is marked as patient-authored, so that
// clinicians can tell it apart: the tag access.AuthoredSystem|patient on
// the resource (which access's write table also reads: a patient changes
// only what a patient wrote), and a Provenance naming the user, and the
// patient a proxy acted for.

// authorship is the user a patient-bound session writes as.
type authorship struct {
	user    string // fhirUser: Patient/x or RelatedPerson/y
	patient string
}

// stamp tags a body written by a patient or proxy.
func (a *authorship) stamp(body Body) (Body, error) {
	if a == nil || body.Parsed == nil {
		return body, nil
	}
	return withMeta(body, func(meta map[string]any) { setTag(meta, access.AuthoredSystem, access.AuthoredPatient) })
}

// provenance records who wrote a version: written by the door itself
// after the write it describes, in its own transaction (MongoDB without
// multi-document transactions could not hold both in one). A write whose
// Provenance fails is kept — the tag still marks it — and the failure is
// in the audit trail as the failed create it is.
func (s *Session) provenance(ctx context.Context, res store.Resource, activity string) {
	if s.author == nil || res.ID == "" || activity == "" {
		return
	}
	agent := map[string]any{
		"type": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}}},
		"who":  map[string]any{"reference": s.author.user},
	}
	if s.author.user != "Patient/"+s.author.patient {
		agent["onBehalfOf"] = map[string]any{"reference": "Patient/" + s.author.patient}
	}
	p := map[string]any{
		"resourceType": "Provenance",
		"target":       []any{map[string]any{"reference": res.Type + "/" + res.ID + "/_history/" + jsonInt(res.VersionID)}},
		"recorded":     fhir.FormatInstant(time.Now()),
		"activity":     map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": activity}}},
		"agent":        []any{agent},
		"meta":         map[string]any{"tag": []any{map[string]any{"system": access.AuthoredSystem, "code": access.AuthoredPatient}}},
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return
	}
	body, err := ParseResource(raw, "Provenance")
	if err != nil {
		return
	}
	_, _ = s.door.Unrestricted(s.who).Create(ctx, "Provenance", body, nil)
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
