package server_test

import (
	"compress/gzip"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTransactionResolvesReferencesAtomically(t *testing.T) {
	ts := newServer(t)
	do(t, ts, "PUT", "/fhir/Organization/org1", `{"resourceType":"Organization","id":"org1","identifier":[{"system":"urn:org","value":"O1"}]}`)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	  {"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:a9d1e3a0-3c3c-4f0f-8f42-0c7b1b1f0c11"},"performer":[{"reference":"Organization?identifier=urn:org|O1"}],"valueQuantity":{"value":1.50}},"request":{"method":"POST","url":"Observation"}},
	  {"fullUrl":"urn:uuid:a9d1e3a0-3c3c-4f0f-8f42-0c7b1b1f0c11","resource":{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"T1"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:mrn|T1"}},
	  {"resource":{"resourceType":"Patient","id":"p9","active":true},"request":{"method":"PUT","url":"Patient/p9"}},
	  {"request":{"method":"GET","url":"Patient/p9"}}
	]}`
	r := do(t, ts, "POST", "/fhir", tx)
	if r.status != 200 {
		t.Fatalf("transaction: %d %s", r.status, r.body)
	}
	resp := r.json(t)
	if resp["type"] != "transaction-response" {
		t.Fatalf("type %v", resp["type"])
	}
	es := entries(t, resp)
	if len(es) != 4 {
		t.Fatalf("%d entries", len(es))
	}
	for i, want := range []string{"201 Created", "201 Created", "201 Created", "200 OK"} {
		if got := es[i]["response"].(map[string]any)["status"]; got != want {
			t.Errorf("entry %d status %v, want %s", i, got, want)
		}
	}
	obs := es[0]["resource"].(map[string]any)
	patID := es[1]["resource"].(map[string]any)["id"].(string)
	if ref := obs["subject"].(map[string]any)["reference"]; ref != "Patient/"+patID {
		t.Errorf("urn:uuid not resolved: %v (patient %s)", ref, patID)
	}
	if ref := obs["performer"].([]any)[0].(map[string]any)["reference"]; ref != "Organization/org1" {
		t.Errorf("conditional reference not resolved: %v", ref)
	}
	stored := do(t, ts, "GET", "/fhir/Observation/"+obs["id"].(string), "")
	if !strings.Contains(string(stored.body), `"value":1.50`) {
		t.Errorf("decimal precision lost through the transaction: %s", stored.body)
	}
	if es[3]["resource"].(map[string]any)["id"] != "p9" {
		t.Errorf("GET entry: %v", es[3])
	}

	// Run again: the conditional create now matches.
	again := do(t, ts, "POST", "/fhir", tx).json(t)
	if st := entries(t, again)[1]["response"].(map[string]any)["status"]; st != "200 OK" {
		t.Errorf("second run, conditional create: %v", st)
	}

	// One bad entry: nothing of the transaction is stored.
	before := do(t, ts, "GET", "/fhir/_history?_count=0", "").json(t)["total"]
	bad := `{"resourceType":"Bundle","type":"transaction","entry":[
	  {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
	  {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=urn:mrn|nobody"}},"request":{"method":"POST","url":"Observation"}}
	]}`
	br := do(t, ts, "POST", "/fhir", bad)
	if br.status != 400 || !strings.Contains(br.issue(t), "entry 1") {
		t.Errorf("failed transaction: %d %s", br.status, br.body)
	}
	stale := `{"resourceType":"Bundle","type":"transaction","entry":[
	  {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
	  {"resource":{"resourceType":"Patient","id":"p9"},"request":{"method":"PUT","url":"Patient/p9","ifMatch":"W/\"7\""}}
	]}`
	if sr := do(t, ts, "POST", "/fhir", stale); sr.status != 412 {
		t.Errorf("transaction with a stale ifMatch: %d %s", sr.status, sr.body)
	}
	invalid := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","gender":"robot"},"request":{"method":"POST","url":"Patient"}}]}`
	if ir := do(t, ts, "POST", "/fhir", invalid); ir.status != 400 || !strings.Contains(ir.issue(t), "Patient.gender") {
		t.Errorf("transaction with an invalid resource: %d %s", ir.status, ir.body)
	}
	after := do(t, ts, "GET", "/fhir/_history?_count=0", "").json(t)["total"]
	if before != after {
		t.Errorf("failed transactions stored versions: %v → %v", before, after)
	}
}

func TestBatchReportsEachEntry(t *testing.T) {
	ts := newServer(t)
	do(t, ts, "PUT", "/fhir/Patient/b1", `{"resourceType":"Patient","id":"b1","active":true}`)
	patch := base64.StdEncoding.EncodeToString([]byte(`[{"op":"replace","path":"/active","value":false}]`))
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
	  {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
	  {"resource":{"resourceType":"Patient","gender":"robot"},"request":{"method":"POST","url":"Patient"}},
	  {"request":{"method":"GET","url":"Patient/nope"}},
	  {"request":{"method":"GET","url":"Patient?_id=b1"}},
	  {"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + patch + `"},"request":{"method":"PATCH","url":"Patient/b1"}},
	  {"request":{"method":"DELETE","url":"Patient/b1"}}
	]}`
	r := do(t, ts, "POST", "/fhir", batch)
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	es := entries(t, r.json(t))
	want := []string{"201 Created", "400 Bad Request", "404 Not Found", "200 OK", "200 OK", "200 OK"}
	for i, w := range want {
		resp := es[i]["response"].(map[string]any)
		if resp["status"] != w {
			t.Errorf("entry %d: %v, want %s", i, resp["status"], w)
		}
		if strings.HasPrefix(w, "4") && resp["outcome"] == nil {
			t.Errorf("entry %d: failure without an outcome", i)
		}
	}
	if es[3]["resource"].(map[string]any)["resourceType"] != "Bundle" {
		t.Errorf("search entry should hold a searchset: %v", es[3])
	}
	if es[4]["resource"].(map[string]any)["active"] != false {
		t.Errorf("patch entry: %v", es[4])
	}
	if r := do(t, ts, "POST", "/fhir", `{"resourceType":"Bundle","type":"collection"}`); r.status != 400 {
		t.Errorf("collection bundle: %d", r.status)
	}
}

// TestSyntheaBundlesLoadAsTransactions posts every Synthea patient bundle
// in testdata as a transaction.
func TestSyntheaBundlesLoadAsTransactions(t *testing.T) {
	files, _ := filepath.Glob("../testdata/synthea-bundles/*.json.gz")
	if len(files) == 0 {
		t.Fatal("no Synthea bundles in testdata/synthea-bundles")
	}
	ts := newServerWithLimit(t, 64<<20)
	total := 0
	for _, f := range files {
		body := readGzip(t, f)
		r := do(t, ts, "POST", "/fhir", string(body))
		if r.status != 200 {
			t.Fatalf("%s: %d %.300s", filepath.Base(f), r.status, r.body)
		}
		n := len(entries(t, r.json(t)))
		total += n
	}
	// Every reference that named an entry now names a stored resource.
	page := do(t, ts, "GET", "/fhir/Encounter?_count=5&_include=Encounter:subject", "").json(t)
	es := entries(t, page)
	if len(es) < 2 {
		t.Fatalf("encounters with subjects: %v", page)
	}
	t.Logf("%d bundles, %d entries", len(files), total)
}

func readGzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
