package kit

import (
	"fmt"
	"slices"
	"strings"
)

// smartSuite checks SMART discovery, a standalone launch, and, with the
// launch's patient token, that nothing of another patient is reachable.
func (k *kit) smartSuite() {
	var sc map[string]any
	k.check("discovery: .well-known/smart-configuration", func() error {
		var err error
		if sc, err = k.smartConfig(); err != nil {
			return err
		}
		var missing []string
		for _, f := range []string{"authorization_endpoint", "token_endpoint", "capabilities", "code_challenge_methods_supported", "grant_types_supported"} {
			if _, ok := sc[f]; !ok {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("missing %s", strings.Join(missing, ", "))
		}
		if !listHas(sc["code_challenge_methods_supported"], "S256") {
			return fmt.Errorf("code_challenge_methods_supported lacks S256")
		}
		if listHas(sc["code_challenge_methods_supported"], "plain") {
			return fmt.Errorf("code_challenge_methods_supported offers plain")
		}
		for _, c := range []string{"launch-standalone", "client-public", "permission-patient"} {
			if !listHas(sc["capabilities"], c) {
				return fmt.Errorf("capabilities lacks %s", c)
			}
		}
		return nil
	})
	k.check("an API request without a token is refused (401)", func() error {
		r, err := k.doWith("", "GET", "Patient", nil)
		if err != nil {
			return err
		}
		if r.status == 200 {
			return skipf("the server answers without authorization (an open server)")
		}
		if err := r.expect("request without a token", 401); err != nil {
			return err
		}
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			return fmt.Errorf("the 401 has no WWW-Authenticate: Bearer")
		}
		return nil
	})
	if k.cfg.LaunchClientID == "" || k.cfg.Username == "" {
		k.check("standalone launch", func() error {
			return skipf("give --launch-client, --redirect-uri, --username and --password to launch")
		})
		return
	}
	var tok map[string]any
	k.check("standalone launch: sign in, consent, code, token (PKCE S256)", func() error {
		var err error
		tok, err = k.standaloneLaunch("launch/patient openid fhirUser patient/*.rs offline_access")
		if err != nil {
			return err
		}
		if str(tok, "patient") == "" {
			return fmt.Errorf("the token response names no patient")
		}
		if !strings.Contains(str(tok, "scope"), "patient/") {
			return fmt.Errorf("the granted scope %q has no patient scope", str(tok, "scope"))
		}
		if str(tok, "id_token") == "" {
			return fmt.Errorf("openid was asked for and no id_token came")
		}
		return nil
	})
	if tok == nil {
		return
	}
	access, patient := str(tok, "access_token"), str(tok, "patient")
	k.check("the patient token reads its patient", func() error {
		r, err := k.doWith(access, "GET", "Patient/"+patient, nil)
		if err != nil {
			return err
		}
		return r.expect("read of the launch patient", 200)
	})
	k.leakProbe(access, patient)
}

// leakProbe: with one patient's token, another patient (found with the
// data token) must be unreachable by read, search, chain, include,
// _has, history and $everything.
func (k *kit) leakProbe(access, patient string) {
	var other string
	k.check("leak probe: find another patient", func() error {
		if k.token == "" {
			return skipf("a data token (--token or --client-id) is needed to find another patient")
		}
		r, err := k.do("GET", "Patient?_count=50&_elements=id", nil)
		if err != nil {
			return err
		}
		for _, res := range entries(r.json) {
			if id := str(res, "id"); id != patient {
				other = id
				return nil
			}
		}
		return skipf("the server holds no other patient")
	})
	if other == "" {
		return
	}
	for _, p := range []struct{ name, path string }{
		{"read", "Patient/" + other},
		{"vread", "Patient/" + other + "/_history/1"},
		{"history", "Patient/" + other + "/_history"},
		{"$everything", "Patient/" + other + "/$everything"},
		{"search by id", "Patient?_id=" + other},
		{"search by subject", "Observation?subject=Patient/" + other},
		{"chain", "Observation?subject:Patient._id=" + other},
		{"_has", "Patient?_has:Observation:subject:_id=" + other},
		{"_revinclude", "Patient?_id=" + other + "&_revinclude=Observation:subject"},
		{"compartment", "Patient/" + other + "/Observation"},
	} {
		k.check("leak probe: "+p.name+" of another patient reveals nothing", func() error {
			r, err := k.doWith(access, "GET", p.path, nil)
			if err != nil {
				return err
			}
			if r.status == 403 || r.status == 404 || r.status == 401 {
				return nil
			}
			if r.status != 200 {
				return fmt.Errorf("HTTP %d", r.status)
			}
			if strings.Contains(string(r.body), `"id":"`+other+`"`) {
				return fmt.Errorf("the answer contains Patient/%s", other)
			}
			for _, res := range entries(r.json) {
				if str(res, "resourceType") == "OperationOutcome" {
					continue
				}
				if !k.belongsTo(res, patient) {
					return fmt.Errorf("the answer holds %s/%s, not of the token's patient", str(res, "resourceType"), str(res, "id"))
				}
			}
			return nil
		})
	}
	k.check("leak probe: a type search gives only the token's patient", func() error {
		r, err := k.doWith(access, "GET", "Observation?_count=100", nil)
		if err != nil {
			return err
		}
		if r.status == 403 {
			return nil
		}
		if err := r.expect("Observation search", 200); err != nil {
			return err
		}
		for _, res := range entries(r.json) {
			if str(res, "resourceType") == "Observation" && !k.belongsTo(res, patient) {
				return fmt.Errorf("Observation/%s is another patient's", str(res, "id"))
			}
		}
		return nil
	})
}

// belongsTo reports whether a resource is the patient's own: the Patient
// itself, or one whose subject or patient is that patient.
func (k *kit) belongsTo(res map[string]any, patient string) bool {
	if str(res, "resourceType") == "Patient" {
		return str(res, "id") == patient
	}
	for _, f := range []string{"subject", "patient", "beneficiary"} {
		ref, _ := res[f].(map[string]any)
		if r := str(ref, "reference"); r != "" {
			return strings.HasSuffix(r, "Patient/"+patient)
		}
	}
	return true // not a patient's resource (a Practitioner, an Organization)
}

func listHas(v any, want string) bool {
	list, _ := v.([]any)
	return slices.ContainsFunc(list, func(x any) bool { return x == want })
}
