package smart_test

import (
	"context"
	"net/url"
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

// BenchmarkSignInFailure is what a failed sign-in costs, over HTTP: a
// wrong password, an unknown username, and an attempt while sign-in is
// paused. They should cost the same (one bcrypt comparison, one throttle
// write), so that the time of an answer tells nothing.
func BenchmarkSignInFailure(b *testing.B) {
	t := &testing.T{}
	e := newEnv(t)
	ctx := context.Background()
	forget := func() { // the throttles, between attempts that must not pause
		e.st.DeleteAuth(ctx, "throttle", "user:alice")
		e.st.DeleteAuth(ctx, "throttle", "user:nobody")
		e.st.DeleteAuth(ctx, "throttle", "addr:127.0.0.1")
	}
	for _, c := range []struct {
		name, user string
		paused     bool
		want       int
	}{{"wrong-password", "alice", false, 401}, {"unknown-user", "nobody", false, 401}, {"paused", "alice", true, 429}} {
		b.Run(c.name, func(b *testing.B) {
			br := newBrowser(t)
			form := br.get(e.root + "/account/login")
			fields := url.Values{"step": {"login"}, "username": {c.user}, "password": {"not the password"}}
			forget()
			if c.paused {
				for range 5 {
					br.submit(e.root+"/account/login", form, fields)
				}
			}
			for b.Loop() {
				if !c.paused {
					b.StopTimer()
					forget()
					b.StartTimer()
				}
				if p := br.submit(e.root+"/account/login", form, fields); p.status != c.want {
					b.Fatalf("%s: %d", c.name, p.status)
				}
			}
		})
	}
}
