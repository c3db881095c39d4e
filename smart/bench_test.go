package smart_test

import (
	"context"
	"testing"
)

// BenchmarkAuthenticate is the per-request token check of the FHIR API.
func BenchmarkAuthenticate(b *testing.B) {
	t := &testing.T{}
	e := newEnv(t)
	token := e.openToken()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.provider.Authenticate(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}
