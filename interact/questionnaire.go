package interact

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/fhir/questionnaire"
	"github.com/hearth-fhir/hearth/store"
)

// checkResponse validates a QuestionnaireResponse against its
// Questionnaire when the server holds it (by canonical url, or as a
// local reference): a mismatch is a 400 naming the item's linkId. A
// questionnaire the server does not hold cannot be checked; the response
// is taken as R4 validates it.
func checkResponse(ctx context.Context, tx store.Tx, body Body) error {
	res, err := body.decoded()
	if err != nil {
		return err
	}
	ref, _ := res["questionnaire"].(string)
	if ref == "" {
		return nil
	}
	q, err := findQuestionnaire(ctx, tx, ref)
	if err != nil || q == nil {
		return err
	}
	if issues := questionnaire.Validate(q, res); len(issues) > 0 {
		return &Problem{Kind: Invalid, Issues: issues}
	}
	return nil
}

func findQuestionnaire(ctx context.Context, tx store.Tx, ref string) (map[string]any, error) {
	canonical, version, _ := strings.Cut(ref, "|")
	params := url.Values{"url": {canonical}, "_count": {"2"}}
	if version != "" {
		params.Set("version", version)
	}
	q, err := fhir.ParseSearch("Questionnaire", params, fhir.SearchOptions{DefaultCount: 2, MaxCount: 2})
	if err != nil {
		return nil, nil // not a canonical a search takes: nothing to check against
	}
	found, err := tx.Search(ctx, q, 2)
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		key := fhir.ParseReference(canonical)
		if key.Type != "Questionnaire" || key.ID == "" {
			return nil, nil
		}
		r, err := tx.Read(ctx, "Questionnaire", key.ID)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		found = []store.Resource{r}
	}
	return fhir.DecodeResource(found[0].JSON)
}
