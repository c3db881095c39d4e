package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// inBundle is a batch or transaction as a client sends it. Entry resources
// stay raw: they are validated and stored as sent.
type inBundle struct {
	ResourceType string    `json:"resourceType"`
	Type         string    `json:"type"`
	Entry        []inEntry `json:"entry"`
}

type inEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfMatch     string `json:"ifMatch"`
		IfNoneExist string `json:"ifNoneExist"`
		IfNoneMatch string `json:"ifNoneMatch"`
	} `json:"request"`
}

// entryOp is one entry, parsed and checked before anything is written.
type entryOp struct {
	index   int
	method  string
	typ     string
	id      string
	vid     int64
	query   url.Values // search (GET) or condition (PUT, PATCH, DELETE)
	cond    *fhir.SearchQuery
	ifNone  *fhir.SearchQuery
	ifMatch int64
	body    resourceBody
	patch   jsonpatch.Patch
	fullURL string

	result writeResult
	// read is the answer of a GET entry: status and body.
	readStatus int
	readBody   []byte
	readRes    store.Resource
	err        error
}

// bundle handles POST [base]: a batch or a transaction.
func (s *Server) bundle(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r, jsonTypes...)
	if err == nil {
		body, err = s.ProcessBundle(r.Context(), body, preferReturn(r))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, body)
}

// ProcessBundle runs a batch or transaction Bundle and returns the response
// Bundle. prefer is the Prefer return value (representation, minimal or
// operationoutcome). `hearth import` uses it to load bundles in process.
func (s *Server) ProcessBundle(ctx context.Context, body []byte, prefer string) ([]byte, error) {
	var b inBundle
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, errorf(http.StatusBadRequest, "structure", "body is not a Bundle")
	}
	if b.ResourceType != "Bundle" || (b.Type != "batch" && b.Type != "transaction") {
		return nil, errorf(http.StatusBadRequest, "invalid", "POST to the base takes a Bundle of type batch or transaction")
	}
	// Validation is most of the CPU work of a large bundle and needs no
	// store: spread it over the cores.
	ops := make([]*entryOp, len(b.Entry))
	errs := make([]error, len(b.Entry))
	Parallel(len(b.Entry), func(i int) {
		ops[i], errs[i] = s.parseEntry(i, b.Entry[i])
	})
	for i, err := range errs {
		if err != nil {
			if b.Type == "transaction" {
				return nil, withEntry(i, err)
			}
			ops[i] = &entryOp{index: i, err: err}
		}
	}
	if b.Type == "transaction" {
		if err := s.transaction(ctx, ops); err != nil {
			return nil, err
		}
	} else {
		s.batch(ctx, ops)
	}
	return s.bundleResponse(prefer, b.Type+"-response", ops)
}

// BundleError describes a failed ProcessBundle as an HTTP status and text.
func BundleError(err error) (int, string) {
	status, issues := statusOf(err)
	var msgs []string
	for _, is := range issues {
		msgs = append(msgs, is.Error())
	}
	return status, strings.Join(msgs, "; ")
}

// withEntry names the failing entry in a transaction's error.
func withEntry(i int, err error) error {
	status, issues := statusOf(err)
	for j := range issues {
		issues[j].Diagnostics = fmt.Sprintf("entry %d: %s", i, issues[j].Diagnostics)
	}
	return &apiError{status: status, issues: issues}
}

// parseEntry checks an entry's request and resource.
func (s *Server) parseEntry(i int, e inEntry) (*entryOp, error) {
	if e.Request == nil || e.Request.Method == "" || e.Request.URL == "" {
		return nil, errorf(http.StatusBadRequest, "required", "request.method and request.url are required")
	}
	op := &entryOp{index: i, method: strings.ToUpper(e.Request.Method), fullURL: e.FullURL}
	raw := strings.TrimPrefix(e.Request.URL, s.cfg.BaseURL+"/")
	path, query, hasQuery := strings.Cut(raw, "?")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	op.typ = parts[0]
	if !fhir.IsResourceType(op.typ) {
		return nil, errorf(http.StatusBadRequest, "not-supported", "request.url must start with a resource type")
	}
	if len(parts) >= 2 {
		op.id = parts[1]
		if !validID(op.id) {
			return nil, errorf(http.StatusBadRequest, "value", "request.url has an invalid id")
		}
	}
	if len(parts) == 4 && parts[2] == "_history" {
		v, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil || v < 1 {
			return nil, errorf(http.StatusBadRequest, "value", "request.url has an invalid version")
		}
		op.vid = v
	} else if len(parts) > 2 {
		return nil, errorf(http.StatusBadRequest, "not-supported", "request.url is not an interaction Hearth supports in bundles")
	}
	if hasQuery {
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "invalid", "request.url has an invalid query")
		}
		op.query = q
	}
	if e.Request.IfMatch != "" {
		v, ok := parseETag(e.Request.IfMatch)
		if !ok {
			return nil, errorf(http.StatusBadRequest, "invalid", "request.ifMatch must be a version ETag")
		}
		op.ifMatch = v
	}
	needBody := func() error {
		if len(e.Resource) == 0 {
			return errorf(http.StatusBadRequest, "required", op.method+" needs a resource")
		}
		body, err := parseResource(e.Resource, op.typ)
		if err != nil {
			return err
		}
		op.body = body
		return nil
	}
	var err error
	switch op.method {
	case http.MethodGet, http.MethodHead:
		op.method = http.MethodGet
	case http.MethodPost:
		if op.id != "" || hasQuery {
			return nil, errorf(http.StatusBadRequest, "invalid", "POST request.url must be a resource type")
		}
		if err = needBody(); err != nil {
			return nil, err
		}
		if e.Request.IfNoneExist != "" {
			op.ifNone, err = s.conditionQuery(op.typ, e.Request.IfNoneExist)
		}
	case http.MethodPut:
		if err = needBody(); err != nil {
			return nil, err
		}
		switch {
		case op.id != "":
			err = checkBodyID(op.body.raw, op.id)
		case hasQuery:
			op.cond, err = s.conditionQuery(op.typ, query)
		default:
			err = errorf(http.StatusBadRequest, "invalid", "PUT request.url needs an id or a condition")
		}
	case http.MethodDelete, http.MethodPatch:
		switch {
		case op.id != "":
		case hasQuery:
			op.cond, err = s.conditionQuery(op.typ, query)
		default:
			err = errorf(http.StatusBadRequest, "invalid", op.method+" request.url needs an id or a condition")
		}
		if err == nil && op.method == http.MethodPatch {
			op.patch, err = entryPatch(e.Resource)
		}
	default:
		return nil, errorf(http.StatusBadRequest, "not-supported", "request.method "+quoteSafe(op.method)+" is not supported")
	}
	if err != nil {
		return nil, err
	}
	return op, nil
}

// entryPatch reads a JSON Patch carried in a bundle as a Binary resource.
func entryPatch(res json.RawMessage) (jsonpatch.Patch, error) {
	var bin struct {
		ResourceType string `json:"resourceType"`
		ContentType  string `json:"contentType"`
		Data         string `json:"data"`
	}
	if json.Unmarshal(res, &bin) != nil || bin.ResourceType != "Binary" || bin.ContentType != jsonPatch {
		return nil, errorf(http.StatusBadRequest, "not-supported", "a PATCH entry carries a Binary of contentType application/json-patch+json")
	}
	doc, err := base64.StdEncoding.DecodeString(bin.Data)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "structure", "the Binary data is not base64")
	}
	p, err := jsonpatch.DecodePatch(doc)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "structure", "the Binary data is not a valid JSON Patch document")
	}
	return p, nil
}

// transaction runs every write entry in one store transaction, in the
// order the spec gives (DELETE, POST, PUT/PATCH), after resolving urn:uuid
// and conditional references; GET entries run after the commit.
func (s *Server) transaction(ctx context.Context, ops []*entryOp) error {
	err := s.storeFor(ctx).Transact(ctx, func(tx store.Tx) error {
		for _, op := range ops {
			op.result, op.err = writeResult{}, nil
		}
		ids := map[string]string{} // fullUrl → Type/id
		// Resolve the ids POSTs and conditional PUTs will get, so entries
		// can refer to each other before any of them is written.
		for _, op := range ops {
			switch {
			case op.method == http.MethodPost && op.ifNone != nil:
				id, err := matchOne(ctx, tx, op.ifNone, false)
				if err != nil {
					return withEntry(op.index, err)
				}
				if id != "" {
					op.id = id
					op.result.status = http.StatusOK // matched: nothing is written
				} else {
					op.id = store.NewID()
				}
			case op.method == http.MethodPost:
				op.id = store.NewID()
			case op.method == http.MethodPut && op.cond != nil:
				id, err := matchOne(ctx, tx, op.cond, false)
				if err != nil {
					return withEntry(op.index, err)
				}
				bodyID, _ := op.body.parsed["id"].(string)
				switch {
				case id != "" && bodyID != "" && bodyID != id:
					return withEntry(op.index, errorf(http.StatusBadRequest, "invalid", "the resource id does not match the resource the condition found"))
				case id != "":
					op.id = id
				case bodyID != "":
					op.id = bodyID
				default:
					op.id = store.NewID()
				}
			}
			if op.fullURL != "" && op.id != "" && op.method != http.MethodGet {
				ids[op.fullURL] = op.typ + "/" + op.id
			}
		}
		for _, op := range ops {
			if op.body.raw == nil {
				continue
			}
			body, err := s.resolveReferences(ctx, tx, op.body, ids)
			if err != nil {
				return withEntry(op.index, err)
			}
			op.body = body
		}
		for _, method := range []string{http.MethodDelete, http.MethodPost, http.MethodPut, http.MethodPatch} {
			for _, op := range ops {
				if op.method != method {
					continue
				}
				if err := s.runEntry(ctx, tx, op); err != nil {
					return withEntry(op.index, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, op := range ops {
		if op.method == http.MethodGet {
			s.readEntry(ctx, op)
		}
	}
	return nil
}

// batch runs each entry on its own; a failure is reported in its entry.
func (s *Server) batch(ctx context.Context, ops []*entryOp) {
	for _, op := range ops {
		if op.err != nil {
			continue
		}
		if op.method == http.MethodGet {
			s.readEntry(ctx, op)
			continue
		}
		if op.method == http.MethodPost {
			op.id = store.NewID()
		}
		op.err = s.storeFor(ctx).Transact(ctx, func(tx store.Tx) error {
			if op.method == http.MethodPost && op.ifNone != nil {
				id, err := matchOne(ctx, tx, op.ifNone, false)
				if err != nil {
					return err
				}
				if id != "" {
					op.id, op.result.status = id, http.StatusOK
				}
			}
			if op.body.raw != nil {
				body, err := s.resolveReferences(ctx, tx, op.body, nil)
				if err != nil {
					return err
				}
				op.body = body
			}
			return s.runEntry(ctx, tx, op)
		})
	}
}

// runEntry performs one write entry inside tx.
func (s *Server) runEntry(ctx context.Context, tx store.Tx, op *entryOp) error {
	var err error
	switch op.method {
	case http.MethodPost:
		if op.result.status == http.StatusOK { // conditional create matched
			res, err := tx.Read(ctx, op.typ, op.id)
			op.result = writeResult{status: http.StatusOK, res: res}
			return err
		}
		op.result, err = s.opUpdate(ctx, tx, op.typ, op.id, op.body, 0)
		if err == nil && op.result.status != http.StatusCreated {
			err = fmt.Errorf("generated id %s/%s already exists: %w", op.typ, op.id, store.ErrConflict)
		}
	case http.MethodPut:
		if op.cond != nil && op.id == "" {
			op.result, err = s.opConditionalUpdate(ctx, tx, op.typ, op.cond, op.body, op.ifMatch)
		} else {
			op.result, err = s.opUpdate(ctx, tx, op.typ, op.id, op.body, op.ifMatch)
		}
	case http.MethodPatch:
		id := op.id
		if id == "" {
			if id, err = matchOne(ctx, tx, op.cond, true); err != nil {
				return err
			}
		}
		op.result, err = s.opPatch(ctx, tx, op.typ, id, op.patch, op.ifMatch)
	case http.MethodDelete:
		if op.id == "" {
			op.result, err = s.opConditionalDelete(ctx, tx, op.typ, op.cond)
		} else {
			op.result, err = s.opDelete(ctx, tx, op.typ, op.id, op.ifMatch)
			if errors.Is(err, store.ErrNotFound) {
				// Deleting what is not there succeeds in a bundle (idempotent).
				op.result, err = writeResult{status: http.StatusNoContent}, nil
			}
		}
	}
	return err
}

// resolveReferences resolves urn:uuid and conditional references in the
// bytes and, identically, in the decoded copy the store will index.
func (s *Server) resolveReferences(ctx context.Context, tx store.Tx, body resourceBody, ids map[string]string) (resourceBody, error) {
	raw, replaced, err := store.ResolveReferences(ctx, tx, body.raw, ids, s.cfg.BaseURL)
	if err != nil || len(replaced) == 0 {
		return resourceBody{raw: raw, parsed: body.parsed}, err
	}
	fhir.RewriteDecodedStrings(body.parsed, func(_, value string) (string, bool) {
		r, ok := replaced[value]
		return r, ok
	})
	return resourceBody{raw: raw, parsed: body.parsed}, nil
}

// readEntry answers a GET entry: read, vread or search.
func (s *Server) readEntry(ctx context.Context, op *entryOp) {
	var res store.Resource
	var err error
	switch {
	case op.id != "" && op.vid != 0:
		res, err = s.storeFor(ctx).VRead(ctx, op.typ, op.id, op.vid)
	case op.id != "":
		res, err = s.storeFor(ctx).Read(ctx, op.typ, op.id)
	default:
		var q *fhir.SearchQuery
		q, err = fhir.ParseSearch(op.typ, op.query, fhir.SearchOptions{DefaultCount: defaultCount, MaxCount: maxCount, BaseURL: s.cfg.BaseURL})
		if err != nil {
			op.err = searchError(err)
			return
		}
		var page *store.SearchPage
		page, err = store.Search(ctx, s.storeFor(ctx), q, op.query.Get("_page"), store.SearchLimits{})
		if err == nil {
			op.readBody, err = s.searchBundle(op.typ, "", q, page, op.query.Get("_page"))
			op.readStatus = http.StatusOK
		}
		op.err = err
		return
	}
	if err != nil {
		op.err = err
		return
	}
	op.readStatus, op.readBody, op.readRes = http.StatusOK, res.JSON, res
}

// bundleResponse renders the batch-response or transaction-response.
func (s *Server) bundleResponse(prefer, typ string, ops []*entryOp) ([]byte, error) {
	b := fhir.Bundle{Type: typ}
	for _, op := range ops {
		e := fhir.BundleEntry{}
		switch {
		case op.err != nil:
			status, issues := statusOf(op.err)
			e.Response = &fhir.BundleEntryResponse{Status: statusLine(status), Outcome: fhir.OperationOutcome(issues...)}
		case op.method == http.MethodGet:
			e.Resource = op.readBody
			e.Response = &fhir.BundleEntryResponse{Status: statusLine(op.readStatus)}
			if op.readRes.ID != "" {
				e.FullURL = s.cfg.BaseURL + "/" + op.readRes.Type + "/" + op.readRes.ID
				e.Response.Etag = `W/"` + strconv.FormatInt(op.readRes.VersionID, 10) + `"`
				e.Response.LastModified = fhir.FormatInstant(op.readRes.LastUpdated)
			}
		default:
			res := op.result.res
			e.Response = &fhir.BundleEntryResponse{Status: statusLine(op.result.status)}
			if res.ID != "" {
				e.Response.Etag = `W/"` + strconv.FormatInt(res.VersionID, 10) + `"`
				e.Response.LastModified = fhir.FormatInstant(res.LastUpdated)
				if !res.Deleted {
					e.FullURL = s.cfg.BaseURL + "/" + res.Type + "/" + res.ID
					e.Response.Location = res.Type + "/" + res.ID + "/_history/" + strconv.FormatInt(res.VersionID, 10)
					switch prefer {
					case "minimal":
					case "operationoutcome":
						e.Response.Outcome = fhir.Information(op.result.info)
					default:
						e.Resource = res.JSON
					}
				}
			}
		}
		b.Entries = append(b.Entries, e)
	}
	return b.MarshalJSON()
}

func statusLine(code int) string {
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// Parallel runs fn(0..n-1) on as many goroutines as there are CPUs.
func Parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}
