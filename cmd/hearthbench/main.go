// Command hearthbench measures a running Hearth with wrk: reads by id,
// creates, and in the same run the read rate of a bare net/http server that
// writes the same resource bytes from memory (the ceiling for this machine).
//
//	go run ./cmd/hearthbench --hearth bin/hearth
//	go run ./cmd/hearthbench search --data bench-data/db
//
// The search mode measures searches, $everything and transaction ingest on
// the dataset `hearth generate` makes (make bench-data).
//
// It starts `hearth serve` on a fresh data directory seeded with the demo
// dataset (testdata/synthea-10, 7,160 resources), so figures are comparable
// from run to run.
package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bare" {
		bare(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "search" {
		searchBench(os.Args[2:])
		return
	}
	hearth := flag.String("hearth", "bin/hearth", "hearth binary")
	duration := flag.Duration("duration", 10*time.Second, "length of each wrk run")
	conns := flag.Int("connections", 32, "wrk connections")
	threads := flag.Int("threads", 2, "wrk threads")
	seedDir := flag.String("seed-dir", "testdata/synthea-10", "dataset loaded before measuring")
	extra := flag.String("hearth-args", "", "extra arguments for hearth serve (space-separated)")
	storeURI := flag.String("store", "", "a mongodb:// URL to measure the MongoDB backend (default: the embedded store)")
	ferret := flag.String("ferretdb", "", "start this FerretDB binary and measure the MongoDB backend on it")
	flag.Parse()
	if _, err := exec.LookPath("wrk"); err != nil {
		fail("wrk is not installed (apt-get install wrk)")
	}
	work, err := os.MkdirTemp("", "hearthbench")
	check(err)
	defer os.RemoveAll(work)

	addr := freeAddr()
	// First run open (the API's own cost), then again with authorization
	// on and a bearer token on every request (the cost of the token check).
	args := []string{"serve", "--listen", addr, "--data", filepath.Join(work, "data"), "--seed-dir", *seedDir, "--log-level", "warn", "--open"}
	if *ferret != "" {
		fdb, uri := startFerretDB(*ferret, work)
		defer fdb.Process.Kill()
		*storeURI = uri
	}
	if *storeURI != "" {
		args = append(args, "--store", *storeURI, "--seed")
		// Only the Patients are read: on FerretDB, which scans a collection
		// for every query, loading the whole demo set takes minutes.
		patientsOnly := filepath.Join(work, "seed")
		check(os.MkdirAll(patientsOnly, 0o700))
		files, _ := filepath.Glob(filepath.Join(*seedDir, "Patient.*ndjson*"))
		for _, f := range files {
			abs, err := filepath.Abs(f)
			check(err)
			check(os.Symlink(abs, filepath.Join(patientsOnly, filepath.Base(f))))
		}
		args[slices.Index(args, *seedDir)] = patientsOnly
	}
	if *extra != "" {
		args = append(args, strings.Fields(*extra)...)
	}
	srv := exec.Command(*hearth, args...)
	srv.Stderr = os.Stderr
	check(srv.Start())
	defer srv.Process.Kill()
	base := "http://" + addr + "/fhir"
	waitUp(base + "/metadata")

	// The read set: every seeded Patient, fetched once to give the bare
	// server the very same bytes.
	paths, bodies := patients(base)
	fmt.Printf("dataset: %s (%d patients, mean Patient %d bytes)\n", *seedDir, len(paths), meanLen(bodies))
	if *storeURI != "" {
		fmt.Printf("store: %s\n", *storeURI)
	}
	bareDir := filepath.Join(work, "bare")
	check(os.MkdirAll(bareDir, 0o700))
	for i := range paths {
		check(os.WriteFile(filepath.Join(bareDir, fmt.Sprint(i)), bodies[i], 0o600))
	}
	bareAddr := freeAddr()
	self, err := os.Executable()
	check(err)
	bareCmd := exec.Command(self, append([]string{"bare", bareAddr, bareDir}, paths...)...)
	bareCmd.Stderr = os.Stderr
	check(bareCmd.Start())
	defer bareCmd.Process.Kill()
	waitUp("http://" + bareAddr + paths[0])

	readScript := filepath.Join(work, "read.lua")
	check(os.WriteFile(readScript, []byte(rotateScript(paths, "")), 0o600))
	createScript := filepath.Join(work, "create.lua")
	check(os.WriteFile(createScript, []byte(createLua), 0o600))

	w := wrkArgs{threads: *threads, conns: *conns, duration: *duration}
	// Warm up both servers (page cache, read cache, Go runtime).
	w.run("http://"+addr, readScript, 2*time.Second)
	w.run("http://"+bareAddr, readScript, 2*time.Second)

	read := w.run("http://"+addr, readScript, w.duration)
	ceiling := w.run("http://"+bareAddr, readScript, w.duration)
	create := w.run("http://"+addr+"/fhir/Patient", createScript, w.duration)

	// The same reads through the SMART token check.
	srv.Process.Kill()
	srv.Wait()
	var authArgs []string
	for _, a := range args {
		if a != "--open" {
			authArgs = append(authArgs, a)
		}
	}
	// Token-checked reads with the audit trail on and off, three times
	// each, interleaved: this machine's rate drifts by 10% from one run
	// to the next, and the ratio of two single runs drifted with it. The
	// median of each pair's ratio (and of each pair's p99 difference) is
	// reported: a pair runs side by side in time.
	tokenReads := func(extra ...string) wrkResult {
		srv := exec.Command(*hearth, append(slices.Clone(authArgs), extra...)...)
		srv.Stderr = io.Discard
		check(srv.Start())
		defer func() { srv.Process.Kill(); srv.Wait() }()
		waitUp(base + "/metadata")
		script := filepath.Join(work, "read-token.lua")
		check(os.WriteFile(script, []byte(rotateScript(paths, backendToken("http://"+addr))), 0o600))
		w.run("http://"+addr, script, 2*time.Second)
		return w.run("http://"+addr, script, w.duration)
	}
	var audited, unaudited []wrkResult
	for range 3 {
		audited = append(audited, tokenReads())
		unaudited = append(unaudited, tokenReads("--audit=off"))
	}
	readToken, readOff := median(audited), median(unaudited)
	var ratios []float64
	var p99Growth []time.Duration
	for i := range audited {
		ratios = append(ratios, audited[i].rps/unaudited[i].rps)
		a, _ := time.ParseDuration(audited[i].p99)
		u, _ := time.ParseDuration(unaudited[i].p99)
		p99Growth = append(p99Growth, a-u)
	}
	slices.Sort(ratios)
	slices.Sort(p99Growth)

	fmt.Printf("\n%-34s %12s %10s %10s\n", "", "req/s", "p50", "p99")
	fmt.Printf("%-34s %12.0f %10s %10s\n", "read by id (Hearth, --open)", read.rps, read.p50, read.p99)
	fmt.Printf("%-34s %12.0f %10s %10s\n", "read by id (Hearth, bearer token)", readToken.rps, readToken.p50, readToken.p99)
	fmt.Printf("%-34s %12.0f %10s %10s\n", "read by id (token, audit off)", readOff.rps, readOff.p50, readOff.p99)
	fmt.Printf("%-34s %12.0f %10s %10s\n", "read by id (bare net/http ceiling)", ceiling.rps, ceiling.p50, ceiling.p99)
	fmt.Printf("%-34s %12.0f %10s %10s\n", "create Patient (durable commit)", create.rps, create.p50, create.p99)
	fmt.Printf("\nread ratio Hearth / ceiling: %.2f\n", read.rps/ceiling.rps)
	fmt.Printf("token-checked reads / open reads: %.2f\n", readToken.rps/read.rps)
	fmt.Printf("token-read ratio (token-checked reads / ceiling): %.2f (target ≥ 0.60)\n", readToken.rps/ceiling.rps)
	fmt.Printf("audited / unaudited token reads (median of 3 pairs): %.2f (target ≥ 0.85); p99 grows by %s (target < 2ms)\n", ratios[1], p99Growth[1])
	for i := range audited {
		fmt.Printf("  pair %d: audited %.0f req/s (p99 %s), unaudited %.0f req/s (p99 %s)\n", i+1, audited[i].rps, audited[i].p99, unaudited[i].rps, unaudited[i].p99)
	}
	if read.non2xx > 0 || create.non2xx > 0 || readToken.non2xx > 0 || readOff.non2xx > 0 {
		fmt.Printf("WARNING: non-2xx responses: reads %d, token reads %d, creates %d\n", read.non2xx, readToken.non2xx, create.non2xx)
		os.Exit(1)
	}
}

// median is the run of median rate; its p99 is the median of the p99s.
func median(runs []wrkResult) wrkResult {
	byRate := slices.Clone(runs)
	slices.SortFunc(byRate, func(a, b wrkResult) int { return cmp.Compare(a.rps, b.rps) })
	m := byRate[len(byRate)/2]
	p99s := make([]time.Duration, len(runs))
	for i, r := range runs {
		p99s[i], _ = time.ParseDuration(r.p99)
	}
	slices.Sort(p99s)
	m.p99 = p99s[len(p99s)/2].String()
	for _, r := range runs {
		m.non2xx += r.non2xx
	}
	return m
}

type wrkArgs struct {
	threads, conns int
	duration       time.Duration
}

type wrkResult struct {
	rps      float64
	p50, p99 string
	non2xx   int
}

var (
	rpsRe    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pctRe    = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+(\S+)`)
	non2xxRe = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
)

func (w wrkArgs) run(url, script string, d time.Duration) wrkResult {
	out, err := exec.Command("wrk", "-t", strconv.Itoa(w.threads), "-c", strconv.Itoa(w.conns),
		"-d", fmt.Sprintf("%ds", int(d.Seconds())), "--latency", "-s", script, url).CombinedOutput()
	if err != nil {
		fail(fmt.Sprintf("wrk: %v\n%s", err, out))
	}
	var r wrkResult
	if m := rpsRe.FindSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	for _, m := range pctRe.FindAllSubmatch(out, -1) {
		if string(m[1]) == "50" {
			r.p50 = string(m[2])
		} else {
			r.p99 = string(m[2])
		}
	}
	if m := non2xxRe.FindSubmatch(out); m != nil {
		r.non2xx, _ = strconv.Atoi(string(m[1]))
	}
	return r
}

// rotateScript makes each wrk connection cycle through the paths.
func rotateScript(paths []string, token string) string {
	var b strings.Builder
	headers := `{["Accept"] = "application/fhir+json"}`
	if token != "" {
		headers = `{["Accept"] = "application/fhir+json", ["Authorization"] = "Bearer ` + token + `"}`
	}
	b.WriteString("local paths = {\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "  %q,\n", p)
	}
	b.WriteString(`}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], ` + headers + `)
end
`)
	return b.String()
}

const createLua = `
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Prefer"] = "return=minimal"
wrk.body = '{"resourceType":"Patient","active":true,"name":[{"family":"Bench","given":["Load"]}],"gender":"other","birthDate":"1990-01-01","telecom":[{"system":"phone","value":"555-0100"}],"identifier":[{"system":"urn:bench","value":"1"}]}'
`

func patients(base string) ([]string, [][]byte) {
	resp, err := http.Get(base + "/Patient/_history?_count=1000")
	check(err)
	defer resp.Body.Close()
	var b struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	check(json.NewDecoder(resp.Body).Decode(&b))
	var paths []string
	var bodies [][]byte
	for _, e := range b.Entry {
		u := e.FullURL[strings.Index(e.FullURL, "/fhir/"):]
		r, err := http.Get(base + strings.TrimPrefix(u, "/fhir"))
		check(err)
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		paths = append(paths, u)
		bodies = append(bodies, body)
	}
	if len(paths) == 0 {
		fail("no patients were seeded")
	}
	return paths, bodies
}

// bare serves each path's bytes from memory with the headers a FHIR read
// needs: the ceiling any server on this machine can reach for these bytes.
func bare(args []string) {
	addr, dir, paths := args[0], args[1], args[2:]
	bodies := map[string][]byte{}
	for i, p := range paths {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprint(i)))
		check(err)
		bodies[p] = b
	}
	http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := bodies[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		h := w.Header()
		h["Content-Type"] = []string{"application/fhir+json; charset=utf-8"}
		h["Content-Length"] = []string{strconv.Itoa(len(b))}
		w.Write(b)
	}))
}

// startFerretDB runs a FerretDB (SQLite engine) in dir for the length of
// the benchmark and returns its connection string.
func startFerretDB(bin, dir string) (*exec.Cmd, string) {
	addr := freeAddr()
	cmd := exec.Command(bin, "--listen", addr, "--dir", filepath.Join(dir, "ferretdb"))
	check(os.MkdirAll(filepath.Join(dir, "ferretdb"), 0o700))
	check(cmd.Start())
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return cmd, "mongodb://" + addr + "/hearthbench"
		}
		time.Sleep(50 * time.Millisecond)
	}
	fail("ferretdb did not come up")
	return nil, ""
}

// waitUp waits for a server that may first load its demo data (minutes
// on FerretDB).
func waitUp(url string) {
	deadline := time.Now().Add(20 * time.Minute)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	fail("server at " + url + " did not come up")
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().String()
}

func meanLen(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n / max(1, len(bs))
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "hearthbench:", msg)
	os.Exit(1)
}

// backendToken gets a token for the demo backend client that the seed
// creates (client_credentials, system/ scopes).
func backendToken(root string) string {
	req, err := http.NewRequest(http.MethodPost, root+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=system%2F*.rs"))
	check(err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo-backend", "hearth-demo-secret")
	resp, err := http.DefaultClient.Do(req)
	check(err)
	defer resp.Body.Close()
	var t struct {
		AccessToken string `json:"access_token"`
	}
	check(json.NewDecoder(resp.Body).Decode(&t))
	if t.AccessToken == "" {
		fail("no token from the demo backend client")
	}
	return t.AccessToken
}
