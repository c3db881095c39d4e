package main

import (
	"encoding/xml"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/store/mongo/mongotest"
)

// reportDir is where the conformance reports go: $HEARTH_ARTIFACTS/
// conformance when CI sets it (kept as the run's artifacts), else a
// temporary directory.
func reportDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HEARTH_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "conformance")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runConformance runs `hearth conformance` against a server and requires
// every check to pass, with no more skipped than allowed.
func runConformance(t *testing.T, name, fhirBase string, maxSkipped int, args ...string) {
	t.Helper()
	dir := reportDir(t)
	junit, report := filepath.Join(dir, name+".xml"), filepath.Join(dir, name+".html")
	cmd := exec.Command(binary, append([]string{"conformance", "--base", fhirBase, "--quiet", "--junit", junit, "--html", report}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hearth conformance: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name    string `xml:"name,attr"`
			Skipped int    `xml:"skipped,attr"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(raw, &suites); err != nil {
		t.Fatal(err)
	}
	skipped := 0
	names := []string{}
	for _, s := range suites.Suites {
		skipped += s.Skipped
		names = append(names, s.Name)
	}
	if suites.Failures != 0 || suites.Tests < 300 || skipped > maxSkipped || strings.Join(names, ",") != "capability,rest,search,smart,uscore" {
		t.Fatalf("%d checks, %d failed, %d skipped, suites %v:\n%s", suites.Tests, suites.Failures, skipped, names, out)
	}
	if html, err := os.ReadFile(report); err != nil || !strings.Contains(string(html), "<h1>Conformance of "+fhirBase) {
		t.Fatalf("HTML report: %v", err)
	}
	t.Logf("%s: %d checks pass, %d skipped; reports in %s", name, suites.Tests, skipped, dir)
}

// The conformance kit against Hearth itself, with authorization on, on
// the embedded store with the demo data and accounts: all green. The one
// skip: the demo data holds no blood pressure panel to sample.
func TestConformanceKitOnSQLite(t *testing.T) {
	root := startAuthServer(t, "--data", t.TempDir())
	runConformance(t, "sqlite", root+"/fhir", 1,
		"--client-id", demoBackend, "--client-secret", demoBackendSecret,
		"--launch-client", demoClient, "--redirect-uri", "http://127.0.0.1:8000/callback",
		"--username", demoPatientUser, "--password", demoPassword)
}

// The same on FerretDB, set up as an operator would: a backend client, an
// app, two patients and one patient's account. There is no other data, so
// only the sampling of the server's own US Core data is skipped.
func TestConformanceKitOnMongo(t *testing.T) {
	uri := mongotest.URI(t)
	runHearth(t, "client", "add", "--store", uri, "--id", "ops", "--secret", "ops-secret-ops-secret", "--backend")
	runHearth(t, "client", "add", "--store", uri, "--id", "app", "--public", "--redirect-uri", "http://app.localhost/cb")
	root := startAuthServer(t, "--store", uri, "--no-seed")
	ops := backendToken(t, root)
	for _, id := range []string{"p1", "p2"} {
		status, body := call(t, http.MethodPut, root+"/fhir/Patient/"+id, ops, "application/fhir+json", `{"resourceType":"Patient","id":"`+id+`","name":[{"family":"Kit"}]}`)
		if status != http.StatusCreated {
			t.Fatalf("create %s: %d %v", id, status, body)
		}
	}
	runHearth(t, "user", "add", "--store", uri, "--username", "kit", "--password", "kit-password-1", "--patient", "Patient/p1")
	runConformance(t, "ferretdb", root+"/fhir", 3,
		"--client-id", "ops", "--client-secret", "ops-secret-ops-secret",
		"--launch-client", "app", "--redirect-uri", "http://app.localhost/cb",
		"--username", "kit", "--password", "kit-password-1")
}
