package smart_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/smart"
)

// labelled is an Observation of patient carrying one meta.security label.
func labelled(id, patient, system, code string) string {
	return strings.Replace(obs(id, patient, "laboratory", "5671-3"), `"status"`,
		fmt.Sprintf(`"meta":{"security":[{"system":%q,"code":%q}]},"status"`, system, code), 1)
}

// TestProxyOfAdolescentDoesNotSeeSensitiveRecords: a parent acting for a
// child of 12 or more gets none of the child's restricted or sensitive
// records — not by search, read, include, $everything or history, and
// cannot overwrite them — while the teen's own token sees them, and the
// same parent acting for a toddler sees the toddler's.
func TestProxyOfAdolescentDoesNotSeeSensitiveRecords(t *testing.T) {
	e := newEnv(t) // kid1 and kid2 were born in 2010
	ctx := context.Background()
	toddler := time.Now().AddDate(-3, 0, 0).Format("2006-01-02")
	e.put("Patient", "tod", `{"resourceType":"Patient","id":"tod","birthDate":"`+toddler+`"}`)
	if _, err := smart.LinkProxy(ctx, e.st, e.records, "parent", "tod", "PRN"); err != nil {
		t.Fatal(err)
	}
	if _, err := smart.NewAccounts(e.st).AddUser(ctx, "kid1", password, "kid1"); err != nil {
		t.Fatal(err)
	}
	const conf, act = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	e.put("Observation", "kid1-psy", labelled("kid1-psy", "kid1", act, "PSY"))
	e.put("Observation", "kid1-r", labelled("kid1-r", "kid1", conf, "R"))
	e.put("Observation", "kid1-n", labelled("kid1-n", "kid1", conf, "N")) // normal: not withheld
	e.put("Observation", "tod-psy", labelled("tod-psy", "tod", act, "PSY"))

	token := func(user, pick string) string {
		return e.exchange(e.authorize(newBrowser(t), e.oauthConfig(appID, append(patientScopes, "patient/*.cruds")...), user, pick)).AccessToken
	}
	parentKid, parentTod, teen := token("parent", "kid1"), token("parent", "tod"), token("kid1", "")

	search := func(tok, path string) []string {
		status, b, _ := e.fhir("GET", path, tok, "")
		if status != 200 {
			t.Fatalf("%s: %d %v", path, status, b)
		}
		return ids(b)
	}
	hidden := []string{"Observation/kid1-psy", "Observation/kid1-r"}
	for _, path := range []string{"/Observation?patient=kid1", "/Observation?patient=kid1&code=5671-3", "/Patient/kid1/Observation",
		"/Patient/kid1/$everything", "/Patient?_id=kid1&_revinclude=Observation:patient", "/Observation?_id=kid1-psy,kid1-r,kid1-n"} {
		got := search(parentKid, path)
		for _, h := range hidden {
			if slices.Contains(got, h) {
				t.Errorf("parent of a 16-year-old, %s: %s is there", path, h)
			}
		}
		if !slices.Contains(got, "Observation/kid1-n") {
			t.Errorf("parent, %s: the normal-labelled Observation is missing: %v", path, got)
		}
		if own := search(teen, path); !slices.Contains(own, "Observation/kid1-psy") || !slices.Contains(own, "Observation/kid1-r") {
			t.Errorf("the teen's own token, %s: %v", path, own)
		}
	}
	for _, path := range []string{"/Observation/kid1-psy", "/Observation/kid1-r/_history/1", "/Observation/kid1-r/_history"} {
		if status, _, _ := e.fhir("GET", path, parentKid, ""); status != 404 {
			t.Errorf("parent, %s: %d, want 404", path, status)
		}
	}
	if status, _, _ := e.fhir("PUT", "/Observation/kid1-psy", parentKid, obs("kid1-psy", "kid1", "laboratory", "1-1")); status != 403 && status != 404 {
		t.Errorf("parent overwriting a withheld record: %d", status)
	}
	if status, _, _ := e.fhir("DELETE", "/Observation/kid1-psy", parentKid, ""); status != 404 {
		t.Errorf("parent deleting a withheld record: %d", status)
	}
	if status, _, _ := e.fhir("GET", "/Observation/kid1-psy", teen, ""); status != 200 {
		t.Errorf("the teen reading their own record: %d", status)
	}
	if got := search(parentTod, "/Observation?patient=tod"); !slices.Contains(got, "Observation/tod-psy") {
		t.Errorf("parent of a toddler: %v", got)
	}
}
