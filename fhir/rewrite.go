package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// RewriteStrings calls fn for every string value in a JSON document, with
// the key it is the value of ("" inside arrays of strings… the key of the
// array). Where fn returns ok, the string is replaced. Every other byte of
// the document is kept as it was, so a transaction can resolve urn:uuid and
// conditional references without re-encoding the resource. When fn
// replaces nothing, the answer is doc itself, not a copy.
func RewriteStrings(doc []byte, fn func(key, value string) (string, bool)) ([]byte, error) {
	var out bytes.Buffer
	var stack []byte   // '{' or '['
	var keys []string  // key of the value being read at each object level
	expectKey := false // the next string in an object is a key
	last := 0
	for i := 0; i < len(doc); i++ {
		switch c := doc[i]; c {
		case '{':
			stack = append(stack, '{')
			keys = append(keys, "")
			expectKey = true
		case '[':
			stack = append(stack, '[')
		case '}', ']':
			if len(stack) == 0 {
				return nil, errors.New("unbalanced JSON")
			}
			if stack[len(stack)-1] == '{' {
				keys = keys[:len(keys)-1]
			}
			stack = stack[:len(stack)-1]
		case ',':
			if len(stack) > 0 && stack[len(stack)-1] == '{' {
				expectKey = true
			}
		case '"':
			end := i + 1
			escaped := false
			for ; end < len(doc); end++ {
				if doc[end] == '\\' {
					escaped = true
					end++
					continue
				}
				if doc[end] == '"' {
					break
				}
			}
			if end >= len(doc) {
				return nil, errors.New("unterminated string")
			}
			raw := doc[i : end+1]
			var s string
			if escaped {
				if err := json.Unmarshal(raw, &s); err != nil {
					return nil, err
				}
			} else {
				s = string(raw[1 : len(raw)-1])
			}
			inObject := len(stack) > 0 && stack[len(stack)-1] == '{'
			if inObject && expectKey {
				keys[len(keys)-1] = s
				expectKey = false
			} else {
				key := ""
				if len(keys) > 0 {
					key = keys[len(keys)-1]
				}
				if repl, ok := fn(key, s); ok {
					if out.Cap() == 0 {
						out.Grow(len(doc) + len(repl))
					}
					out.Write(doc[last:i])
					enc, _ := json.Marshal(repl)
					out.Write(enc)
					last = end + 1
				}
			}
			i = end
		}
	}
	if last == 0 {
		return doc, nil
	}
	out.Write(doc[last:])
	return out.Bytes(), nil
}

// VisitStrings calls fn for every string value in a JSON document, with
// the key it is the value of, as RewriteStrings does, changing nothing.
func VisitStrings(doc []byte, fn func(key, value string)) error {
	_, err := RewriteStrings(doc, func(key, value string) (string, bool) {
		fn(key, value)
		return "", false
	})
	return err
}

// IsConditionalReference reports whether a reference is a search, as
// "Patient?identifier=http://x|1", and splits it.
func IsConditionalReference(ref string) (typ, query string, ok bool) {
	typ, query, ok = strings.Cut(ref, "?")
	if !ok || !IsResourceType(typ) || query == "" {
		return "", "", false
	}
	return typ, query, true
}

// RewriteDecodedStrings applies the same replacement as RewriteStrings to
// a decoded document, in place, so a decoded copy stays equal to the bytes.
func RewriteDecodedStrings(v any, fn func(key, value string) (string, bool)) {
	rewriteDecoded(v, "", fn)
}

func rewriteDecoded(v any, key string, fn func(key, value string) (string, bool)) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok {
				if repl, ok := fn(k, s); ok {
					x[k] = repl
				}
				continue
			}
			rewriteDecoded(val, k, fn)
		}
	case []any:
		for i, val := range x {
			if s, ok := val.(string); ok {
				if repl, ok := fn(key, s); ok {
					x[i] = repl
				}
				continue
			}
			rewriteDecoded(val, key, fn)
		}
	}
}
