package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/store"
)

// userCmd: hearth user add|link|unlink …
func userCmd(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: hearth user add|link|unlink|disable|enable|revoke-tokens --username U …")
	}
	sub := args[0]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	data := fs.String("data", "./hearth-data", "data directory of the embedded store")
	storeKind := fs.String("store", "sqlite", "storage backend: sqlite or a mongodb:// URL")
	username := fs.String("username", "", "the account's username")
	password := fs.String("password", "", "the account's password (add)")
	patient := fs.String("patient", "", "Patient/ID: the user's own record (add) or the patient to act for (link)")
	relationship := fs.String("relationship", "PRN", "v3 RoleCode of a proxy link (PRN parent, GUARD guardian, …)")
	st, err := parseAndOpen(fs, args[1:], storeKind, data)
	if err != nil {
		return err
	}
	defer st.Close()
	pid := strings.TrimPrefix(*patient, "Patient/")
	ctx := context.Background()
	// The operator's commands read and write as the operator: through an
	// unrestricted session of the door.
	records := interact.New(st, interact.Config{}).Unrestricted(operator)
	switch sub {
	case "add":
		if pid != "" {
			if _, err := records.Read(ctx, "Patient", pid); err != nil {
				return fmt.Errorf("--patient: %w", err)
			}
		}
		if _, err := smart.NewAccounts(st).AddUser(ctx, *username, *password, pid); err != nil {
			return err
		}
		if err := recordAccountChange(ctx, st, audit.AccountChanged, "C", "account "+*username+" added", pid, ""); err != nil {
			return err
		}
		fmt.Printf("user %s added\n", *username)
	case "link":
		l, err := smart.LinkProxy(ctx, st, records, *username, pid, *relationship)
		if err != nil {
			return err
		}
		if err := recordAccountChange(ctx, st, audit.ProxyLinked, "C", "account "+*username+" may act for the patient", l.Patient, "RelatedPerson/"+l.RelatedPerson); err != nil {
			return err
		}
		fmt.Printf("user %s is now a proxy for Patient/%s as RelatedPerson/%s\n", *username, l.Patient, l.RelatedPerson)
	case "unlink":
		if err := smart.Unlink(ctx, st, *username, pid); err != nil {
			return err
		}
		if err := recordAccountChange(ctx, st, audit.ProxyLinked, "D", "account "+*username+" no longer acts for the patient", pid, ""); err != nil {
			return err
		}
		fmt.Printf("user %s no longer acts for Patient/%s\n", *username, pid)
	case "disable", "enable", "revoke-tokens":
		return userAccessCmd(ctx, st, sub, *username)
	default:
		return fmt.Errorf("unknown user command %q (add, link, unlink, disable, enable, revoke-tokens)", sub)
	}
	return nil
}

// userAccessCmd is the operator's say over an account: disable it (no
// sign-in, every session and token ended), enable it again, or end its
// sessions and tokens and leave it working.
func userAccessCmd(ctx context.Context, st store.Store, sub, username string) error {
	acc := smart.NewAccounts(st)
	u, err := acc.Get(ctx, username)
	if err != nil {
		return fmt.Errorf("user %q: %w", username, err)
	}
	if sub != "revoke-tokens" {
		u.Disabled = sub == "disable"
		if err := acc.Put(ctx, u); err != nil {
			return err
		}
	}
	if sub != "enable" {
		p, err := adminProvider(st)
		if err != nil {
			return err
		}
		if err := p.RevokeUser(ctx, username); err != nil {
			return err
		}
	}
	action, detail := "U", map[string]string{"disable": "account disabled by the operator; sessions and tokens revoked",
		"enable": "account enabled by the operator", "revoke-tokens": "the operator revoked the account's sessions and tokens"}[sub]
	if err := recordAccountChange(ctx, st, audit.AccountChanged, action, detail, u.Patient, ""); err != nil {
		return err
	}
	fmt.Printf("user %s: %s\n", username, detail)
	return nil
}

// activationCmd: hearth activation issue --patient Patient/ID [--expires 30d]
func activationCmd(args []string) error {
	if len(args) == 0 || args[0] != "issue" {
		return errors.New("usage: hearth activation issue --patient Patient/ID [--expires 30d]")
	}
	fs := flag.NewFlagSet("activation issue", flag.ContinueOnError)
	data := fs.String("data", "./hearth-data", "data directory of the embedded store")
	storeKind := fs.String("store", "sqlite", "storage backend: sqlite or a mongodb:// URL")
	patient := fs.String("patient", "", "Patient/ID the code signs up")
	expires := fs.String("expires", "30d", "how long the code works: days (30d) or a duration (72h)")
	st, err := parseAndOpen(fs, args[1:], storeKind, data)
	if err != nil {
		return err
	}
	defer st.Close()
	ttl, err := smart.ParseTTL(*expires)
	if err != nil {
		return fmt.Errorf("--expires: %w", err)
	}
	pid := strings.TrimPrefix(*patient, "Patient/")
	if pid == "" {
		return errors.New("--patient Patient/ID is required")
	}
	p, err := adminProvider(st)
	if err != nil {
		return err
	}
	ctx := context.Background()
	code, until, err := p.IssueActivation(ctx, pid, ttl, "operator")
	if err != nil {
		return err
	}
	if err := recordAccountChange(ctx, st, audit.AccountChanged, "C", "activation code issued", pid, ""); err != nil {
		return err
	}
	fmt.Printf("activation code for Patient/%s: %s (single use, until %s)\n", pid, code, until.Format(time.RFC3339))
	return nil
}

// recordAccountChange records an operator's change to an account in the
// audit trail: about the patient it concerns, a patient sees it.
func recordAccountChange(ctx context.Context, st store.AuditLog, subtype, action, detail, patient, entity string) error {
	e := audit.Event{Type: audit.SecurityType, Subtype: subtype, Action: action, Outcome: audit.Success, Detail: detail}
	if patient != "" {
		e.Patients = []string{patient}
	}
	if entity != "" {
		e.Entities = []string{entity}
	}
	if err := st.AppendAudit(ctx, []store.AuditRecord{audit.Facts(operator, e, time.Now())}); err != nil {
		return fmt.Errorf("the change is made, but its audit record failed: %w", err)
	}
	return nil
}

// clientCmd: hearth client add … | hearth client token …
func clientCmd(args []string) error {
	if len(args) > 0 && args[0] == "token" {
		return registrationTokenCmd(args[1:])
	}
	if len(args) == 0 || args[0] != "add" {
		return errors.New("usage: hearth client add --id ID --redirect-uri URI [--public] [--secret S] [--jwks-url U] | hearth client token [--expires 24h]")
	}
	fs := flag.NewFlagSet("client add", flag.ContinueOnError)
	data := fs.String("data", "./hearth-data", "data directory of the embedded store")
	storeKind := fs.String("store", "sqlite", "storage backend: sqlite or a mongodb:// URL")
	id := fs.String("id", "", "client id")
	name := fs.String("name", "", "name shown on the consent page")
	var redirects multiFlag
	fs.Var(&redirects, "redirect-uri", "redirect URI (repeatable)")
	public := fs.Bool("public", false, "a public client (no secret; PKCE only)")
	secret := fs.String("secret", "", "client secret (client_secret_basic)")
	jwksURL := fs.String("jwks-url", "", "JWKS URL of a private_key_jwt client")
	alg := fs.String("alg", "RS384", "the client's assertion signing algorithm (RS384 or ES384)")
	scope := fs.String("scope", "", "scopes the client may ask for (default: all)")
	backend := fs.Bool("backend", false, "a backend service (client_credentials with system/ scopes)")
	launchURI := fs.String("launch-uri", "", "the app's launch URL for EHR (portal) launch")
	st, err := parseAndOpen(fs, args[1:], storeKind, data)
	if err != nil {
		return err
	}
	defer st.Close()
	c := &smart.Client{ID: *id, Name: *name, RedirectURIs: redirects, Public: *public, JWKSURI: *jwksURL, SigningAlg: *alg, Scope: *scope, LaunchURI: *launchURI}
	if *backend {
		c.GrantTypes = []string{"client_credentials"}
		if c.Scope == "" {
			c.Scope = "system/*.rs system/*.cruds system/*.read system/*.*"
		}
	}
	if err := addClient(st, c, *secret); err != nil {
		return err
	}
	fmt.Printf("client %s added (%s)\n", c.ID, c.AuthMethod)
	return nil
}

// registrationTokenCmd: hearth client token — an initial access token
// (RFC 7591 §3) with which one registration may create any client,
// backend services included.
func registrationTokenCmd(args []string) error {
	fs := flag.NewFlagSet("client token", flag.ContinueOnError)
	data := fs.String("data", "./hearth-data", "data directory of the embedded store")
	storeKind := fs.String("store", "sqlite", "storage backend: sqlite or a mongodb:// URL")
	expires := fs.Duration("expires", 24*time.Hour, "how long the token may be used")
	st, err := parseAndOpen(fs, args, storeKind, data)
	if err != nil {
		return err
	}
	defer st.Close()
	p, err := adminProvider(st)
	if err != nil {
		return err
	}
	tok, err := p.IssueRegistrationToken(context.Background(), *expires)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

func addClient(st store.Store, c *smart.Client, secret string) error {
	p, err := adminProvider(st)
	if err != nil {
		return err
	}
	return p.AddClient(context.Background(), c, secret)
}

// parseAndOpen parses an admin command's flags (and their HEARTH_*
// variables) and opens the store they name.
func parseAndOpen(fs *flag.FlagSet, args []string, storeKind, data *string) (store.Store, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := envDefaults(fs); err != nil {
		return nil, err
	}
	st, _, err := openStore(*storeKind, *data)
	return st, err
}

// adminProvider is the authorization server as the operator's commands use
// it: for its records, never to serve (the base URL is not used).
func adminProvider(st store.Store) (*smart.Provider, error) {
	return smart.New(context.Background(), smart.Config{FHIRBase: "http://localhost/fhir"}, st, interact.New(st, interact.Config{}).Unrestricted(operator), slog.New(slog.DiscardHandler))
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// Demo accounts created with the demo data, printed at start-up.
const (
	demoPatientUser = "patient"
	demoProxyUser   = "parent"
	demoPassword    = "warm-hearth-demo"
	demoClient      = "demo-app"
	// demoActivationCode signs up the fourth demo patient (published:
	// demo data only).
	demoActivationCode = "DEMO0-HEART-H2026"
	// demoBackend is a confidential client for curl: client_credentials
	// with a secret, system/ scopes. Demo data only.
	demoBackend       = "demo-backend"
	demoBackendSecret = "hearth-demo-secret"
)

// seedAccounts creates the demo users and the public demo client.
func seedAccounts(st store.Store, door *interact.Door) error {
	ctx := context.Background()
	records := door.Unrestricted(operator)
	ids, err := demoPatients(ctx, records)
	if err != nil {
		return err
	}
	if len(ids) < 4 {
		return nil // no demo patients, no demo users
	}
	acc := smart.NewAccounts(st)
	if _, err := acc.AddUser(ctx, demoPatientUser, demoPassword, ids[0]); err != nil {
		return err
	}
	if _, err := acc.AddUser(ctx, demoProxyUser, demoPassword, ""); err != nil {
		return err
	}
	for _, pid := range ids[1:3] {
		if _, err := smart.LinkProxy(ctx, st, records, demoProxyUser, pid, "PRN"); err != nil {
			return err
		}
	}
	if err := seedClinic(ctx, records, ids[0]); err != nil {
		return err
	}
	// The fourth patient has no account: the README signs them up with
	// the demo's published activation code.
	p, err := adminProvider(st)
	if err != nil {
		return err
	}
	if _, _, err := p.IssueActivationCode(ctx, ids[3], demoActivationCode, 365*24*time.Hour, "demo seed"); err != nil {
		return err
	}
	// The demo app is a SMART app served at http://localhost:8000 (any:
	// the fhirclient examples use launch.html and the root as redirect),
	// so that the README's portal launch has somewhere to go.
	if err := addClient(st, &smart.Client{ID: demoClient, Name: "Hearth demo app", Public: true, LaunchURI: "http://localhost:8000/launch.html",
		RedirectURIs: []string{"http://localhost:8000/", "http://localhost:8000/callback", "http://127.0.0.1:8000/callback"}}, ""); err != nil {
		return err
	}
	return addClient(st, &smart.Client{ID: demoBackend, Name: "Hearth demo backend", GrantTypes: []string{"client_credentials"},
		Scope: "system/*.cruds system/*.rs system/*.read system/*.write", AuthMethod: "client_secret_basic"}, demoBackendSecret)
}

// seedClinic gives the demo patient what a portal shows besides the
// record: a lab report still held for review and one released, a
// prescription to ask a renewal of, a questionnaire the clinic assigned,
// and a message from the care team. Fixed ids ("demo-…") let the README
// name them.
func seedClinic(ctx context.Context, records *interact.Session, patient string) error {
	subject := `{"reference":"Patient/` + patient + `"}`
	lab := `[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"LAB"}]}]`
	resources := []struct{ typ, body string }{
		{"Practitioner", `{"resourceType":"Practitioner","id":"demo-dr","name":[{"family":"Okafor","given":["Ada"],"prefix":["Dr."]}]}`},
		{"DiagnosticReport", `{"resourceType":"DiagnosticReport","id":"demo-lipids","status":"preliminary","category":` + lab + `,"code":{"coding":[{"system":"http://loinc.org","code":"57698-3","display":"Lipid panel"}]},"subject":` + subject + `,"performer":[{"reference":"Practitioner/demo-dr"}]}`},
		{"DiagnosticReport", `{"resourceType":"DiagnosticReport","id":"demo-cbc","status":"final","category":` + lab + `,"code":{"coding":[{"system":"http://loinc.org","code":"58410-2","display":"CBC panel"}]},"subject":` + subject + `,"performer":[{"reference":"Practitioner/demo-dr"}],"conclusion":"Within normal limits"}`},
		{"MedicationRequest", `{"resourceType":"MedicationRequest","id":"demo-rx","status":"active","intent":"order","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"860975","display":"metformin 500 MG Oral Tablet"}]},"subject":` + subject + `,"requester":{"reference":"Practitioner/demo-dr"},"dosageInstruction":[{"text":"1 tablet twice a day"}]}`},
		{"Questionnaire", `{"resourceType":"Questionnaire","id":"demo-intake","url":"http://hearth.example/Questionnaire/intake","status":"active","title":"Before your visit","item":[{"linkId":"smoke","type":"boolean","text":"Do you smoke?","required":true},{"linkId":"packs","type":"integer","text":"Packs a day","enableWhen":[{"question":"smoke","operator":"=","answerBoolean":true}],"required":true},{"linkId":"concern","type":"text","text":"What would you like to talk about?"}]}`},
		{"Task", `{"resourceType":"Task","id":"demo-intake-task","status":"requested","intent":"order","code":{"text":"Complete the questionnaire"},"focus":{"reference":"Questionnaire/demo-intake"},"for":` + subject + `,"requester":{"reference":"Practitioner/demo-dr"}}`},
		{"CareTeam", `{"resourceType":"CareTeam","id":"demo-careteam","status":"active","name":"Primary care","subject":` + subject + `,"participant":[{"member":{"reference":"Practitioner/demo-dr"}}]}`},
		{"Schedule", `{"resourceType":"Schedule","id":"demo-schedule","active":true,"actor":[{"reference":"Practitioner/demo-dr"}],"comment":"Dr. Okafor's clinic hours"}`},
		{"Account", `{"resourceType":"Account","id":"demo-account","status":"active","name":"Guarantor account","subject":[` + subject + `]}`},
		{"DocumentReference", `{"resourceType":"DocumentReference","id":"demo-statement","status":"current","type":{"text":"Billing statement"},"subject":` + subject + `,"content":[{"attachment":{"contentType":"application/pdf","data":"JVBERi0xLjQKJcTl8uXrp/Og0MTGCg==","title":"Statement, November 2026"}}]}`},
		{"Communication", `{"resourceType":"Communication","id":"demo-message","status":"completed","subject":` + subject + `,"sender":{"reference":"Practitioner/demo-dr"},"recipient":[` + subject + `],"sent":"2026-11-30T09:00:00Z","payload":[{"contentString":"Your CBC results are in and look good. Your lipid panel is still being reviewed."}]}`},
	}
	// Free 20-minute slots on the coming weekdays' mornings.
	day := time.Now().UTC().Truncate(24 * time.Hour)
	for n := 0; n < 10; {
		day = day.Add(24 * time.Hour)
		if day.Weekday() == time.Saturday || day.Weekday() == time.Sunday {
			continue
		}
		n++
		for k := range 3 {
			start := day.Add(9*time.Hour + time.Duration(k)*20*time.Minute)
			resources = append(resources, struct{ typ, body string }{"Slot", fmt.Sprintf(`{"resourceType":"Slot","id":"demo-slot-%s-%d","schedule":{"reference":"Schedule/demo-schedule"},"status":"free","start":%q,"end":%q}`,
				day.Format("20060102"), k, fhir.FormatInstant(start), fhir.FormatInstant(start.Add(20*time.Minute)))})
		}
	}
	for _, r := range resources {
		body, err := records.ParseResource([]byte(r.body), r.typ) // the session's: results get their release state
		if err != nil {
			return fmt.Errorf("demo %s: %w", r.typ, err)
		}
		id := body.ID()
		if _, err := records.Update(ctx, r.typ, id, body, 0); err != nil {
			return fmt.Errorf("demo %s/%s: %w", r.typ, id, err)
		}
	}
	return nil
}

// demoPatients are the first four patients by id: the demo patient, the
// proxy's two, and one to sign up.
func demoPatients(ctx context.Context, records *interact.Session) ([]string, error) {
	q, err := fhir.ParseSearch("Patient", url.Values{"_sort": {"_id"}, "_count": {"4"}, "_total": {"none"}}, fhir.SearchOptions{DefaultCount: 4, MaxCount: 4})
	if err != nil {
		return nil, err
	}
	page, err := records.Search(ctx, q, "")
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range page.Matches {
		ids = append(ids, r.ID)
	}
	return ids, nil
}

func printDemoAccounts(st store.Store) {
	u, err := smart.NewAccounts(st).Get(context.Background(), demoPatientUser)
	if err != nil {
		return
	}
	p, _ := smart.NewAccounts(st).Get(context.Background(), demoProxyUser)
	fmt.Fprintf(os.Stderr, "Demo accounts (password %q):\n  %s → Patient/%s\n", demoPassword, demoPatientUser, u.Patient)
	if p != nil {
		fmt.Fprintf(os.Stderr, "  %s → proxy for", demoProxyUser)
		for _, l := range p.Links {
			fmt.Fprintf(os.Stderr, " Patient/%s", l.Patient)
		}
		fmt.Fprintln(os.Stderr)
	}
	if ids, err := demoPatients(context.Background(), interact.New(st, interact.Config{}).Unrestricted(operator)); err == nil && len(ids) == 4 {
		// The birth date the sign-up asks is the patient's: the README
		// gives the demo's, the log gives none.
		fmt.Fprintf(os.Stderr, "Sign up at /account/signup: activation code %s, for Patient/%s (single use; the README gives the birth date)\n", demoActivationCode, ids[3])
	}
	fmt.Fprintf(os.Stderr, "Demo public client: %s (redirect http://localhost:8000/callback, PKCE S256)\n", demoClient)
	fmt.Fprintf(os.Stderr, "Demo backend client for curl: %s / %s (client_credentials, system/ scopes)\n\n", demoBackend, demoBackendSecret)
}
