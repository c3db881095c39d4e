package main

import (
	"net/http"
	"sync"
	"testing"

	"github.com/hearth-fhir/hearth/store/mongo/mongotest"
)

// Two Hearth processes on one MongoDB (FerretDB): twenty bookings of one
// slot, sent to both at once, make exactly one appointment.
func TestOneSlotAcrossTwoProcesses(t *testing.T) {
	uri := mongotest.URI(t)
	runHearth(t, "client", "add", "--store", uri, "--id", "ops", "--secret", "ops-secret-ops-secret", "--backend")
	a := startAuthServer(t, "--store", uri, "--no-seed", "--base-url", sharedBase)
	b := startAuthServer(t, "--store", uri, "--no-seed", "--base-url", sharedBase)
	ops := backendToken(t, a)
	for _, r := range []struct{ path, body string }{
		{"/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`},
		{"/fhir/Slot/s1", `{"resourceType":"Slot","id":"s1","schedule":{"reference":"Schedule/dr"},"status":"free","start":"2026-12-10T09:00:00Z","end":"2026-12-10T09:20:00Z"}`},
	} {
		if status, body := call(t, http.MethodPut, a+r.path, ops, "application/fhir+json", r.body); status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %v", r.path, status, body)
		}
	}
	booking := `{"resourceType":"Appointment","status":"booked","slot":[{"reference":"Slot/s1"}],"start":"2026-12-10T09:00:00Z","end":"2026-12-10T09:20:00Z","participant":[{"actor":{"reference":"Patient/p1"},"status":"accepted"}]}`
	statuses := make([]int, 20)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			root := []string{a, b}[i%2]
			statuses[i], _ = call(t, http.MethodPost, root+"/fhir/Appointment", ops, "application/fhir+json", booking)
		}()
	}
	wg.Wait()
	created := 0
	for _, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
		default:
			t.Errorf("a booking answered %d", s)
		}
	}
	if created != 1 {
		t.Fatalf("20 bookings across two processes: %d appointments (%v)", created, statuses)
	}
	if _, body := call(t, http.MethodGet, b+"/fhir/Appointment?slot=Slot/s1&_summary=count", ops, "", ""); body["total"] != float64(1) {
		t.Errorf("appointments of the slot: %v", body)
	}
}
