package server

import (
	"context"
	"net/http"

	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/smart/access"
	"github.com/hearth-fhir/hearth/store"
)

const guardKey ctxKey = 1

// authenticate requires a valid bearer token (unless the server is open)
// and hands the request a store guarded by the token's policy.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Auth == nil {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := smart.BearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+s.cfg.BaseURL+`"`)
			s.writeError(w, r, errorf(http.StatusUnauthorized, "login", "an access token is required (Authorization: Bearer …)"))
			return
		}
		pol, err := s.cfg.Auth.Authenticate(r.Context(), token)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+s.cfg.BaseURL+`", error="invalid_token", error_description="the access token is invalid, expired or revoked"`)
			s.writeError(w, r, errorf(http.StatusUnauthorized, "login", "the access token is invalid, expired or revoked"))
			return
		}
		g := access.NewGuard(s.store, pol)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), guardKey, g)))
	})
}

// storeFor is the store a request may use: the token's guard, or the
// store itself when the server is open.
func (s *Server) storeFor(ctx context.Context) store.Store {
	if g, ok := ctx.Value(guardKey).(*access.Guard); ok {
		return g
	}
	return s.store
}
