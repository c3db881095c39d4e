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

// decodeMembers splits a JSON object into its properties in document
// order. It scans the bytes instead of decoding them: values are kept as
// they are written (and must already be valid JSON, as validated bodies and
// stored resources are). Whitespace between tokens is kept.
func decodeMembers(obj []byte) ([]member, error) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	i++
	var out []member
	for {
		i = skipSpace(obj, i)
		if i < len(obj) && obj[i] == '}' {
			return out, nil
		}
		if i >= len(obj) || obj[i] != '"' {
			return nil, errors.New("malformed JSON object")
		}
		kEnd, escaped := scanString(obj, i)
		if kEnd < 0 {
			return nil, errors.New("malformed JSON string")
		}
		key := string(obj[i+1 : kEnd])
		if escaped {
			if err := json.Unmarshal(obj[i:kEnd+1], &key); err != nil {
				return nil, err
			}
		}
		i = skipSpace(obj, kEnd+1)
		if i >= len(obj) || obj[i] != ':' {
			return nil, errors.New("malformed JSON object")
		}
		i = skipSpace(obj, i+1)
		vEnd, err := skipValue(obj, i)
		if err != nil {
			return nil, err
		}
		out = append(out, member{key: key, val: obj[i:vEnd]})
		i = skipSpace(obj, vEnd)
		if i < len(obj) && obj[i] == ',' {
			i++
			continue
		}
		if i < len(obj) && obj[i] == '}' {
			return out, nil
		}
		return nil, errors.New("malformed JSON object")
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// scanString returns the index of the closing quote of the string starting
// at b[i], and whether it holds escapes.
func scanString(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j, escaped
		}
	}
	return -1, escaped
}

// skipValue returns the end of the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("unexpected end of JSON")
	}
	switch b[i] {
	case '"':
		end, _ := scanString(b, i)
		if end < 0 {
			return 0, errors.New("malformed JSON string")
		}
		return end + 1, nil
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := scanString(b, j)
				if end < 0 {
					return 0, errors.New("malformed JSON string")
				}
				j = end
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("unexpected end of JSON")
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
		j++
	}
	if j == i {
		return 0, errors.New("malformed JSON value")
	}
	return j, nil
}

func encodeMembers(ms []member) []byte {
	size := 2
	for _, m := range ms {
		size += len(m.key) + len(m.val) + 4
	}
	var b bytes.Buffer
	b.Grow(size)
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
	joined, err := compactInPlace(encodeMembers(out))
	if err != nil {
		return nil, fmt.Errorf("stamp: %w", err)
	}
	return joined, nil
}

// compactInPlace drops the white space outside strings of a JSON document
// in its own buffer: json.Compact would copy a large resource twice more.
func compactInPlace(b []byte) ([]byte, error) {
	w := 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case ' ', '\n', '\r', '\t':
		case '"':
			end, _ := scanString(b, i)
			if end < 0 {
				return nil, errors.New("unterminated string")
			}
			w += copy(b[w:], b[i:end+1])
			i = end
		default:
			b[w] = c
			w++
		}
	}
	return b[:w], nil
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

// SetMember sets a top-level member of a JSON object to value (JSON),
// keeping the other members as they are written and in their order; a
// new member goes last. A nil value removes the member.
func SetMember(body []byte, key string, value []byte) ([]byte, error) {
	ms, err := decodeMembers(body)
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", key, err)
	}
	out := ms[:0:0]
	done := false
	for _, m := range ms {
		if m.key != key {
			out = append(out, m)
			continue
		}
		if value != nil && !done {
			out = append(out, member{key, value})
		}
		done = true
	}
	if !done && value != nil {
		out = append(out, member{key, value})
	}
	return compactInPlace(encodeMembers(out))
}
