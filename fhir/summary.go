package fhir

import (
	"encoding/json"
	"strings"
)

// subsettedTag marks a resource that is not complete (_summary, _elements).
var subsettedTag = json.RawMessage(`{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"Resource encoded in summary mode"}`)

// Subset returns the resource with only the top-level elements the
// _summary mode or _elements list keeps, tagged SUBSETTED. Elements are
// copied as stored bytes, never re-encoded. summary "" or "false" with no
// elements returns the body unchanged.
func Subset(body []byte, summary string, elements []string) ([]byte, error) {
	if (summary == "" || summary == "false") && len(elements) == 0 {
		return body, nil
	}
	ms, err := decodeMembers(body)
	if err != nil {
		return nil, err
	}
	var rt string
	for _, m := range ms {
		if m.key == "resourceType" {
			_ = json.Unmarshal(m.val, &rt)
		}
	}
	want := map[string]bool{}
	for _, e := range elements {
		want[e] = true
	}
	keep := func(key string) bool {
		name := strings.TrimPrefix(key, "_")
		switch name {
		case "resourceType", "id", "meta":
			return true
		}
		c, known := childrenOf[rt][name]
		if !known {
			return summary == "data" // an unknown element survives only "data"
		}
		if c.def.Min > 0 {
			return true // mandatory elements are always returned
		}
		switch {
		case len(elements) > 0:
			return want[c.name] || want[name]
		case summary == "true":
			return c.def.Summary
		case summary == "text":
			return name == "text"
		case summary == "data":
			return name != "text"
		}
		return true
	}
	out := make([]member, 0, len(ms))
	for _, m := range ms {
		if !keep(m.key) {
			continue
		}
		if m.key == "meta" {
			tagged, err := addTag(m.val)
			if err != nil {
				return nil, err
			}
			m.val = tagged
		}
		out = append(out, m)
	}
	return encodeMembers(out), nil
}

func addTag(meta json.RawMessage) (json.RawMessage, error) {
	ms, err := decodeMembers(meta)
	if err != nil {
		return nil, err
	}
	for i, m := range ms {
		if m.key == "tag" {
			var tags []json.RawMessage
			if err := json.Unmarshal(m.val, &tags); err != nil {
				return nil, err
			}
			tags = append(tags, subsettedTag)
			b, _ := json.Marshal(tags)
			ms[i].val = b
			return encodeMembers(ms), nil
		}
	}
	ms = append(ms, member{key: "tag", val: json.RawMessage("[" + string(subsettedTag) + "]")})
	return encodeMembers(ms), nil
}
