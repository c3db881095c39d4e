package interact

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
)

// ExportConfig sets how bulk exports run.
type ExportConfig struct {
	// Retention is how long a file is kept after it was written (default
	// 24 h); a finished job is forgotten as long after it finished.
	Retention time.Duration
	// PerClient bounds the exports one client runs at once (default 3).
	PerClient int
	// Workers bounds the jobs one process runs at once (default 2).
	Workers int
	// Lease is how long a process holds a job without renewing its claim
	// (default 15 s): when a process dies, another takes the job over
	// that long after, where it stopped.
	Lease time.Duration
	// Poll is how often a process looks for jobs to take (default 1 s).
	Poll time.Duration
	// PartSize is the most resources one file holds (default 50,000). A
	// job resumed after a crash redoes at most the file it was writing.
	PartSize int
	// Log receives the runner's failures (ids only, never content).
	Log *slog.Logger
}

// Jobs is where export jobs live: the authorization server's record store,
// whose single-use records are the runners' leases, so that every process
// on one database sees every job.
type Jobs interface {
	CreateAuth(ctx context.Context, rec store.AuthRecord) error
	PutAuth(ctx context.Context, rec store.AuthRecord) error
	GetAuth(ctx context.Context, kind, key string) (store.AuthRecord, error)
	DeleteAuth(ctx context.Context, kind, key string) error
	ListAuth(ctx context.Context, kind, subject string) ([]store.AuthRecord, error)
}

// Record kinds of the export jobs.
const (
	kindExportJob    = "export-job"
	kindExportLease  = "export-lease"
	kindExportCancel = "export-cancel"
)

// Exports runs the bulk exports of one door's data.
type Exports struct {
	door  *Door
	jobs  Jobs
	files store.Files
	cfg   ExportConfig
	// self names this process in the leases it holds.
	self string
	wake chan struct{}

	mu      sync.Mutex
	running map[string]bool // jobs this process runs now
}

// NewExports returns the exports of door's data, with jobs and files kept
// in the given stores.
func NewExports(door *Door, jobs Jobs, files store.Files, cfg ExportConfig) *Exports {
	if cfg.Retention <= 0 {
		cfg.Retention = 24 * time.Hour
	}
	if cfg.PerClient <= 0 {
		cfg.PerClient = 3
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 15 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.PartSize <= 0 {
		cfg.PartSize = 50_000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	b := make([]byte, 8)
	rand.Read(b)
	return &Exports{door: door, jobs: jobs, files: files, cfg: cfg, self: hex.EncodeToString(b),
		wake: make(chan struct{}, 1), running: map[string]bool{}}
}

func (x *Exports) now() time.Time { return x.door.cfg.Now() }

// Job states.
const (
	jobRunning  = "running"
	jobComplete = "complete"
	jobFailed   = "failed"
)

// exportJob is a job as it is stored: the request, the policy it runs
// under, and how far it got.
type exportJob struct {
	ID     string
	Owner  jobOwner
	Policy *jobPolicy // nil: an unrestricted session's (hearth serve --open)
	Level  ExportLevel
	// Request is the kick-off URL; TransactionTime the instant the data
	// is exported as of: nothing changed after it is written.
	Request         string
	TransactionTime time.Time
	Since           time.Time
	Types           []string
	TypesAsked      bool                // Types is the client's _type, not every type
	Elements        map[string][]string `json:",omitempty"`
	TypeFilters     map[string][]string `json:",omitempty"`
	// Patients are the patients of a Group, instance or patient-parameter
	// export; Compartments what each type is read in: "" (everything),
	// AnyCompartment, or each patient.
	Patients     []string `json:",omitempty"`
	Compartments []string
	State        string
	Failure      string `json:",omitempty"`
	Progress     exportProgress
	Output       []exportFile
	Errors       []exportFile
	Deleted      []exportFile
	Finished     time.Time
}

// exportProgress is where a job stands: everything before it is in files
// already written. A job resumed after a crash starts here.
type exportProgress struct {
	Phase string // "types", "referenced", "deleted"; "" is "types"
	Type  int    // index in Types
	Comp  int    // index in Compartments
	After string // the last id written of Types[Type] in Compartments[Comp]
	Part  int    // the number of the next file of Types[Type]
	// Referenced are the directory resources ("Type/id") the patient
	// data written so far refers to, written after it (patient levels).
	Referenced []string `json:",omitempty"`
	Written    int64
	Errors     int // error lines written
}

// exportFile is one file of a job.
type exportFile struct {
	Type    string
	Name    string
	Count   int
	Expires time.Time
}

// jobOwner is who may see a job: the client, user and patient of the
// token that started it, or any unrestricted session.
type jobOwner struct {
	Client, User, Patient string
	Open                  bool
}

func ownerOf(ss *Session) jobOwner {
	if ss.unrestricted || ss.pol == nil {
		return jobOwner{Open: ss.unrestricted}
	}
	return jobOwner{Client: ss.pol.ClientID, User: ss.pol.Subject, Patient: ss.pol.Patient}
}

// jobPolicy is the policy a job runs under, as stored.
type jobPolicy struct {
	Patient           string
	Scopes            []string
	WithholdSensitive bool
	ClientID          string
	Subject           string
	FHIRUser          string
}

func policyRecord(p *access.Policy) *jobPolicy {
	if p == nil {
		return nil
	}
	jp := &jobPolicy{Patient: p.Patient, WithholdSensitive: p.WithholdSensitive, ClientID: p.ClientID, Subject: p.Subject, FHIRUser: p.FHIRUser}
	for _, s := range p.Scopes {
		jp.Scopes = append(jp.Scopes, s.String())
	}
	return jp
}

// session is the session a job reads through: its token's policy, or an
// unrestricted one only for a job an unrestricted session started.
func (x *Exports) session(job *exportJob) *Session {
	who := audit.Agent{Client: job.Owner.Client, User: job.Owner.User, Patient: job.Owner.Patient}
	switch {
	case job.Policy != nil:
		p := job.Policy
		who.FHIRUser = p.FHIRUser
		return x.door.Session(&access.Policy{Patient: p.Patient, Scopes: scopes.ParseSet(strings.Join(p.Scopes, " ")),
			WithholdSensitive: p.WithholdSensitive, ClientID: p.ClientID, Subject: p.Subject, FHIRUser: p.FHIRUser}, who)
	case job.Owner.Open:
		return x.door.Unrestricted(who)
	}
	return x.door.Session(nil, who)
}

// ownerKey is the record subject jobs are listed by: one client's.
func (o jobOwner) key() string {
	if o.Open {
		return "open"
	}
	return "client:" + o.Client
}

func jobPrefix(id string) string { return "export/" + id + "/" }

func (x *Exports) load(ctx context.Context, id string) (*exportJob, error) {
	rec, err := x.jobs.GetAuth(ctx, kindExportJob, id)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", id, err)
	}
	var job exportJob
	if err := json.Unmarshal(rec.Data, &job); err != nil {
		return nil, fmt.Errorf("export %s: %w", id, err)
	}
	return &job, nil
}

// save stores the job; a finished job expires with its retention.
func (x *Exports) save(ctx context.Context, job *exportJob) error {
	data, err := json.Marshal(job)
	if err != nil {
		return err
	}
	rec := store.AuthRecord{Kind: kindExportJob, Key: job.ID, Subject: job.Owner.key(), Active: job.State == jobRunning, Data: data}
	if job.State != jobRunning {
		rec.ExpiresAt = job.Finished.Add(x.cfg.Retention)
	}
	return x.jobs.PutAuth(ctx, rec)
}

// start stores a new job, unless its client runs as many as it may.
func (x *Exports) start(ctx context.Context, job *exportJob) error {
	recs, err := x.jobs.ListAuth(ctx, kindExportJob, job.Owner.key())
	if err != nil {
		return err
	}
	n := 0
	for _, r := range recs {
		if r.Active && !x.cancelled(ctx, r.Key) {
			n++
		}
	}
	if n >= x.cfg.PerClient {
		return fmt.Errorf("%w (%d)", ErrTooManyExports, n)
	}
	data, err := json.Marshal(job)
	if err != nil {
		return err
	}
	if err := x.jobs.CreateAuth(ctx, store.AuthRecord{Kind: kindExportJob, Key: job.ID, Subject: job.Owner.key(), Active: true, Data: data}); err != nil {
		return err
	}
	select {
	case x.wake <- struct{}{}:
	default:
	}
	return nil
}

func (x *Exports) cancelled(ctx context.Context, id string) bool {
	_, err := x.jobs.GetAuth(ctx, kindExportCancel, id)
	return err == nil
}

// cancel marks a job cancelled — its runner, in whatever process, stops
// at its next file — and deletes what it wrote so far.
func (x *Exports) cancel(ctx context.Context, id string) error {
	err := x.jobs.PutAuth(ctx, store.AuthRecord{Kind: kindExportCancel, Key: id, Active: true, ExpiresAt: x.now().Add(x.cfg.Retention + time.Hour)})
	if err != nil {
		return err
	}
	if err := x.files.DeleteFiles(ctx, jobPrefix(id)); err != nil {
		return err
	}
	return x.jobs.DeleteAuth(ctx, kindExportJob, id)
}

// Run takes and runs the jobs of every process's clients until ctx ends:
// new ones, and those whose process stopped holding them (it died). It
// also deletes expired files.
func (x *Exports) Run(ctx context.Context) {
	tick := time.NewTicker(x.cfg.Poll)
	defer tick.Stop()
	lastPrune := time.Time{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		x.claim(ctx, &wg)
		if now := x.now(); now.Sub(lastPrune) > time.Minute {
			lastPrune = now
			if n, err := x.files.PruneFiles(ctx, now); err != nil {
				x.cfg.Log.ErrorContext(ctx, "export: expired files could not be deleted", "error", err.Error())
			} else if n > 0 {
				x.cfg.Log.InfoContext(ctx, "export: expired files deleted", "files", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-x.wake:
		}
	}
}

// claim starts the running jobs no process holds, as far as this
// process has workers free.
func (x *Exports) claim(ctx context.Context, wg *sync.WaitGroup) {
	recs, err := x.jobs.ListAuth(ctx, kindExportJob, "")
	if err != nil {
		if ctx.Err() == nil {
			x.cfg.Log.ErrorContext(ctx, "export: jobs could not be listed", "error", err.Error())
		}
		return
	}
	for _, r := range recs {
		if !r.Active {
			continue
		}
		x.mu.Lock()
		busy, full := x.running[r.Key], len(x.running) >= x.cfg.Workers
		x.mu.Unlock()
		if busy || full {
			continue
		}
		lease := store.AuthRecord{Kind: kindExportLease, Key: r.Key, Subject: x.self, Active: true, ExpiresAt: x.now().Add(x.cfg.Lease)}
		if err := x.jobs.CreateAuth(ctx, lease); err != nil {
			continue // another process holds it (or the store failed: next round)
		}
		x.mu.Lock()
		x.running[r.Key] = true
		x.mu.Unlock()
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			x.runHeld(ctx, id)
			x.mu.Lock()
			delete(x.running, id)
			x.mu.Unlock()
		}(r.Key)
	}
}

// runHeld runs a job this process holds the lease of, renewing the lease
// while it works, and gives the lease up when it stops.
func (x *Exports) runHeld(ctx context.Context, id string) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		t := time.NewTicker(x.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cur, err := x.jobs.GetAuth(ctx, kindExportLease, id)
			if err != nil || cur.Subject != x.self {
				stop() // the lease was lost: another process has the job
				return
			}
			cur.ExpiresAt = x.now().Add(x.cfg.Lease)
			if err := x.jobs.PutAuth(ctx, cur); err != nil {
				stop()
				return
			}
		}
	}()
	defer x.release(context.WithoutCancel(ctx), id)
	job, err := x.load(ctx, id)
	if err != nil {
		return // cancelled and deleted, or expired
	}
	if x.cancelled(ctx, id) {
		x.files.DeleteFiles(ctx, jobPrefix(id))
		x.jobs.DeleteAuth(ctx, kindExportJob, id)
		return
	}
	err = x.runJob(ctx, job)
	switch {
	case errors.Is(err, errJobCancelled):
		x.files.DeleteFiles(context.WithoutCancel(ctx), jobPrefix(id))
		x.jobs.DeleteAuth(context.WithoutCancel(ctx), kindExportJob, id)
		return
	case ctx.Err() != nil:
		return // stopping: the job resumes from its last file, here or elsewhere
	case err != nil:
		x.cfg.Log.ErrorContext(ctx, "export failed", "job", id, "error", err.Error())
		job.State, job.Failure = jobFailed, failureText(err)
	default:
		job.State = jobComplete
	}
	job.Finished = x.now().UTC()
	if x.cancelled(ctx, id) {
		return
	}
	if err := x.save(ctx, job); err != nil {
		x.cfg.Log.ErrorContext(ctx, "export: the finished job could not be stored", "job", id, "error", err.Error())
		return
	}
	x.recordFinished(ctx, job)
}

// release gives up this process's lease of a job, so that a job stopped
// by a shutdown is taken up at once; a lease another process took over
// is left alone.
func (x *Exports) release(ctx context.Context, id string) {
	if cur, err := x.jobs.GetAuth(ctx, kindExportLease, id); err == nil && cur.Subject == x.self {
		x.jobs.DeleteAuth(ctx, kindExportLease, id)
	}
}

// errJobCancelled stops a job whose client cancelled it.
var errJobCancelled = errors.New("export cancelled")

// failureText is what the client is told of a failed job: the refusal of
// its token's policy, or that the server failed (the log has the rest).
func failureText(err error) string {
	var p *Problem
	switch {
	case errors.As(err, &p):
		return p.Error()
	case errors.Is(err, access.ErrForbidden):
		return "the access token does not allow this export"
	}
	return "the export failed on the server; ask again later"
}

// recordFinished records in the audit trail that a job's data was
// exported, as the agent that asked for it.
func (x *Exports) recordFinished(ctx context.Context, job *exportJob) {
	if x.door.cfg.Audit == nil {
		return
	}
	ss := x.session(job)
	e := audit.Event{Type: "rest", Subtype: "operation", Action: "E", Outcome: audit.Success, Query: "$export-complete"}
	if job.State == jobFailed {
		e.Outcome, e.Detail = audit.Serious, "server error"
	}
	if len(job.Patients) <= maxAuditedPatients {
		e.Patients = job.Patients
	}
	if len(e.Patients) == 0 && ss.who.Patient != "" {
		e.Patients = []string{ss.who.Patient}
	}
	if err := x.door.cfg.Audit.Record(ctx, ss.who, e); err != nil {
		x.cfg.Log.ErrorContext(ctx, "audit trail: a finished export went unrecorded", "job", job.ID, "error", err.Error())
	}
}
