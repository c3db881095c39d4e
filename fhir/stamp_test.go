package fhir

import (
	"strings"
	"testing"
	"time"
)

func TestStampSetsServerFieldsAndKeepsTheRest(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 123e6, time.UTC)
	in := `{ "name":[{"family":"Ünïcode"}], "resourceType":"Patient", "id":"old",
		"meta":{"versionId":"9","lastUpdated":"2000-01-01T00:00:00Z","tag":[{"code":"t"}]},
		"_birthDate":{"extension":[{"url":"u","valueDecimal":1.50}]}, "birthDate":"1970" }`
	out, err := Stamp([]byte(in), "new-id", 3, at)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","id":"new-id","meta":{"versionId":"3","lastUpdated":"2024-05-06T07:08:09.123Z","tag":[{"code":"t"}]},"name":[{"family":"Ünïcode"}],"_birthDate":{"extension":[{"url":"u","valueDecimal":1.50}]},"birthDate":"1970"}`
	if string(out) != want {
		t.Errorf("Stamp:\n got %s\nwant %s", out, want)
	}
	if _, err := Stamp([]byte(`[1]`), "x", 1, at); err == nil || !strings.Contains(err.Error(), "not a JSON object") {
		t.Errorf("non-object: err = %v", err)
	}
}

func FuzzValidate(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Patient","name":[{"family":"x"}]}`))
	f.Add([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.5}}`))
	f.Add([]byte(`{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"2","type":"string"}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rt, issues, err := Validate(body)
		if err != nil || len(issues) > 0 || !IsResourceType(rt) {
			return
		}
		// Whatever validates must stamp, and stay valid once stamped.
		out, err := Stamp(body, "id1", 1, time.Unix(0, 0))
		if err != nil {
			t.Fatalf("valid resource does not stamp: %v", err)
		}
		if _, issues, err := Validate(out); err != nil || len(issues) > 0 {
			t.Fatalf("stamped resource invalid: %v %v", err, issues)
		}
	})
}
