package interact

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// conditionQuery parses the search of a conditional operation or reference
// ("identifier=sys|val", "Patient?identifier=…"). Unknown parameters are
// refused, not ignored: ignoring a condition could pick the wrong resource.
func conditionQuery(typ, raw, baseURL string) (*fhir.SearchQuery, error) {
	raw = strings.TrimPrefix(raw, "?")
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[i+1:]
	}
	vals, err := url.ParseQuery(raw)
	if err != nil || len(vals) == 0 {
		return nil, &fhir.SearchError{Msg: "a condition needs a search query such as identifier=system|value"}
	}
	q, err := fhir.ParseSearch(typ, vals, fhir.SearchOptions{DefaultCount: 2, MaxCount: 2, Strict: true, BaseURL: baseURL})
	if err != nil {
		return nil, err
	}
	if len(q.Params) == 0 {
		return nil, &fhir.SearchError{Msg: "a condition needs at least one search parameter"}
	}
	return q, nil
}

// matchOne resolves a condition to one id: "" when nothing matches (an
// store.ErrNotFound if required), store.ErrMultipleMatches for several.
func matchOne(ctx context.Context, tx store.Tx, cond *fhir.SearchQuery, required bool) (string, error) {
	matches, err := tx.Search(ctx, cond, 2)
	if err != nil {
		return "", err
	}
	switch len(matches) {
	case 0:
		if required {
			return "", fmt.Errorf("no %s matches the condition: %w", cond.Type, store.ErrNotFound)
		}
		return "", nil
	case 1:
		return matches[0].ID, nil
	}
	return "", fmt.Errorf("the condition matches more than one %s: %w", cond.Type, store.ErrMultipleMatches)
}

// ErrUnresolved is returned when a reference of a resource cannot be
// resolved: a urn:uuid naming no entry, or a conditional reference that
// matches nothing.
var ErrUnresolved = errors.New("unresolved reference")

// references finds how resolving a resource's references rewrites it:
// urn:uuid references found in ids (fullUrl → Type/id) become Type/id, and
// conditional references ("Organization?identifier=…") name the one
// resource each matches inside tx. ids may be nil (a batch entry). The
// answer maps each string to its replacement, nil when there is none;
// Body.withReferences applies it.
func references(ctx context.Context, tx store.Tx, body []byte, ids map[string]string, baseURL string) (map[string]string, error) {
	var resolveErr error
	var replaced map[string]string
	replace := func(value, ref string) {
		if replaced == nil {
			replaced = map[string]string{}
		}
		replaced[value] = ref
	}
	err := fhir.VisitStrings(body, func(key, value string) {
		if resolveErr != nil {
			return
		}
		if strings.HasPrefix(value, "urn:uuid:") || strings.HasPrefix(value, "urn:oid:") {
			if ref, ok := ids[value]; ok {
				replace(value, ref)
				return
			}
			if key == "reference" && ids != nil {
				resolveErr = fmt.Errorf("a reference to %s names no entry of the bundle: %w", value, ErrUnresolved)
			}
			return
		}
		if key != "reference" {
			return
		}
		typ, query, ok := fhir.IsConditionalReference(value)
		if !ok {
			return
		}
		if _, done := replaced[value]; done {
			return
		}
		cond, err := conditionQuery(typ, query, baseURL)
		if err != nil {
			resolveErr = err
			return
		}
		id, err := matchOne(ctx, tx, cond, false)
		if err != nil {
			// The query may hold identifiers: say which type, not the values.
			resolveErr = fmt.Errorf("a conditional reference to %s matches more than one resource: %w", typ, store.ErrMultipleMatches)
			return
		}
		if id == "" {
			resolveErr = fmt.Errorf("a conditional reference to %s matches no resource: %w", typ, ErrUnresolved)
			return
		}
		replace(value, typ+"/"+id)
	})
	if err != nil {
		return nil, fmt.Errorf("resource JSON could not be scanned: %w", err)
	}
	return replaced, resolveErr
}

// withReferences applies the replacements references found to the bytes
// and, identically and in place, to the decoded copy the store will index.
// Without replacements the body is returned as it is: no copy.
func (b Body) withReferences(replaced map[string]string) (Body, error) {
	if len(replaced) == 0 {
		return b, nil
	}
	lookup := func(_, value string) (string, bool) {
		r, ok := replaced[value]
		return r, ok
	}
	raw, err := fhir.RewriteStrings(b.Raw, lookup)
	if err != nil {
		return Body{}, fmt.Errorf("resource JSON could not be rewritten: %w", err)
	}
	fhir.RewriteDecodedStrings(b.Parsed, lookup)
	return Body{Raw: raw, Parsed: b.Parsed}, nil
}
