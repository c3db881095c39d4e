// Package conformance describes what Hearth supports: the CapabilityStatement
// served at /metadata, built from the same definitions the server runs on.
package conformance

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/hearth-fhir/hearth/conformance/profile"
	hfhir "github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/smart/access"
)

// Options describes the deployment the statement is for.
type Options struct {
	BaseURL string
	Version string
	// OAuth, when set, declares SMART on FHIR security with these
	// endpoints (the oauth-uris extension, still read by SMART v1 clients).
	OAuth *OAuthURIs
	// BulkExport declares $export at the system, Patient and Group levels
	// (FHIR Bulk Data Access IG v2).
	BulkExport bool
}

// bulkData are the Bulk Data IG's operation definitions.
const bulkData = "http://hl7.org/fhir/uv/bulkdata/"

// OAuthURIs are the authorization server's endpoints.
type OAuthURIs struct {
	Authorize, Token, Introspect, Revoke, Register string
}

func security(o *OAuthURIs) *fhir.CapabilityStatementRestSecurity {
	if o == nil {
		return nil
	}
	var exts []fhir.Extension
	for _, e := range []struct{ name, url string }{
		{"authorize", o.Authorize}, {"token", o.Token}, {"introspect", o.Introspect}, {"revoke", o.Revoke}, {"register", o.Register},
	} {
		exts = append(exts, fhir.Extension{Url: e.name, ValueUri: ptr(e.url)})
	}
	system := "http://terminology.hl7.org/CodeSystem/restful-security-service"
	return &fhir.CapabilityStatementRestSecurity{
		Cors: ptr(true),
		Service: []fhir.CodeableConcept{{
			Coding: []fhir.Coding{{System: &system, Code: ptr("SMART-on-FHIR"), Display: ptr("SMART-on-FHIR")}},
			Text:   ptr("OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"),
		}},
		Extension: []fhir.Extension{{
			Url:       "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
			Extension: exts,
		}},
	}
}

// restDocumentation describes, in markdown, the rules a patient's token
// writes under and when results are released: the same table the guard
// enforces (access.PatientWriteRules).
func restDocumentation() string {
	var b strings.Builder
	b.WriteString("A token bound to a patient (the patient's own or a proxy's) writes only into that patient's record, only what this table allows, ")
	b.WriteString("and never changes what the care team wrote; what it writes is tagged http://hearth-fhir.org/CodeSystem/authored-by|patient and gets a Provenance.\n\n")
	b.WriteString("| type | create | update | delete | must name the token's user | rule |\n|---|---|---|---|---|---|\n")
	yes := map[bool]string{true: "yes", false: "no"}
	for _, r := range access.PatientWriteRules() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Type, yes[r.Create], yes[r.Update], yes[r.Delete], r.Author, r.Rule)
	}
	b.WriteString("\nResults (DiagnosticReport, laboratory and imaging Observations, clinical-note and imaging DocumentReferences) are seen by patient and proxy tokens ")
	b.WriteString("only once final and released: by $release, or after their category's delay (hearth serve --release-delay).\n\n")
	b.WriteString("Schedule and Slot are directory data. POST or PUT of a booked, pending or proposed Appointment claims its free Slots (busy); ")
	b.WriteString("a slot another booking holds is a 409; cancelling or rescheduling frees them.")
	return b.String()
}

// supportedProfiles are the profiles $validate (and, with
// --validate-profiles, every write) checks, by resource type: the bundled
// US Core 5.0.1 profiles of resources. The statement does not claim to
// instantiate the US Core server CapabilityStatement: Hearth has these
// profiles of it, not all.
var supportedProfiles = map[string][]string{}

func init() {
	reg, err := profile.USCore()
	if err != nil {
		return // the profile tests fail loudly; the statement then claims none
	}
	for _, p := range reg.Profiles() {
		if hfhir.IsResourceType(p.Type) {
			supportedProfiles[p.Type] = append(supportedProfiles[p.Type], p.URL)
		}
	}
}

// built is when this process started: the statement's date.
var built = time.Now().UTC()

// CapabilityStatement returns the server's CapabilityStatement as JSON. It
// lists only interactions the server implements; every resource type
// supports the same instance and type interactions.
func CapabilityStatement(o Options) []byte {
	yes := true
	versioned := fhir.ResourceVersionPolicyVersionedUpdate
	readNotSupported := fhir.ConditionalReadStatusNotSupported
	interactions := []fhir.TypeRestfulInteraction{
		fhir.TypeRestfulInteractionRead,
		fhir.TypeRestfulInteractionVread,
		fhir.TypeRestfulInteractionUpdate,
		fhir.TypeRestfulInteractionPatch,
		fhir.TypeRestfulInteractionDelete,
		fhir.TypeRestfulInteractionHistoryInstance,
		fhir.TypeRestfulInteractionHistoryType,
		fhir.TypeRestfulInteractionCreate,
		fhir.TypeRestfulInteractionSearchType,
	}
	var resources []fhir.CapabilityStatementRestResource
	for _, name := range hfhir.ResourceTypes() {
		var rt fhir.ResourceType
		if err := rt.UnmarshalJSON([]byte(`"` + name + `"`)); err != nil {
			continue
		}
		res := fhir.CapabilityStatementRestResource{
			Type:              rt,
			Profile:           ptr("http://hl7.org/fhir/StructureDefinition/" + name),
			Versioning:        &versioned,
			ReadHistory:       &yes,
			UpdateCreate:      &yes,
			ConditionalCreate: &yes,
			ConditionalRead:   &readNotSupported,
		}
		for _, code := range interactions {
			res.Interaction = append(res.Interaction, fhir.CapabilityStatementRestResourceInteraction{Code: code})
		}
		res.SearchParam = searchParams(name)
		res.SearchInclude = includes(name)
		res.SearchRevInclude = []string{"*"}
		if name == "Patient" || name == "Encounter" {
			res.Operation = []fhir.CapabilityStatementRestResourceOperation{{
				Name:       "everything",
				Definition: "http://hl7.org/fhir/OperationDefinition/" + name + "-everything",
			}}
		}
		res.Operation = append(res.Operation, fhir.CapabilityStatementRestResourceOperation{
			Name:          "validate",
			Definition:    "http://hl7.org/fhir/OperationDefinition/Resource-validate",
			Documentation: ptr("Checks a resource against R4 (structure, invariants, required bindings) and the profiles it claims or the profile parameter names: the bundled US Core 5.0.1 profiles"),
		})
		switch name {
		case "DiagnosticReport", "Observation", "DocumentReference":
			res.Operation = append(res.Operation, fhir.CapabilityStatementRestResourceOperation{
				Name:       "release",
				Definition: "http://hearth-fhir.org/OperationDefinition/release",
				Documentation: ptr("POST [type]/[id]/$release: a clinician (a token bound to no patient) releases a final result to the patient now; " +
					"a DiagnosticReport's result Observations with it. Results (DiagnosticReport, laboratory and imaging Observations, clinical-note and imaging DocumentReferences) " +
					"are seen by patient and proxy tokens only once final and released: by $release, or after their category's delay (hearth serve --release-delay; none by default)"),
			})
		}
		if o.BulkExport && (name == "Patient" || name == "Group") {
			res.Operation = append(res.Operation, fhir.CapabilityStatementRestResourceOperation{
				Name:       "export",
				Definition: bulkData + "OperationDefinition/" + strings.ToLower(name) + "-export",
				Documentation: ptr("Bulk Data export of " + map[string]string{"Patient": "every patient's data (Patient/$export) or one patient's (Patient/[id]/$export, which a patient's own token may ask for)",
					"Group": "the data of a Group's active member patients"}[name] + ", under the token's policy; the types of the Patient compartment and the directory resources they refer to"),
			})
		}
		res.SupportedProfile = supportedProfiles[name]
		res.ConditionalUpdate = &yes
		conditionalSingle := fhir.ConditionalDeleteStatusSingle
		res.ConditionalDelete = &conditionalSingle
		if name == "AuditEvent" {
			res = auditEventResource(res)
		}
		resources = append(resources, res)
	}
	name := "Hearth"
	cs := fhir.CapabilityStatement{
		Url:       ptr(o.BaseURL + "/metadata"),
		Name:      ptr("HearthCapabilityStatement"),
		Title:     ptr("Hearth FHIR R4 server"),
		Status:    fhir.PublicationStatusActive,
		Date:      built.Format("2006-01-02T15:04:05Z07:00"),
		Publisher: ptr("Hearth"),
		Kind:      fhir.CapabilityStatementKindInstance,
		Software:  &fhir.CapabilityStatementSoftware{Name: name, Version: ptr(o.Version)},
		Implementation: &fhir.CapabilityStatementImplementation{
			Description: "Hearth FHIR R4 server",
			Url:         ptr(o.BaseURL),
		},
		FhirVersion: fhir.FHIRVersion4_0_1,
		Format:      []string{"json", "application/fhir+json"},
		PatchFormat: []string{"application/json-patch+json", "application/fhir+json"},
		Rest: []fhir.CapabilityStatementRest{{
			Mode:          fhir.RestfulCapabilityModeServer,
			Documentation: ptr(restDocumentation()),
			Security:      security(o.OAuth),
			Resource:      resources,
			Interaction: []fhir.CapabilityStatementRestInteraction{
				{Code: fhir.SystemRestfulInteractionHistorySystem},
				{Code: fhir.SystemRestfulInteractionBatch},
				{Code: fhir.SystemRestfulInteractionTransaction},
			},
		}},
	}
	if o.BulkExport {
		cs.Instantiates = []string{bulkData + "CapabilityStatement/bulk-data"}
		cs.Rest[0].Operation = []fhir.CapabilityStatementRestResourceOperation{{
			Name:       "export",
			Definition: bulkData + "OperationDefinition/export",
			Documentation: ptr("Bulk Data export (async: Prefer: respond-async; status at Content-Location; NDJSON files for the same client's token). " +
				"Parameters _outputFormat (ndjson), _since (with deletions), _type, _elements, _typeFilter; patient (POST) at the Patient and Group levels. " +
				"An export holds what its token may see; a client runs a bounded number at once (429); files are kept for --export-retention"),
		}}
	}
	b, err := cs.MarshalJSON()
	if err == nil {
		b, err = hfhir.ResourceTypeFirst(b)
	}
	if err != nil {
		panic("conformance: CapabilityStatement does not marshal: " + err.Error())
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// searchParams lists the parameters of a type that search answers exactly:
// those indexed at write time, and the special ones every type has.
func searchParams(typ string) []fhir.CapabilityStatementRestResourceSearchParam {
	var out []fhir.CapabilityStatementRestResourceSearchParam
	for _, p := range hfhir.SearchParams(typ) {
		if !hfhir.ParamIndexed(typ, p.Code) {
			continue
		}
		var t fhir.SearchParamType
		if err := t.UnmarshalJSON([]byte(`"` + p.Type + `"`)); err != nil {
			continue
		}
		out = append(out, fhir.CapabilityStatementRestResourceSearchParam{Name: p.Code, Definition: ptr(p.URL), Type: t,
			Documentation: ptr(paramDocumentation(p))})
	}
	for _, special := range []struct{ name, doc string }{
		{"_text", "Words of the narrative (text.div), case- and accent-insensitive"},
		{"_content", "Words of the whole resource, case- and accent-insensitive"},
		{"_list", "Members of the List with this id"},
	} {
		out = append(out, fhir.CapabilityStatementRestResourceSearchParam{Name: special.name, Type: fhir.SearchParamTypeSpecial, Documentation: ptr(special.doc)})
	}
	return out
}

// paramDocumentation says what a parameter searches and how Hearth
// matches it: the element (its FHIRPath), the value forms, and the
// modifiers it takes — exactly those the search parser accepts.
func paramDocumentation(p *hfhir.SearchParamDef) string {
	how := map[string]string{
		"string":    "case- and accent-insensitive prefix match; modifiers :exact, :contains, :missing",
		"token":     "system|code, |code (no system), system| (any code) or code; modifiers :not, :text, :missing",
		"date":      "a date or instant, matched as a range by its precision; prefixes eq, ne, lt, gt, le, ge, sa, eb, ap; :missing",
		"number":    "prefixes eq, ne, lt, gt, le, ge, sa, eb, ap, matched by the value's precision; :missing",
		"quantity":  "[prefix]number|system|code, number||unit or number; prefixes as number; :missing",
		"reference": "Type/id, id, or an absolute URL; chains (" + p.Code + ".param), :Type, :identifier, :missing",
		"uri":       "exact match; modifiers :below, :above, :missing",
		"composite": "its components joined by $ (each as its own type)",
	}[p.Type]
	expr := p.Expression
	if len(expr) > 160 {
		expr = expr[:160] + "…"
	}
	if expr == "" {
		return how
	}
	return expr + ": " + how
}

// includes lists Type:param for every reference parameter, and *.
func includes(typ string) []string {
	out := []string{"*"}
	for _, p := range hfhir.SearchParams(typ) {
		if p.Type == "reference" && hfhir.ParamIndexed(typ, p.Code) {
			out = append(out, typ+":"+p.Code)
		}
	}
	return out
}

// auditEvent are the search parameters of the audit trail (interact's
// auditQuery), which the server writes alone.
var auditEventParams = []string{"date", "agent", "entity", "patient", "type", "subtype", "outcome", "action"}

// auditEventResource is what the API does with AuditEvents: they are read
// and searched from the audit trail, never written through it.
func auditEventResource(res fhir.CapabilityStatementRestResource) fhir.CapabilityStatementRestResource {
	res.Interaction = []fhir.CapabilityStatementRestResourceInteraction{
		{Code: fhir.TypeRestfulInteractionRead}, {Code: fhir.TypeRestfulInteractionVread}, {Code: fhir.TypeRestfulInteractionSearchType},
	}
	var params []fhir.CapabilityStatementRestResourceSearchParam
	for _, p := range res.SearchParam {
		if slices.Contains(auditEventParams, p.Name) {
			params = append(params, p)
		}
	}
	res.SearchParam = params
	res.SearchInclude, res.SearchRevInclude = nil, nil
	no := false
	res.UpdateCreate, res.ConditionalCreate, res.ConditionalUpdate = &no, &no, &no
	notSupported := fhir.ConditionalDeleteStatusNotSupported
	res.ConditionalDelete = &notSupported
	return res
}
