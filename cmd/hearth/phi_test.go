package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer collects a process's log lines while the test reads them.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNoPHIInTheLogs runs the demo as `make run` does, with every log
// level on and authorization on, and uses it the ways a portal and an
// attacker would: searches by the demo patients' names and birth dates,
// reads, $everything, bad input naming a patient, bad tokens, a failed
// sign-in. Neither the logs nor the audit trail may hold any demo
// patient's name or birth date.
func TestNoPHIInTheLogs(t *testing.T) {
	data := t.TempDir()
	addr := freePort(t)
	cmd := exec.Command(binary, "serve", "--listen", addr, "--data", data, "--log-level", "debug", "--audit", "sync")
	cmd.Dir = "../.."
	logs := &syncBuffer{}
	cmd.Stderr, cmd.Stdout = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	root := "http://" + addr
	base := root + "/fhir"
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(logs.String(), "Hearth is up") {
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not come up: %s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		if resp, err := http.Get(base + "/metadata"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the demo never answered")
		}
		time.Sleep(100 * time.Millisecond)
	}

	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}}
	req, _ := http.NewRequest("POST", root+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo-backend", "hearth-demo-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if tok.AccessToken == "" {
		t.Fatal("no demo backend token")
	}
	call := func(method, path, token, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/fhir+json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	// The demo patients, as the server holds them.
	status, body := call("GET", "/Patient?_count=1000", tok.AccessToken, "")
	if status != 200 {
		t.Fatalf("the demo patients: %d", status)
	}
	var bundle struct {
		Entry []struct {
			Resource struct {
				ID        string `json:"id"`
				BirthDate string `json:"birthDate"`
				Name      []struct {
					Family string   `json:"family"`
					Given  []string `json:"given"`
				} `json:"name"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &bundle); err != nil || len(bundle.Entry) < 10 {
		t.Fatalf("the demo patients: %v, %d", err, len(bundle.Entry))
	}
	var phi []string
	for _, e := range bundle.Entry {
		p := e.Resource
		if p.BirthDate != "" {
			phi = append(phi, p.BirthDate)
		}
		for _, n := range p.Name {
			if len(n.Family) >= 4 {
				phi = append(phi, n.Family)
			}
			for _, g := range n.Given {
				if len(g) >= 4 {
					phi = append(phi, g)
				}
			}
		}
		family, birth := "", p.BirthDate
		if len(p.Name) > 0 {
			family = p.Name[0].Family
		}
		q := url.Values{"name": {family}, "birthdate": {birth}}
		call("GET", "/Patient?"+q.Encode(), tok.AccessToken, "")
		call("GET", "/Patient?family:exact="+url.QueryEscape(family)+"&birthdate=ge"+birth, tok.AccessToken, "")
		call("GET", "/Observation?subject.name="+url.QueryEscape(family), tok.AccessToken, "")
		call("GET", "/Patient/"+p.ID, tok.AccessToken, "")
		// Bad input that names the patient: the answers may say why, the
		// logs may not repeat it.
		call("GET", "/Patient?birthdate=not-"+birth+"&name="+url.QueryEscape(family), tok.AccessToken, "")
		call("POST", "/Patient", tok.AccessToken, `{"resourceType":"Patient","name":[{"family":"`+family+`"}],"birthDate":"`+birth+`x"}`)
		call("GET", "/Patient?name="+url.QueryEscape(family), "not-a-token", "")
	}
	call("GET", "/Patient/"+bundle.Entry[0].Resource.ID+"/$everything", tok.AccessToken, "")
	call("POST", "", tok.AccessToken, `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?name=`+bundle.Entry[1].Resource.Name[0].Family+`"}}]}`)
	// A failed sign-in with a patient's name as the username.
	http.PostForm(root+"/oauth2/token", url.Values{"grant_type": {"password"}, "username": {bundle.Entry[2].Resource.Name[0].Family}})

	trail, err := exec.Command(binary, "audit", "--data", data, "--format", "ndjson").Output()
	if err != nil {
		t.Fatal(err)
	}
	table, err := exec.Command(binary, "audit", "--data", data).Output()
	if err != nil {
		t.Fatal(err)
	}
	if len(bytes.Split(trail, []byte("\n"))) < 5*len(bundle.Entry) {
		t.Fatalf("the trail holds %d events for the run", len(bytes.Split(trail, []byte("\n"))))
	}
	for name, text := range map[string]string{"the logs": logs.String(), "the audit trail": string(trail), "hearth audit's table": string(table)} {
		for _, s := range phi {
			if strings.Contains(text, s) {
				i := strings.Index(text, s)
				t.Errorf("%s hold %q: …%s…", name, s, text[max(0, i-200):min(len(text), i+100)])
			}
		}
	}
	if testing.Verbose() {
		os.Stderr.WriteString(logs.String()[max(0, len(logs.String())-2000):])
	}
}
