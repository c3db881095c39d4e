package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/smart/access"
)

type ctxKey int

const sessionKey ctxKey = 1

// Authenticator turns a bearer token into the policy it carries:
// smart.ErrInvalidToken for a token that is not (or no longer) valid, any
// other error when it cannot tell (the store is down).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*access.Policy, error)
}

var _ Authenticator = (*smart.Provider)(nil)

// errUnavailable: the token could not be checked (a 503, not a 401: the
// client's token may well be good).
var errUnavailable = errors.New("token check unavailable")

// authenticate requires a valid bearer token (unless the server is open)
// and hands the request a session of the door bound to the token's policy.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Open {
			ctx := context.WithValue(r.Context(), sessionKey, s.door.Unrestricted(agentOf(r, nil)))
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		if s.tokens == nil {
			// Neither open nor able to check tokens: the session without a
			// policy refuses everything.
			next.ServeHTTP(w, r)
			return
		}
		token, ok := smart.BearerToken(r)
		if !ok {
			s.refused(r, "no access token")
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+s.cfg.BaseURL+`"`)
			s.writeError(w, r, errorf(http.StatusUnauthorized, "login", "an access token is required (Authorization: Bearer …)"))
			return
		}
		pol, err := s.tokens.Authenticate(r.Context(), token)
		s.cfg.Metrics.TokenCheck(tokenResult(err))
		switch {
		case errors.Is(err, smart.ErrInvalidToken):
			s.refused(r, "invalid, expired or revoked access token")
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+s.cfg.BaseURL+`", error="invalid_token", error_description="the access token is invalid, expired or revoked"`)
			s.writeError(w, r, errorf(http.StatusUnauthorized, "login", "the access token is invalid, expired or revoked"))
			return
		case err != nil:
			w.Header().Set("Retry-After", "1")
			s.writeError(w, r, errors.Join(errUnavailable, err))
			return
		}
		ctx := context.WithValue(r.Context(), sessionKey, s.door.Session(pol, agentOf(r, pol)))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// recordRefusal records a request refused before the door took it (a body
// that does not parse, an unknown type …): the door records every
// interaction it carries out, this the ones it never saw. Every refusal
// is answered by writeError, which calls it; a request without a session
// (refused by the token check) is recorded there.
func (s *Server) recordRefusal(r *http.Request, status int) {
	ss, ok := r.Context().Value(sessionKey).(*interact.Session)
	if !ok {
		return
	}
	subtype, entity := interactionOf(r)
	if err := ss.RecordRefused(r.Context(), subtype, entity, status); err != nil {
		s.log.ErrorContext(r.Context(), "audit trail: a refused request went unrecorded", "request_id", requestID(r.Context()), "error", err.Error())
	}
}

// interactionOf is the FHIR interaction a request was to be, by its path
// (a request refused before routing has no route), and the resource it
// named, when that is a valid reference.
func interactionOf(r *http.Request) (subtype, entity string) {
	segs := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/fhir"), "/"), "/")
	if segs[0] == "" {
		segs = nil
	}
	if len(segs) >= 2 && fhir.IsResourceType(segs[0]) && fhir.ValidID(segs[1]) {
		entity = segs[0] + "/" + segs[1]
	}
	last := ""
	if len(segs) > 0 {
		last = segs[len(segs)-1]
	}
	switch {
	case len(segs) == 0 && r.Method == http.MethodPost:
		return "batch", ""
	case len(segs) == 4 && segs[2] == "_history":
		return "vread", entity
	case last == "_history":
		return "history", entity
	case last == "$everything":
		return "operation", entity
	case last == "_search", len(segs) == 3:
		return "search-type", entity
	}
	single := len(segs) == 2
	switch r.Method {
	case http.MethodGet:
		if single {
			return "read", entity
		}
		return "search-type", ""
	case http.MethodPost:
		return "create", ""
	case http.MethodPut:
		return "update", entity
	case http.MethodPatch:
		return "patch", entity
	case http.MethodDelete:
		return "delete", entity
	}
	return "unknown", entity
}

// refused records a request the token check turned away (401). Refusing
// goes on if the trail cannot take the record: nothing is served.
func (s *Server) refused(r *http.Request, why string) {
	if s.cfg.Audit == nil {
		return
	}
	e := audit.Event{Type: audit.SecurityType, Subtype: audit.AccessRefused, Action: "E", Outcome: audit.Minor, Detail: why}
	if err := s.cfg.Audit.Record(r.Context(), audit.From(r), e); err != nil {
		s.log.ErrorContext(r.Context(), "audit trail: a refused request went unrecorded", "request_id", requestID(r.Context()), "error", err.Error())
	}
}

func tokenResult(err error) string {
	switch {
	case err == nil:
		return "valid"
	case errors.Is(err, smart.ErrInvalidToken):
		return "invalid"
	}
	return "unavailable"
}

// session is the request's session of the door. A request that reaches a
// handler without one (a route mounted outside authenticate) gets a
// session bound to no policy, which refuses everything with a 500: a
// missing policy never means open access.
func (s *Server) session(r *http.Request) *interact.Session {
	if ss, ok := r.Context().Value(sessionKey).(*interact.Session); ok {
		return ss
	}
	return s.door.Session(nil, agentOf(r, nil))
}

// agentOf is who a request acts as, for the audit trail: the token's user
// and client, and where the request came from.
func agentOf(r *http.Request, pol *access.Policy) audit.Agent {
	a := audit.From(r)
	if pol != nil {
		a.User, a.FHIRUser, a.Client, a.Patient = pol.Subject, pol.FHIRUser, pol.ClientID, pol.Patient
	}
	return a
}
