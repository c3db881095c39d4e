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

// Results released after review: the door tags every result it writes
// with its release state (interact/release.go). A patient's or proxy's
// token sees held and pending results as absent.
const (
	ReleaseSystem   = "http://hearth-fhir.org/CodeSystem/result-release"
	ReleaseHeld     = "held"     // not final yet
	ReleasePending  = "pending"  // final, waiting for a clinician or its category's delay
	ReleaseReleased = "released" // the patient sees it
)

// resultTypes are the types whose resources may be results.
var resultTypes = map[string]bool{"DiagnosticReport": true, "Observation": true, "DocumentReference": true}

// withheldKey tells the cached conditions apart: a type, and which of
// sensitive labels and unreleased results are withheld.
type withheldKey struct {
	typ                  string
	sensitive, unrelease bool
}

// withheldByType caches the parsed withheld conditions (fixed queries:
// parsing them on every request would be wasted work).
var withheldByType sync.Map // withheldKey → []*fhir.SearchParam

// withheld returns the search conditions that leave out what the policy
// withholds of typ — sensitive resources for a restricted proxy,
// unreleased results for any patient-bound token — or nil.
func (p *Policy) withheld(typ string) []*fhir.SearchParam {
	key := withheldKey{typ, p.WithholdSensitive, p.Patient != "" && resultTypes[typ]}
	if !key.sensitive && !key.unrelease {
		return nil
	}
	if params, ok := withheldByType.Load(key); ok {
		return params.([]*fhir.SearchParam)
	}
	q := url.Values{}
	if key.sensitive {
		var vals []string
		for _, l := range sensitiveLabels {
			vals = append(vals, l.system+"|"+l.code)
		}
		q.Set("_security:not", strings.Join(vals, ","))
	}
	if key.unrelease {
		q.Set("_tag:not", ReleaseSystem+"|"+ReleaseHeld+","+ReleaseSystem+"|"+ReleasePending)
	}
	parsed, err := fhir.ParseSearch(typ, q, fhir.SearchOptions{Strict: true})
	if err != nil {
		panic(err) // fixed, valid queries
	}
	withheldByType.Store(key, parsed.Params)
	return parsed.Params
}
