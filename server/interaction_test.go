package server

import (
	"net/http/httptest"
	"testing"
)

// A request refused before the door is recorded as the interaction its
// path and method make it, naming the resource only when the path names
// a valid one.
func TestInteractionOf(t *testing.T) {
	for _, tc := range []struct{ method, path, subtype, entity string }{
		{"POST", "/fhir", "batch", ""},
		{"POST", "/fhir/", "batch", ""},
		{"GET", "/fhir/Patient", "search-type", ""},
		{"POST", "/fhir/Patient", "create", ""},
		{"PUT", "/fhir/Patient", "update", ""},
		{"GET", "/fhir/Patient/p1", "read", "Patient/p1"},
		{"PUT", "/fhir/Patient/p1", "update", "Patient/p1"},
		{"PATCH", "/fhir/Patient/p1", "patch", "Patient/p1"},
		{"DELETE", "/fhir/Patient/p1", "delete", "Patient/p1"},
		{"GET", "/fhir/Patient/p1/_history", "history", "Patient/p1"},
		{"GET", "/fhir/Patient/p1/_history/2", "vread", "Patient/p1"},
		{"GET", "/fhir/Patient/_history", "history", ""},
		{"GET", "/fhir/_history", "history", ""},
		{"POST", "/fhir/Patient/_search", "search-type", ""},
		{"GET", "/fhir/Patient/p1/$everything", "operation", "Patient/p1"},
		{"GET", "/fhir/Patient/p1/Observation", "search-type", "Patient/p1"},
		{"GET", "/fhir/Nonsense/x1", "read", ""},
		{"GET", "/fhir/Patient/" + "%1b[31mred", "read", ""},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		if st, en := interactionOf(r); st != tc.subtype || en != tc.entity {
			t.Errorf("%s %s: %q %q, want %q %q", tc.method, tc.path, st, en, tc.subtype, tc.entity)
		}
	}
}
