package interact

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/fhir/fhirpath"
	"github.com/hearth-fhir/hearth/interact/audit"
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
	FullURL  string  `json:"fullUrl"`
	Resource rawJSON `json:"resource"`
	Request  *struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfMatch     string `json:"ifMatch"`
		IfNoneExist string `json:"ifNoneExist"`
		IfNoneMatch string `json:"ifNoneMatch"`
	} `json:"request"`
}

// keepDecoded is the most entries whose decoded resources a bundle keeps
// between validation and writing.
const keepDecoded = 1000

// rawJSON is a JSON value kept as the bytes of the request body it came
// from: json.RawMessage would copy every entry's resource (a second copy of
// a 16 MB bundle); the body is not changed while its entries are in use.
type rawJSON []byte

func (r *rawJSON) UnmarshalJSON(data []byte) error {
	*r = data
	return nil
}

// Entry is one entry of a batch or transaction and, once run, its answer.
type Entry struct {
	Method string // GET, POST, PUT, PATCH, DELETE
	Type   string
	ID     string
	VID    int64
	// Query is a GET entry's search, or the condition of a PUT, PATCH or DELETE.
	Query url.Values

	cond    *fhir.SearchQuery
	ifNone  *fhir.SearchQuery
	ifMatch int64
	body    Body // as the client sent it
	// refs is how resolving body's references rewrites it, found in the
	// current attempt of the store transaction (an attempt that is retried
	// gives POST entries new ids, so it resolves the client's body again);
	// resolved is body rewritten so, made just before it is written and
	// dropped after, so that a large transaction holds one rewritten copy
	// at a time.
	refs     map[string]string
	resolved Body
	patch    Patch
	parse    func([]byte, string) (Body, error) // the session's ParseResource, for the patched resource
	fullURL  string
	index    int
	matched  bool // a conditional create that found its match
	// dropped: the answer's bytes (Result.Resource.JSON) were let go after
	// the write, for Written to read back as the answer is sent.
	dropped bool

	// The answer: Err, or a write's Result, or a read's Resource, or a
	// search's Search page (with SearchQuery, as parsed).
	Err         error
	Result      Result
	Resource    store.Resource
	Search      *SearchPage
	SearchQuery *fhir.SearchQuery
}

// Bundle runs a batch or transaction Bundle and returns its type ("batch"
// or "transaction") and its entries with their answers. A transaction
// fails as a whole (the error names the entry); a batch reports each
// entry's failure in the entry. Without keepBodies (Prefer:
// return=minimal) the written versions' JSON is not kept for the answer:
// a large bundle then holds only its own bytes.
func (s *Session) Bundle(ctx context.Context, body []byte, keepBodies bool) (string, []*Entry, error) {
	if _, ok := s.data.(closed); ok {
		return "", nil, ErrNoPolicy // not one entry's failure: the whole request's
	}
	// Counted before decoding: 16 MB of "{}," decoded would be five
	// million entries, hundreds of megabytes, before any limit applied.
	n, err := countEntries(body, s.door.cfg.MaxBundleEntries)
	if err != nil {
		return "", nil, problem(Invalid, "structure", "body is not a Bundle")
	}
	if n > s.door.cfg.MaxBundleEntries {
		return "", nil, fmt.Errorf("a batch or transaction may have at most %d entries: %w", s.door.cfg.MaxBundleEntries, store.ErrTooCostly)
	}
	var b inBundle
	if err := json.Unmarshal(body, &b); err != nil {
		return "", nil, problem(Invalid, "structure", "body is not a Bundle")
	}
	if b.ResourceType != "Bundle" || (b.Type != "batch" && b.Type != "transaction") {
		return "", nil, problem(Invalid, "invalid", "POST to the base takes a Bundle of type batch or transaction")
	}
	// Past keepDecoded entries the written versions' bytes are not held
	// for the answer either: Written reads each back as it is sent, so
	// the answer's memory does not grow with the bundle.
	keepBodies = keepBodies && len(b.Entry) <= keepDecoded
	// Validation is most of the CPU work of a large bundle and needs no
	// store: spread it over the cores.
	ops := make([]*Entry, len(b.Entry))
	errs := make([]error, len(b.Entry))
	// A decoded resource is several times the size of its bytes: kept for
	// every entry of a large bundle, it is most of the request's memory.
	// Beyond keepDecoded entries the store decodes each again as it writes
	// it (8% slower ingest, a third of the memory).
	keep := len(b.Entry) <= keepDecoded
	Parallel(len(b.Entry), func(i int) {
		ops[i], errs[i] = s.parseEntry(i, b.Entry[i])
		if ops[i] != nil && !keep {
			ops[i].body.Parsed = nil
		}
		b.Entry[i] = inEntry{} // what the entry needs is in ops[i] now
	})
	for i, err := range errs {
		if err != nil {
			if b.Type == "transaction" {
				return "", nil, withEntry(i, err)
			}
			ops[i] = &Entry{index: i, Err: err}
		}
	}
	if b.Type == "transaction" {
		if err := distinctFullURLs(ops); err != nil {
			return "", nil, err
		}
		if err := s.transaction(ctx, ops, keepBodies); err != nil {
			// Nothing was done: one record of the refused transaction.
			return "", nil, auditFailed(err, s.record(ctx, audit.Event{Subtype: "transaction", Action: "E"}, err))
		}
	} else {
		s.batch(ctx, ops, keepBodies)
	}
	for _, op := range ops {
		if op.Err == nil && op.Method != "GET" && op.Method != "HEAD" {
			s.provenance(ctx, op.Result.Resource, wrote(op.Result))
		}
	}
	return b.Type, ops, nil
}

// countEntries counts the elements of a JSON object's "entry" array,
// stopping once there are more than max, without decoding them. It checks
// no more of the document than it reads: decoding it comes next.
func countEntries(doc []byte, max int) (int, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(doc), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return 0, errors.New("not a JSON object")
	}
	n := 0
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return 0, err
		}
		if name.String() != "entry" || dec.PeekKind() != '[' {
			if err := dec.SkipValue(); err != nil {
				return 0, err
			}
			continue
		}
		if _, err := dec.ReadToken(); err != nil {
			return 0, err
		}
		for kind := dec.PeekKind(); kind != ']'; kind = dec.PeekKind() {
			if kind == 0 {
				return 0, errors.New("the entry array is not valid JSON")
			}
			if n++; n > max {
				return n, nil
			}
			if err := dec.SkipValue(); err != nil {
				return 0, err
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// distinctFullURLs: a transaction's entries are told apart by fullUrl, so
// two entries with one fullUrl make references to it ambiguous.
func distinctFullURLs(ops []*Entry) error {
	seen := map[string]int{}
	for _, op := range ops {
		if op.fullURL == "" {
			continue
		}
		if j, ok := seen[op.fullURL]; ok {
			return withEntry(op.index, problem(Invalid, "invalid", fmt.Sprintf("fullUrl %s is also the fullUrl of entry %d", fhir.QuoteSafe(op.fullURL), j)))
		}
		seen[op.fullURL] = op.index
	}
	return nil
}

// distinctIdentities: the spec fails a transaction whose writes overlap in
// the resources they name, after conditional matches are resolved — two
// versions of one resource from one transaction would depend on the order
// of its entries.
func distinctIdentities(ops []*Entry) error {
	seen := map[string]int{}
	for _, op := range ops {
		if op.Method == "GET" || op.matched || op.ID == "" {
			continue
		}
		key := op.Type + "/" + op.ID
		if j, ok := seen[key]; ok {
			return withEntry(op.index, problem(Invalid, "invalid", fmt.Sprintf("entries %d and %d both change %s; a transaction may change each resource once", j, op.index, key)))
		}
		seen[key] = op.index
	}
	return nil
}

// withEntry names the failing entry of a transaction.
func withEntry(i int, err error) error { return &EntryError{Entry: i, Err: err} }

// EntryError is a transaction entry's failure: the HTTP layer maps Err and
// names the entry.
type EntryError struct {
	Entry int
	Err   error
}

func (e *EntryError) Error() string { return fmt.Sprintf("entry %d: %v", e.Entry, e.Err) }
func (e *EntryError) Unwrap() error { return e.Err }

// parseEntry checks an entry's request and resource.
func (s *Session) parseEntry(i int, e inEntry) (*Entry, error) {
	if e.Request == nil || e.Request.Method == "" || e.Request.URL == "" {
		return nil, problem(Invalid, "required", "request.method and request.url are required")
	}
	op := &Entry{index: i, Method: strings.ToUpper(e.Request.Method), fullURL: e.FullURL, parse: s.ParseResource}
	raw := strings.TrimPrefix(e.Request.URL, s.door.cfg.BaseURL+"/")
	path, query, hasQuery := strings.Cut(raw, "?")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	op.Type = parts[0]
	if !fhir.IsResourceType(op.Type) {
		return nil, problem(NotSupported, "not-supported", "request.url must start with a resource type")
	}
	if len(parts) >= 2 {
		op.ID = parts[1]
		if !fhir.ValidID(op.ID) {
			return nil, problem(Invalid, "value", "request.url has an invalid id")
		}
	}
	if len(parts) == 4 && parts[2] == "_history" {
		v, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil || v < 1 {
			return nil, problem(Invalid, "value", "request.url has an invalid version")
		}
		op.VID = v
	} else if len(parts) > 2 {
		return nil, problem(NotSupported, "not-supported", "request.url is not an interaction Hearth supports in bundles")
	}
	if hasQuery {
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, problem(Invalid, "invalid", "request.url has an invalid query")
		}
		op.Query = q
	}
	if e.Request.IfMatch != "" {
		v, ok := ParseETag(e.Request.IfMatch)
		if !ok {
			return nil, problem(Invalid, "invalid", "request.ifMatch must be a version ETag")
		}
		op.ifMatch = v
	}
	needBody := func() error {
		if len(e.Resource) == 0 {
			return problem(Invalid, "required", op.Method+" needs a resource")
		}
		body, err := s.ParseResource(e.Resource, op.Type)
		if err != nil {
			return err
		}
		op.body = body
		return nil
	}
	if op.Type == auditType && op.Method != "GET" && op.Method != "HEAD" {
		return nil, errAuditReadOnly
	}
	var err error
	switch op.Method {
	case "GET", "HEAD":
		op.Method = "GET"
	case "POST":
		if op.ID != "" || hasQuery {
			return nil, problem(Invalid, "invalid", "POST request.url must be a resource type")
		}
		if err = needBody(); err != nil {
			return nil, err
		}
		if e.Request.IfNoneExist != "" {
			op.ifNone, err = s.ConditionQuery(op.Type, e.Request.IfNoneExist)
		}
	case "PUT":
		if err = needBody(); err != nil {
			return nil, err
		}
		switch {
		case op.ID != "":
			err = CheckBodyID(op.body.Raw, op.ID)
		case hasQuery:
			op.cond, err = s.ConditionQuery(op.Type, query)
		default:
			err = problem(Invalid, "invalid", "PUT request.url needs an id or a condition")
		}
	case "DELETE", "PATCH":
		switch {
		case op.ID != "":
		case hasQuery:
			op.cond, err = s.ConditionQuery(op.Type, query)
		default:
			err = problem(Invalid, "invalid", op.Method+" request.url needs an id or a condition")
		}
		if err == nil && op.Method == "PATCH" {
			op.patch, err = entryPatch(e.Resource)
		}
	default:
		return nil, problem(NotSupported, "not-supported", "request.method "+fhir.QuoteSafe(op.Method)+" is not supported")
	}
	if err != nil {
		return nil, err
	}
	return op, nil
}

// JSONPatch is the media type of a JSON Patch document.
const JSONPatch = "application/json-patch+json"

// entryPatch reads the patch of a PATCH entry: a FHIRPath Patch
// (Parameters), or a JSON Patch carried as a Binary resource.
func entryPatch(res rawJSON) (Patch, error) {
	if rt, _, _ := fhir.ResourceHeader(res); rt == "Parameters" {
		return DecodeFHIRPathPatch(res)
	}
	var bin struct {
		ResourceType string `json:"resourceType"`
		ContentType  string `json:"contentType"`
		Data         string `json:"data"`
	}
	if json.Unmarshal(res, &bin) != nil || bin.ResourceType != "Binary" || bin.ContentType != JSONPatch {
		return nil, problem(NotSupported, "not-supported", "a PATCH entry carries a FHIRPath Patch (Parameters) or a Binary of contentType application/json-patch+json")
	}
	doc, err := base64.StdEncoding.DecodeString(bin.Data)
	if err != nil {
		return nil, problem(Invalid, "structure", "the Binary data is not base64")
	}
	return DecodePatch(doc)
}

// DecodeFHIRPathPatch reads a FHIRPath Patch: a Parameters resource of
// operations, validated as any resource is before its paths compile.
func DecodeFHIRPathPatch(doc []byte) (Patch, error) {
	body, err := ParseResource(doc, "Parameters")
	if err != nil {
		return nil, err
	}
	p, err := fhirpath.ParsePatch(body.Parsed)
	if err != nil {
		return nil, problem(Invalid, "invalid", "not a valid FHIRPath Patch: "+err.Error())
	}
	return p, nil
}

// DecodePatch reads a JSON Patch document (RFC 6902), checking each
// operation has the members its op requires: the patch library dereferences
// a test without a value (found by FuzzPatch), so such a document is
// refused here, before it is applied.
func DecodePatch(doc []byte) (jsonpatch.Patch, error) {
	var ops []map[string]json.RawMessage
	if err := json.Unmarshal(doc, &ops); err != nil {
		return nil, problem(Invalid, "structure", "body is not a valid JSON Patch document (an array of operations)")
	}
	for i, op := range ops {
		var name string
		if json.Unmarshal(op["op"], &name) != nil {
			return nil, problem(Invalid, "structure", fmt.Sprintf("JSON Patch operation %d has no op", i))
		}
		var need []string
		switch name {
		case "add", "replace", "test":
			need = []string{"path", "value"}
		case "remove":
			need = []string{"path"}
		case "move", "copy":
			need = []string{"path", "from"}
		default:
			return nil, problem(Invalid, "structure", fmt.Sprintf("JSON Patch operation %d: unknown op %s", i, fhir.QuoteSafe(name)))
		}
		for _, member := range need {
			if _, ok := op[member]; !ok {
				return nil, problem(Invalid, "structure", fmt.Sprintf("JSON Patch operation %d (%s) needs %s", i, name, member))
			}
		}
		for _, member := range []string{"path", "from"} {
			var ptr string
			if raw, ok := op[member]; ok && json.Unmarshal(raw, &ptr) != nil {
				return nil, problem(Invalid, "structure", fmt.Sprintf("JSON Patch operation %d: %s must be a string", i, member))
			}
		}
	}
	p, err := jsonpatch.DecodePatch(doc)
	if err != nil {
		return nil, problem(Invalid, "structure", "body is not a valid JSON Patch document")
	}
	return p, nil
}

// transaction runs every write entry in one store transaction, in the
// order the spec gives (DELETE, POST, PUT/PATCH), after resolving urn:uuid
// and conditional references; GET entries run after the commit.
func (s *Session) transaction(ctx context.Context, ops []*Entry, keepBodies bool) error {
	attempts := 0
	err := s.data.Transact(ctx, func(tx store.Tx) error {
		if attempts++; attempts > 1 {
			forgetDecoded(ops)
		}
		for _, op := range ops {
			op.Result, op.Err, op.matched, op.dropped = Result{}, nil, false, false
			if op.Method == "POST" || (op.cond != nil && op.Method != "PUT") {
				op.ID = "" // given out below, on every attempt
			}
		}
		ids := map[string]string{} // fullUrl → Type/id
		// Resolve the ids POSTs and conditional PUTs will get, so entries
		// can refer to each other before any of them is written.
		for _, op := range ops {
			switch {
			case op.Method == "POST" && op.ifNone != nil:
				id, err := matchOne(ctx, tx, op.ifNone, false)
				if err != nil {
					return withEntry(op.index, err)
				}
				if id != "" {
					op.ID, op.matched = id, true // nothing is written
				} else {
					op.ID = store.NewID()
				}
			case op.Method == "POST":
				op.ID = store.NewID()
			case (op.Method == "DELETE" || op.Method == "PATCH") && op.cond != nil:
				// The match is the entry's identity; no match leaves it
				// to runEntry (nothing to delete; a patch's 404).
				id, err := matchOne(ctx, tx, op.cond, false)
				if err != nil {
					return withEntry(op.index, err)
				}
				op.ID = id
			case op.Method == "PUT" && op.cond != nil:
				id, err := matchOne(ctx, tx, op.cond, false)
				if err != nil {
					return withEntry(op.index, err)
				}
				bodyID := op.body.ID()
				switch {
				case id != "" && bodyID != "" && bodyID != id:
					return withEntry(op.index, problem(Invalid, "invalid", "the resource id does not match the resource the condition found"))
				case id != "":
					op.ID = id
				case bodyID != "":
					op.ID = bodyID
				default:
					op.ID = store.NewID()
				}
			}
			if op.fullURL != "" && op.ID != "" && op.Method != "GET" {
				ids[op.fullURL] = op.Type + "/" + op.ID
			}
		}
		if err := distinctIdentities(ops); err != nil {
			return err
		}
		// Conditional references are resolved before any entry is
		// written, so that they match what the store held before the
		// transaction whatever the order of its entries.
		for _, op := range ops {
			if op.body.Raw == nil {
				continue
			}
			refs, err := references(ctx, tx, op.body.Raw, ids, s.door.cfg.BaseURL)
			if err != nil {
				return withEntry(op.index, err)
			}
			op.refs = refs
		}
		for _, method := range []string{"DELETE", "POST", "PUT", "PATCH"} {
			for _, op := range ops {
				if op.Method != method {
					continue
				}
				var err error
				if op.resolved, err = op.body.withReferences(op.refs); err != nil {
					return withEntry(op.index, err)
				}
				if err := runEntry(ctx, tx, op); err != nil {
					return withEntry(op.index, err)
				}
				if err := s.recordInTx(ctx, tx, writeEvent(op.event(), op.Result)); err != nil {
					return err
				}
				// Written: a retry resolves the client's body again.
				op.resolved, op.refs = Body{}, nil
				if !keepBodies {
					op.dropBody()
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	budget := s.door.cfg.MaxBundleResults
	for _, op := range ops {
		if op.Method == "GET" {
			s.readEntry(ctx, op, &budget)
		}
	}
	return nil
}

// batch runs each entry on its own; a failure is reported in its entry.
func (s *Session) batch(ctx context.Context, ops []*Entry, keepBodies bool) {
	budget := s.door.cfg.MaxBundleResults
	for _, op := range ops {
		if op.Err != nil {
			continue
		}
		if op.Method == "GET" {
			s.readEntry(ctx, op, &budget)
			continue
		}
		attempts := 0
		op.Err = s.data.Transact(ctx, func(tx store.Tx) error {
			if attempts++; attempts > 1 {
				forgetDecoded([]*Entry{op})
			}
			op.matched = false
			if op.Method == "POST" {
				op.ID = ""
			}
			if op.Method == "POST" && op.ifNone != nil {
				id, err := matchOne(ctx, tx, op.ifNone, false)
				if err != nil {
					return err
				}
				if id != "" {
					op.ID, op.matched = id, true
				}
			}
			if op.body.Raw != nil {
				body, err := s.resolveReferences(ctx, tx, op.body, nil)
				if err != nil {
					return err
				}
				op.resolved = body
			}
			if err := runEntry(ctx, tx, op); err != nil {
				return err
			}
			return s.recordInTx(ctx, tx, writeEvent(op.event(), op.Result))
		})
		if op.Err != nil {
			op.Err = auditFailed(op.Err, s.record(ctx, about(op.event(), op.Type, op.ID), op.Err))
		}
		op.resolved = Body{}
		if !keepBodies {
			op.dropBody()
		}
	}
}

// event is the audit event of a write entry.
func (op *Entry) event() audit.Event {
	switch op.Method {
	case "POST":
		return createEvent
	case "PATCH":
		return patchEvent
	case "DELETE":
		return deleteEvent
	}
	return updateEvent
}

// dropBody lets go of a written version's bytes, which Written reads back.
func (op *Entry) dropBody() {
	if op.Result.Resource.JSON != nil {
		op.Result.Resource.JSON, op.dropped = nil, true
	}
}

// Written is the version an entry wrote (or matched), with its bytes, for
// the answer of a bundle that did not keep them. The entry's write was
// judged by the session's policy when it ran; the version it names is read
// back as it is, so a write-only token (.cu) gets what it wrote, as it
// would have with the bytes kept. Only an entry whose bytes Bundle let go
// is read back: anything else is refused.
func (s *Session) Written(ctx context.Context, op *Entry) (store.Resource, error) {
	if !op.dropped {
		return store.Resource{}, errors.New("interact: Written on an entry whose bytes were not let go")
	}
	res := op.Result.Resource
	return s.door.data.VRead(ctx, res.Type, res.ID, res.VersionID)
}

// forgetDecoded drops the decoded copies of entries before a retried
// attempt: resolving references rewrote them in place with the previous
// attempt's ids, while the bytes are resolved afresh. The store decodes
// the resolved bytes instead.
// Warnings are the entry resource's warnings (invariants of severity
// warning), for its response's outcome.
func (e *Entry) Warnings() []fhir.Issue { return e.body.Warnings }

func forgetDecoded(ops []*Entry) {
	for _, op := range ops {
		op.body.Parsed = nil
	}
}

// runEntry performs one write entry inside tx.
func runEntry(ctx context.Context, tx store.Tx, op *Entry) error {
	var err error
	switch op.Method {
	case "POST":
		if op.matched {
			res, err := tx.Read(ctx, op.Type, op.ID)
			op.Result = Result{Outcome: Matched, Resource: res, Info: "matched existing " + op.Type + "/" + op.ID}
			return err
		}
		op.Result, err = create(ctx, tx, op.Type, op.ID, op.resolved, nil)
	case "PUT":
		if op.cond != nil && op.ID == "" {
			op.Result, err = conditionalUpdate(ctx, tx, op.Type, op.cond, op.resolved, op.ifMatch)
		} else {
			op.Result, err = update(ctx, tx, op.Type, op.ID, op.resolved, op.ifMatch)
		}
	case "PATCH":
		id := op.ID
		if id == "" {
			if id, err = matchOne(ctx, tx, op.cond, true); err != nil {
				return err
			}
		}
		op.Result, err = patch(ctx, tx, op.Type, id, op.patch, op.ifMatch, op.parse)
	case "DELETE":
		if op.ID == "" {
			op.Result, err = conditionalDelete(ctx, tx, op.Type, op.cond)
		} else {
			op.Result, err = remove(ctx, tx, op.Type, op.ID, op.ifMatch)
			if errors.Is(err, store.ErrNotFound) {
				// Deleting what is not there succeeds in a bundle (idempotent).
				op.Result, err = Result{Outcome: NothingToDelete, Info: "nothing to delete"}, nil
			}
		}
	}
	return err
}

// resolveReferences resolves urn:uuid and conditional references in the
// bytes and, identically, in the decoded copy the store will index.
func (s *Session) resolveReferences(ctx context.Context, tx store.Tx, body Body, ids map[string]string) (Body, error) {
	replaced, err := references(ctx, tx, body.Raw, ids, s.door.cfg.BaseURL)
	if err != nil {
		return Body{}, err
	}
	return body.withReferences(replaced)
}

// readEntry answers a GET entry: read, vread or search. budget is how many
// resources the bundle's reads and searches may still return; an entry
// beyond it fails (and so its transaction) rather than grow the response
// without bound.
func (s *Session) readEntry(ctx context.Context, op *Entry, budget *int) {
	tooMany := fmt.Errorf("the entries of this bundle would return more than %d resources; lower their _count or split the bundle: %w", s.door.cfg.MaxBundleResults, store.ErrTooCostly)
	switch {
	case op.ID != "" && *budget <= 0:
		op.Err = tooMany
	case op.ID != "" && op.VID != 0:
		op.Resource, op.Err = s.VRead(ctx, op.Type, op.ID, op.VID)
		*budget--
	case op.ID != "":
		op.Resource, op.Err = s.Read(ctx, op.Type, op.ID)
		*budget--
	default:
		q, err := fhir.ParseSearch(op.Type, op.Query, fhir.SearchOptions{DefaultCount: DefaultCount, MaxCount: MaxCount, BaseURL: s.door.cfg.BaseURL})
		if err != nil {
			op.Err = searchProblem(err)
			return
		}
		op.SearchQuery = q
		if *budget <= 0 {
			op.Err = tooMany // spent: do not run it at all
			return
		}
		op.Search, op.Err = s.Search(ctx, q, op.Query.Get("_page"))
		if op.Err != nil {
			return
		}
		if *budget -= len(op.Search.Matches) + len(op.Search.Included); *budget < 0 {
			op.Search, op.Err = nil, tooMany
		}
	}
}

// Page sizes of searches.
const (
	DefaultCount = 50
	MaxCount     = 1000
)

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

// ParseETag reads a version from an ETag-style value: W/"3", "3" or 3.
func ParseETag(v string) (int64, bool) {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(v, "W/")
	v = strings.Trim(v, `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n > 0
}
