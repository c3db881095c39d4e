package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// member is one property of a JSON object, its value kept as raw bytes so
// that numbers, strings and nested objects keep their exact text.
type member struct {
	key string
	val json.RawMessage
}

// decodeMembers splits a JSON object into its properties in document order.
func decodeMembers(obj []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		out = append(out, member{key: key, val: raw})
	}
	return out, nil
}

func encodeMembers(ms []member) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.val)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// FormatInstant writes t as a FHIR instant in UTC with millisecond precision.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// Stamp returns the client's resource JSON with the server-assigned id,
// meta.versionId and meta.lastUpdated set, compacted. Every other property,
// including primitive extensions, unknown-to-Go elements and the exact text
// of decimals, is kept byte for byte; resourceType, id and meta come first.
func Stamp(body []byte, id string, versionID int64, lastUpdated time.Time) ([]byte, error) {
	ms, err := decodeMembers(body)
	if err != nil {
		return nil, fmt.Errorf("stamp: %w", err)
	}
	var rt json.RawMessage
	var oldMeta json.RawMessage
	rest := ms[:0:0]
	for _, m := range ms {
		switch m.key {
		case "resourceType":
			rt = m.val
		case "id":
		case "meta":
			oldMeta = m.val
		default:
			rest = append(rest, m)
		}
	}
	var meta []member
	if len(oldMeta) > 0 && string(oldMeta) != "null" {
		old, err := decodeMembers(oldMeta)
		if err != nil {
			return nil, fmt.Errorf("stamp: meta: %w", err)
		}
		for _, m := range old {
			if m.key != "versionId" && m.key != "lastUpdated" && m.key != "_versionId" && m.key != "_lastUpdated" {
				meta = append(meta, m)
			}
		}
	}
	vid, _ := json.Marshal(fmt.Sprint(versionID))
	lu, _ := json.Marshal(FormatInstant(lastUpdated))
	meta = append([]member{{"versionId", vid}, {"lastUpdated", lu}}, meta...)
	idJSON, _ := json.Marshal(id)
	out := []member{{"resourceType", rt}, {"id", idJSON}, {"meta", encodeMembers(meta)}}
	out = append(out, rest...)
	var compact bytes.Buffer
	if err := json.Compact(&compact, encodeMembers(out)); err != nil {
		return nil, fmt.Errorf("stamp: %w", err)
	}
	return compact.Bytes(), nil
}

// ResourceHeader reads resourceType and id of a resource without decoding
// the rest of it.
func ResourceHeader(body []byte) (resourceType, id string, err error) {
	var h struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	err = json.Unmarshal(body, &h)
	return h.ResourceType, h.ID, err
}
