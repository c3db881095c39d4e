package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/store/mongo/mongotest"
)

var binary string

// TestMain builds the real binary once; the tests run it as users do.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hearth-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "hearth")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	mongotest.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer runs `hearth serve` and waits until /fhir/metadata answers.
func startServer(t *testing.T, env []string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(binary, append([]string{"serve", "--listen", addr, "--log-level", "warn", "--open"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = "../.." // the repository root, where make run starts it
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://" + addr + "/fhir"
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/metadata")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd, base
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server did not come up: %s", stderr.String())
	return nil, ""
}

func request(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeSeedsDemoPatients(t *testing.T) {
	_, base := startServer(t, nil, "--data", t.TempDir())
	status, body := request(t, "GET", base+"/Patient/129c6ac7-8d06-89de-ad63-0204a93e76c3", "")
	if status != 200 || !strings.Contains(body, `"resourceType":"Patient"`) {
		t.Fatalf("seeded patient: %d %.200s", status, body)
	}
	status, body = request(t, "GET", base+"/_history?_count=1", "")
	if status != 200 || !strings.Contains(body, `"total":11675`) {
		t.Errorf("system history after seeding (7,160 NDJSON + 4,472 bundle resources + the demo proxy's 2 RelatedPersons + the demo clinic's 41: 11 records and 30 free slots): %d %.200s", status, body)
	}
	// The Synthea NDJSON's conditional references were resolved on import.
	status, body = request(t, "GET", base+"/Encounter?participant:missing=false&_count=1&_include=Encounter:participant", "")
	if status != 200 || !strings.Contains(body, `"mode":"include"`) || strings.Contains(body, `Practitioner?identifier`) {
		t.Errorf("conditional references after seeding: %d %.300s", status, body)
	}
}

func TestServeNoSeedFromEnvironment(t *testing.T) {
	_, base := startServer(t, []string{"HEARTH_NO_SEED=true", "HEARTH_DATA=" + t.TempDir()})
	status, body := request(t, "GET", base+"/_history", "")
	if status != 200 || !strings.Contains(body, `"total":0`) {
		t.Errorf("HEARTH_NO_SEED: %d %.200s", status, body)
	}
}

// TestAcknowledgedWriteSurvivesKill9 kills the server without warning right
// after a write is acknowledged, restarts it, and reads the write back.
func TestAcknowledgedWriteSurvivesKill9(t *testing.T) {
	data := t.TempDir()
	cmd, base := startServer(t, nil, "--data", data, "--no-seed")
	var ids []string
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("k%d", i)
		status, body := request(t, "PUT", base+"/Patient/"+id, fmt.Sprintf(`{"resourceType":"Patient","id":%q,"name":[{"family":"F%d"}]}`, id, i))
		if status != 201 {
			t.Fatalf("write %d: %d %s", i, status, body)
		}
		ids = append(ids, id)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	_, base = startServer(t, nil, "--data", data, "--no-seed")
	for i, id := range ids {
		status, body := request(t, "GET", base+"/Patient/"+id, "")
		if status != 200 || !strings.Contains(body, fmt.Sprintf(`"F%d"`, i)) {
			t.Errorf("after kill -9, %s: %d %.100s", id, status, body)
		}
	}
}

func TestDataDirectoryInUseIsRefused(t *testing.T) {
	data := t.TempDir()
	startServer(t, nil, "--data", data, "--no-seed")
	out, err := exec.Command(binary, "import", "--data", data, "x.ndjson").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another process") {
		t.Errorf("import into a served data directory: err=%v out=%s", err, out)
	}
}

func TestImportReportsLoadedAndRejected(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mixed.ndjson")
	lines := []string{
		`{"resourceType":"Patient","id":"p1","name":[{"family":"SECRET-NAME"}]}`,
		`{"resourceType":"Patient","id":"p2","gender":"SECRET-GENDER"}`,
		`not json`,
		``,
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"no id"}}`,
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	out, err := exec.Command(binary, "import", "--data", data, file).CombinedOutput()
	text := string(out)
	if err == nil {
		t.Errorf("import with rejections should exit non-zero")
	}
	for _, want := range []string{"loaded 3 resources, rejected 2", "Patient", "Observation", "mixed.ndjson:2: Patient.gender: code is not in", "mixed.ndjson:3: body is not valid JSON"} {
		if !strings.Contains(text, want) {
			t.Errorf("import output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "SECRET") {
		t.Errorf("import output repeats resource content:\n%s", text)
	}
	// The data directory now serves what was loaded.
	_, base := startServer(t, nil, "--data", data)
	if status, _ := request(t, "GET", base+"/Observation/o1", ""); status != 200 {
		t.Errorf("imported Observation: %d", status)
	}
	if status, _ := request(t, "GET", base+"/Patient/p2", ""); status != 404 {
		t.Errorf("rejected Patient was stored: %d", status)
	}
	if status, body := request(t, "GET", base+"/Patient/_history", ""); !strings.Contains(body, `"total":1`) {
		t.Errorf("an existing data directory must not be seeded: %d %.100s", status, body)
	}
}

func TestImportIntoRunningServer(t *testing.T) {
	_, base := startServer(t, nil, "--data", t.TempDir(), "--no-seed")
	file := filepath.Join(t.TempDir(), "p.ndjson.gz")
	writeGzip(t, file, `{"resourceType":"Patient","id":"net1"}`+"\n"+`{"resourceType":"Patient","id":"net2","birthDate":"1999-02-31"}`+"\n")
	out, err := exec.Command(binary, "import", "--server", base, file).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loaded 1 resources, rejected 1") {
		t.Fatalf("import --server: err=%v\n%s", err, out)
	}
	if status, _ := request(t, "GET", base+"/Patient/net1", ""); status != 200 {
		t.Errorf("imported over HTTP: %d", status)
	}
}

func writeGzip(t *testing.T, path, content string) {
	t.Helper()
	cmd := exec.Command("gzip", "-c")
	cmd.Stdin = strings.NewReader(content)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSlowBodyIsCutOff: a body dripped a byte at a time does not hold a
// connection for minutes: past --read-timeout the server drops it, and
// nothing is stored.
func TestSlowBodyIsCutOff(t *testing.T) {
	_, base := startServer(t, nil, "--no-seed", "--data", t.TempDir(), "--read-timeout", "1s")
	addr := strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/fhir")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"resourceType":"Patient","id":"slow"}`
	fmt.Fprintf(conn, "PUT /fhir/Patient/slow HTTP/1.1\r\nHost: %s\r\nContent-Type: application/fhir+json\r\nContent-Length: %d\r\n\r\n", addr, len(body))
	dropped := false
	for i := 0; i < len(body) && i < 30; i++ {
		if _, err := conn.Write([]byte{body[i]}); err != nil {
			dropped = true
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !dropped {
		// The server may have answered (an error) and closed: either way
		// the read side ends well before the body would have.
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		n, _ := conn.Read(buf)
		if strings.HasPrefix(string(buf[:n]), "HTTP/1.1 2") {
			t.Errorf("the slow body was accepted: %s", buf[:n])
		}
	}
	if status, _ := request(t, "GET", base+"/Patient/slow", ""); status != 404 {
		t.Errorf("the slow body's resource: %d", status)
	}
}

// TestInterruptedFirstStartSeedsAgain: the port answers (503) while the
// demo data loads; a first start interrupted then leaves no half-seeded
// data directory, and the next start loads everything.
func TestInterruptedFirstStartSeedsAgain(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	addr := freePort(t)
	cmd := exec.Command(binary, "serve", "--listen", addr, "--data", data, "--log-level", "warn", "--open", "--seed-dir", "testdata/synthea-10")
	cmd.Dir = "../.."
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	answered := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && answered == 0; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/fhir/metadata"); err == nil {
			resp.Body.Close()
			answered = resp.StatusCode
			if answered == 503 && resp.Header.Get("Retry-After") == "" {
				t.Error("503 while loading without Retry-After")
			}
		}
	}
	if answered != 503 {
		t.Fatalf("while loading the demo data the port answered %d, want 503", answered)
	}
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(data, "hearth.db")); !os.IsNotExist(err) {
		t.Fatalf("an interrupted first start left a data directory (%v)", err)
	}
	_, base := startServer(t, nil, "--data", data, "--seed-dir", "testdata/synthea-10")
	status, body := request(t, "GET", base+"/_history?_count=0", "")
	if status != 200 || !strings.Contains(body, `"total":7203`) {
		t.Errorf("after the second start (7,160 resources + the demo proxy's 2 RelatedPersons + the demo clinic's 41: 11 records and 30 free slots): %d %.200s", status, body)
	}
}

// TestReimportWritesNoNewVersions: importing the same data again — as an
// interrupted import is resumed — writes no version for a resource whose
// content is already its current version; changed resources get one.
func TestReimportWritesNoNewVersions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.ndjson")
	lines := `{"resourceType":"Patient","id":"r1","gender":"female"}` + "\n" + `{"resourceType":"Patient","id":"r2","active":true,"meta":{"versionId":"7"}}` + "\n"
	if err := os.WriteFile(file, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	for range 3 {
		if out, err := exec.Command(binary, "import", "--data", data, file).CombinedOutput(); err != nil {
			t.Fatalf("import: %v %s", err, out)
		}
	}
	changed := filepath.Join(dir, "changed.ndjson")
	os.WriteFile(changed, []byte(`{"resourceType":"Patient","id":"r1","gender":"male"}`+"\n"), 0o600)
	if out, err := exec.Command(binary, "import", "--data", data, changed).CombinedOutput(); err != nil {
		t.Fatalf("import: %v %s", err, out)
	}
	_, base := startServer(t, nil, "--data", data)
	if _, body := request(t, "GET", base+"/Patient/r2/_history", ""); !strings.Contains(body, `"total":1`) {
		t.Errorf("r2 imported three times: %.200s", body)
	}
	if _, body := request(t, "GET", base+"/Patient/r1/_history", ""); !strings.Contains(body, `"total":2`) {
		t.Errorf("r1 imported three times, then changed: %.200s", body)
	}
}

// TestBackupWhileServingAndRestore: a backup taken while the server writes
// is a consistent, verified copy; restoring it into a directory in use is
// refused, and into a free one brings back exactly what was backed up.
func TestBackupWhileServingAndRestore(t *testing.T) {
	data := t.TempDir()
	cmd, base := startServer(t, nil, "--data", data, "--no-seed")
	for i := range 20 {
		request(t, "PUT", fmt.Sprintf("%s/Patient/b%d", base, i), fmt.Sprintf(`{"resourceType":"Patient","id":"b%d"}`, i))
	}
	// Writes go on while the backup runs.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			request(t, "PUT", fmt.Sprintf("%s/Patient/w%d", base, i), fmt.Sprintf(`{"resourceType":"Patient","id":"w%d"}`, i))
		}
	}()
	backup := filepath.Join(t.TempDir(), "hearth.backup")
	out, err := exec.Command(binary, "backup", "--data", data, "--out", backup).CombinedOutput()
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("backup while serving: %v %s", err, out)
	}
	if out, err := exec.Command(binary, "restore", "--data", data, "--from", backup, "--replace").CombinedOutput(); err == nil || !strings.Contains(string(out), "in use") {
		t.Errorf("restore into a directory in use: %v %s", err, out)
	}
	cmd.Process.Kill()
	cmd.Wait()
	restored := t.TempDir()
	if out, err := exec.Command(binary, "restore", "--data", restored, "--from", backup).CombinedOutput(); err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}
	if out, err := exec.Command(binary, "restore", "--data", restored, "--from", backup).CombinedOutput(); err == nil {
		t.Errorf("restore over a database without --replace: %s", out)
	}
	_, base2 := startServer(t, nil, "--data", restored)
	for i := range 20 {
		if status, _ := request(t, "GET", fmt.Sprintf("%s/Patient/b%d", base2, i), ""); status != 200 {
			t.Errorf("restored Patient/b%d: %d", i, status)
		}
	}
	// A damaged backup is refused.
	bad := filepath.Join(t.TempDir(), "bad.backup")
	os.WriteFile(bad, []byte("not a database"), 0o600)
	if out, err := exec.Command(binary, "restore", "--data", t.TempDir(), "--from", bad).CombinedOutput(); err == nil {
		t.Errorf("a damaged backup was restored: %s", out)
	}
}

// TestClientThatDoesNotReadIsCutOff: past --write-timeout a response the
// client does not read is abandoned and the connection closed, rather than
// holding the handler and its memory for as long as the client likes.
func TestClientThatDoesNotReadIsCutOff(t *testing.T) {
	_, base := startServer(t, nil, "--no-seed", "--data", t.TempDir(), "--write-timeout", "1s")
	text := strings.Repeat("x", 1500)
	request(t, "PUT", base+"/Patient/big", `{"resourceType":"Patient","id":"big","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">`+text+`</div>"}}`)
	entries := make([]string, 5000)
	for i := range entries {
		entries[i] = `{"request":{"method":"GET","url":"Patient/big"}}`
	}
	body := `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Join(entries, ",") + `]}`
	addr := strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/fhir")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /fhir HTTP/1.1\r\nHost: %s\r\nContent-Type: application/fhir+json\r\nContent-Length: %d\r\n\r\n%s", addr, len(body), body)
	time.Sleep(4 * time.Second) // not reading, well past the write timeout
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	got, err := io.ReadAll(conn)
	t.Logf("read %d bytes in %v: %v", len(got), time.Since(start), err)
	// The answer streams (chunked): a complete one ends with the last,
	// empty chunk and is about 8.5 MB here.
	if strings.HasSuffix(string(got), "\r\n0\r\n\r\n") || len(got) > 7_000_000 {
		t.Errorf("the whole response (%d bytes) was held for a client that did not read", len(got))
	}
}
