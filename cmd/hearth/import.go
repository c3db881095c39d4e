package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/fhir/invariant"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/server"
	"github.com/hearth-fhir/hearth/server/metrics"
	"github.com/hearth-fhir/hearth/smart/backend"
	"github.com/hearth-fhir/hearth/store"
)

func importCmd(args []string) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	data := fs.String("data", "./hearth-data", "data directory to load into (must not be in use by a running server)")
	serverURL := fs.String("server", "", "FHIR base URL of a running Hearth to load into, instead of --data")
	storeKind := fs.String("store", "sqlite", "storage backend, as for serve")
	token := fs.String("token", "", "bearer token for --server (a backend-service token with system/*.cruds)")
	baseURL := fs.String("base-url", "", "public URL of the FHIR base the data will be served at, as for serve: references under it are stored as local")
	bulk := fs.String("bulk", "", "pull a Bulk Data export from this URL (a FHIR base, or its $export, Patient/$export or Group/ID/$export) instead of loading files")
	clientID := fs.String("client-id", "", "--bulk: the backend service's client id at the source (none: the source needs no token)")
	keyFile := fs.String("key", "", "--bulk: PEM private key (RSA or EC) the client signs its assertions with (private_key_jwt)")
	keyID := fs.String("key-id", "", "--bulk: the key's kid, as the source's JWKS names it")
	tokenURL := fs.String("token-url", "", "--bulk: the source's token endpoint (default: from its .well-known/smart-configuration)")
	scope := fs.String("scope", "system/*.rs", "--bulk: the scopes asked for")
	since := fs.String("since", "", "--bulk: only what changed after this instant (the transactionTime a previous pull printed)")
	types := fs.String("type", "", "--bulk: comma-separated resource types to pull (default: all)")
	parallel := fs.Int("parallel", 4, "--bulk: files downloaded at once")
	work := fs.String("work", "hearth-bulk-pull", "--bulk: directory where downloads and the pull's state are kept, so that a stopped pull resumes")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: hearth import [--data DIR | --server URL] FILE...
       hearth import [--data DIR | --server URL] --bulk URL [--client-id ID --key FILE]

Loads NDJSON (.ndjson, one resource per line, ids kept) and Bundles (.json:
transactions and batches run as such, other bundles load their resources).
Files may be gzipped (.gz). Conditional references such as
Organization?identifier=… are resolved as a transaction would resolve them.

With --bulk, Hearth is a Bulk Data client: it authenticates as a SMART
backend service (client_credentials, private_key_jwt), kicks an export
off, polls it, downloads the files in parallel and loads them. Run the
same command again to resume a pull that stopped.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := envDefaults(fs); err != nil {
		return err
	}
	var pull *bulkPull
	switch {
	case *bulk != "" && fs.NArg() > 0:
		return errors.New("--bulk pulls from a server: give no files with it")
	case *bulk != "":
		kickoff, err := kickoffURL(*bulk, *since, *types)
		if err != nil {
			return err
		}
		pull = &bulkPull{kickoff: kickoff, clientID: *clientID, tokenURL: *tokenURL, scope: *scope, parallel: *parallel,
			work: *work, client: &http.Client{Timeout: 10 * time.Minute}, log: os.Stderr}
		if *clientID != "" {
			if *keyFile == "" {
				return errors.New("--client-id needs --key, the private key its assertions are signed with")
			}
			if pull.key, err = backend.LoadKey(*keyFile, *keyID); err != nil {
				return err
			}
		}
	case fs.NArg() == 0:
		fs.Usage()
		return errors.New("no files to import")
	}
	var sink resourceSink
	// Into a running server the API records each entry; into a data
	// directory the import is recorded as the operator's, once.
	var trail store.AuditLog
	if *serverURL != "" {
		sink = &httpSink{base: strings.TrimSuffix(*serverURL, "/"), token: *token, client: &http.Client{Timeout: 5 * time.Minute}}
	} else {
		st, _, err := openStore(*storeKind, *data)
		if err != nil {
			return err
		}
		defer st.Close()
		sink, trail = newStoreSink(st, *baseURL), st
	}
	var sum summary
	var err error
	from := fmt.Sprintf("from %d files", fs.NArg())
	if pull != nil {
		sum, err = pull.run(context.Background(), sink)
		from = "pulled from a Bulk Data export"
	} else {
		sum, err = importFiles(context.Background(), sink, fs.Args(), newProgress(os.Stderr, "importing"))
	}
	if trail != nil {
		outcome := audit.Success
		if err != nil || sum.rejected > 0 {
			outcome = audit.Minor
		}
		e := audit.Event{Type: audit.SecurityType, Subtype: audit.Import, Action: "C", Outcome: outcome,
			Detail: fmt.Sprintf("%d resources loaded, %d rejected, %s", sum.loaded, sum.rejected, from)}
		if recErr := trail.AppendAudit(context.Background(), []store.AuditRecord{audit.Facts(operator, e, time.Now())}); recErr != nil {
			fmt.Fprintln(os.Stderr, "hearth: the import's audit record failed:", recErr)
		}
	}
	sum.print(os.Stdout)
	if err != nil {
		return err
	}
	if sum.rejected > 0 {
		return fmt.Errorf("%d resources rejected", sum.rejected)
	}
	return nil
}

// seed loads the demo patients into a fresh store.
func seed(ctx context.Context, st store.Store, baseURL string, dirs []string, log *slog.Logger, progressTo *os.File, m *metrics.Metrics) error {
	var files []string
	for _, dir := range dirs {
		ndjson, _ := filepath.Glob(filepath.Join(dir, "*.ndjson*"))
		bundles, _ := filepath.Glob(filepath.Join(dir, "*.json*"))
		if len(bundles) > 0 && !transactional(st) {
			// Synthea's bundles are transactions, which need a MongoDB
			// replica set; the NDJSON patients still load.
			log.Warn("demo transaction bundles skipped: this MongoDB deployment has no multi-document transactions", slog.Int("bundles", len(bundles)))
			bundles = nil
		}
		files = append(append(files, ndjson...), bundles...)
	}
	if len(files) == 0 {
		log.Warn("no demo data to seed; run from the repository root or pass --seed-dir", slog.String("seed_dir", strings.Join(dirs, ",")))
		return nil
	}
	start := time.Now()
	prog := newProgress(progressTo, "seeding demo data")
	if prog != nil {
		prog.observe = func(loaded int, frac float64) { m.Load("seed", loaded, frac) }
	}
	sum, err := importFiles(ctx, newStoreSink(st, baseURL), files, prog)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	log.Info("seeded demo patients", slog.Int("resources", sum.loaded), slog.Int("rejected", sum.rejected), slog.Duration("took", time.Since(start)))
	return nil
}

// resourceSink is where import puts validated resources.
type resourceSink interface {
	// put stores a batch; it returns one error per resource (nil if stored).
	// An error wrapping interact.ErrUnresolved defers the resource: it is
	// retried once the other files are loaded.
	put(ctx context.Context, batch []parsedLine) ([]error, error)
	// bundle runs a transaction or batch Bundle; it returns how many
	// entries succeeded and one message per failed entry.
	bundle(ctx context.Context, body []byte) (loaded map[string]int, failures []string, err error)
}

type parsedLine struct {
	file   string
	line   int
	typ    string
	id     string
	body   []byte
	parsed map[string]any
}

type summary struct {
	loaded   int
	rejected int
	byType   map[string]int
	reasons  []string
}

// add counts o in s.
func (s *summary) add(o summary) {
	s.loaded += o.loaded
	s.rejected += o.rejected
	s.reasons = append(s.reasons, o.reasons...)
	for t, n := range o.byType {
		s.byType[t] += n
	}
}

func (s summary) print(w io.Writer) {
	fmt.Fprintf(w, "loaded %d resources, rejected %d\n", s.loaded, s.rejected)
	types := make([]string, 0, len(s.byType))
	for t := range s.byType {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		fmt.Fprintf(w, "  %-28s %d\n", t, s.byType[t])
	}
	for i, r := range s.reasons {
		if i == 50 {
			fmt.Fprintf(w, "  … and %d more rejections\n", len(s.reasons)-50)
			break
		}
		fmt.Fprintln(w, "  rejected:", r)
	}
}

const importBatch = 500

// importer validates every resource and stores the valid ones in batches.
// Rejections name the file, line and problem, never the content.
type importer struct {
	ctx      context.Context
	sink     resourceSink
	sum      summary
	raw      []parsedLine // read, not yet validated
	batch    []parsedLine
	deferred []parsedLine
}

func (im *importer) reject(file string, line int, why string) {
	im.sum.rejected++
	im.sum.reasons = append(im.sum.reasons, fmt.Sprintf("%s:%d: %s", filepath.Base(file), line, why))
}

// add queues one resource; validation happens a batch at a time, on
// every core.
func (im *importer) add(file string, line int, raw []byte) error {
	im.raw = append(im.raw, parsedLine{file: file, line: line, body: append([]byte(nil), raw...)})
	if len(im.raw) >= importBatch {
		return im.flush()
	}
	return nil
}

// validate validates the queued resources in parallel and moves the valid
// ones to the batch.
func (im *importer) validate() {
	issues := make([][]fhir.Issue, len(im.raw))
	errs := make([]error, len(im.raw))
	interact.Parallel(len(im.raw), func(i int) {
		p := &im.raw[i]
		p.typ, p.parsed, issues[i], errs[i] = fhir.ValidateDecoded(p.body)
		p.id, _ = p.parsed["id"].(string)
		if errs[i] == nil && len(issues[i]) == 0 {
			issues[i], _ = fhir.SplitIssues(invariant.Check(p.parsed)) // an import has no one to show warnings to
		}
	})
	for i, p := range im.raw {
		switch {
		case errs[i] != nil:
			im.reject(p.file, p.line, errs[i].Error())
		case len(issues[i]) > 0:
			im.reject(p.file, p.line, issues[i][0].Error()+moreIssues(len(issues[i])))
		default:
			im.batch = append(im.batch, p)
		}
	}
	im.raw = im.raw[:0]
}

func (im *importer) flush() error {
	im.validate()
	return im.put()
}

// put stores the validated batch.
func (im *importer) put() error {
	if len(im.batch) == 0 {
		return nil
	}
	errs, err := im.sink.put(im.ctx, im.batch)
	if err != nil {
		return err
	}
	for i, e := range errs {
		p := im.batch[i]
		switch {
		case e == nil:
			im.sum.loaded++
			im.sum.byType[p.typ]++
		case errors.Is(e, interact.ErrUnresolved):
			im.deferred = append(im.deferred, p)
		default:
			im.reject(p.file, p.line, e.Error())
		}
	}
	im.batch = im.batch[:0]
	return nil
}

// retryDeferred loads the resources whose references named resources that
// came later, until a pass makes no progress.
func (im *importer) retryDeferred() error {
	for len(im.deferred) > 0 {
		pending := im.deferred
		im.deferred = nil
		for start := 0; start < len(pending); start += importBatch {
			im.batch = append(im.batch[:0], pending[start:min(start+importBatch, len(pending))]...)
			if err := im.put(); err != nil {
				return err
			}
		}
		if len(im.deferred) == len(pending) {
			for _, p := range im.deferred {
				im.reject(p.file, p.line, "a conditional reference matches no resource")
			}
			im.deferred = nil
		}
	}
	return nil
}

func importFiles(ctx context.Context, sink resourceSink, files []string, prog *progress) (summary, error) {
	im := &importer{ctx: ctx, sink: sink, sum: summary{byType: map[string]int{}}}
	var total, done int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			total += fi.Size()
		}
	}
	for _, file := range files {
		n, err := im.file(file, func(read int64) { prog.show(done+read, total, im.sum.loaded) })
		if err != nil {
			return im.sum, err
		}
		done += n
	}
	if err := im.flush(); err != nil {
		return im.sum, err
	}
	if err := im.retryDeferred(); err != nil {
		return im.sum, err
	}
	prog.finish(im.sum.loaded)
	return im.sum, nil
}

// file loads one file and returns how many of its bytes it read.
func (im *importer) file(file string, progress func(int64)) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	counted := &countingReader{r: f}
	var r io.Reader = counted
	name := file
	if strings.HasSuffix(file, ".gz") {
		zr, err := gzip.NewReader(counted)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", file, err)
		}
		r = zr
		name = strings.TrimSuffix(file, ".gz")
	}
	if strings.HasSuffix(name, ".json") {
		body, err := io.ReadAll(r)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", file, err)
		}
		return counted.n, im.document(file, body)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		if err := im.add(file, line, raw); err != nil {
			return 0, err
		}
		if line%importBatch == 0 {
			progress(counted.n)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s:%d: %w", file, line, err)
	}
	return counted.n, nil
}

// document loads a .json file: a transaction or batch runs as one; any
// other Bundle gives its resources; anything else is one resource.
func (im *importer) document(file string, body []byte) error {
	var head struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		im.reject(file, 1, "not valid JSON")
		return nil
	}
	if head.ResourceType != "Bundle" {
		return im.add(file, 1, body)
	}
	if head.Type == "transaction" || head.Type == "batch" {
		if err := im.flush(); err != nil {
			return err
		}
		loaded, failures, err := im.sink.bundle(im.ctx, body)
		if err != nil {
			im.reject(file, 1, err.Error())
			return nil
		}
		for t, n := range loaded {
			im.sum.loaded += n
			im.sum.byType[t] += n
		}
		for _, f := range failures {
			im.reject(file, 1, f)
		}
		return nil
	}
	for i, e := range head.Entry {
		if len(e.Resource) > 0 {
			if err := im.add(file, i+1, e.Resource); err != nil {
				return err
			}
		}
	}
	return nil
}

func moreIssues(n int) string {
	if n <= 1 {
		return ""
	}
	return fmt.Sprintf(" (and %d more issues)", n-1)
}

// progress reports how far an import or the demo seed has come: a bar
// redrawn in place on a terminal, and a plain line every few seconds
// anywhere else (a log file gets no carriage-return frames).
type progress struct {
	w     io.Writer
	label string
	tty   bool
	last  time.Time
	// observe, when set, is told every step (the metrics' load gauges).
	observe func(loaded int, fraction float64)
}

// newProgress reports to f; nil f reports nothing.
func newProgress(f *os.File, label string) *progress {
	if f == nil {
		return nil
	}
	fi, err := f.Stat()
	return &progress{w: f, label: label, tty: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) show(done, total int64, loaded int) {
	if p == nil || total == 0 {
		return
	}
	done = min(done, total)
	if p.observe != nil {
		p.observe(loaded, float64(done)/float64(total))
	}
	if p.tty {
		const width = 30
		filled := int(done * width / total)
		fmt.Fprintf(p.w, "\r%s [%s%s] %3d%%  %d resources", p.label, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), done*100/total, loaded)
		return
	}
	if now := time.Now(); now.Sub(p.last) >= 2*time.Second {
		p.last = now
		fmt.Fprintf(p.w, "%s: %d%% (%d resources)\n", p.label, done*100/total, loaded)
	}
}

func (p *progress) finish(loaded int) {
	if p == nil {
		return
	}
	if p.tty {
		fmt.Fprintln(p.w)
	}
	fmt.Fprintf(p.w, "%s: done, %d resources\n", p.label, loaded)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// storeSink writes a batch in one transaction. Lines with an id keep it
// (update-as-create); lines without one get a server id. Conditional
// references are resolved first; a line whose reference matches nothing
// yet is left out of the transaction and deferred.
type storeSink struct {
	st      store.Store
	session *interact.Session
}

// newStoreSink loads through an unrestricted session of the door: the
// importer is the operator loading data, and asks for that by name.
func newStoreSink(st store.Store, baseURL string) *storeSink {
	return &storeSink{st: st, session: interact.New(st, interact.Config{BaseURL: baseURL}).Unrestricted(operator)}
}

// transactional is whether the store commits several writes atomically;
// MongoDB without a replica set does not.
func transactional(st store.Store) bool {
	ts, ok := st.(interface{ SupportsTransactions() bool })
	return !ok || ts.SupportsTransactions()
}

func (s *storeSink) put(ctx context.Context, batch []parsedLine) ([]error, error) {
	if len(batch) > 1 && !transactional(s.st) {
		// One write per transaction: what the store can do atomically.
		errs := make([]error, len(batch))
		for i := range batch {
			e, err := s.put(ctx, batch[i:i+1])
			if err != nil {
				return nil, err
			}
			errs[i] = e[0]
		}
		return errs, nil
	}
	items := make([]interact.LoadItem, len(batch))
	for i, p := range batch {
		items[i] = interact.LoadItem{Type: p.typ, ID: p.id, Body: interact.Body{Raw: p.body, Parsed: p.parsed}}
	}
	return s.session.Load(ctx, items)
}

func (s *storeSink) bundle(ctx context.Context, body []byte) (map[string]int, []string, error) {
	resp, err := server.ProcessBundle(ctx, s.session, body, "minimal")
	if err != nil {
		_, msg := server.BundleError(err)
		return nil, nil, errors.New(msg)
	}
	return bundleOutcome(resp)
}

// bundleOutcome counts what a batch- or transaction-response reports.
func bundleOutcome(resp []byte) (map[string]int, []string, error) {
	var b struct {
		Entry []struct {
			Response struct {
				Status   string          `json:"status"`
				Location string          `json:"location"`
				Outcome  json.RawMessage `json:"outcome"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(resp, &b); err != nil {
		return nil, nil, fmt.Errorf("bundle response: %w", err)
	}
	loaded := map[string]int{}
	var failures []string
	for i, e := range b.Entry {
		if strings.HasPrefix(e.Response.Status, "2") {
			typ, _, _ := strings.Cut(e.Response.Location, "/")
			if typ == "" {
				typ = "(unchanged)"
			}
			loaded[typ]++
			continue
		}
		failures = append(failures, fmt.Sprintf("entry %d: %s %s", i, e.Response.Status, outcomeText(e.Response.Outcome)))
	}
	return loaded, failures, nil
}

// httpSink sends each batch to a running server as a batch Bundle of
// PUTs (POSTs without an id), so the server resolves conditional references.
type httpSink struct {
	base   string
	token  string
	client *http.Client
}

func (h *httpSink) post(ctx context.Context, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Prefer", "return=minimal")
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("server answered %s: %s", resp.Status, outcomeText(out))
	}
	return out, nil
}

func (h *httpSink) put(ctx context.Context, batch []parsedLine) ([]error, error) {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"batch","entry":[`)
	for i, p := range batch {
		if i > 0 {
			b.WriteByte(',')
		}
		req := fmt.Sprintf(`{"method":"PUT","url":%q}`, p.typ+"/"+p.id)
		if p.id == "" {
			req = fmt.Sprintf(`{"method":"POST","url":%q}`, p.typ)
		}
		b.WriteString(`{"resource":`)
		b.Write(p.body)
		b.WriteString(`,"request":` + req + `}`)
	}
	b.WriteString(`]}`)
	resp, err := h.post(ctx, b.Bytes())
	if err != nil {
		return nil, err
	}
	var rb struct {
		Entry []struct {
			Response struct {
				Status  string          `json:"status"`
				Outcome json.RawMessage `json:"outcome"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(resp, &rb); err != nil || len(rb.Entry) != len(batch) {
		return nil, errors.New("the server's batch response does not match the batch")
	}
	errs := make([]error, len(batch))
	for i, e := range rb.Entry {
		if strings.HasPrefix(e.Response.Status, "2") {
			continue
		}
		msg := outcomeText(e.Response.Outcome)
		errs[i] = fmt.Errorf("server answered %s: %s", e.Response.Status, msg)
		if strings.Contains(msg, "matches no resource") {
			errs[i] = fmt.Errorf("%s: %w", msg, interact.ErrUnresolved)
		}
	}
	return errs, nil
}

func (h *httpSink) bundle(ctx context.Context, body []byte) (map[string]int, []string, error) {
	resp, err := h.post(ctx, body)
	if err != nil {
		return nil, nil, err
	}
	return bundleOutcome(resp)
}

// outcomeText pulls the first diagnostics out of an OperationOutcome.
func outcomeText(body []byte) string {
	var oo struct {
		Issue []struct {
			Diagnostics string   `json:"diagnostics"`
			Expression  []string `json:"expression"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(body, &oo); err != nil || len(oo.Issue) == 0 {
		return "no OperationOutcome"
	}
	is := oo.Issue[0]
	if len(is.Expression) > 0 {
		return is.Expression[0] + ": " + is.Diagnostics
	}
	return is.Diagnostics
}
