// Package noninterference holds the test of the property the door to the
// data exists for: what a token answers does not depend on data it may not
// see. It builds two stores that differ only outside a token's view and
// requires the same answers from both to a large, seeded, generated set of
// interactions made over HTTP with that token: searches of every parameter
// type with modifiers, chains, nested _has, includes, counts, totals,
// sorting and paging; reads, vreads and history; $everything; compartment
// searches; batches and transactions; conditional creates, updates,
// patches (JSON Patch and FHIRPath Patch) and deletes, under the patient
// write rules (home readings the token's user performed, lab results it
// may not write); results not yet released; other patients' messages,
// appointments and renewal requests; $validate of an
// update or delete, which reads what it names; the audit trail's AuditEvents, of which world B
// holds more, about other patients; bulk exports at every level with
// their parameters, run to the end, files and all. It runs on the
// embedded store and on FerretDB.
//
//	go test ./interact/noninterference                       # make test's share
//	go test ./interact/noninterference -cases 20000 -seed 7  # longer, another draw
package noninterference

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/server"
	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/smart/scopes"
	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/mongo"
	"github.com/hearth-fhir/hearth/store/mongo/mongotest"
	"github.com/hearth-fhir/hearth/store/sqlite"
)

var (
	cases      = flag.Int("cases", 0, "interactions per scenario (default: 1500 on SQLite, 200 on MongoDB)")
	seed       = flag.Uint64("seed", 1, "seed of the generated interactions")
	showPasses = flag.Bool("show", false, "log every interaction")
)

func TestMain(m *testing.M) {
	code := m.Run()
	mongotest.Stop()
	os.Exit(code)
}

// scenario is a token and what it may see.
type scenario struct {
	name   string
	policy *access.Policy
	// sees says whether the token may see a resource version.
	sees func(typ, id string, body map[string]any) bool
	// patient is the token's patient, whose own data its writes name.
	patient string
	// types weights the resource types interactions are about (default:
	// every type of the vocabulary alike).
	types []string
}

var shared = []string{"Organization", "Practitioner", "Medication", "Location"}

func patientSees(patient string, withhold bool, allowed func(typ string, body map[string]any) bool) func(string, string, map[string]any) bool {
	return func(typ, id string, body map[string]any) bool {
		if allowed != nil && !allowed(typ, body) {
			return false
		}
		if slices.Contains(shared, typ) {
			return true
		}
		if withhold && labelled(body) {
			return false
		}
		if unreleased(typ, body) {
			return false
		}
		return slices.Contains(compartments(typ, id, body), patient)
	}
}

func scenarios() []scenario {
	lab := "patient/Observation.rs?category=" + obsCat + "|laboratory patient/Patient.rs patient/Encounter.rs patient/Practitioner.rs"
	return []scenario{
		{
			name:    "patient",
			policy:  &access.Policy{Patient: "pat-p", Scopes: scopes.ParseSet("patient/*.cruds"), ClientID: "app", Subject: "alpha", FHIRUser: "Patient/pat-p"},
			sees:    patientSees("pat-p", false, nil),
			patient: "pat-p",
		},
		{
			name:    "proxy-of-teen",
			policy:  &access.Policy{Patient: "pat-t", Scopes: scopes.ParseSet("patient/*.cruds"), WithholdSensitive: true, ClientID: "app", Subject: "parent", FHIRUser: "RelatedPerson/parent"},
			sees:    patientSees("pat-t", true, nil),
			patient: "pat-t",
		},
		{
			name:   "patient-granular",
			policy: &access.Policy{Patient: "pat-p", Scopes: scopes.ParseSet(lab + " patient/AuditEvent.rs"), ClientID: "app", Subject: "alpha", FHIRUser: "Patient/pat-p"},
			sees: patientSees("pat-p", false, func(typ string, body map[string]any) bool {
				switch typ {
				case "Observation":
					return category(body) == "laboratory"
				case "Patient", "Encounter", "Practitioner":
					return true
				}
				return false
			}),
			patient: "pat-p",
			types:   []string{"Observation", "Observation", "Observation", "Patient", "Patient", "Encounter", "Practitioner", "Condition"},
		},
		{
			name:   "system-granular",
			policy: &access.Policy{Scopes: scopes.ParseSet("system/Observation.rs?category=" + obsCat + "|laboratory system/Practitioner.rs system/Organization.rs"), ClientID: "backend"},
			sees: func(typ, id string, body map[string]any) bool {
				switch typ {
				case "Observation":
					return category(body) == "laboratory"
				case "Practitioner", "Organization":
					return true
				}
				return false
			},
			patient: "pat-p",
			types:   []string{"Observation", "Observation", "Observation", "Practitioner", "Practitioner", "Organization", "Organization", "Patient"},
		},
	}
}

// tokens hands every request the scenario's policy: the token check itself
// is tested in smart; here the subject is what a policy sees.
type tokens struct{ p *access.Policy }

func (t tokens) Authenticate(_ context.Context, token string) (*access.Policy, error) {
	if token != "t" {
		return nil, smart.ErrInvalidToken
	}
	return t.p, nil
}

// world is one Hearth over one store.
type world struct {
	st   store.Store
	base string
	srv  *httptest.Server
	ids  *idMap
}

func newWorld(t *testing.T, st store.Store, sc scenario, changes []change) *world {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String() + "/fhir"
	door := interact.New(st, interact.Config{BaseURL: base, ReleaseDelays: releaseDelays})
	load(t, door, base0)
	if changes != nil {
		if n := apply(t, st, door, changes, sc.sees); n == 0 {
			t.Fatal("world B does not differ from world A")
		}
		if err := st.AppendAudit(context.Background(), othersAudit(sc.patient)); err != nil {
			t.Fatal(err)
		}
	}
	// The API's door records every interaction, before answering (Sync):
	// an AuditEvent search then finds the same records in both worlds.
	trail := audit.New(st, audit.Options{Mode: audit.Sync})
	t.Cleanup(trail.Close)
	served := interact.New(st, interact.Config{BaseURL: base, Audit: trail})
	exports := interact.NewExports(served, st, st, interact.ExportConfig{PartSize: 3, Poll: 50 * time.Millisecond})
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { exports.Run(ctx); close(ran) }()
	t.Cleanup(func() { stop(); <-ran })
	srv.Config.Handler = server.New(server.Config{BaseURL: base, Tokens: tokens{sc.policy}, Exports: exports}, served, slog.New(slog.DiscardHandler))
	srv.Start()
	t.Cleanup(srv.Close)
	return &world{st: st, base: base, srv: srv, ids: &idMap{m: map[string]string{}}}
}

var base0 = base()

// othersAudit is world B's share of the audit trail the token may not
// see: what was done to the other patients' records, by their proxies,
// by the token's own app, and their sign-ins.
func othersAudit(own string) []store.AuditRecord {
	var out []store.AuditRecord
	now := time.Now()
	for _, p := range patients {
		if p == own {
			continue
		}
		out = append(out,
			store.AuditRecord{Recorded: now, Type: "rest", Subtype: "read", Action: "R", Outcome: "0", Patients: []string{p},
				Agents: []string{"Device/app"}, Entities: []string{"Observation/" + p + "-obs-0"}, Data: []byte(`{"c":"app"}`)},
			store.AuditRecord{Recorded: now, Type: "rest", Subtype: "search-type", Action: "E", Outcome: "4", Patients: []string{p},
				Agents: []string{"RelatedPerson/" + p + "-proxy", "Device/other"}, Data: []byte(`{"c":"other","u":"proxy","q":"Observation?code"}`)},
			store.AuditRecord{Recorded: now, Type: "110113", Subtype: "login", Action: "E", Outcome: "0", Patients: []string{p},
				Agents: []string{"Patient/" + p}, Data: []byte(`{"u":"` + p + `"}`)},
		)
	}
	return out
}

type backend struct {
	name  string
	open  func(t *testing.T) store.Store
	cases int
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) store.Store {
			st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}, 1500},
		{"mongo", func(t *testing.T) store.Store {
			st, err := mongo.Open(context.Background(), mongotest.URI(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}, 500},
	}
}

func TestNonInterference(t *testing.T) {
	changes := differences()
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			for i, sc := range scenarios() {
				t.Run(sc.name, func(t *testing.T) {
					a := newWorld(t, be.open(t), sc, nil)
					b := newWorld(t, be.open(t), sc, changes)
					n := be.cases
					if *cases > 0 {
						n = *cases
					}
					rng := rand.New(rand.NewPCG(*seed, uint64(i)))
					gen := &generator{rng: rng, sc: sc}
					statuses := map[int]int{}
					for c := range n {
						req := gen.next()
						ra, rb := a.do(t, req), b.do(t, req)
						statuses[ra.status]++
						if ra.status >= 500 || rb.status >= 500 {
							t.Fatalf("case %d %s %s: %d / %d\n%s", c, req.method, req.path, ra.status, rb.status, rb.body)
						}
						if diff := ra.differs(rb); diff != "" {
							t.Fatalf("case %d (seed %d): %s %s %s\nanswers differ: %s\nA: %d %s\nB: %d %s", c, *seed, req.method, req.path, req.body, diff, ra.status, ra.body, rb.status, rb.body)
						}
						if *showPasses {
							t.Logf("%d %s %s", ra.status, req.method, req.path)
						}
						// Follow the paging links of both, in step.
						for hop := 0; hop < 3 && ra.next != "" && rb.next != ""; hop++ {
							pa := a.do(t, request{method: "GET", path: strings.TrimPrefix(ra.next, a.base)})
							pb := b.do(t, request{method: "GET", path: strings.TrimPrefix(rb.next, b.base)})
							if diff := pa.differs(pb); diff != "" {
								t.Fatalf("case %d: %s %s, page %d: %s\nA: %d %s\nB: %d %s", c, req.method, req.path, hop+2, diff, pa.status, pa.body, pb.status, pb.body)
							}
							ra, rb = pa, pb
						}
					}
					// Bulk exports, run to the end in both worlds: the
					// kick-off's answer, the manifest and every file.
					for _, path := range exportCases(sc) {
						ea, eb := a.export(t, path), b.export(t, path)
						if ea != eb {
							t.Fatalf("export %s: answers differ\nA: %.2000s\nB: %.2000s", path, ea, eb)
						}
						if *showPasses {
							t.Logf("export %s: %.200s", path, ea)
						}
					}
					// The run must exercise both answers and refusals.
					ok, refused := 0, 0
					for s, k := range statuses {
						if s < 300 {
							ok += k
						} else {
							refused += k
						}
					}
					if ok < n/5 || refused == 0 {
						t.Errorf("the generated interactions are lopsided: %v", statuses)
					}
					t.Logf("%d interactions, same answers; statuses %v", n, statuses)
				})
			}
		})
	}
}

type request struct {
	method, path, body string
	header             map[string]string
}

type answer struct {
	status int
	body   string // normalised
	next   string // raw next link
	head   string // normalised Location and ETag
}

func (w *world) do(t *testing.T, r request) answer {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, w.base+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer t")
	if r.body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := w.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode}
	var doc any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s %s: not JSON: %s", r.method, r.path, raw)
		}
		a.next = nextLink(doc)
		norm, _ := json.Marshal(w.normalise(doc))
		a.body = string(norm)
	}
	a.head = w.ids.replace(w.pageTokens(resp.Header.Get("Location"))) + " " + resp.Header.Get("ETag")
	return a
}

func (a answer) differs(b answer) string {
	switch {
	case a.status != b.status:
		return fmt.Sprintf("status %d vs %d", a.status, b.status)
	case a.head != b.head:
		return fmt.Sprintf("headers %q vs %q", a.head, b.head)
	case a.body != b.body:
		return "bodies"
	}
	return ""
}

func nextLink(doc any) string {
	m, _ := doc.(map[string]any)
	links, _ := m["link"].([]any)
	for _, l := range links {
		lm, _ := l.(map[string]any)
		if lm["relation"] == "next" {
			s, _ := lm["url"].(string)
			return s
		}
	}
	return ""
}

// idMap names server-assigned ids by their order of first appearance in
// one world, so that the two worlds' new resources compare equal.
type idMap struct{ m map[string]string }

// uuidRE finds the ids a store draws: resource ids (UUIDs), AuditEvent
// ids (32 hex digits) and request ids (24).
var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[0-9a-f]{32}\b|\b[0-9a-f]{24}\b`)

func (ids *idMap) replace(s string) string {
	return uuidRE.ReplaceAllStringFunc(s, func(u string) string {
		if n, ok := ids.m[u]; ok {
			return n
		}
		n := fmt.Sprintf("new-%d", len(ids.m)+1)
		ids.m[u] = n
		return n
	})
}

// pageTokens blanks the random part of paging snapshot names, which each
// store draws for itself; the offsets stay.
var snapRE = regexp.MustCompile(`(_page=(?:s\.)?)[0-9A-Za-z_-]{6,}(\.|%2E)`)

func (w *world) pageTokens(s string) string {
	return snapRE.ReplaceAllString(strings.ReplaceAll(s, w.base, "BASE"), "${1}SNAP${2}")
}

// normalise drops what differs between any two stores (write times) and
// names new ids and snapshots the same way in both.
func (w *world) normalise(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		// In key order: ids are named in the order first met.
		for _, k := range slices.Sorted(maps.Keys(x)) {
			e := x[k]
			switch k {
			case "lastUpdated", "lastModified", "recorded":
				continue
			}
			out[k] = w.normalise(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = w.normalise(e)
		}
		return out
	case string:
		return w.ids.replace(w.pageTokens(x))
	}
	return v
}
