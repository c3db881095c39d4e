package fhir

import (
	"encoding/json"
	"strings"
)

type outcomeIssue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

type operationOutcome struct {
	ResourceType string         `json:"resourceType"`
	Issue        []outcomeIssue `json:"issue"`
}

// OperationOutcome renders issues as an R4 OperationOutcome. Severity
// defaults to error and code to processing.
func OperationOutcome(issues ...Issue) []byte {
	oo := operationOutcome{ResourceType: "OperationOutcome"}
	for _, is := range issues {
		item := outcomeIssue{Severity: orDefault(is.Severity, "error"), Code: orDefault(is.Code, "processing"), Diagnostics: is.Diagnostics}
		if is.Expression != "" {
			item.Expression = []string{is.Expression}
		}
		oo.Issue = append(oo.Issue, item)
	}
	if len(oo.Issue) == 0 {
		oo.Issue = []outcomeIssue{{Severity: "information", Code: "informational"}}
	}
	b, _ := json.Marshal(oo) // strings and slices only: cannot fail
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

// ResourceTypeFirst moves resourceType to the front of a resource's JSON,
// where people reading it expect it (encoders that embed it last, such as
// the samply structs, put it at the end).
func ResourceTypeFirst(body []byte) ([]byte, error) {
	ms, err := decodeMembers(body)
	if err != nil {
		return nil, err
	}
	out := make([]member, 0, len(ms))
	for _, m := range ms {
		if m.key == "resourceType" {
			out = append([]member{m}, out...)
		} else {
			out = append(out, m)
		}
	}
	return encodeMembers(out), nil
}

// QuoteSafe keeps client-supplied text quoted in a message short and
// printable: at most 100 bytes, no control characters.
func QuoteSafe(v string) string {
	if len(v) > 100 {
		v = v[:100] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
}
