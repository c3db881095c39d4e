package kit

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/hearth-fhir/hearth/conformance/profile"
	"github.com/hearth-fhir/hearth/fhir"
)

// usCoreExamples are conformant US Core 5.0.1 resources, one per bundled
// profile of a resource, modeled on the IG's own examples.
//
//go:embed uscore/*.json
var usCoreExamples embed.FS

// USCoreExample returns a bundled example by file name (patient.json …).
func USCoreExample(name string) ([]byte, error) { return usCoreExamples.ReadFile("uscore/" + name) }

const usCoreBase = "http://hl7.org/fhir/us/core/StructureDefinition/"

// usCoreSuite checks what the server returns conforms to US Core: the
// examples the kit writes come back conformant (a failure is the
// server's), and the server's own data of each profiled type is sampled
// (a failure is the data's: a warning).
func (k *kit) usCoreSuite() {
	reg, err := profile.USCore()
	if err != nil {
		k.check("load the US Core profiles", func() error { return err })
		return
	}
	examples := []struct{ file, profile, search string }{
		{"patient.json", "us-core-patient", "Patient?_count=20"},
		{"blood-pressure.json", "us-core-blood-pressure", "Observation?code=http://loinc.org|85354-9&_count=20"},
		{"medicationrequest.json", "us-core-medicationrequest", "MedicationRequest?_count=20"},
		{"implantable-device.json", "us-core-implantable-device", "Device?_count=20"},
	}
	run := runID()
	var patientID string
	var created []string
	defer func() {
		for i := len(created) - 1; i >= 0; i-- {
			k.do("DELETE", created[i], nil)
		}
	}()
	// The server's own data first: what the kit writes is not its data.
	for _, ex := range examples {
		p := reg.Lookup(usCoreBase + ex.profile)
		k.check(ex.profile+": the server's own data conforms", func() error {
			r, err := k.do("GET", ex.search, nil)
			if err != nil {
				return err
			}
			if err := r.expect(ex.search, 200); err != nil {
				return err
			}
			checked, bad := 0, map[string]int{}
			for _, res := range entries(r.json) {
				if str(res, "resourceType") != p.Type {
					continue
				}
				checked++
				errs, _ := fhir.SplitIssues(p.Validate(res, reg.Lookup))
				for _, is := range errs {
					bad[is.Expression+": "+is.Diagnostics]++
				}
			}
			if checked == 0 {
				return skipf("no %s on the server to sample", p.Type)
			}
			if len(bad) > 0 {
				return warnf("%d %s resources sampled; non-conformance: %s", checked, p.Type, topIssues(bad, 3))
			}
			return nil
		})
	}
	for _, ex := range examples {
		p := reg.Lookup(usCoreBase + ex.profile)
		k.check(ex.profile+": a conformant resource written comes back conformant", func() error {
			raw, err := USCoreExample(ex.file)
			if err != nil {
				return err
			}
			var res map[string]any
			if err := json.Unmarshal(raw, &res); err != nil {
				return err
			}
			delete(res, "id")
			if ex.profile == "us-core-patient" {
				res["identifier"] = []any{map[string]any{"system": "urn:hearth-conformance:" + run, "value": "uscore"}}
			} else {
				if patientID == "" {
					return skipf("the US Core patient was not written")
				}
				body, _ := json.Marshal(res)
				body = bytes.ReplaceAll(body, []byte(`"Patient/example"`), []byte(`"Patient/`+patientID+`"`))
				_ = json.Unmarshal(body, &res)
				delete(res, "encounter") // the example's encounter is not on this server
			}
			id, err := k.create(str(res, "resourceType"), string(mustJSON(res)))
			if err != nil {
				return err
			}
			created = append(created, str(res, "resourceType")+"/"+id)
			if ex.profile == "us-core-patient" {
				patientID = id
			}
			r, err := k.do("GET", str(res, "resourceType")+"/"+id, nil)
			if err != nil {
				return err
			}
			if err := r.expect("read back", 200); err != nil {
				return err
			}
			if errs, _ := fhir.SplitIssues(p.Validate(r.json, reg.Lookup)); len(errs) > 0 {
				return fmt.Errorf("%d profile errors, first: %s", len(errs), errs[0].Error())
			}
			return nil
		})
	}
}

// topIssues lists the most frequent issues with their counts.
func topIssues(counts map[string]int, n int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for i, key := range keys {
		if i == n {
			parts = append(parts, fmt.Sprintf("and %d more", len(keys)-n))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (×%d)", key, counts[key]))
	}
	return strings.Join(parts, "; ")
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
