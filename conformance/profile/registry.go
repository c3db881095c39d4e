package profile

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/hearth-fhir/hearth/fhir"
)

// usCore is US Core 5.0.1's StructureDefinitions with snapshots (from
// the project's shared definitions; see uscore/README.md).
//
//go:embed uscore/structuredefinitions-5.0.1.json.gz
var usCore []byte

// Registry holds compiled profiles by canonical URL.
type Registry struct {
	byURL map[string]*Profile
}

var (
	usCoreOnce sync.Once
	usCoreReg  *Registry
	usCoreErr  error
)

// USCore is the registry of the bundled US Core 5.0.1 profiles.
func USCore() (*Registry, error) {
	usCoreOnce.Do(func() { usCoreReg, usCoreErr = load(usCore) })
	return usCoreReg, usCoreErr
}

func load(gz []byte) (*Registry, error) {
	z, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(z)
	if err != nil {
		return nil, err
	}
	var sds []json.RawMessage
	if err := json.Unmarshal(raw, &sds); err != nil {
		return nil, err
	}
	r := &Registry{byURL: map[string]*Profile{}}
	for _, sd := range sds {
		p, err := Compile(sd)
		if err != nil {
			return nil, fmt.Errorf("US Core: %w", err)
		}
		r.byURL[p.URL] = p
	}
	return r, nil
}

// Lookup finds a profile by canonical URL; a |version suffix is ignored.
func (r *Registry) Lookup(url string) *Profile {
	if r == nil {
		return nil
	}
	return r.byURL[strings.SplitN(url, "|", 2)[0]]
}

// Profiles lists the registry's profiles of resources, by URL.
func (r *Registry) Profiles() []*Profile {
	var out []*Profile
	for _, p := range r.byURL {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Profile) int { return strings.Compare(a.URL, b.URL) })
	return out
}

// ValidateClaims validates a resource against each profile it claims in
// meta.profile that the registry has. A claimed profile it does not have
// is a warning: nothing was checked against it.
func (r *Registry) ValidateClaims(res map[string]any) []fhir.Issue {
	meta, _ := res["meta"].(map[string]any)
	claims, _ := meta["profile"].([]any)
	var issues []fhir.Issue
	for i, c := range claims {
		url, _ := c.(string)
		p := r.Lookup(url)
		if p == nil {
			issues = append(issues, fhir.Issue{Severity: "warning", Code: "not-supported", Expression: fmt.Sprintf("%s.meta.profile[%d]", res["resourceType"], i),
				Diagnostics: "profile " + fhir.QuoteSafe(url) + " is not known here; the resource was not checked against it"})
			continue
		}
		issues = append(issues, p.Validate(res, r.Lookup)...)
	}
	return issues
}
