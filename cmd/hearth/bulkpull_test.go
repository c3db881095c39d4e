package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/hearth-fhir/hearth/smart/backend"
)

// TestBulkPullHearthToHearth: one Hearth exports, another pulls with
// `hearth import --bulk` as a backend service (private_key_jwt), and the
// record sets are equal. The first pull is killed after its first file:
// run again, it resumes the same export and loads nothing twice.
func TestBulkPullHearthToHearth(t *testing.T) {
	src := t.TempDir()
	files, _ := filepath.Glob("../../testdata/synthea-10/*.ndjson.gz")
	runHearth(t, append([]string{"import", "--data", src}, files...)...)

	// The puller's key, and its public half where the source fetches it.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(t.TempDir(), "puller.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS384", Use: "sig"}}})
	}))
	defer jwks.Close()
	runHearth(t, "client", "add", "--data", src, "--id", "puller", "--jwks-url", jwks.URL, "--backend", "--scope", "system/*.rs")
	root := startAuthServer(t, "--data", src, "--no-seed", "--export-file-size", "300")

	dst, work := t.TempDir(), t.TempDir()
	args := []string{"import", "--data", dst, "--bulk", root + "/fhir", "--client-id", "puller", "--key", keyFile, "--key-id", "k1",
		"--work", work, "--parallel", "1"}
	// First run: killed once a file is downloaded.
	first := exec.Command(binary, args...)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		raw, _ := os.ReadFile(filepath.Join(work, "pull-state.json"))
		if strings.Contains(string(raw), `"Downloaded": true`) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	raw, _ := os.ReadFile(filepath.Join(work, "pull-state.json"))
	var st pullState
	if err := json.Unmarshal(raw, &st); err != nil || st.Status == "" {
		t.Fatalf("no state after the first run: %s", raw)
	}
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("the resumed pull: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "resuming the pull") || !strings.Contains(string(out), "--since "+st.TransactionTime) && st.TransactionTime != "" {
		t.Errorf("the second run did not resume:\n%s", out)
	}

	// The records, as each server serves them.
	tok := backendTokenFor(t, root, "puller", keyFile)
	want := exportedRecords(t, root+"/fhir", tok)
	_, dstBase := startServer(t, nil, "--data", dst, "--no-seed")
	got := exportedRecords(t, dstBase, "")
	if len(want) < 5000 {
		t.Fatalf("the source exported only %d resources", len(want))
	}
	if len(got) != len(want) {
		t.Errorf("pulled %d resources, the source has %d", len(got), len(want))
	}
	for k, body := range want {
		if got[k] != body {
			i := 0
			for i < min(len(body), len(got[k])) && body[i] == got[k][i] {
				i++
			}
			t.Errorf("%s differs from byte %d:\n source …%.300s\n pulled …%.300s", k, i, body[max(i-100, 0):], got[k][max(i-100, 0):])
			break
		}
	}
	// Nothing was loaded twice: every pulled resource is at version 1.
	_, body := request(t, "GET", dstBase+"/_history?_count=1", "")
	if !strings.Contains(body, `"total":`+jsonInt(len(want))) {
		t.Errorf("history of the pulled store: %.200s (want %d versions)", body, len(want))
	}
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

// exportedRecords exports everything from a server and keys each
// resource, without the meta the store stamps, by Type/id.
func exportedRecords(t *testing.T, base, token string) map[string]string {
	t.Helper()
	m := awaitManifest(t, kickoffExport(t, base+"/$export", token), token)
	out := map[string]string{}
	for _, it := range m["output"].([]any) {
		resp := bulkGet(t, it.(map[string]any)["url"].(string), token)
		dec := json.NewDecoder(resp.Body)
		for dec.More() {
			var res map[string]any
			if err := dec.Decode(&res); err != nil {
				t.Fatal(err)
			}
			if meta, ok := res["meta"].(map[string]any); ok {
				delete(meta, "versionId")
				delete(meta, "lastUpdated")
				// A result's release state is the receiving server's to
				// decide (its release rules stamp what it loads).
				tags, _ := meta["tag"].([]any)
				tags = slices.DeleteFunc(tags, func(tag any) bool {
					return tag.(map[string]any)["system"] == "http://hearth-fhir.org/CodeSystem/result-release"
				})
				if delete(meta, "tag"); len(tags) > 0 {
					meta["tag"] = tags
				}
			}
			b, _ := json.Marshal(res)
			out[res["resourceType"].(string)+"/"+res["id"].(string)] = string(b)
		}
		resp.Body.Close()
	}
	return out
}

// backendTokenFor gets a token as the private_key_jwt client.
func backendTokenFor(t *testing.T, root, clientID, keyFile string) string {
	t.Helper()
	p := &bulkPull{kickoff: root + "/fhir/$export", clientID: clientID, scope: "system/*.rs", client: http.DefaultClient}
	var err error
	if p.key, err = backend.LoadKey(keyFile, "k1"); err != nil {
		t.Fatal(err)
	}
	tok, err := p.bearer(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
