package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/store"
)

// Twenty patients' apps book one slot at once: exactly one appointment
// is made, the others are told the slot is taken; cancelling frees it.
func TestOneSlotOneAppointment(t *testing.T) { onEachBackend(t, oneSlotOneAppointment) }

func appointment(slot, patient string) string {
	return `{"resourceType":"Appointment","status":"booked","slot":[{"reference":"Slot/` + slot + `"}],"start":"2026-12-10T09:00:00Z","end":"2026-12-10T09:20:00Z",` +
		`"participant":[{"actor":{"reference":"Patient/` + patient + `"},"status":"accepted"},{"actor":{"reference":"Practitioner/dr"},"status":"accepted"}]}`
}

func oneSlotOneAppointment(t *testing.T, st store.Store) {
	clk := &clock{now: time.Now()}
	ts, door := tokenServer(t, st, interact.Config{Now: clk.Now}, staffPatientProxy)
	staff := func(method, path, body string) response { return do(t, ts, method, path, body, withToken("staff")...) }
	for _, r := range []struct{ path, body string }{
		{"/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`},
		{"/fhir/Schedule/dr", `{"resourceType":"Schedule","id":"dr","actor":[{"reference":"Practitioner/dr"}]}`},
		{"/fhir/Slot/s1", `{"resourceType":"Slot","id":"s1","schedule":{"reference":"Schedule/dr"},"status":"free","start":"2026-12-10T09:00:00Z","end":"2026-12-10T09:20:00Z"}`},
		{"/fhir/Slot/s2", `{"resourceType":"Slot","id":"s2","schedule":{"reference":"Schedule/dr"},"status":"free","start":"2026-12-10T09:20:00Z","end":"2026-12-10T09:40:00Z"}`},
	} {
		if got := staff("PUT", r.path, r.body); got.status != 201 {
			t.Fatalf("PUT %s: %d %s", r.path, got.status, got.body)
		}
	}
	// The patient sees the free slots (directory data), and cannot write one.
	if r := do(t, ts, "GET", "/fhir/Slot?schedule=Schedule/dr&status=free", "", withToken("pat")...); !strings.Contains(string(r.body), `"total":2`) {
		t.Fatalf("free slots, as the patient: %s", r.body)
	}
	if r := do(t, ts, "PUT", "/fhir/Slot/s1", `{"resourceType":"Slot","id":"s1","schedule":{"reference":"Schedule/dr"},"status":"busy","start":"2026-12-10T09:00:00Z","end":"2026-12-10T09:20:00Z"}`, withToken("pat")...); r.status != 403 {
		t.Errorf("the patient writing a slot: %d", r.status)
	}
	statuses := make([]int, 20)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = do(t, ts, "POST", "/fhir/Appointment", appointment("s1", "p1"), withToken("pat")...).status
		}()
	}
	wg.Wait()
	created, taken := 0, 0
	for _, s := range statuses {
		switch s {
		case 201:
			created++
		case 409:
			taken++
		}
	}
	if created != 1 || taken != 19 {
		t.Fatalf("20 bookings of one slot: %d created, %d told it was taken (%v)", created, taken, statuses)
	}
	if r := staff("GET", "/fhir/Appointment?slot=Slot/s1&_summary=count", ""); !strings.Contains(string(r.body), `"total":1`) {
		t.Errorf("appointments of the slot: %s", r.body)
	}
	if r := staff("GET", "/fhir/Slot/s1", ""); !strings.Contains(string(r.body), `"status":"busy"`) {
		t.Errorf("the booked slot: %s", r.body)
	}
	// Rescheduling to s2 frees s1; cancelling frees s2.
	r := do(t, ts, "GET", "/fhir/Appointment?slot=Slot/s1", "", withToken("pat")...)
	id := strings.SplitN(strings.SplitN(string(r.body), `"resourceType":"Appointment","id":"`, 2)[1], `"`, 2)[0]
	move := strings.Replace(appointment("s2", "p1"), `{"resourceType":"Appointment",`, `{"resourceType":"Appointment","id":"`+id+`",`, 1)
	if r := do(t, ts, "PUT", "/fhir/Appointment/"+id, move, withToken("pat")...); r.status != 200 {
		t.Fatalf("reschedule: %d %s", r.status, r.body)
	}
	for slot, want := range map[string]string{"s1": "free", "s2": "busy"} {
		if r := staff("GET", "/fhir/Slot/"+slot, ""); !strings.Contains(string(r.body), fmt.Sprintf(`"status":%q`, want)) {
			t.Errorf("after rescheduling, Slot/%s: %s", slot, r.body)
		}
	}
	cancel := strings.Replace(move, `"status":"booked"`, `"status":"cancelled"`, 1)
	if r := do(t, ts, "PUT", "/fhir/Appointment/"+id, cancel, withToken("pat")...); r.status != 200 {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if r := staff("GET", "/fhir/Slot/s2", ""); !strings.Contains(string(r.body), `"status":"free"`) {
		t.Errorf("after cancelling, Slot/s2: %s", r.body)
	}
	// A claim no appointment came to hold (a process stopped between the
	// two) is freed after five minutes; a held one is not.
	staff("PUT", "/fhir/Slot/s3", `{"resourceType":"Slot","id":"s3","schedule":{"reference":"Schedule/dr"},"status":"busy","start":"2026-12-10T10:00:00Z","end":"2026-12-10T10:20:00Z"}`)
	if r := do(t, ts, "POST", "/fhir/Appointment", appointment("s1", "p1"), withToken("pat")...); r.status != 201 {
		t.Fatalf("booking s1 again: %d %s", r.status, r.body)
	}
	if n, err := door.FreeOrphanSlots(context.Background()); err != nil || n != 0 {
		t.Errorf("orphans at once: %d %v", n, err)
	}
	clk.advance(6 * time.Minute)
	if n, err := door.FreeOrphanSlots(context.Background()); err != nil || n != 1 {
		t.Errorf("orphans after five minutes: %d %v", n, err)
	}
	for slot, want := range map[string]string{"s1": "busy", "s3": "free"} {
		if r := staff("GET", "/fhir/Slot/"+slot, ""); !strings.Contains(string(r.body), fmt.Sprintf(`"status":%q`, want)) {
			t.Errorf("after freeing orphans, Slot/%s: %s", slot, r.body)
		}
	}
	// A bundle cannot book around the claim.
	tx := `{"resourceType":"Bundle","type":"batch","entry":[{"resource":` + appointment("s1", "p1") + `,"request":{"method":"POST","url":"Appointment"}}]}`
	if r := do(t, ts, "POST", "/fhir", tx, withToken("pat")...); !strings.Contains(string(r.body), "booked and freed by POST or PUT") {
		t.Errorf("booking in a batch: %s", r.body)
	}
}
