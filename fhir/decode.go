package fhir

import (
	"bytes"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"io"
)

// decodeJSON decodes one JSON value as encoding/json with UseNumber would
// (objects as map[string]any, numbers as json.Number), but stricter and
// leaner:
//
//   - A member name given twice in one object is refused: a resource whose
//     `gender` is given twice would be stored with both while search saw one.
//   - Invalid UTF-8 is refused, not stored and served back as raw bytes.
//   - The input is read in place (jsontext reads a bytes.Buffer without
//     copying it) and each string is copied once: a 16 MB resource does
//     not cost three more copies of itself while it is decoded.
func decodeJSON(body []byte) (any, error) {
	dec := jsontext.NewDecoder(bytes.NewBuffer(body))
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, errTrailing
	}
	return v, nil
}

var errTrailing = errors.New("content after the JSON value")

func decodeValue(dec *jsontext.Decoder) (any, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		m := map[string]any{}
		for dec.PeekKind() != '}' {
			name, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			key := name.String() // a token is void after the next read
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			m[key] = v
		}
		_, err := dec.ReadToken()
		return m, err
	case '[':
		a := []any{}
		for dec.PeekKind() != ']' {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := dec.ReadToken()
		return a, err
	case '"':
		return tok.String(), nil
	case '0':
		return json.Number(tok.String()), nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case 'n':
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok.Kind())
}

// jsonErrorText says what is wrong with a body and where, without quoting
// its content.
func jsonErrorText(err error) string {
	var se *jsontext.SyntacticError
	switch {
	case errors.Is(err, errTrailing):
		return "content after the JSON value"
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return "unexpected end of input"
	case errors.Is(err, jsontext.ErrDuplicateName) && errors.As(err, &se):
		return fmt.Sprintf("the member %s is given twice", QuoteSafe(string(se.JSONPointer)))
	case errors.As(err, &se) && se.Err != nil && bytes.Contains([]byte(se.Err.Error()), []byte("UTF-8")):
		return fmt.Sprintf("invalid UTF-8 at byte %d", se.ByteOffset)
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.ByteOffset)
	}
	return "malformed JSON"
}

// AsList is a decoded JSON value as a list: an array as it is, one value
// as a list of one, nothing as none. FHIR JSON code reads repeating and
// single elements alike with it.
func AsList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v != nil {
		return []any{v}
	}
	return nil
}
