package interact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/store"
)

// Results released after review. A result — a DiagnosticReport, a
// laboratory or imaging Observation, a clinical-note or imaging
// DocumentReference — carries a meta.tag of access.ReleaseSystem that the
// door sets on every write: held until its status is final (or amended,
// corrected, appended); then released at once, or pending until its
// category's delay has passed (the due instant in a meta extension) or a
// clinician releases it ($release). A patient's or proxy's token sees a
// held or pending result as absent on every path (smart/access). A result
// without the tag — data loaded before releases were kept — is released.

// releaseEvent is the audit event of a release ($release, or a delay
// that has passed).
var releaseEvent = audit.Event{Subtype: "operation", Action: "U"}

// releaseDueURL is the meta extension holding when a pending result
// releases itself.
const releaseDueURL = "http://hearth-fhir.org/StructureDefinition/release-due"

// Release categories, each with its own delay (--release-delay).
const (
	ReleaseLaboratory   = "laboratory"
	ReleaseImaging      = "imaging"
	ReleaseClinicalNote = "clinical-note"
)

// releaser stamps the release state of results the door writes.
type releaser struct {
	delays map[string]time.Duration
	now    func() time.Time
}

// ReleaseCategory is the release category of a result, or "" for a
// resource that is not one (a vital sign, a patient's own reading).
func ReleaseCategory(typ string, res map[string]any) string {
	codes := map[string]bool{}
	for _, cc := range fhir.AsList(res["category"]) {
		m, _ := cc.(map[string]any)
		for _, c := range fhir.AsList(m["coding"]) {
			cm, _ := c.(map[string]any)
			if code, _ := cm["code"].(string); code != "" {
				codes[code] = true
			}
		}
	}
	switch typ {
	case "DiagnosticReport":
		switch {
		case codes["RAD"] || codes["LP29684-5"] || codes["imaging"]:
			return ReleaseImaging
		case codes["LAB"] || codes["LP7839-6"] || codes["laboratory"] || len(codes) == 0:
			return ReleaseLaboratory
		}
		return ReleaseClinicalNote
	case "Observation":
		switch {
		case codes["laboratory"]:
			return ReleaseLaboratory
		case codes["imaging"]:
			return ReleaseImaging
		}
	case "DocumentReference":
		switch {
		case codes["clinical-note"]:
			return ReleaseClinicalNote
		case codes["imaging"] || codes["RAD"]:
			return ReleaseImaging
		}
	}
	return ""
}

// finalStatus: a result is ready to be seen once final or later.
func finalStatus(typ string, res map[string]any) bool {
	status, _ := res["status"].(string)
	if typ == "DocumentReference" {
		doc, _ := res["docStatus"].(string)
		return status == "current" && (doc == "" || doc == "final" || doc == "amended")
	}
	return slices.Contains([]string{"final", "amended", "corrected", "appended"}, status)
}

// releaseState reads a resource's release tag and due instant.
func releaseState(res map[string]any) (state string, due time.Time) {
	meta, _ := res["meta"].(map[string]any)
	for _, t := range fhir.AsList(meta["tag"]) {
		tm, _ := t.(map[string]any)
		if tm["system"] == access.ReleaseSystem {
			state, _ = tm["code"].(string)
		}
	}
	for _, e := range fhir.AsList(meta["extension"]) {
		em, _ := e.(map[string]any)
		if em["url"] == releaseDueURL {
			s, _ := em["valueInstant"].(string)
			due, _ = time.Parse(time.RFC3339Nano, s)
		}
	}
	return state, due
}

// stamp sets the release state of a result about to be written; prev is
// the current version's JSON (nil for a create). A version released stays
// released; a due instant once set is kept. Anything else is returned as
// it is.
func (r *releaser) stamp(typ string, body Body, prev []byte) (Body, error) {
	if r == nil || body.Parsed == nil {
		return body, nil
	}
	category := ReleaseCategory(typ, body.Parsed)
	if category == "" {
		return body, nil
	}
	state, due := releaseState(body.Parsed)
	if prev != nil {
		if old, err := fhir.DecodeResource(prev); err == nil {
			oldState, oldDue := releaseState(old)
			if oldState == access.ReleaseReleased {
				state = access.ReleaseReleased
			} else if state != access.ReleaseReleased {
				state, due = oldState, oldDue
			}
		}
	}
	now := r.now()
	switch {
	case !finalStatus(typ, body.Parsed):
		state, due = access.ReleaseHeld, time.Time{}
	case state == access.ReleaseReleased:
		due = time.Time{}
	default:
		if due.IsZero() {
			due = now.Add(r.delays[category])
		}
		state = access.ReleasePending
		if !due.After(now) {
			state, due = access.ReleaseReleased, time.Time{}
		}
	}
	return setRelease(body, state, due)
}

// setRelease writes the release tag (and due extension) into the body,
// in its decoded form and in its bytes.
func setRelease(body Body, state string, due time.Time) (Body, error) {
	return withMeta(body, func(meta map[string]any) {
		setTag(meta, access.ReleaseSystem, state)
		var exts []any
		for _, e := range fhir.AsList(meta["extension"]) {
			if em, _ := e.(map[string]any); em["url"] != releaseDueURL {
				exts = append(exts, e)
			}
		}
		if !due.IsZero() {
			exts = append(exts, map[string]any{"url": releaseDueURL, "valueInstant": fhir.FormatInstant(due)})
		}
		if len(exts) > 0 {
			meta["extension"] = exts
		} else {
			delete(meta, "extension")
		}
	})
}

// withMeta changes a body's meta with edit, in its decoded form and in
// its bytes (only the meta member is rewritten).
func withMeta(body Body, edit func(meta map[string]any)) (Body, error) {
	meta, _ := body.Parsed["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	edit(meta)
	body.Parsed["meta"] = meta
	raw, err := json.Marshal(meta)
	if err != nil {
		return body, err
	}
	if body.Raw, err = fhir.SetMember(body.Raw, "meta", raw); err != nil {
		return body, err
	}
	return body, nil
}

// setTag makes code the one tag of system in meta.
func setTag(meta map[string]any, system, code string) {
	var tags []any
	for _, t := range fhir.AsList(meta["tag"]) {
		if tm, _ := t.(map[string]any); tm["system"] != system {
			tags = append(tags, t)
		}
	}
	meta["tag"] = append(tags, map[string]any{"system": system, "code": code})
}

// Release is $release: a clinician (a token bound to no patient) releases
// a final result to the patient now; a DiagnosticReport's result
// Observations are released with it. Each resource is its own write —
// the observations first, then the report — so that it works where
// MongoDB has no multi-document transactions; a $release cut short is
// completed by running it again.
func (s *Session) Release(ctx context.Context, typ, id string) (Result, error) {
	if s.pol != nil && s.pol.Patient != "" {
		return Result{}, fmt.Errorf("a patient's or proxy's token cannot release results: %w", access.ErrForbidden)
	}
	if typ == "DiagnosticReport" {
		cur, err := s.data.Read(ctx, typ, id)
		if err != nil {
			return Result{}, err
		}
		report, err := fhir.DecodeResource(cur.JSON)
		if err != nil {
			return Result{}, err
		}
		if !finalStatus(typ, report) {
			return Result{}, problem(Unprocessable, "business-rule", "only a final result can be released; "+typ+"/"+id+" is not final")
		}
		for _, r := range fhir.AsList(report["result"]) {
			ref, _ := r.(map[string]any)["reference"].(string)
			key := fhir.ParseReference(ref)
			if key.Type != "Observation" || key.ID == "" {
				continue
			}
			_, err := s.write(ctx, key.Type, about(releaseEvent, key.Type, key.ID), func(tx store.Tx) (Result, error) {
				return releaseOne(ctx, tx, key.Type, key.ID, false)
			})
			if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrGone) {
				return Result{}, err
			}
		}
	}
	return s.write(ctx, typ, about(releaseEvent, typ, id), func(tx store.Tx) (Result, error) {
		return releaseOne(ctx, tx, typ, id, true)
	})
}

// releaseOne sets one result's state to released; strict refuses a
// result that is not final (a report's observations that are not final
// stay held).
func releaseOne(ctx context.Context, tx store.Tx, typ, id string, strict bool) (Result, error) {
	cur, err := tx.Read(ctx, typ, id)
	if err != nil {
		return Result{}, err
	}
	res, err := fhir.DecodeResource(cur.JSON)
	if err != nil {
		return Result{}, err
	}
	if ReleaseCategory(typ, res) == "" {
		if strict {
			return Result{}, problem(Unprocessable, "business-rule", typ+"/"+id+" is not a result that is released")
		}
		return Result{Resource: cur}, nil
	}
	if !finalStatus(typ, res) {
		if strict {
			return Result{}, problem(Unprocessable, "business-rule", "only a final result can be released; "+typ+"/"+id+" is not final")
		}
		return Result{Resource: cur}, nil
	}
	if state, _ := releaseState(res); state == access.ReleaseReleased {
		return Result{Outcome: Updated, Resource: cur, Info: typ + "/" + id + " was already released"}, nil
	}
	body, err := setRelease(Body{Raw: cur.JSON, Parsed: res}, access.ReleaseReleased, time.Time{})
	if err != nil {
		return Result{}, err
	}
	written, _, err := tx.Update(ctx, store.Write{Type: typ, ID: id, Body: body.Raw, Parsed: body.Parsed, IfMatch: cur.VersionID})
	if err != nil {
		return Result{}, err
	}
	return Result{Outcome: Updated, Resource: written, Info: "released " + typ + "/" + id}, nil
}

// ReleaseDue releases the pending results whose delay has passed: `hearth
// serve` runs it every minute. Several processes may run it at once; a
// result another released first is left as it is. It returns how many it
// released.
func (d *Door) ReleaseDue(ctx context.Context) (int, error) {
	s := d.Unrestricted(audit.Agent{User: "hearth-release"})
	now := d.releaser.now()
	released := 0
	for _, typ := range []string{"DiagnosticReport", "Observation", "DocumentReference"} {
		q, err := fhir.ParseSearch(typ, url.Values{"_tag": {access.ReleaseSystem + "|" + access.ReleasePending}, "_count": {"500"}},
			fhir.SearchOptions{DefaultCount: 500, MaxCount: 500})
		if err != nil {
			return released, err
		}
		ids, err := s.data.SearchIDs(ctx, q, "", 500)
		if err != nil {
			return released, err
		}
		pending, err := s.data.ReadMany(ctx, typ, ids)
		if err != nil {
			return released, err
		}
		for _, r := range pending {
			res, err := fhir.DecodeResource(r.JSON)
			if err != nil {
				continue
			}
			if _, due := releaseState(res); due.IsZero() || due.After(now) {
				continue
			}
			_, err = s.write(ctx, typ, about(releaseEvent, typ, r.ID), func(tx store.Tx) (Result, error) {
				return releaseOne(ctx, tx, typ, r.ID, false)
			})
			if err == nil {
				released++
			}
		}
	}
	return released, nil
}
