package sqlite

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/store"
)

const benchPatient = `{"resourceType":"Patient","active":true,"name":[{"family":"Bench","given":["Load"]}],"gender":"other","birthDate":"1990-01-01","identifier":[{"system":"urn:bench","value":"1"}]}`

func benchStore(b *testing.B, opts Options, n int) (*Store, []string) {
	s, err := Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	ids := make([]string, n)
	err = s.Transact(ctx, func(tx store.Tx) error {
		for i := range ids {
			r, err := tx.Create(ctx, store.Write{Type: "Patient", Body: []byte(benchPatient)})
			if err != nil {
				return err
			}
			ids[i] = r.ID
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return s, ids
}

// BenchmarkRead measures a read by id from the cache and from SQLite.
func BenchmarkRead(b *testing.B) {
	for _, tc := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"uncached", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			s, ids := benchStore(b, Options{CacheEntries: tc.cache}, 1000)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := s.Read(ctx, "Patient", ids[i%len(ids)]); err != nil {
						b.Fatal(err)
					}
					i += 7
				}
			})
		})
	}
}

// BenchmarkCreate measures one durable create per transaction, and many per
// transaction (the import path).
func BenchmarkCreate(b *testing.B) {
	for _, perTx := range []int{1, 500} {
		b.Run(fmt.Sprintf("per-tx-%d", perTx), func(b *testing.B) {
			s, _ := benchStore(b, Options{}, 0)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(perTx, b.N-done)
				err := s.Transact(ctx, func(tx store.Tx) error {
					for j := 0; j < n; j++ {
						if _, err := tx.Create(ctx, store.Write{Type: "Patient", Body: []byte(benchPatient)}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				done += n
			}
		})
	}
}

// BenchmarkAppendAudit measures the audit trail's cost per record, in the
// groups the trail writes: a backend client's read of one Patient.
func BenchmarkAppendAudit(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	body := []byte(`{"c":"demo-backend","ip":"127.0.0.1","rq":"` + strings.Repeat("x", 100) + `","P":["p"],"E":["Patient/p"]}`) // Facts of a read
	const group = 1000
	recs := make([]store.AuditRecord, group)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += group {
		for j := range recs {
			p := fmt.Sprint((i + j) % 500)
			recs[j] = store.AuditRecord{Recorded: time.Now(), Type: "rest", Subtype: "read", Action: "R", Outcome: "0",
				Patients: []string{p}, Agents: []string{"Device/demo-backend"}, Entities: []string{"Patient/" + p}, Data: body}
		}
		if err := s.AppendAudit(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSearchAuditByPatient measures a patient's view of a busy
// trail: 200,000 records in blocks of 1,000 over 2,000 patients (each
// patient in about 100 blocks), the newest 50 of one patient's records.
func BenchmarkSearchAuditByPatient(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	body := []byte(`{"c":"demo-backend","ip":"127.0.0.1","rq":"` + strings.Repeat("x", 24) + `"}`)
	for blk := range 200 {
		recs := make([]store.AuditRecord, 1000)
		for j := range recs {
			n := blk*1000 + j
			p := fmt.Sprint("p", n%2000)
			recs[j] = store.AuditRecord{Recorded: base.Add(time.Duration(n) * time.Millisecond), Type: "rest", Subtype: "read", Action: "R", Outcome: "0",
				Patients: []string{p}, Agents: []string{"Device/demo-backend"}, Entities: []string{"Observation/" + fmt.Sprint(n)}, Data: body}
		}
		if err := s.AppendAudit(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		got, err := s.SearchAudit(ctx, store.AuditQuery{Patients: []string{fmt.Sprint("p", i%2000)}, Descending: true, Limit: 50})
		if err != nil || len(got) != 50 {
			b.Fatalf("%d records, %v", len(got), err)
		}
	}
}
