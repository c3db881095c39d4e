package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// searchBench measures searches, $everything, a full bulk export and
// transaction ingest on the dataset of `hearth generate` loaded into a
// data directory.
func searchBench(args []string) {
	fs := flag.NewFlagSet("search", flag.ExitOnError)
	hearth := fs.String("hearth", "bin/hearth", "hearth binary")
	data := fs.String("data", "bench-data/db", "data directory holding the generated dataset")
	duration := fs.Duration("duration", 10*time.Second, "length of each wrk run")
	conns := fs.Int("connections", 8, "wrk connections")
	patients := fs.Int("patients", 1000, "patients in the dataset")
	fs.Parse(args)
	if _, err := exec.LookPath("wrk"); err != nil {
		fail("wrk is not installed (apt-get install wrk)")
	}
	if _, err := os.Stat(filepath.Join(*data, "hearth.db")); err != nil {
		fail("no dataset in " + *data + ": run make bench-data first")
	}
	work, err := os.MkdirTemp("", "hearthbench")
	check(err)
	defer os.RemoveAll(work)

	addr := freeAddr()
	srv := exec.Command(*hearth, "serve", "--listen", addr, "--data", *data, "--no-seed", "--log-level", "warn", "--open")
	srv.Stderr = os.Stderr
	check(srv.Start())
	defer srv.Process.Kill()
	base := "http://" + addr + "/fhir"
	waitUp(base + "/metadata")
	total := countOf(base + "/Observation?_summary=count")
	fmt.Printf("dataset: %s, %d patients, %d Observations\n", *data, *patients, total)

	rng := rand.New(rand.NewPCG(7, 7))
	patient := func() string { return fmt.Sprintf("gen-p-%05d", rng.IntN(*patients)) }
	codes := []string{"8480-6", "8867-4", "2339-0", "4548-4", "29463-7"}
	families := []string{"smith", "garcia", "lee", "muller", "nguyen", "brown", "cote"}
	var scoped, byName, include, compartment []string
	for i := 0; i < 500; i++ {
		scoped = append(scoped, fmt.Sprintf("/fhir/Observation?patient=%s&code=http://loinc.org%%7C%s&date=ge%d-01-01", patient(), codes[rng.IntN(len(codes))], 2016+rng.IntN(8)))
		byName = append(byName, "/fhir/Patient?name="+families[rng.IntN(len(families))])
		include = append(include, fmt.Sprintf("/fhir/Encounter?patient=%s&_count=10&_include=Encounter:participant&_include=Encounter:subject", patient()))
		compartment = append(compartment, fmt.Sprintf("/fhir/Patient/%s/Condition", patient()))
	}
	// $everything on patients of about 2,000 resources.
	var big []string
	for i := 0; i < *patients && len(big) < 20; i++ {
		id := fmt.Sprintf("gen-p-%05d", i)
		if n := countOf(base + "/Patient/" + id + "/$everything?_count=1"); n >= 1900 {
			big = append(big, "/fhir/Patient/"+id+"/$everything?_count=5000")
		}
	}
	w := wrkArgs{threads: 2, conns: *conns, duration: *duration}
	type row struct {
		name string
		r    wrkResult
	}
	var rows []row
	run := func(name string, paths []string, conns int) {
		script := filepath.Join(work, fmt.Sprintf("search%d.lua", len(rows)))
		check(os.WriteFile(script, []byte(rotateScript(paths, "")), 0o600))
		wa := w
		wa.conns = conns
		wa.run("http://"+addr, script, 2*time.Second) // warm-up
		rows = append(rows, row{name, wa.run("http://"+addr, script, w.duration)})
	}
	run("Observation?patient&code&date", scoped, *conns)
	run("Patient?name", byName, *conns)
	run("Encounter?patient&_include x2", include, *conns)
	run("Patient/X/Condition", compartment, *conns)
	if len(big) > 0 {
		run(fmt.Sprintf("$everything (%d res.)", 2000), big, 2)
	}
	fmt.Printf("\n%-34s %10s %10s %10s\n", "", "req/s", "p50", "p99")
	for _, r := range rows {
		fmt.Printf("%-34s %10.0f %10s %10s\n", r.name, r.r.rps, r.r.p50, r.r.p99)
		if r.r.non2xx > 0 {
			fmt.Printf("WARNING: %d non-2xx responses\n", r.r.non2xx)
		}
	}
	srv.Process.Kill()
	srv.Wait()
	exportBench(*hearth, *data)
	ingest(*hearth, work)
}

// ingest posts transaction bundles of 500 new resources from 2 clients
// to a fresh server and reports resources per second with durable commits.
func ingest(hearth, work string) {
	addr := freeAddr()
	srv := exec.Command(hearth, "serve", "--listen", addr, "--data", filepath.Join(work, "ingest"), "--no-seed", "--log-level", "warn", "--max-body-bytes", "67108864", "--open")
	srv.Stderr = os.Stderr
	check(srv.Start())
	defer srv.Process.Kill()
	base := "http://" + addr + "/fhir"
	waitUp(base + "/metadata")
	const bundles, perBundle, clients = 40, 500, 2
	bodies := make([][]byte, bundles)
	for b := range bodies {
		var buf bytes.Buffer
		buf.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
		pid := fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", b)
		fmt.Fprintf(&buf, `{"fullUrl":%q,"resource":{"resourceType":"Patient","name":[{"family":"Ingest%d"}],"gender":"female","birthDate":"1970-01-01"},"request":{"method":"POST","url":"Patient"}}`, pid, b)
		for i := 1; i < perBundle; i++ {
			fmt.Fprintf(&buf, `,{"resource":{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},"subject":{"reference":%q},"effectiveDateTime":"2024-01-01T10:%02d:00Z","valueQuantity":{"value":%d,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}},"request":{"method":"POST","url":"Observation"}}`, pid, i%60, 60+i%50)
		}
		buf.WriteString(`]}`)
		bodies[b] = buf.Bytes()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	next := 0
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				b := next
				next++
				mu.Unlock()
				if b >= bundles {
					return
				}
				t0 := time.Now()
				resp, err := http.Post(base, "application/fhir+json", bytes.NewReader(bodies[b]))
				check(err)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					fail("ingest: " + resp.Status)
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("%-34s %10.0f resources/s (%d transactions of %d, %d clients, p50 %v per bundle)\n",
		"transaction ingest", float64(bundles*perBundle)/elapsed.Seconds(), bundles, perBundle, clients, lat[len(lat)/2].Round(time.Millisecond))
}

func countOf(url string) int {
	resp, err := http.Get(url)
	check(err)
	defer resp.Body.Close()
	var b struct {
		Total int `json:"total"`
	}
	json.NewDecoder(resp.Body).Decode(&b)
	return b.Total
}
