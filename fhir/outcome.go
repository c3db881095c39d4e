package fhir

import (
	"github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// OperationOutcome renders issues as an R4 OperationOutcome.
func OperationOutcome(issues ...Issue) []byte {
	oo := fhir.OperationOutcome{}
	for _, is := range issues {
		var sev fhir.IssueSeverity
		_ = sev.UnmarshalJSON([]byte(`"` + orDefault(is.Severity, "error") + `"`))
		var code fhir.IssueType
		if err := code.UnmarshalJSON([]byte(`"` + orDefault(is.Code, "processing") + `"`)); err != nil {
			code = fhir.IssueTypeProcessing
		}
		item := fhir.OperationOutcomeIssue{Severity: sev, Code: code}
		if is.Diagnostics != "" {
			d := is.Diagnostics
			item.Diagnostics = &d
		}
		if is.Expression != "" {
			item.Expression = []string{is.Expression}
		}
		oo.Issue = append(oo.Issue, item)
	}
	b, err := oo.MarshalJSON()
	if err != nil {
		// Marshalling a value built above cannot fail; keep a valid body anyway.
		return []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
	}
	return b
}

// Information is a single informational issue, for Prefer: return=OperationOutcome.
func Information(diagnostics string) []byte {
	return OperationOutcome(Issue{Severity: "information", Code: "informational", Diagnostics: diagnostics})
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
