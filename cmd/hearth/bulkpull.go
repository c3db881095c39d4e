package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-fhir/hearth/smart/backend"
)

// bulkPull is `hearth import --bulk URL`: Hearth as a Bulk Data client.
// It authenticates as a SMART backend service, kicks an export off, polls
// it, downloads the files in parallel and loads them with the importer's
// validation. Where it stands is kept in a state file in its work
// directory, so that a pull stopped at any point resumes: the same export
// is polled again, files already downloaded are not fetched again and
// files already loaded are not loaded again.
type bulkPull struct {
	kickoff  string // the kick-off URL, parameters included
	clientID string
	key      *backend.Key
	tokenURL string
	scope    string
	parallel int
	work     string
	client   *http.Client
	log      io.Writer

	mu       sync.Mutex
	token    string
	tokenExp time.Time
	state    pullState
}

// pullState is what a pull has done, as its state file keeps it.
type pullState struct {
	Kickoff         string
	Status          string // the status URL the kick-off answered with
	TransactionTime string
	Files           []pullFile
	Finished        bool // the server's export was deleted after loading
}

type pullFile struct {
	URL        string
	Type       string
	Name       string // in the work directory
	Deleted    bool   // a file of deletions (transaction Bundles)
	Downloaded bool
	Loaded     bool
}

// bulkBase is the FHIR base of a kick-off URL.
var bulkBase = regexp.MustCompile(`(/Patient|/Group/[^/]+)?/\$export.*$`)

// kickoffURL makes the kick-off URL from --bulk and the parameters.
func kickoffURL(bulk, since, types string) (string, error) {
	u, err := url.Parse(bulk)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("--bulk: %q is not a URL", bulk)
	}
	if !strings.Contains(u.Path, "$export") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/$export"
	}
	q := u.Query()
	if since != "" {
		if _, err := time.Parse(time.RFC3339Nano, since); err != nil {
			return "", fmt.Errorf("--since must be an instant with a time zone (2024-01-02T03:04:05Z): %q", since)
		}
		q.Set("_since", since)
	}
	if types != "" {
		q.Set("_type", types)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func (p *bulkPull) statePath() string { return filepath.Join(p.work, "pull-state.json") }

// loadState resumes the pull of the same kick-off, if one was under way.
func (p *bulkPull) loadState() error {
	if err := os.MkdirAll(p.work, 0o700); err != nil {
		return err
	}
	raw, err := os.ReadFile(p.statePath())
	if errors.Is(err, os.ErrNotExist) {
		p.state = pullState{Kickoff: p.kickoff}
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &p.state); err != nil {
		return fmt.Errorf("%s: %w", p.statePath(), err)
	}
	if p.state.Kickoff != p.kickoff || p.state.Finished {
		// Another pull's leftovers: this one starts afresh.
		p.state = pullState{Kickoff: p.kickoff}
		return nil
	}
	fmt.Fprintf(p.log, "resuming the pull of %s\n", p.kickoff)
	return nil
}

// saveState writes the state file whole (temporary file, then rename).
func (p *bulkPull) saveState() error {
	p.mu.Lock()
	raw, err := json.MarshalIndent(p.state, "", "  ")
	p.mu.Unlock()
	if err != nil {
		return err
	}
	tmp := p.statePath() + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.statePath())
}

// bearer returns a token for the source server: none without
// --client-id, else one by client_credentials, renewed when it expires.
func (p *bulkPull) bearer(ctx context.Context, renew bool) (string, error) {
	if p.clientID == "" {
		return "", nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !renew && p.token != "" && time.Now().Before(p.tokenExp) {
		return p.token, nil
	}
	if p.tokenURL == "" {
		base := bulkBase.ReplaceAllString(strings.SplitN(p.kickoff, "?", 2)[0], "")
		var sc struct {
			TokenEndpoint string `json:"token_endpoint"`
		}
		if err := p.getJSON(ctx, base+"/.well-known/smart-configuration", &sc); err != nil {
			return "", fmt.Errorf("discovering the token endpoint: %w", err)
		}
		if sc.TokenEndpoint == "" {
			return "", errors.New("the server's smart-configuration names no token_endpoint (give --token-url)")
		}
		p.tokenURL = sc.TokenEndpoint
	}
	assertion, err := p.key.Assertion(p.clientID, p.tokenURL)
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {p.scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	req, _ := http.NewRequestWithContext(ctx, "POST", p.tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("token endpoint: HTTP %d %s %s", resp.StatusCode, tok.Error, tok.Description)
	}
	p.token = tok.AccessToken
	p.tokenExp = time.Now().Add(time.Duration(max(tok.ExpiresIn-30, 30)) * time.Second)
	return p.token, nil
}

func (p *bulkPull) getJSON(ctx context.Context, u string, into any) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// do sends a request with the bearer token, renewing it once on a 401.
func (p *bulkPull) do(ctx context.Context, method, u string, header ...string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		tok, err := p.bearer(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, err
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := p.client.Do(req)
		if err != nil || resp.StatusCode != http.StatusUnauthorized || attempt > 0 || p.clientID == "" {
			return resp, err
		}
		resp.Body.Close()
	}
}

// failure is an error answer's OperationOutcome text.
func failure(what string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return fmt.Errorf("%s: HTTP %d: %s", what, resp.StatusCode, outcomeText(body))
}

// start kicks the export off, unless the state names one already.
func (p *bulkPull) start(ctx context.Context) error {
	if p.state.Status != "" {
		return nil
	}
	resp, err := p.do(ctx, "GET", p.kickoff, "Accept", "application/fhir+json", "Prefer", "respond-async")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return failure("kick-off", resp)
	}
	loc := resp.Header.Get("Content-Location")
	if loc == "" {
		return errors.New("kick-off: the server answered 202 without Content-Location")
	}
	p.state.Status = loc
	return p.saveState()
}

// await polls the status URL until the export is complete, waiting as
// Retry-After asks, and records the manifest's files.
func (p *bulkPull) await(ctx context.Context) error {
	if p.state.TransactionTime != "" {
		return nil
	}
	last := ""
	for {
		resp, err := p.do(ctx, "GET", p.state.Status, "Accept", "application/json")
		if err != nil {
			return err
		}
		switch resp.StatusCode {
		case http.StatusAccepted, http.StatusTooManyRequests:
			resp.Body.Close()
			if pr := resp.Header.Get("X-Progress"); pr != "" && pr != last {
				fmt.Fprintf(p.log, "exporting: %s\n", pr)
				last = pr
			}
			wait := 2 * time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = min(time.Duration(s)*time.Second, time.Minute)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			continue
		case http.StatusOK:
		case http.StatusNotFound:
			resp.Body.Close()
			return fmt.Errorf("the export at %s is gone (expired or cancelled on the server); remove %s to start a new one", p.state.Status, p.statePath())
		default:
			defer resp.Body.Close()
			return failure("export", resp)
		}
		var m struct {
			TransactionTime string `json:"transactionTime"`
			Output, Deleted []struct {
				Type string `json:"type"`
				URL  string `json:"url"`
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("the manifest is not JSON: %w", err)
		}
		for i, o := range m.Output {
			p.state.Files = append(p.state.Files, pullFile{URL: o.URL, Type: o.Type, Name: fmt.Sprintf("%04d-%s.ndjson", i, o.Type)})
		}
		for i, o := range m.Deleted {
			p.state.Files = append(p.state.Files, pullFile{URL: o.URL, Type: o.Type, Name: fmt.Sprintf("deleted-%04d.ndjson", i), Deleted: true})
		}
		p.state.TransactionTime = m.TransactionTime
		return p.saveState()
	}
}

// download fetches every file not yet downloaded, p.parallel at a time.
func (p *bulkPull) download(ctx context.Context) error {
	var todo []int
	for i, f := range p.state.Files {
		if !f.Downloaded {
			todo = append(todo, i)
		}
	}
	prog := newProgress(os.Stderr, "downloading")
	total, done := int64(len(p.state.Files)), int64(len(p.state.Files)-len(todo))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(p.parallel, 1) {
		wg.Go(func() {
			for i := range next {
				if err := p.fetch(ctx, i); err != nil {
					cancel(err)
					return
				}
				p.mu.Lock()
				p.state.Files[i].Downloaded = true
				done++
				prog.show(done, total, 0)
				p.mu.Unlock()
				if err := p.saveState(); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
feed:
	for _, i := range todo {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if len(todo) > 0 && prog != nil && prog.tty {
		fmt.Fprintln(os.Stderr)
	}
	return nil
}

// fetch downloads one file whole: into a temporary file, renamed once
// complete, so that a file in the work directory is never half of one.
func (p *bulkPull) fetch(ctx context.Context, i int) error {
	f := p.state.Files[i]
	resp, err := p.do(ctx, "GET", f.URL, "Accept", "application/fhir+ndjson")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return failure(f.URL, resp)
	}
	path := filepath.Join(p.work, f.Name)
	tmp, err := os.CreateTemp(p.work, ".download-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, resp.Body); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", f.URL, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// load loads the downloaded files not yet loaded: resources through the
// importer (validation, ids kept), then deletions as transactions.
func (p *bulkPull) load(ctx context.Context, sink resourceSink) (summary, error) {
	sum := summary{byType: map[string]int{}}
	for i, f := range p.state.Files {
		if f.Loaded {
			continue
		}
		path := filepath.Join(p.work, f.Name)
		var err error
		if f.Deleted {
			err = p.applyDeletions(ctx, sink, path, &sum)
		} else {
			var s summary
			s, err = importFiles(ctx, sink, []string{path}, nil)
			sum.add(s)
			fmt.Fprintf(p.log, "loaded %s: %d %s\n", f.Name, s.loaded, f.Type)
		}
		if err != nil {
			return sum, err
		}
		p.state.Files[i].Loaded = true
		if err := p.saveState(); err != nil {
			return sum, err
		}
	}
	return sum, nil
}

// applyDeletions runs each line of a deleted file (a transaction Bundle of
// DELETEs) as a batch: deleting what is already gone is no failure.
func (p *bulkPull) applyDeletions(ctx context.Context, sink resourceSink, path string, sum *summary) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		line := strings.Replace(sc.Text(), `"type":"transaction"`, `"type":"batch"`, 1)
		if strings.TrimSpace(line) == "" {
			continue
		}
		loaded, _, err := sink.bundle(ctx, []byte(line))
		if err != nil {
			return err
		}
		for _, n := range loaded {
			sum.byType["(deleted)"] += n
		}
	}
	return sc.Err()
}

// finish deletes the export on the server (its files are no longer
// needed) and the state, so that the next pull starts afresh.
func (p *bulkPull) finish(ctx context.Context) {
	if resp, err := p.do(ctx, "DELETE", p.state.Status); err == nil {
		resp.Body.Close()
	}
	p.state.Finished = true
	p.saveState()
	for _, f := range p.state.Files {
		os.Remove(filepath.Join(p.work, f.Name))
	}
}

// run carries the pull out into sink.
func (p *bulkPull) run(ctx context.Context, sink resourceSink) (summary, error) {
	if err := p.loadState(); err != nil {
		return summary{}, err
	}
	if err := p.start(ctx); err != nil {
		return summary{}, err
	}
	if err := p.await(ctx); err != nil {
		return summary{}, err
	}
	fmt.Fprintf(p.log, "export complete: %d files as of %s\n", len(p.state.Files), p.state.TransactionTime)
	if err := p.download(ctx); err != nil {
		return summary{}, err
	}
	sum, err := p.load(ctx, sink)
	if err != nil {
		return sum, err
	}
	p.finish(ctx)
	fmt.Fprintf(p.log, "pulled as of %s; to pull what changed since: --since %s\n", p.state.TransactionTime, p.state.TransactionTime)
	return sum, nil
}
