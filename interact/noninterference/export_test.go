package noninterference

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// exportCases are the bulk exports each scenario asks for: every level,
// its own patient's and another's record, the Group, and the parameters
// that narrow an export (each a search of its own).
func exportCases(sc scenario) []string {
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	var out []string
	for _, p := range []string{sc.patient, "pat-q", "nobody"} {
		out = append(out, "/Patient/"+p+"/$export")
	}
	return append(out,
		"/$export",
		"/$export?_type=Observation,Patient,Practitioner",
		"/Patient/$export",
		"/Patient/$export?_type=Observation,Condition&_since="+since,
		"/Group/grp-x/$export",
		"/Group/grp-all/$export",
		"/$export?_typeFilter=Observation%3Fcode%3Dhttp://loinc.org|8867-4,Observation%3F_has:Provenance:target:_id%3Dprov-1&_type=Observation,Encounter",
		"/$export?_type=Observation,Patient&_elements=Observation.subject,name",
		"/$export?_type=Observation,Condition&_since="+since,
	)
}

// export runs one export to its end and gives what its client learns:
// the kick-off's refusal, or the manifest and every file's lines
// (normalised, each file's lines sorted).
func (w *world) export(t *testing.T, path string) string {
	t.Helper()
	get := func(method, u string, header ...string) (int, []byte, http.Header) {
		req, err := http.NewRequest(method, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer t")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := w.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, resp.Header
	}
	norm := func(b []byte) string {
		var doc any
		if json.Unmarshal(b, &doc) != nil {
			return string(b)
		}
		out, _ := json.Marshal(w.normalise(doc))
		return string(out)
	}
	status, body, h := get("GET", w.base+path, "Prefer", "respond-async", "Accept", "application/fhir+json")
	if status != http.StatusAccepted {
		return fmt.Sprintf("kick-off %d %s", status, norm(body))
	}
	loc := h.Get("Content-Location")
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body, _ = get("GET", loc)
		if status != http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("export %s did not finish", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status != http.StatusOK {
		return fmt.Sprintf("status %d %s", status, norm(body))
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "transactionTime")
	var files []string
	for _, key := range []string{"output", "error", "deleted"} {
		items, _ := m[key].([]any)
		for _, it := range items {
			u := it.(map[string]any)["url"].(string)
			status, raw, _ := get("GET", u)
			lines := []string{fmt.Sprint(status)}
			for l := range strings.SplitSeq(strings.TrimSpace(string(raw)), "\n") {
				lines = append(lines, norm([]byte(l)))
			}
			slices.Sort(lines)
			files = append(files, key+": "+strings.Join(lines, "\n"))
		}
	}
	manifest, _ := json.Marshal(w.normalise(m))
	return string(manifest) + "\n" + strings.Join(files, "\n")
}
