// Package kit is Hearth's conformance kit: checks any FHIR R4 server can
// be put through over HTTP — the honesty of its CapabilityStatement, REST
// semantics on data the kit creates and removes, search semantics on data
// it loads, SMART discovery and a standalone launch, a two-patient leak
// probe, and US Core conformance of what the server returns. It knows
// nothing of Hearth's internals: `hearth conformance --base URL` points it
// at any server.
package kit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Config says where the server is and how to act on it.
type Config struct {
	Base string // the FHIR base URL
	// Token is a bearer token for the data suites; if empty and ClientID is
	// set, one is obtained by client_credentials (a backend service).
	Token        string
	ClientID     string
	ClientSecret string // client_secret_basic
	KeyFile      string // PEM private key for private_key_jwt (SMART Backend Services)
	KeyID        string // its kid, if the server needs one
	Scope        string // scopes asked for (default system/*.cruds)
	// Suites to run: capability, rest, search, smart, uscore (default all).
	Suites []string
	// A standalone launch: a registered user-facing app and a user who
	// can sign in; the form field names of the sign-in page are
	// configurable, the defaults are username and password.
	LaunchClientID string
	RedirectURI    string
	Username       string
	Password       string
	UserField      string
	PasswordField  string
	// HTTP is the client used (default: 30 s timeout).
	HTTP *http.Client
	// Progress, when set, receives a live progress line.
	Progress io.Writer
}

// Status is a check's outcome.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
	Warn Status = "warn" // the server passes; what it holds does not (US Core of existing data)
)

// Result is one check.
type Result struct {
	Suite    string
	Name     string
	Status   Status
	Detail   string
	Duration time.Duration
}

// Report is a run's results.
type Report struct {
	Base     string
	Started  time.Time
	Duration time.Duration
	Results  []Result
}

// Failed reports whether any check failed.
func (r *Report) Failed() bool {
	for _, res := range r.Results {
		if res.Status == Fail {
			return true
		}
	}
	return false
}

// AllSuites are the suites in the order they run.
var AllSuites = []string{"capability", "rest", "search", "smart", "uscore"}

// Run runs the chosen suites against the server.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Base == "" {
		return nil, fmt.Errorf("the base URL of the server is needed")
	}
	cfg.Base = strings.TrimSuffix(cfg.Base, "/")
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if len(cfg.Suites) == 0 {
		cfg.Suites = AllSuites
	}
	for _, s := range cfg.Suites {
		if !slices.Contains(AllSuites, s) {
			return nil, fmt.Errorf("unknown suite %q (suites: %s)", s, strings.Join(AllSuites, ", "))
		}
	}
	k := &kit{cfg: cfg, ctx: ctx, report: &Report{Base: cfg.Base, Started: time.Now()}}
	k.token = cfg.Token
	if k.token == "" && cfg.ClientID != "" {
		tok, err := k.clientCredentials()
		if err != nil {
			return nil, fmt.Errorf("getting a token as %s: %w", cfg.ClientID, err)
		}
		k.token = tok
	}
	suites := map[string]func(){
		"capability": k.capabilitySuite,
		"rest":       k.restSuite,
		"search":     k.searchSuite,
		"smart":      k.smartSuite,
		"uscore":     k.usCoreSuite,
	}
	for _, s := range AllSuites {
		if slices.Contains(cfg.Suites, s) {
			k.suite = s
			suites[s]()
		}
	}
	k.progressDone()
	k.report.Duration = time.Since(k.report.Started)
	return k.report, nil
}

type kit struct {
	cfg    Config
	ctx    context.Context
	token  string
	report *Report
	suite  string
	cs     map[string]any // the CapabilityStatement, once read
	// lastToken is the last token endpoint answer (patient, scope, id_token).
	lastToken map[string]any
}

// check runs one named check; fn returns "" to pass, or why it failed.
// A check that cannot run returns skipf.
func (k *kit) check(name string, fn func() error) {
	k.progress(name)
	start := time.Now()
	err := fn()
	res := Result{Suite: k.suite, Name: name, Status: Pass, Duration: time.Since(start)}
	switch e := err.(type) {
	case nil:
	case skipError:
		res.Status, res.Detail = Skip, string(e)
	case warnError:
		res.Status, res.Detail = Warn, string(e)
	default:
		res.Status, res.Detail = Fail, err.Error()
	}
	k.report.Results = append(k.report.Results, res)
}

type skipError string

func (e skipError) Error() string { return string(e) }

type warnError string

func (e warnError) Error() string { return string(e) }

func skipf(format string, args ...any) error { return skipError(fmt.Sprintf(format, args...)) }
func warnf(format string, args ...any) error { return warnError(fmt.Sprintf(format, args...)) }

func (k *kit) progress(name string) {
	if k.cfg.Progress == nil {
		return
	}
	pass, fail := 0, 0
	for _, r := range k.report.Results {
		switch r.Status {
		case Pass:
			pass++
		case Fail:
			fail++
		}
	}
	line := fmt.Sprintf("[%s] %d passed, %d failed · %s", k.suite, pass, fail, name)
	if len(line) > 100 {
		line = line[:100]
	}
	fmt.Fprintf(k.cfg.Progress, "\r\033[K%s", line)
}

func (k *kit) progressDone() {
	if k.cfg.Progress != nil {
		fmt.Fprint(k.cfg.Progress, "\r\033[K")
	}
}

// response is an HTTP answer, its body decoded when it is JSON.
type response struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

// do sends a request to the FHIR base (path relative to it, or absolute)
// with the kit's token, or with token when given.
func (k *kit) do(method, path string, body any, headers ...string) (*response, error) {
	return k.doWith(k.token, method, path, body, headers...)
}

func (k *kit) doWith(token, method, path string, body any, headers ...string) (*response, error) {
	u := path
	if !strings.HasPrefix(path, "http://") && !strings.HasPrefix(path, "https://") {
		u = k.cfg.Base + "/" + strings.TrimPrefix(path, "/")
	}
	var rd io.Reader
	contentType := "application/fhir+json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case url.Values:
		rd = strings.NewReader(b.Encode())
		contentType = "application/x-www-form-urlencoded"
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(k.ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if rd != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := k.cfg.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	r := &response{status: resp.StatusCode, header: resp.Header, body: raw}
	if len(raw) > 0 && (raw[0] == '{') {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		_ = d.Decode(&r.json)
	}
	return r, nil
}

// expect fails unless the status is one of want.
func (r *response) expect(what string, want ...int) error {
	for _, w := range want {
		if r.status == w {
			return nil
		}
	}
	detail := ""
	if r.json != nil && r.json["resourceType"] == "OperationOutcome" {
		if issues, _ := r.json["issue"].([]any); len(issues) > 0 {
			is, _ := issues[0].(map[string]any)
			detail = fmt.Sprintf(" (%v)", is["diagnostics"])
		}
	}
	return fmt.Errorf("%s: HTTP %d, want %v%s", what, r.status, want, detail)
}

// str reads a string member of a decoded object.
func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// entries are a Bundle's entry resources.
func entries(bundle map[string]any) []map[string]any {
	list, _ := bundle["entry"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		em, _ := e.(map[string]any)
		if res, ok := em["resource"].(map[string]any); ok {
			out = append(out, res)
		}
	}
	return out
}

// ids are the "Type/id" of a Bundle's entries, in order.
func ids(bundle map[string]any) []string {
	var out []string
	for _, res := range entries(bundle) {
		out = append(out, str(res, "resourceType")+"/"+str(res, "id"))
	}
	return out
}

// runID tells this run's data apart from anything else on the server.
func runID() string { return fmt.Sprintf("%x", time.Now().UnixNano())[4:] }
