package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/server"
	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/sqlite"
)

// failingLog is a store whose audit log fails while down is set.
type failingLog struct {
	*sqlite.Store
	down atomic.Bool
}

func (f *failingLog) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	if f.down.Load() {
		return errors.New("the audit store is down")
	}
	return f.Store.AppendAudit(ctx, recs)
}

// When the audit trail cannot be written, reads answer 503 (an
// OperationOutcome) instead of serving unaudited data, in either mode;
// once it can, they are served again, and no record of a served read was
// dropped meanwhile.
func TestAuditTrailDownRefusesReads(t *testing.T) {
	for _, mode := range []audit.Mode{audit.Grouped, audit.Sync} {
		t.Run(map[audit.Mode]string{audit.Grouped: "grouped", audit.Sync: "sync"}[mode], func(t *testing.T) {
			log := &failingLog{Store: openStore(t)}
			trail := audit.New(log, audit.Options{Mode: mode, FlushEvery: 10 * time.Millisecond})
			defer trail.Close()
			ts := httptest.NewUnstartedServer(nil)
			ts.Start()
			defer ts.Close()
			base := ts.URL + "/fhir"
			ts.Config.Handler = server.New(server.Config{BaseURL: base, Open: true}, interact.New(log.Store, interact.Config{BaseURL: base, Audit: trail}), slog.New(slog.DiscardHandler))
			if r := do(t, ts, "PUT", "/fhir/Patient/p", `{"resourceType":"Patient","id":"p"}`); r.status != 201 {
				t.Fatalf("write: %d %s", r.status, r.body)
			}
			served := 0
			read := func() int {
				r := do(t, ts, "GET", "/fhir/Patient/p", "")
				switch r.status {
				case 200:
					served++
				case 503:
					if r.json(t)["resourceType"] != "OperationOutcome" {
						t.Errorf("a 503 that is not an OperationOutcome: %s", r.body)
					}
				default:
					t.Fatalf("read: %d %s", r.status, r.body)
				}
				return r.status
			}
			read()
			log.down.Store(true)
			refused := false
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if read() == 503 {
					refused = true
					break
				}
			}
			if !refused {
				t.Fatal("reads were served while the audit store was down")
			}
			for range 3 {
				if read() != 503 {
					t.Error("a read was served while the trail could not be written")
				}
			}
			log.down.Store(false)
			back := false
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if read() == 200 {
					back = true
					break
				}
			}
			if !back {
				t.Fatal("reads were still refused once the audit store was back")
			}
			// Every served read has its record (refused ones may too:
			// their records were kept, conservatively).
			var recs []store.AuditRecord
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				var err error
				if recs, err = log.SearchAudit(context.Background(), store.AuditQuery{Subtypes: []string{"read"}}); err != nil {
					t.Fatal(err)
				}
				if len(recs) >= served {
					break
				}
			}
			if len(recs) < served {
				t.Errorf("%d reads served, %d recorded", served, len(recs))
			}
		})
	}
}
