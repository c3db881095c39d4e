package kit

import (
	"fmt"
	"net/url"
	"strings"
)

// capabilitySuite checks the CapabilityStatement is honest: every type's
// declared read (of an absent id: 404), type history and search answer,
// and so does every search parameter it declares (a 400 for a declared
// parameter is a claim not kept). Writes are checked by the rest suite,
// on data the kit creates.
func (k *kit) capabilitySuite() {
	k.check("metadata is an R4 CapabilityStatement", func() error {
		cs, err := k.capabilityStatement()
		if err != nil {
			return err
		}
		if v := str(cs, "fhirVersion"); !strings.HasPrefix(v, "4.0") {
			return fmt.Errorf("fhirVersion is %q, not 4.0.x", v)
		}
		formats, _ := cs["format"].([]any)
		for _, f := range formats {
			if s, _ := f.(string); strings.Contains(s, "json") {
				return nil
			}
		}
		return fmt.Errorf("format does not list JSON")
	})
	cs, err := k.capabilityStatement()
	if err != nil {
		return
	}
	for _, res := range restResources(cs) {
		typ := str(res, "type")
		if hasInteraction(res, "read") || hasInteraction(res, "history-type") {
			k.check(typ+": declared read and type history answer", func() error {
				if hasInteraction(res, "read") {
					r, err := k.do("GET", typ+"/conformance-absent-"+runID(), nil)
					if err != nil {
						return err
					}
					// An id that is not there: 404 (or 410), not "not implemented".
					if err := r.expect(typ+" read of an absent id", 404, 410); err != nil {
						return err
					}
				}
				if hasInteraction(res, "history-type") {
					r, err := k.do("GET", typ+"/_history?_count=1", nil)
					if err != nil {
						return err
					}
					if err := r.expect(typ+" type history", 200); err != nil {
						return err
					}
					if str(r.json, "type") != "history" {
						return fmt.Errorf("%s type history: not a history Bundle", typ)
					}
				}
				return nil
			})
		}
		if !hasInteraction(res, "search-type") {
			continue
		}
		k.check(typ+": search and its declared parameters answer", func() error {
			r, err := k.do("GET", typ+"?_count=1", nil)
			if err != nil {
				return err
			}
			if err := r.expect(typ+" search", 200); err != nil {
				return err
			}
			if str(r.json, "resourceType") != "Bundle" || str(r.json, "type") != "searchset" {
				return fmt.Errorf("%s search: not a searchset Bundle", typ)
			}
			var broken []string
			params, _ := res["searchParam"].([]any)
			for _, p := range params {
				pm, _ := p.(map[string]any)
				name, ptype := str(pm, "name"), str(pm, "type")
				value, ok := sampleValue(ptype)
				if !ok || strings.HasPrefix(name, "_") && name != "_id" && name != "_lastUpdated" {
					continue
				}
				r, err := k.do("GET", typ+"?"+url.QueryEscape(name)+"="+url.QueryEscape(value)+"&_count=1", nil)
				if err != nil {
					return err
				}
				if r.status != 200 {
					broken = append(broken, fmt.Sprintf("%s (%s): HTTP %d", name, ptype, r.status))
				}
			}
			if len(broken) > 0 {
				return fmt.Errorf("declared search parameters that do not answer: %s", strings.Join(broken, "; "))
			}
			return nil
		})
	}
}

func (k *kit) capabilityStatement() (map[string]any, error) {
	if k.cs != nil {
		return k.cs, nil
	}
	r, err := k.do("GET", "metadata", nil)
	if err != nil {
		return nil, err
	}
	if err := r.expect("metadata", 200); err != nil {
		return nil, err
	}
	if str(r.json, "resourceType") != "CapabilityStatement" {
		return nil, fmt.Errorf("metadata is not a CapabilityStatement")
	}
	k.cs = r.json
	return k.cs, nil
}

// restResources are the resource entries of the server's rest block.
func restResources(cs map[string]any) []map[string]any {
	rest, _ := cs["rest"].([]any)
	var out []map[string]any
	for _, r := range rest {
		rm, _ := r.(map[string]any)
		if str(rm, "mode") != "server" {
			continue
		}
		list, _ := rm["resource"].([]any)
		for _, res := range list {
			if m, ok := res.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

func (k *kit) resourceEntry(typ string) map[string]any {
	cs, err := k.capabilityStatement()
	if err != nil {
		return nil
	}
	for _, res := range restResources(cs) {
		if str(res, "type") == typ {
			return res
		}
	}
	return nil
}

func hasInteraction(res map[string]any, code string) bool {
	list, _ := res["interaction"].([]any)
	for _, i := range list {
		if im, _ := i.(map[string]any); str(im, "code") == code {
			return true
		}
	}
	return false
}

// declares reports whether the server declares the interaction on typ.
func (k *kit) declares(typ, code string) bool {
	res := k.resourceEntry(typ)
	return res != nil && hasInteraction(res, code)
}

// sampleValue is a well-formed value of a search parameter type, which a
// server must accept for a parameter it declares.
func sampleValue(ptype string) (string, bool) {
	switch ptype {
	case "string":
		return "a", true
	case "token":
		return "a", true
	case "date":
		return "ge2000-01-01", true
	case "reference":
		return "a", true // a bare id suits every target type
	case "number":
		return "1", true
	case "quantity":
		return "1", true
	case "uri":
		return "http://example.org/a", true
	}
	return "", false // composite and special values depend on the parameter
}
