package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/store/mongo/mongotest"
)

// bulkGet is a GET as a Bulk Data client makes it: with the token, if
// any, and the headers given as name, value pairs.
func bulkGet(t *testing.T, u, token string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// kickoffExport starts a bulk export and returns its status URL.
func kickoffExport(t *testing.T, u, token string) string {
	t.Helper()
	resp := bulkGet(t, u, token, "Prefer", "respond-async", "Accept", "application/fhir+json")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("kick-off: %d %s", resp.StatusCode, b)
	}
	return resp.Header.Get("Content-Location")
}

// exportStatus polls once: the status code, X-Progress's count of
// resources written, and the body.
func exportStatus(t *testing.T, u, token string) (int, int, []byte) {
	t.Helper()
	resp := bulkGet(t, u, token)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	written, _ := strconv.Atoi(strings.Fields(resp.Header.Get("X-Progress") + " -1")[0])
	return resp.StatusCode, written, b
}

// awaitManifest polls until the export is done and returns its manifest.
func awaitManifest(t *testing.T, u, token string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		status, _, b := exportStatus(t, u, token)
		switch status {
		case http.StatusOK:
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			return m
		case http.StatusAccepted:
			time.Sleep(100 * time.Millisecond)
		default:
			t.Fatalf("status: %d %s", status, b)
		}
	}
	t.Fatal("the export did not finish")
	return nil
}

// downloadAll reads every output file of a manifest ("Type/id" of each
// line, sorted); rebase rewrites the manifest's base URL to the process
// to fetch from.
func downloadAll(t *testing.T, m map[string]any, token string, rebase func(string) string) []string {
	t.Helper()
	var ids []string
	for _, it := range m["output"].([]any) {
		u := rebase(it.(map[string]any)["url"].(string))
		resp := bulkGet(t, u, token)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", u, resp.StatusCode)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<24)
		for sc.Scan() {
			var res struct{ ResourceType, ID string }
			if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, res.ResourceType+"/"+res.ID)
		}
		resp.Body.Close()
	}
	slices.Sort(ids)
	return ids
}

func same(u string) string { return u }

// TestExportResumesAfterKill9 kills the server while an export runs and
// restarts it: the export goes on from the files already written (they
// are kept, not written again) and holds every resource once.
func TestExportResumesAfterKill9(t *testing.T) {
	data := t.TempDir()
	args := []string{"--data", data, "--export-file-size", "100", "--export-lease", "1s"}
	cmd, base := startServer(t, nil, args...)
	var statusURL string
	killedAt := 0
	for attempt := 0; attempt < 10 && killedAt == 0; attempt++ {
		u := kickoffExport(t, base+"/$export", "")
		for {
			status, written, _ := exportStatus(t, u, "")
			if status == 200 {
				break // done before the kill: try again
			}
			if written >= 500 {
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				statusURL, killedAt = u, written
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	if killedAt == 0 {
		t.Fatal("every export finished before it could be killed")
	}
	restarted := time.Now()
	_, base2 := startServer(t, nil, args...)
	statusURL = strings.Replace(statusURL, base, base2, 1)
	m := awaitManifest(t, statusURL, "")
	got := downloadAll(t, m, "", func(u string) string { return strings.Replace(u, base, base2, 1) })
	if len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Errorf("a resource is exported twice")
	}
	want := downloadAll(t, awaitManifest(t, kickoffExport(t, base2+"/$export", ""), ""), "", same)
	if !slices.Equal(got, want) {
		t.Errorf("the resumed export holds %d resources, a fresh one %d", len(got), len(want))
	}
	// Files stored before the kill are in the manifest as they were.
	job := statusURL[strings.LastIndex(statusURL, "/")+1:]
	kept := 0 // resources in files kept
	for _, it := range m["output"].([]any) {
		u := it.(map[string]any)["url"].(string)
		fi, err := os.Stat(filepath.Join(data, "files", "export", job, u[strings.LastIndex(u, "/")+1:]))
		if err != nil {
			t.Fatal(err)
		}
		if fi.ModTime().Before(restarted) {
			kept += int(it.(map[string]any)["count"].(float64))
		}
	}
	if kept < killedAt {
		t.Errorf("killed with %d resources written, but the files kept hold %d: the export started again", killedAt, kept)
	}
	t.Logf("killed at %d resources written; the files kept hold %d; %d resources in all", killedAt, kept, len(got))
}

// TestExportFilesExpire: past --export-retention an export's files and
// status are gone.
func TestExportFilesExpire(t *testing.T) {
	_, base := startServer(t, nil, "--data", t.TempDir(), "--export-retention", "2s")
	u := kickoffExport(t, base+"/$export?_type=Patient", "")
	m := awaitManifest(t, u, "")
	if got := downloadAll(t, m, "", same); len(got) == 0 {
		t.Fatal("no patients exported")
	}
	time.Sleep(2500 * time.Millisecond)
	file := m["output"].([]any)[0].(map[string]any)["url"].(string)
	for _, u := range []string{u, file} {
		if status, _, _ := exportStatus(t, u, ""); status != 404 {
			t.Errorf("%s after its retention: %d, want 404", u, status)
		}
	}
}

// TestExportTwoProcessesOneMongo: an export asked of one process that
// dies at once is finished by the other, which serves its status and
// files (kept in GridFS).
func TestExportTwoProcessesOneMongo(t *testing.T) {
	uri := mongotest.URI(t)
	runHearth(t, "client", "add", "--store", uri, "--id", "ops", "--secret", "ops-secret-ops-secret", "--backend")
	runHearth(t, "import", "--store", uri, "--base-url", sharedBase, "../../testdata/synthea-10/Patient.000.ndjson.gz", "../../testdata/synthea-10/Condition.000.ndjson.gz")
	a, acmd := startAuthServerCmd(t, "--store", uri, "--no-seed", "--base-url", sharedBase, "--export-file-size", "500", "--export-lease", "1s")
	b := startAuthServer(t, "--store", uri, "--no-seed", "--base-url", sharedBase, "--export-lease", "1s")
	tok := backendToken(t, a)
	onA := func(u string) string { return strings.Replace(u, sharedBase, a+"/fhir", 1) }
	onB := func(u string) string { return strings.Replace(u, sharedBase, b+"/fhir", 1) }
	want := downloadAll(t, awaitManifest(t, onA(kickoffExport(t, a+"/fhir/$export?_type=Patient,Condition", tok)), tok), tok, onA)
	u := kickoffExport(t, a+"/fhir/$export?_type=Patient,Condition", tok)
	acmd.Process.Signal(syscall.SIGKILL)
	acmd.Wait()
	got := downloadAll(t, awaitManifest(t, onB(u), tok), tok, onB)
	if len(want) < 100 || !slices.Equal(got, want) {
		t.Errorf("the export finished by the other process holds %d resources, want %d", len(got), len(want))
	}
}
