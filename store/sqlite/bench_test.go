package sqlite

import (
	"context"
	"fmt"
	"testing"

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
