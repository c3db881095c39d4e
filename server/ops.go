package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// writeResult is what a write interaction did, for the HTTP answer or a
// bundle entry's response.
type writeResult struct {
	status int
	res    store.Resource
	info   string
}

// checkBodyID: an update's resource must carry the id of its URL.
func checkBodyID(body []byte, id string) error {
	if _, bodyID, _ := fhir.ResourceHeader(body); bodyID != id {
		return errorf(http.StatusBadRequest, "invalid", "the resource id must be present and equal the id in the URL")
	}
	return nil
}

func matchOne(ctx context.Context, tx store.Tx, cond *fhir.SearchQuery, required bool) (string, error) {
	return store.MatchOne(ctx, tx, cond, required)
}

func (s *Server) opCreate(ctx context.Context, tx store.Tx, typ string, body resourceBody, cond *fhir.SearchQuery) (writeResult, error) {
	if cond != nil {
		id, err := matchOne(ctx, tx, cond, false)
		if err != nil {
			return writeResult{}, err
		}
		if id != "" {
			// A conditional create that matches is ignored: 200 with the match.
			res, err := tx.Read(ctx, typ, id)
			return writeResult{status: http.StatusOK, res: res, info: "matched existing " + typ + "/" + id}, err
		}
	}
	res, err := tx.Create(ctx, store.Write{Type: typ, Body: body.raw, Parsed: body.parsed})
	return writeResult{status: http.StatusCreated, res: res, info: "created " + typ + "/" + res.ID}, err
}

func (s *Server) opUpdate(ctx context.Context, tx store.Tx, typ, id string, body resourceBody, ifMatch int64) (writeResult, error) {
	res, created, err := tx.Update(ctx, store.Write{Type: typ, ID: id, Body: body.raw, Parsed: body.parsed, IfMatch: ifMatch})
	if err != nil {
		return writeResult{}, err
	}
	if created {
		return writeResult{status: http.StatusCreated, res: res, info: "created " + typ + "/" + id}, nil
	}
	return writeResult{status: http.StatusOK, res: res, info: "updated " + typ + "/" + id}, nil
}

// opConditionalUpdate: one match is updated (a body id must be that one);
// no match creates, with the body's id if it has one.
func (s *Server) opConditionalUpdate(ctx context.Context, tx store.Tx, typ string, cond *fhir.SearchQuery, body resourceBody, ifMatch int64) (writeResult, error) {
	id, err := matchOne(ctx, tx, cond, false)
	if err != nil {
		return writeResult{}, err
	}
	bodyID, _ := body.parsed["id"].(string)
	switch {
	case id != "" && bodyID != "" && bodyID != id:
		return writeResult{}, errorf(http.StatusBadRequest, "invalid", "the resource id does not match the resource the condition found")
	case id != "":
		return s.opUpdate(ctx, tx, typ, id, body, ifMatch)
	case bodyID != "":
		return s.opUpdate(ctx, tx, typ, bodyID, body, ifMatch)
	}
	return s.opCreate(ctx, tx, typ, body, nil)
}

// opPatch applies a JSON Patch to the current version. The result is
// validated like any update and written conditional on the version patched,
// so a concurrent update is never lost.
func (s *Server) opPatch(ctx context.Context, tx store.Tx, typ, id string, p jsonpatch.Patch, ifMatch int64) (writeResult, error) {
	cur, err := tx.Read(ctx, typ, id)
	if err != nil {
		return writeResult{}, err
	}
	if ifMatch != 0 && ifMatch != cur.VersionID {
		return writeResult{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrVersionMismatch)
	}
	patched, err := p.Apply(cur.JSON)
	if err != nil {
		return writeResult{}, errorf(http.StatusUnprocessableEntity, "processing", "the patch could not be applied: "+patchErrorText(err))
	}
	body, err := parseResource(patched, typ)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			ae.status = http.StatusUnprocessableEntity
		}
		return writeResult{}, err
	}
	if pid, _ := body.parsed["id"].(string); pid != id {
		return writeResult{}, errorf(http.StatusUnprocessableEntity, "processing", "a patch may not change the resource id")
	}
	res, _, err := tx.Update(ctx, store.Write{Type: typ, ID: id, Body: body.raw, Parsed: body.parsed, IfMatch: cur.VersionID})
	return writeResult{status: http.StatusOK, res: res, info: "patched " + typ + "/" + id}, err
}

func (s *Server) opDelete(ctx context.Context, tx store.Tx, typ, id string, ifMatch int64) (writeResult, error) {
	res, err := tx.Delete(ctx, typ, id, ifMatch)
	if err != nil {
		return writeResult{}, err
	}
	return writeResult{status: http.StatusOK, res: res, info: fmt.Sprintf("deleted %s/%s (version %d)", typ, id, res.VersionID)}, nil
}

func (s *Server) opConditionalDelete(ctx context.Context, tx store.Tx, typ string, cond *fhir.SearchQuery) (writeResult, error) {
	id, err := matchOne(ctx, tx, cond, false)
	if err != nil {
		return writeResult{}, err
	}
	if id == "" {
		return writeResult{status: http.StatusOK, info: "no " + typ + " matched; nothing deleted"}, nil
	}
	return s.opDelete(ctx, tx, typ, id, 0)
}
