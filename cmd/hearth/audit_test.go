package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// auditLines runs `hearth audit` with args and answers its stdout lines.
func auditLines(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"audit"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hearth audit %v: %v\n%s", args, err, stderr.String())
	}
	var lines []string
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// recordedEntities are the subtype and entity references of NDJSON
// AuditEvents.
func recordedEntities(t *testing.T, lines []string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, l := range lines {
		var ev struct {
			Subtype []struct{ Code string }
			Entity  []struct {
				What *struct{ Reference string }
			}
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not an AuditEvent: %v: %s", err, l)
		}
		for _, en := range ev.Entity {
			if en.What != nil && en.What.Reference != "" {
				seen[ev.Subtype[0].Code+" "+en.What.Reference]++
			}
		}
	}
	return seen
}

// TestAuditTrailSurvivesKill9: every acknowledged write has its
// AuditEvent after a kill -9 (it commits with the write), and with
// --audit=sync every answered read too; `hearth audit` reads the trail
// of a data directory, also while a server serves it.
func TestAuditTrailSurvivesKill9(t *testing.T) {
	for _, mode := range []string{"grouped", "sync"} {
		t.Run(mode, func(t *testing.T) {
			data := t.TempDir()
			cmd, base := startServer(t, nil, "--data", data, "--no-seed", "--audit", mode)
			for i := range 20 {
				id := fmt.Sprintf("k%d", i)
				if status, body := request(t, "PUT", base+"/Patient/"+id, fmt.Sprintf(`{"resourceType":"Patient","id":%q}`, id)); status != 201 {
					t.Fatalf("write %d: %d %s", i, status, body)
				}
				if status, _ := request(t, "GET", base+"/Patient/"+id, ""); status != 200 {
					t.Fatalf("read %d: %d", i, status)
				}
			}
			// Read while the server runs: the writes are there.
			if lines := auditLines(t, "--data", data, "--subtype", "update"); len(lines) != 1+20 { // a header and the writes
				t.Errorf("while serving, %d lines of updates: %q", len(lines), lines)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			seen := recordedEntities(t, auditLines(t, "--data", data, "--format", "ndjson"))
			for i := range 20 {
				if n := seen[fmt.Sprintf("update Patient/k%d/_history/1", i)]; n != 1 {
					t.Errorf("the write of k%d has %d AuditEvents after kill -9", i, n)
				}
				if n := seen[fmt.Sprintf("read Patient/k%d", i)]; mode == "sync" && n != 1 {
					t.Errorf("--audit=sync: the read of k%d has %d AuditEvents after kill -9", i, n)
				}
			}
		})
	}
}

// TestAuditCommandFilters: by patient, outcome, subtype and time, as a
// table or NDJSON; a bad flag is named.
func TestAuditCommandFilters(t *testing.T) {
	data := t.TempDir()
	_, base := startServer(t, nil, "--data", data, "--no-seed", "--audit", "sync")
	request(t, "PUT", base+"/Patient/a", `{"resourceType":"Patient","id":"a"}`)
	request(t, "PUT", base+"/Patient/b", `{"resourceType":"Patient","id":"b"}`)
	request(t, "GET", base+"/Patient/a", "")
	request(t, "GET", base+"/Patient/nobody", "")
	count := func(args ...string) int {
		t.Helper()
		return len(auditLines(t, append([]string{"--data", data, "--format", "ndjson"}, args...)...))
	}
	if n := count("--patient", "Patient/a"); n != 2 {
		t.Errorf("--patient a: %d events, want 2 (the write and the read)", n)
	}
	if n := count("--outcome", "failure"); n != 1 {
		t.Errorf("--outcome failure: %d events, want 1 (the read of nobody)", n)
	}
	if n := count("--subtype", "read", "--outcome", "success"); n != 1 {
		t.Errorf("successful reads: %d, want 1", n)
	}
	if n := count("--since", "1h"); n != 4 {
		t.Errorf("--since 1h: %d, want 4", n)
	}
	if n := count("--until", "2000-01-01"); n != 0 {
		t.Errorf("--until 2000: %d, want 0", n)
	}
	if n := count("--limit", "3", "--newest-first"); n != 3 {
		t.Errorf("--limit 3: %d", n)
	}
	table := auditLines(t, "--data", data, "--patient", "b")
	if len(table) != 2 || !strings.HasPrefix(table[0], "RECORDED") || !strings.Contains(table[1], "Patient/b/_history/1") {
		t.Errorf("the table: %q", table)
	}
	out, err := exec.Command(binary, "audit", "--data", data, "--outcome", "maybe").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--outcome must be") {
		t.Errorf("a bad --outcome: %v %s", err, out)
	}
}

// TestAccountChangesAreAudited: the operator's import, account and
// proxy-link changes are in the trail, about the patient they concern.
func TestAccountChangesAreAudited(t *testing.T) {
	data := t.TempDir()
	cmd, base := startServer(t, nil, "--data", data, "--no-seed")
	for _, id := range []string{"kid", "mum"} {
		if status, body := request(t, "PUT", base+"/Patient/"+id, `{"resourceType":"Patient","id":"`+id+`"}`); status != 201 {
			t.Fatalf("%s: %d %s", id, status, body)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	ndjson := t.TempDir() + "/more.ndjson"
	if err := os.WriteFile(ndjson, []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/kid"}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runHearth(t, "import", "--data", data, ndjson)
	if lines := auditLines(t, "--data", data, "--subtype", "import"); len(lines) != 2 || !strings.Contains(lines[1], "1 resources loaded, 0 rejected") {
		t.Errorf("the import's record: %q", lines)
	}
	runHearth(t, "user", "add", "--data", data, "--username", "mum", "--password", "a long enough password", "--patient", "Patient/mum")
	runHearth(t, "user", "link", "--data", data, "--username", "mum", "--patient", "Patient/kid")
	runHearth(t, "user", "unlink", "--data", data, "--username", "mum", "--patient", "Patient/kid")
	events := func(patient, subtype string) int {
		return len(auditLines(t, "--data", data, "--format", "ndjson", "--patient", patient, "--subtype", subtype))
	}
	if n := events("mum", "account-changed"); n != 1 {
		t.Errorf("the account's creation: %d events about mum", n)
	}
	if n := events("kid", "proxy-linked"); n != 2 {
		t.Errorf("the link and unlink: %d events about kid, want 2", n)
	}
}

// TestOperatorAccountCommands: the operator issues an activation code,
// disables, enables and revokes an account; each is in the trail, and the
// account's state follows.
func TestOperatorAccountCommands(t *testing.T) {
	data := t.TempDir()
	cmd, base := startServer(t, nil, "--data", data, "--no-seed")
	if status, body := request(t, "PUT", base+"/Patient/mum", `{"resourceType":"Patient","id":"mum","birthDate":"1980-01-02"}`); status != 201 {
		t.Fatalf("mum: %d %s", status, body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	out, err := exec.Command(binary, "activation", "issue", "--data", data, "--patient", "Patient/mum", "--expires", "2d").CombinedOutput()
	if err != nil || !regexp.MustCompile(`activation code for Patient/mum: [0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5} \(single use, until `).Match(out) {
		t.Fatalf("activation issue: %v %s", err, out)
	}
	if out, err := exec.Command(binary, "activation", "issue", "--data", data, "--patient", "Patient/nobody").CombinedOutput(); err == nil {
		t.Fatalf("a code for a patient who does not exist: %s", out)
	}
	runHearth(t, "user", "add", "--data", data, "--username", "mum", "--password", "a long enough password", "--patient", "Patient/mum")
	runHearth(t, "user", "disable", "--data", data, "--username", "mum")
	runHearth(t, "user", "revoke-tokens", "--data", data, "--username", "mum")
	runHearth(t, "user", "enable", "--data", data, "--username", "mum")
	if out, err := exec.Command(binary, "user", "add", "--data", data, "--username", "weak", "--password", "password1234").CombinedOutput(); err == nil || !strings.Contains(string(out), "common passwords") {
		t.Fatalf("a common password: %v %s", err, out)
	}
	var details []string
	for _, line := range auditLines(t, "--data", data, "--format", "ndjson", "--patient", "mum", "--subtype", "account-changed") {
		var ev struct {
			OutcomeDesc string `json:"outcomeDesc"`
		}
		json.Unmarshal([]byte(line), &ev)
		details = append(details, ev.OutcomeDesc)
	}
	want := []string{"activation code issued", "account mum added", "account disabled by the operator; sessions and tokens revoked",
		"the operator revoked the account's sessions and tokens", "account enabled by the operator"}
	if !slices.Equal(details, want) {
		t.Fatalf("the trail: %q, want %q", details, want)
	}
}
