package interact

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/store"
)

// A bulk data export (FHIR Bulk Data Access IG v2, "Flat FHIR") runs as a
// job: the kick-off stores it, a runner in any process serving the store
// writes its NDJSON files into store.Files, and status and files are
// served to the client that asked, by any process. The job reads through
// the door under the policy of the token that kicked it off, exactly as
// that token's searches would.

// ExportLevel is what an export covers.
type ExportLevel string

const (
	// ExportSystem: every resource the token may see ([base]/$export).
	ExportSystem ExportLevel = "system"
	// ExportAllPatients: the data of every patient the token may see
	// ([base]/Patient/$export).
	ExportAllPatients ExportLevel = "patient"
	// ExportGroup: the data of a Group's member patients
	// ([base]/Group/[id]/$export).
	ExportGroup ExportLevel = "group"
	// ExportPatient: one patient's record ([base]/Patient/[id]/$export),
	// which a patient's own token may ask for to move their record.
	ExportPatient ExportLevel = "patient-instance"
)

// ExportRequest is a kick-off request, as the client made it.
type ExportRequest struct {
	Level ExportLevel
	ID    string // the Group or Patient of ExportGroup and ExportPatient
	// Params are the operation's parameters: _outputFormat, _since, _type,
	// _elements, _typeFilter, includeAssociatedData.
	Params url.Values
	// Patients is the patient parameter (POST only): ids of Patients the
	// export is restricted to.
	Patients []string
	// URL is the kick-off request's URL, reported in the manifest.
	URL string
	// Lenient: Prefer: handling=lenient — parameters and types Hearth
	// cannot honour are left out instead of refused.
	Lenient bool
}

// ErrTooManyExports: the client has as many exports running as it may (a
// 429: it should wait for one to finish).
var ErrTooManyExports = errors.New("too many bulk exports in progress for this client")

// ExportStatus is what a status request learns of a job.
type ExportStatus struct {
	// Done is false while the export runs: Progress says how far it is.
	Done     bool
	Progress string
	// Failed, once Done, holds why the export failed (no manifest then).
	Failed string
	// Manifest is the completion manifest, once Done without failure.
	Manifest []byte
	// Expires is when the first of the job's files is deleted.
	Expires time.Time
}

// exportParams are the parameters the kick-off understands.
var exportParams = map[string]bool{
	"_outputFormat": true, "_since": true, "_type": true, "_elements": true,
	"_typeFilter": true, "includeAssociatedData": true, "patient": true,
}

// ndjsonFormats are the names of NDJSON the IG requires a server to accept.
var ndjsonFormats = []string{"application/fhir+ndjson", "application/ndjson", "ndjson"}

// Export kicks off a bulk export under the session's policy and returns
// the job's id. What the request names is checked here (a 4xx Problem,
// and nothing is stored); what the token may see is applied as the job
// reads.
func (x *Exports) Export(ctx context.Context, ss *Session, req ExportRequest) (string, error) {
	job, err := x.plan(ctx, ss, req)
	e := audit.Event{Subtype: "operation", Action: "E", Query: exportQuery(req)}
	if req.ID != "" {
		e.Entities = []string{exportFocus(req.Level) + "/" + req.ID}
	}
	if err == nil {
		err = x.start(ctx, job)
	}
	if err == nil && len(job.Patients) > 0 && len(job.Patients) <= maxAuditedPatients {
		e.Patients = job.Patients
	}
	if recErr := ss.record(ctx, e, err); recErr != nil {
		if err == nil {
			// Nothing may be exported that was not recorded.
			x.cancel(context.WithoutCancel(ctx), job.ID)
		}
		return "", auditFailed(err, recErr)
	}
	if err != nil {
		return "", err
	}
	return job.ID, nil
}

// maxAuditedPatients bounds the patients an export's audit events name
// one by one: a system export of every patient is recorded as one.
const maxAuditedPatients = 1000

func exportFocus(l ExportLevel) string {
	if l == ExportGroup {
		return "Group"
	}
	return "Patient"
}

// exportQuery is the kick-off as the audit trail records it: the
// operation and its parameter names, never their values.
func exportQuery(req ExportRequest) string {
	path := "$export"
	switch req.Level {
	case ExportAllPatients:
		path = "Patient/$export"
	case ExportGroup:
		path = "Group/" + req.ID + "/$export"
	case ExportPatient:
		path = "Patient/" + req.ID + "/$export"
	}
	names := slices.Sorted(maps.Keys(req.Params))
	if len(req.Patients) > 0 {
		names = append(names, "patient")
	}
	if len(names) == 0 {
		return path
	}
	return path + "?" + strings.Join(names, "&")
}

// plan checks a kick-off request and turns it into a job.
func (x *Exports) plan(ctx context.Context, ss *Session, req ExportRequest) (*exportJob, error) {
	if ss.pol == nil && !ss.unrestricted {
		return nil, ErrNoPolicy
	}
	for name := range req.Params {
		if !exportParams[name] && !req.Lenient {
			return nil, problem(Invalid, "not-supported", "$export has no parameter "+fhir.QuoteSafe(name))
		}
	}
	job := &exportJob{
		ID:              newJobID(),
		Owner:           ownerOf(ss),
		Policy:          policyRecord(ss.pol),
		Level:           req.Level,
		Request:         req.URL,
		TransactionTime: x.now().UTC().Truncate(time.Millisecond),
		State:           jobRunning,
	}
	// A '+' a client left unescaped in a query arrives as a space.
	unplus := func(v string) string { return strings.ReplaceAll(v, " ", "+") }
	if f := unplus(req.Params.Get("_outputFormat")); f != "" && !slices.Contains(ndjsonFormats, f) {
		return nil, problem(Invalid, "not-supported", "_outputFormat "+fhir.QuoteSafe(f)+" is not supported: Hearth writes application/fhir+ndjson")
	}
	if v := unplus(req.Params.Get("_since")); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, problem(Invalid, "invalid", "_since must be a FHIR instant with a time zone (2024-01-02T03:04:05Z), not "+fhir.QuoteSafe(v))
		}
		job.Since = t.UTC()
	}
	if v := req.Params.Get("includeAssociatedData"); v != "" && !req.Lenient {
		return nil, problem(Invalid, "not-supported", "includeAssociatedData is not supported (Prefer: handling=lenient ignores it)")
	}
	types, err := x.exportTypes(ss, req)
	if err != nil {
		return nil, err
	}
	job.Types, job.TypesAsked = types, len(req.Params["_type"]) > 0
	if job.Elements, err = exportElements(req.Params["_elements"], types, req.Lenient); err != nil {
		return nil, err
	}
	if job.TypeFilters, err = typeFilters(req.Params["_typeFilter"], types, x.door.cfg.BaseURL, req.Lenient); err != nil {
		return nil, err
	}
	if job.Patients, err = x.exportPatients(ctx, ss, req); err != nil {
		return nil, err
	}
	switch {
	case req.Level == ExportSystem:
		job.Compartments = []string{""}
	case req.Level == ExportAllPatients && len(req.Patients) == 0:
		job.Compartments = []string{fhir.AnyCompartment}
	default:
		job.Compartments = job.Patients
	}
	return job, nil
}

// exportTypes are the types an export writes, in order: those asked for
// (_type) or, without _type, every type the token may search — for the
// patient levels, the types of the Patient compartment, whose resources
// bring the directory resources they refer to along.
func (x *Exports) exportTypes(ss *Session, req ExportRequest) ([]string, error) {
	searchable := func(typ string) bool { return ss.unrestricted || ss.pol.Searchable(typ) }
	var asked []string
	for _, v := range req.Params["_type"] {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !slices.Contains(asked, t) {
				asked = append(asked, t)
			}
		}
	}
	if len(asked) == 0 {
		var out []string
		for _, t := range fhir.ResourceTypes() {
			if t == auditType || !searchable(t) || (req.Level != ExportSystem && !fhir.IsPatientData(t)) {
				continue
			}
			out = append(out, t)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no resource type can be exported with this token: %w", access.ErrForbidden)
		}
		return out, nil
	}
	var out []string
	for _, t := range asked {
		switch {
		case !fhir.IsResourceType(t) || t == auditType:
			if req.Lenient {
				continue
			}
			return nil, problem(Invalid, "not-supported", "_type: "+fhir.QuoteSafe(t)+" is not a resource type Hearth exports")
		case !searchable(t):
			if req.Lenient {
				continue
			}
			return nil, fmt.Errorf("_type: this token may not read %s: %w", t, access.ErrForbidden)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, problem(Invalid, "not-supported", "_type names no resource type this token may export")
	}
	return out, nil
}

// exportElements maps each type to the elements _elements keeps of it
// ("Observation.code" for one type, "code" for every type).
func exportElements(vals []string, types []string, lenient bool) (map[string][]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := map[string][]string{}
	for _, v := range vals {
		for e := range strings.SplitSeq(v, ",") {
			e = strings.TrimSpace(e)
			typ, name, ok := strings.Cut(e, ".")
			switch {
			case e == "":
				continue
			case !ok:
				for _, t := range types {
					out[t] = append(out[t], e)
				}
			case fhir.IsResourceType(typ) && name != "" && !strings.Contains(name, "."):
				out[typ] = append(out[typ], name)
			case lenient:
			default:
				return nil, problem(Invalid, "invalid", "_elements: "+fhir.QuoteSafe(e)+" is neither an element nor Type.element")
			}
		}
	}
	return out, nil
}

// typeFilters checks each _typeFilter ("Observation?category=laboratory")
// as a search of its type and keeps it as given: the job parses it again
// when it runs.
func typeFilters(vals []string, types []string, base string, lenient bool) (map[string][]string, error) {
	out := map[string][]string{}
	for _, v := range vals {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			typ, query, _ := strings.Cut(f, "?")
			if !slices.Contains(types, typ) {
				if lenient {
					continue
				}
				return nil, problem(Invalid, "invalid", "_typeFilter: "+fhir.QuoteSafe(typ)+" is not one of the types exported")
			}
			if _, err := parseTypeFilter(typ, query, base); err != nil {
				if lenient {
					continue
				}
				return nil, problem(Invalid, "invalid", "_typeFilter "+fhir.QuoteSafe(f)+": "+searchProblem(err).Error())
			}
			out[typ] = append(out[typ], query)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// parseTypeFilter parses one _typeFilter query; result parameters
// (_count, _sort, _include …) have no place in one.
func parseTypeFilter(typ, query, base string) (*fhir.SearchQuery, error) {
	vals, err := url.ParseQuery(query)
	if err != nil {
		return nil, &fhir.SearchError{Msg: "the query does not parse"}
	}
	for name := range vals {
		if strings.HasPrefix(name, "_") && name != "_id" && name != "_lastUpdated" && name != "_tag" && name != "_profile" && name != "_security" && name != "_has" && !strings.HasPrefix(name, "_has:") {
			return nil, &fhir.SearchError{Msg: fhir.QuoteSafe(name) + " cannot be used in a _typeFilter"}
		}
	}
	return fhir.ParseSearch(typ, vals, fhir.SearchOptions{DefaultCount: exportBatch, MaxCount: exportBatch, Strict: true, BaseURL: base})
}

// exportPatients are the patients a patient-level export is restricted to:
// a Group's active members the token may see, the patient parameter, or
// the one patient. A patient named (by the parameter or the path) must be
// visible to the token: one it may not see is reported as not found, as a
// read of it would be.
func (x *Exports) exportPatients(ctx context.Context, ss *Session, req ExportRequest) ([]string, error) {
	var ids []string
	switch req.Level {
	case ExportSystem:
		if len(req.Patients) > 0 {
			return nil, problem(Invalid, "invalid", "the patient parameter applies to Patient and Group exports, not to a system export")
		}
		return nil, nil
	case ExportPatient:
		if len(req.Patients) > 0 {
			return nil, problem(Invalid, "invalid", "the patient parameter applies to Patient and Group exports, not to one patient's")
		}
		ids = []string{req.ID}
	case ExportGroup:
		members, err := groupMembers(ctx, ss.data, req.ID)
		if err != nil {
			return nil, err
		}
		if len(req.Patients) > 0 {
			members = slices.DeleteFunc(members, func(id string) bool { return !slices.Contains(req.Patients, id) })
		}
		// The members the token may not see are left out, as a search
		// of them would: whether they exist is not the token's to learn.
		visible, err := ss.data.ReadMany(ctx, "Patient", members)
		if err != nil {
			return nil, err
		}
		for _, p := range visible {
			ids = append(ids, p.ID)
		}
		slices.Sort(ids)
		return slices.Compact(ids), nil
	case ExportAllPatients:
		ids = req.Patients
	default:
		return nil, problem(Invalid, "not-supported", "unknown export level")
	}
	for _, id := range ids {
		if !fhir.ValidID(id) {
			return nil, problem(Invalid, "invalid", "patient: "+fhir.QuoteSafe(id)+" is not a Patient id")
		}
		if _, err := ss.data.Read(ctx, "Patient", id); err != nil {
			return nil, err
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// groupMembers are the Patients an active Group lists as its active
// members.
func groupMembers(ctx context.Context, data store.Resources, id string) ([]string, error) {
	g, err := data.Read(ctx, "Group", id)
	if err != nil {
		return nil, err
	}
	var group struct {
		Member []struct {
			Entity struct {
				Reference string `json:"reference"`
			} `json:"entity"`
			Inactive bool `json:"inactive"`
		} `json:"member"`
	}
	if err := json.Unmarshal(g.JSON, &group); err != nil {
		return nil, fmt.Errorf("Group/%s: %w", id, err)
	}
	var ids []string
	for _, m := range group.Member {
		typ, pid, ok := strings.Cut(m.Entity.Reference, "/")
		if m.Inactive || !ok || typ != "Patient" || !fhir.ValidID(pid) {
			continue
		}
		ids = append(ids, pid)
	}
	return ids, nil
}

// ExportStatus reports on a job the session's client started; a job of
// another client is as unknown as one that never was.
func (x *Exports) Status(ctx context.Context, ss *Session, id string) (ExportStatus, error) {
	job, err := x.owned(ctx, ss, id)
	if err != nil {
		return ExportStatus{}, err
	}
	st := ExportStatus{Done: job.State != jobRunning, Failed: job.Failure}
	if !st.Done {
		st.Progress = job.progressText()
		return st, nil
	}
	if st.Failed != "" {
		return st, nil
	}
	st.Manifest, err = x.manifest(job)
	for _, f := range slices.Concat(job.Output, job.Errors, job.Deleted) {
		if st.Expires.IsZero() || f.Expires.Before(st.Expires) {
			st.Expires = f.Expires
		}
	}
	return st, err
}

// CancelExport stops a job (or forgets a finished one) and deletes its
// files. Status requests for it then answer not found.
func (x *Exports) CancelExport(ctx context.Context, ss *Session, id string) error {
	if _, err := x.owned(ctx, ss, id); err != nil {
		return err
	}
	err := x.cancel(ctx, id)
	e := audit.Event{Subtype: "operation", Action: "D", Query: "$export-cancel"}
	return auditFailed(err, ss.record(ctx, e, err))
}

// OpenExportFile opens one of a finished job's files for the client that
// started it.
func (x *Exports) OpenExportFile(ctx context.Context, ss *Session, id, name string) (io.ReadCloser, error) {
	job, err := x.owned(ctx, ss, id)
	if err != nil {
		return nil, err
	}
	if job.State != jobComplete || !slices.ContainsFunc(slices.Concat(job.Output, job.Errors, job.Deleted), func(f exportFile) bool { return f.Name == name }) {
		return nil, fmt.Errorf("export file %s: %w", name, store.ErrNotFound)
	}
	f, err := x.files.OpenFile(ctx, jobPrefix(id)+name)
	e := audit.Event{Subtype: "operation", Action: "R", Query: "$export-file"}
	if err == nil && len(job.Patients) > 0 && len(job.Patients) <= maxAuditedPatients {
		e.Patients = job.Patients
	}
	if recErr := ss.record(ctx, e, err); recErr != nil {
		if f != nil {
			f.Close()
		}
		return nil, auditFailed(err, recErr)
	}
	return f, err
}

// owned reads a job the session may see: one its own client (and user,
// and patient) started.
func (x *Exports) owned(ctx context.Context, ss *Session, id string) (*exportJob, error) {
	if ss.pol == nil && !ss.unrestricted {
		return nil, ErrNoPolicy
	}
	job, err := x.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if job.Owner != ownerOf(ss) {
		return nil, fmt.Errorf("export %s: %w", id, store.ErrNotFound)
	}
	if x.cancelled(ctx, id) {
		return nil, fmt.Errorf("export %s: %w", id, store.ErrNotFound)
	}
	return job, nil
}

// newJobID is a job's id: 128 random bits, so that ids cannot be guessed
// (ownership is checked too).
func newJobID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
