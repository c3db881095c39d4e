package access

import (
	"net/url"
	"strings"
	"sync"

	"github.com/hearth-fhir/hearth/fhir"
)

const (
	confidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	actCode         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
)

// sensitiveLabels are the meta.security labels whose resources a
// restricted proxy never sees: the confidentiality codes R (restricted) and
// V (very restricted), and the sensitivity codes of care an adolescent may
// seek on their own — substance use (ETH, SUD), HIV, psychiatry (PSY),
// sexual assault and domestic violence (SDV), sexual and reproductive
// health (SEX), sexually transmitted disease (STD).
var sensitiveLabels = []struct{ system, code string }{
	{confidentiality, "R"}, {confidentiality, "V"},
	{actCode, "ETH"}, {actCode, "SUD"}, {actCode, "HIV"}, {actCode, "PSY"},
	{actCode, "SDV"}, {actCode, "SEX"}, {actCode, "STD"},
}

// withheldByType caches, per resource type, the parsed withheld condition
// (a fixed query: parsing it on every request would be wasted work).
var withheldByType sync.Map // string → []*fhir.SearchParam

// withheld returns the search conditions that leave sensitive resources of
// typ out, or nil when the policy withholds nothing.
func (p *Policy) withheld(typ string) []*fhir.SearchParam {
	if !p.WithholdSensitive {
		return nil
	}
	if params, ok := withheldByType.Load(typ); ok {
		return params.([]*fhir.SearchParam)
	}
	var vals []string
	for _, l := range sensitiveLabels {
		vals = append(vals, l.system+"|"+l.code)
	}
	q, err := fhir.ParseSearch(typ, url.Values{"_security:not": {strings.Join(vals, ",")}}, fhir.SearchOptions{Strict: true})
	if err != nil {
		panic(err) // a fixed, valid query
	}
	withheldByType.Store(typ, q.Params)
	return q.Params
}
