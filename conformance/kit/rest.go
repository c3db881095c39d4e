package kit

import (
	"fmt"
	"net/url"
	"strings"
)

// restSuite checks create, read, versions, history, conditional
// interactions, concurrency control, patch, delete and errors, on
// Patients it creates and removes.
func (k *kit) restSuite() {
	if !k.declares("Patient", "create") {
		k.check("create", func() error { return skipf("the server does not declare create on Patient") })
		return
	}
	run := runID()
	system := "urn:hearth-conformance:" + run
	patient := func(value, family string) string {
		return `{"resourceType":"Patient","identifier":[{"system":"` + system + `","value":"` + value + `"}],"name":[{"family":"` + family + `"}],"gender":"female"}`
	}
	var id string
	k.check("create answers 201 with Location, ETag and the resource", func() error {
		r, err := k.do("POST", "Patient", patient("1", "Conformance"), "Prefer", "return=representation")
		if err != nil {
			return err
		}
		if err := r.expect("create", 201); err != nil {
			return err
		}
		loc := r.header.Get("Location")
		if !strings.Contains(loc, "/Patient/") {
			return fmt.Errorf("Location %q does not name the new Patient", loc)
		}
		id = strings.Split(strings.SplitN(loc, "/Patient/", 2)[1], "/")[0]
		if r.header.Get("ETag") != `W/"1"` {
			return fmt.Errorf("ETag %q, want W/\"1\"", r.header.Get("ETag"))
		}
		if str(r.json, "id") != id {
			return fmt.Errorf("the body's id %q is not the Location's %q", str(r.json, "id"), id)
		}
		return nil
	})
	if id == "" {
		return
	}
	defer k.do("DELETE", "Patient?identifier="+url.QueryEscape(system+"|"), nil)
	k.check("read gives the resource with its version", func() error {
		r, err := k.do("GET", "Patient/"+id, nil)
		if err != nil {
			return err
		}
		if err := r.expect("read", 200); err != nil {
			return err
		}
		meta, _ := r.json["meta"].(map[string]any)
		if str(r.json, "id") != id || str(meta, "versionId") != "1" {
			return fmt.Errorf("read: id %q, versionId %q", str(r.json, "id"), str(meta, "versionId"))
		}
		return nil
	})
	k.check("update makes version 2; vread gives version 1", func() error {
		body := strings.Replace(patient("1", "Updated"), `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"`+id+`",`, 1)
		r, err := k.do("PUT", "Patient/"+id, body)
		if err != nil {
			return err
		}
		if err := r.expect("update", 200); err != nil {
			return err
		}
		if r.header.Get("ETag") != `W/"2"` {
			return fmt.Errorf("update: ETag %q, want W/\"2\"", r.header.Get("ETag"))
		}
		v1, err := k.do("GET", "Patient/"+id+"/_history/1", nil)
		if err != nil {
			return err
		}
		if err := v1.expect("vread of version 1", 200); err != nil {
			return err
		}
		if !strings.Contains(string(v1.body), "Conformance") {
			return fmt.Errorf("vread of version 1 does not give the first content")
		}
		return nil
	})
	k.check("instance history lists both versions, newest first", func() error {
		r, err := k.do("GET", "Patient/"+id+"/_history", nil)
		if err != nil {
			return err
		}
		if err := r.expect("history", 200); err != nil {
			return err
		}
		var versions []string
		for _, res := range entries(r.json) {
			meta, _ := res["meta"].(map[string]any)
			versions = append(versions, str(meta, "versionId"))
		}
		if strings.Join(versions, ",") != "2,1" {
			return fmt.Errorf("history versions %v, want [2 1]", versions)
		}
		return nil
	})
	k.check("an update with a stale If-Match is refused (412)", func() error {
		body := `{"resourceType":"Patient","id":"` + id + `","identifier":[{"system":"` + system + `","value":"1"}]}`
		r, err := k.do("PUT", "Patient/"+id, body, "If-Match", `W/"1"`)
		if err != nil {
			return err
		}
		return r.expect("stale If-Match", 412, 409)
	})
	k.check("conditional create finds the existing resource", func() error {
		if res := k.resourceEntry("Patient"); res == nil || res["conditionalCreate"] != true {
			return skipf("conditional create not declared")
		}
		r, err := k.do("POST", "Patient", patient("1", "Again"), "If-None-Exist", "identifier="+system+"|1")
		if err != nil {
			return err
		}
		if err := r.expect("conditional create of an existing identifier", 200); err != nil {
			return err
		}
		if loc := r.header.Get("Location"); loc != "" && !strings.Contains(loc, "/Patient/"+id) {
			return fmt.Errorf("conditional create pointed at %s, not Patient/%s", loc, id)
		}
		return nil
	})
	k.check("conditional update by identifier updates that resource", func() error {
		if res := k.resourceEntry("Patient"); res == nil || res["conditionalUpdate"] != true {
			return skipf("conditional update not declared")
		}
		r, err := k.do("PUT", "Patient?identifier="+url.QueryEscape(system+"|1"), patient("1", "Conditional"))
		if err != nil {
			return err
		}
		if err := r.expect("conditional update", 200); err != nil {
			return err
		}
		if r.header.Get("ETag") != `W/"3"` {
			return fmt.Errorf("conditional update: ETag %q, want W/\"3\"", r.header.Get("ETag"))
		}
		return nil
	})
	k.check("JSON Patch applies", func() error {
		if !k.declares("Patient", "patch") {
			return skipf("patch not declared")
		}
		r, err := k.do("PATCH", "Patient/"+id, `[{"op":"replace","path":"/gender","value":"male"}]`, "Content-Type", "application/json-patch+json")
		if err != nil {
			return err
		}
		if err := r.expect("JSON Patch", 200); err != nil {
			return err
		}
		return k.expectField("Patient/"+id, `"gender":"male"`)
	})
	k.check("FHIRPath Patch applies", func() error {
		if !k.declares("Patient", "patch") || !k.patchFormat("application/fhir+json") {
			return skipf("FHIRPath Patch not declared (patchFormat application/fhir+json)")
		}
		p := `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"birthDate"},{"name":"value","valueDate":"1990-01-02"}]}]}`
		r, err := k.do("PATCH", "Patient/"+id, p)
		if err != nil {
			return err
		}
		if err := r.expect("FHIRPath Patch", 200); err != nil {
			return err
		}
		return k.expectField("Patient/"+id, `"birthDate":"1990-01-02"`)
	})
	k.check("an invalid resource is refused with an OperationOutcome", func() error {
		r, err := k.do("POST", "Patient", `{"resourceType":"Patient","gender":"robot"}`)
		if err != nil {
			return err
		}
		if err := r.expect("invalid gender", 400, 422); err != nil {
			return err
		}
		if str(r.json, "resourceType") != "OperationOutcome" {
			return fmt.Errorf("the refusal is not an OperationOutcome")
		}
		return nil
	})
	k.check("an unknown id is 404 with an OperationOutcome", func() error {
		r, err := k.do("GET", "Patient/conformance-none-"+run, nil)
		if err != nil {
			return err
		}
		if err := r.expect("unknown id", 404); err != nil {
			return err
		}
		if str(r.json, "resourceType") != "OperationOutcome" {
			return fmt.Errorf("the 404 is not an OperationOutcome")
		}
		return nil
	})
	k.check("delete; a deleted resource reads as 410 Gone", func() error {
		if !k.declares("Patient", "delete") {
			return skipf("delete not declared")
		}
		r, err := k.do("DELETE", "Patient/"+id, nil)
		if err != nil {
			return err
		}
		if err := r.expect("delete", 200, 204); err != nil {
			return err
		}
		g, err := k.do("GET", "Patient/"+id, nil)
		if err != nil {
			return err
		}
		return g.expect("read after delete", 410, 404)
	})
}

func (k *kit) expectField(path, fragment string) error {
	r, err := k.do("GET", path, nil)
	if err != nil {
		return err
	}
	if !strings.Contains(string(r.body), fragment) {
		return fmt.Errorf("%s lacks %s after the patch", path, fragment)
	}
	return nil
}

func (k *kit) patchFormat(mt string) bool {
	cs, err := k.capabilityStatement()
	if err != nil {
		return false
	}
	list, _ := cs["patchFormat"].([]any)
	for _, f := range list {
		if f == mt {
			return true
		}
	}
	return false
}
