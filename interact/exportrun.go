package interact

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/store"
)

// exportBatch is how many resources a job reads at once.
const exportBatch = 1000

// runJob writes a job's files from where its progress stands. Each file is
// stored whole before the progress naming it is, so a job stopped at any
// point resumes with the file it was writing.
func (x *Exports) runJob(ctx context.Context, job *exportJob) error {
	ss := x.session(job)
	r := &jobRun{x: x, job: job, data: ss.data}
	ctx = store.Scanning(ctx)
	p := &job.Progress
	if p.Phase == "" {
		for ; p.Type < len(job.Types); p.Type, p.Comp, p.After, p.Part = p.Type+1, 0, "", 0 {
			if err := r.writeType(ctx, job.Types[p.Type]); err != nil {
				return err
			}
		}
		p.Phase = "referenced"
		if err := x.checkpoint(ctx, job); err != nil {
			return err
		}
	}
	if p.Phase == "referenced" {
		if err := r.writeReferenced(ctx); err != nil {
			return err
		}
		p.Phase, p.Referenced = "deleted", nil
		if err := x.checkpoint(ctx, job); err != nil {
			return err
		}
	}
	// Deletions are known by type only: a deleted resource's compartment
	// is no longer indexed, so exports of chosen patients do not list them.
	if p.Phase == "deleted" && !job.Since.IsZero() && (job.Level == ExportSystem || job.Level == ExportAllPatients && len(job.Patients) == 0) {
		return r.writeDeleted(ctx)
	}
	return nil
}

// checkpoint stores the job's progress, unless its client cancelled it.
func (x *Exports) checkpoint(ctx context.Context, job *exportJob) error {
	if x.cancelled(ctx, job.ID) {
		return errJobCancelled
	}
	return x.save(ctx, job)
}

// jobRun is one run of a job.
type jobRun struct {
	x    *Exports
	job  *exportJob
	data store.Resources // the job's policy's view
	// errs is the open file of error lines, if any.
	errs *partFile
	// searchOnly: the type being written is searched, not scanned (the
	// token sees only part of it).
	searchOnly bool
}

// writeType writes every resource of typ the job selects, compartment by
// compartment, in files of at most PartSize resources.
func (r *jobRun) writeType(ctx context.Context, typ string) error {
	job, p := r.job, &r.job.Progress
	queries, err := r.queries(typ)
	if err != nil {
		return err
	}
	var out *partFile
	defer func() {
		if out != nil {
			out.abort()
		}
	}()
	r.searchOnly = false
compartments:
	for ; p.Comp < len(job.Compartments); p.Comp, p.After = p.Comp+1, "" {
		comp := job.Compartments[p.Comp]
		for {
			rs, last, err := r.nextBatch(ctx, typ, queries, comp, p.After)
			if errors.Is(err, errNoneVisible) {
				// The token's scopes changed since the kick-off.
				if err := r.writeError(ctx, typ+" was not exported: the access token does not allow it"); err != nil {
					return err
				}
				break compartments
			}
			if err != nil {
				return err
			}
			if last == "" {
				break
			}
			for _, res := range rs {
				if res.LastUpdated.After(job.TransactionTime) || (!job.Since.IsZero() && !res.LastUpdated.After(job.Since)) {
					continue
				}
				if out == nil {
					out = r.openPart(ctx, fmt.Sprintf("%s-%d.ndjson", typ, p.Part+1))
				}
				if err := r.writeResource(ctx, out, res); err != nil {
					return err
				}
				if job.Level != ExportSystem {
					r.collectReferenced(res)
				}
			}
			p.After = last
			if out != nil && out.count >= r.x.cfg.PartSize {
				full := out
				out = nil
				if err := r.closePart(ctx, typ, full); err != nil {
					return err
				}
			}
		}
	}
	if out != nil {
		err := r.closePart(ctx, typ, out)
		out = nil
		return err
	}
	return nil
}

// nextBatch reads the next resources of typ after after in comp, and the
// last id it went through ("" at the end). A whole type a token sees all
// of is one range of the store's key (ScanType); anything else is
// searched, then read by ids.
func (r *jobRun) nextBatch(ctx context.Context, typ string, queries []*fhir.SearchQuery, comp, after string) ([]store.Resource, string, error) {
	if comp == "" && len(queries) == 1 && len(queries[0].Params) == 0 && !r.searchOnly {
		rs, err := r.data.ScanType(ctx, typ, after, exportBatch)
		switch {
		case errors.Is(err, store.ErrUnsupported):
			r.searchOnly = true // the token sees part of the type
		case errors.Is(err, access.ErrForbidden):
			return nil, "", errNoneVisible
		case err != nil:
			return nil, "", err
		case len(rs) == 0:
			return nil, "", nil
		default:
			return rs, rs[len(rs)-1].ID, nil
		}
	}
	ids, err := mergedIDs(ctx, r.data, queries, comp, after)
	if err != nil || len(ids) == 0 {
		return nil, "", err
	}
	rs, err := r.data.ReadMany(ctx, typ, ids)
	return rs, ids[len(ids)-1], err
}

// writeResource writes one resource as a line: its stored bytes, or the
// _elements subset of them.
func (r *jobRun) writeResource(ctx context.Context, out *partFile, res store.Resource) error {
	body := res.JSON
	if els := r.job.Elements[res.Type]; len(els) > 0 {
		sub, err := fhir.Subset(body, "", els)
		if err != nil {
			return r.writeError(ctx, res.Type+"/"+res.ID+" could not be subset by _elements")
		}
		body = sub
	}
	return out.line(body)
}

// closePart stores a finished file and the progress past it.
func (r *jobRun) closePart(ctx context.Context, typ string, out *partFile) error {
	if err := r.flushErrors(ctx); err != nil {
		out.abort()
		return err
	}
	f, err := keep(out, typ, &r.job.Output)
	if err != nil {
		return err
	}
	r.job.Progress.Part++
	r.job.Progress.Written += int64(f.Count)
	return r.x.checkpoint(ctx, r.job)
}

// writeError adds a line to the job's error file.
func (r *jobRun) writeError(ctx context.Context, diagnostics string) error {
	if r.errs == nil {
		r.errs = r.openPart(ctx, fmt.Sprintf("OperationOutcome-%d.ndjson", len(r.job.Errors)+1))
	}
	return r.errs.line(fhir.OperationOutcome(fhir.Issue{Severity: "error", Code: "processing", Diagnostics: diagnostics}))
}

// flushErrors stores the open error file; it is listed with the output
// written with it, so both are stored before the progress past them.
func (r *jobRun) flushErrors(ctx context.Context) error {
	if r.errs == nil {
		return nil
	}
	errs := r.errs
	r.errs = nil
	_, err := keep(errs, "OperationOutcome", &r.job.Errors)
	return err
}

// keep stores a finished file and lists it in list as holding typ.
func keep(out *partFile, typ string, list *[]exportFile) (exportFile, error) {
	f, err := out.close()
	if err != nil {
		return f, err
	}
	f.Type = typ
	*list = append(*list, f)
	return f, nil
}

// queries are the searches that select typ: one per _typeFilter of it
// (their union is exported), or all of typ.
func (r *jobRun) queries(typ string) ([]*fhir.SearchQuery, error) {
	filters := r.job.TypeFilters[typ]
	if len(filters) == 0 {
		filters = []string{""}
	}
	var out []*fhir.SearchQuery
	for _, f := range filters {
		// _since is a condition of the search too, so that an
		// incremental export reads only what changed.
		if !r.job.Since.IsZero() {
			f += "&_lastUpdated=ge" + url.QueryEscape(fhir.FormatInstant(r.job.Since))
		}
		q, err := parseTypeFilter(typ, strings.TrimPrefix(f, "&"), r.x.door.cfg.BaseURL)
		if err != nil {
			return nil, searchProblem(err)
		}
		out = append(out, q)
	}
	return out, nil
}

// errNoneVisible: the token sees no resource of the type (its scopes
// changed since the kick-off): nothing of it is written.
var errNoneVisible = errors.New("no resource of this type is visible")

// mergedIDs returns the next ids after after, in id order, that any of
// queries selects in compartment comp: each query pages by id, and only
// ids up to the lowest last id of a full page are certain to be complete.
func mergedIDs(ctx context.Context, data store.Resources, queries []*fhir.SearchQuery, comp, after string) ([]string, error) {
	var all []string
	bound := ""
	for _, base := range queries {
		q := *base
		q.Sort, q.Includes, q.RevIncludes, q.Count = nil, nil, nil, exportBatch
		switch {
		case comp == "":
		case q.Type == "Patient" && comp != fhir.AnyCompartment:
			q.Params = append(slices.Clone(q.Params), fhir.IDParam(comp))
		default:
			q.Compartment = comp
		}
		ids, err := data.SearchIDs(ctx, &q, after, exportBatch)
		if err != nil {
			if errors.Is(err, access.ErrForbidden) {
				return nil, errNoneVisible
			}
			return nil, err
		}
		if len(ids) == exportBatch && (bound == "" || ids[len(ids)-1] < bound) {
			bound = ids[len(ids)-1]
		}
		all = append(all, ids...)
	}
	if len(queries) == 1 {
		return all, nil
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if bound != "" {
		// Keep the ids up to bound, bound included.
		i, found := slices.BinarySearch(all, bound)
		if found {
			i++
		}
		all = all[:i]
	}
	return all, nil
}

// collectReferenced notes the directory resources (practitioners,
// organizations, medications …) that exported patient data refers to:
// a patient-level export carries them along, as $everything does. The
// references are read from the bytes in hand: a query of the reference
// index per batch cost as much as the export itself.
func (r *jobRun) collectReferenced(res store.Resource) {
	p := &r.job.Progress
	base := r.x.door.cfg.BaseURL + "/"
	fhir.VisitStrings(res.JSON, func(key, value string) {
		if key != "reference" {
			return
		}
		typ, id, ok := strings.Cut(strings.TrimPrefix(value, base), "/")
		if !ok || !fhir.IsResourceType(typ) || !fhir.ValidID(id) || fhir.IsPatientData(typ) || r.job.TypesAsked && !slices.Contains(r.job.Types, typ) {
			return
		}
		k := typ + "/" + id
		if i, found := slices.BinarySearch(p.Referenced, k); !found {
			p.Referenced = slices.Insert(p.Referenced, i, k)
		}
	})
}

// writeReferenced writes the directory resources the patient data refers
// to, one file per type, as far as the token may read them.
func (r *jobRun) writeReferenced(ctx context.Context) error {
	byType := map[string][]string{}
	for _, k := range r.job.Progress.Referenced {
		typ, id, _ := strings.Cut(k, "/")
		byType[typ] = append(byType[typ], id)
	}
	for _, typ := range sortedKeys(byType) {
		var out *partFile
		ids := byType[typ]
		for len(ids) > 0 {
			n := min(len(ids), exportBatch)
			rs, err := r.data.ReadMany(ctx, typ, ids[:n])
			ids = ids[n:]
			if err != nil {
				if out != nil {
					out.abort()
				}
				return err
			}
			for _, res := range rs {
				if res.LastUpdated.After(r.job.TransactionTime) {
					continue
				}
				if out == nil {
					out = r.openPart(ctx, typ+"-ref.ndjson")
				}
				if err := r.writeResource(ctx, out, res); err != nil {
					out.abort()
					return err
				}
			}
		}
		if out == nil {
			continue
		}
		f, err := keep(out, typ, &r.job.Output)
		if err != nil {
			return err
		}
		r.job.Progress.Written += int64(f.Count)
	}
	return r.flushErrors(ctx)
}

// writeDeleted lists the resources of the exported types deleted since
// _since, as transaction Bundles of DELETE entries (one per line). Only a
// token that sees every resource of a type learns of its deletions: a
// deleted resource's compartment is no longer known.
func (r *jobRun) writeDeleted(ctx context.Context) error {
	for _, typ := range r.job.Types {
		var out *partFile
		seen := map[string]bool{}
		cursor := ""
		for {
			page, err := r.data.History(ctx, store.HistoryQuery{Type: typ, Since: r.job.Since, Count: exportBatch, Cursor: cursor})
			if errors.Is(err, access.ErrForbidden) {
				break
			}
			if err != nil {
				if out != nil {
					out.abort()
				}
				return err
			}
			for _, v := range page.Versions {
				if seen[v.ID] || v.LastUpdated.After(r.job.TransactionTime) {
					continue
				}
				seen[v.ID] = true // newest first: the first version seen is the current one
				if !v.Deleted {
					continue
				}
				if out == nil {
					out = r.openPart(ctx, typ+"-deleted.ndjson")
				}
				line := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"` + typ + "/" + v.ID + `"}}]}`
				if err := out.line([]byte(line)); err != nil {
					out.abort()
					return err
				}
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		if out == nil {
			continue
		}
		if _, err := keep(out, "Bundle", &r.job.Deleted); err != nil {
			return err
		}
	}
	return nil
}

// partFile is a file being written: its lines go through a pipe into
// Files.PutFile, so a file of any size takes a buffer's memory, and it is
// stored whole or not at all.
type partFile struct {
	name    string
	pw      *io.PipeWriter
	w       *bufio.Writer
	count   int
	done    chan putResult
	res     *putResult // once done has answered
	expires time.Time
}

// wait is PutFile's result, once it returned.
func (f *partFile) wait() putResult {
	if f.res == nil {
		r := <-f.done
		f.res = &r
	}
	return *f.res
}

type putResult struct {
	size int64
	err  error
}

func (r *jobRun) openPart(ctx context.Context, name string) *partFile {
	x := r.x
	pr, pw := io.Pipe()
	f := &partFile{name: name, pw: pw, w: bufio.NewWriterSize(pw, 256<<10), done: make(chan putResult, 1), expires: x.now().Add(x.cfg.Retention)}
	path := jobPrefix(r.job.ID) + name
	go func() {
		n, err := x.files.PutFile(ctx, path, pr, f.expires)
		// Whatever PutFile did not read fails the writer, which would
		// otherwise wait on the pipe for ever.
		pr.CloseWithError(cmpErr(err, io.ErrClosedPipe))
		f.done <- putResult{n, err}
	}()
	return f
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// line writes one NDJSON line. Stored bytes are compact JSON as a rule; a
// body holding a line break (a client's pretty-printed JSON kept as sent)
// is compacted, since NDJSON allows none inside a line.
func (f *partFile) line(body []byte) error {
	if bytes.IndexByte(body, '\n') >= 0 || bytes.IndexByte(body, '\r') >= 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, body); err != nil {
			return err
		}
		body = buf.Bytes()
	}
	if _, err := f.w.Write(body); err != nil {
		return err
	}
	f.count++
	return f.w.WriteByte('\n')
}

func (f *partFile) close() (exportFile, error) {
	if err := f.w.Flush(); err != nil {
		f.abort()
		return exportFile{}, err
	}
	f.pw.Close()
	res := f.wait()
	if res.err != nil {
		return exportFile{}, res.err
	}
	return exportFile{Name: f.name, Count: f.count, Expires: f.expires}, nil
}

// abort gives the file up: PutFile fails and leaves nothing (a file
// already stored stays; its job's progress does not name it).
func (f *partFile) abort() {
	f.pw.CloseWithError(errJobCancelled)
	f.wait()
}

// manifest is the completion manifest of a finished job.
func (x *Exports) manifest(job *exportJob) ([]byte, error) {
	type item struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count,omitempty"`
	}
	items := func(fs []exportFile) []item {
		out := []item{}
		for _, f := range fs {
			out = append(out, item{Type: f.Type, URL: x.door.cfg.BaseURL + "/$export-file/" + job.ID + "/" + f.Name, Count: f.Count})
		}
		return out
	}
	m := struct {
		TransactionTime     string `json:"transactionTime"`
		Request             string `json:"request"`
		RequiresAccessToken bool   `json:"requiresAccessToken"`
		Output              []item `json:"output"`
		Deleted             []item `json:"deleted,omitempty"`
		Error               []item `json:"error"`
	}{fhir.FormatInstant(job.TransactionTime), job.Request, true, items(job.Output), items(job.Deleted), items(job.Errors)}
	return json.Marshal(m)
}

// progressText is a running job's X-Progress: how far through its types.
func (j *exportJob) progressText() string {
	p := j.Progress
	switch p.Phase {
	case "referenced":
		return strconv.FormatInt(p.Written, 10) + " resources written; now the resources they refer to"
	case "deleted":
		return strconv.FormatInt(p.Written, 10) + " resources written; now the deletions"
	}
	if p.Type >= len(j.Types) {
		return strconv.FormatInt(p.Written, 10) + " resources written"
	}
	return fmt.Sprintf("%d resources written; %s (type %d of %d)", p.Written, j.Types[p.Type], p.Type+1, len(j.Types))
}
