// Package server is Hearth's HTTP layer: the FHIR REST API on go-chi, its
// middleware, and the single mapping from errors to OperationOutcomes.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/hearth-fhir/hearth/conformance"
	"github.com/hearth-fhir/hearth/conformance/profile"
	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/server/metrics"
	"github.com/hearth-fhir/hearth/smart"
)

// Config is the HTTP layer's configuration.
type Config struct {
	// BaseURL is the public URL of the FHIR base, e.g. http://localhost:8080/fhir.
	BaseURL string
	// MaxBodyBytes bounds request bodies (413 beyond it).
	MaxBodyBytes int64
	// CORSOrigins lists browser origins allowed to call the API; "*" allows any.
	CORSOrigins []string
	// Version is the software version reported in the CapabilityStatement.
	Version string
	// Auth is the SMART authorization server: its endpoints are mounted,
	// and it checks bearer tokens unless Tokens is set.
	Auth *smart.Provider
	// Audit records the requests the token check refuses (401s; the
	// door records everything past it). Nil: none are recorded.
	Audit audit.Recorder
	// Tokens checks bearer tokens (default: Auth).
	Tokens Authenticator
	// Metrics, when set, records requests and token checks and is served
	// at /metrics.
	Metrics *metrics.Metrics
	// Ready, when set, is /readyz's check that the store answers.
	Ready func(context.Context) error
	// TLS says Hearth terminates TLS itself: responses carry HSTS.
	TLS bool
	// RequestTimeout stops an interaction that works longer (503); 0: none.
	RequestTimeout time.Duration
	// Exports runs bulk exports ($export); nil: $export is not offered.
	Exports *interact.Exports
	// Open serves the API without authorization, through an unrestricted
	// session (hearth serve --open, for development only). Without Open
	// and without an authenticator, every interaction is refused.
	Open bool
}

// Server serves the FHIR REST API through the door to the data.
type Server struct {
	cfg        Config
	door       *interact.Door
	tokens     Authenticator
	log        *slog.Logger
	capability []byte
	profiles   *profile.Registry // the profiles $validate knows
	router     http.Handler
}

// ServeHTTP serves the whole API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// New returns the server over door; it is the HTTP handler for the whole
// API.
func New(cfg Config, door *interact.Door, log *slog.Logger) *Server {
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	if len(cfg.CORSOrigins) == 0 {
		cfg.CORSOrigins = []string{"*"}
	}
	s := &Server{cfg: cfg, door: door, log: log, tokens: cfg.Tokens}
	if s.tokens == nil && cfg.Auth != nil {
		s.tokens = cfg.Auth
	}
	copts := conformance.Options{BaseURL: cfg.BaseURL, Version: cfg.Version, BulkExport: cfg.Exports != nil}
	if cfg.Auth != nil {
		e := cfg.Auth.Endpoints()
		copts.OAuth = &conformance.OAuthURIs{Authorize: e.Authorize, Token: e.Token, Introspect: e.Introspect, Revoke: e.Revoke, Register: e.Register}
	}
	s.capability = conformance.CapabilityStatement(copts)
	s.profiles = validationProfiles()

	r := chi.NewRouter()
	r.Use(withRequestID, s.recoverer, s.accessLog, cors(cfg.CORSOrigins))
	if cfg.TLS {
		r.Use(hsts)
	}
	r.Get("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/fhir/metadata", http.StatusFound)
	})
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	r.Get("/readyz", s.readyz)
	if cfg.Metrics != nil {
		r.Method(http.MethodGet, "/metrics", cfg.Metrics.Handler())
	}
	if cfg.Auth != nil {
		r.Mount("/oauth2", cfg.Auth.Routes())
		r.Mount("/account", cfg.Auth.AccountRoutes())
	}
	r.Route("/fhir", func(r chi.Router) {
		r.Use(noStore)
		r.NotFound(s.notFound)
		r.MethodNotAllowed(s.methodNotAllowed)
		// Discovery is JSON whatever the Accept header asks for.
		if cfg.Auth != nil {
			r.Get("/.well-known/smart-configuration", cfg.Auth.SMARTConfiguration)
			r.Get("/.well-known/openid-configuration", cfg.Auth.OpenIDConfiguration)
		}
		// A bulk export's status and files: JSON and NDJSON whatever the
		// Accept header asks for, to the client that started it.
		r.Group(func(r chi.Router) {
			r.Use(s.authenticate)
			r.Get("/$export-status/{job}", s.exportStatus)
			r.Delete("/$export-status/{job}", s.exportCancel)
			r.Get("/$export-file/{job}/{file}", s.exportFile)
		})
		r.Group(func(r chi.Router) {
			r.Use(s.negotiate)
			r.Get("/metadata", s.metadata)
			r.Group(func(r chi.Router) {
				r.Use(s.authenticate)
				// Every interaction that can work long has a deadline; a read
				// or vread is one indexed lookup, and the cost of a timer
				// per request was 4% of its time.
				timed := deadline(cfg.RequestTimeout)
				r.With(timed).Post("/", s.bundle)
				r.With(timed).Get("/$export", s.exportKickoff(interact.ExportSystem))
				r.With(timed).Post("/$export", s.exportKickoff(interact.ExportSystem))
				r.With(timed).Get("/_history", s.history)
				r.Route("/{type}", func(r chi.Router) {
					r.Use(s.knownType)
					r.Get("/{id}", s.read)
					r.Get("/{id}/_history/{vid}", s.vread)
					r.Group(func(r chi.Router) {
						r.Use(timed)
						r.Post("/", s.create)
						r.Get("/", s.searchType)
						r.Put("/", s.conditionalUpdate)
						r.Patch("/", s.conditionalPatch)
						r.Delete("/", s.conditionalDelete)
						r.Get("/_history", s.history)
						r.Post("/_search", s.searchPost)
						r.Put("/{id}", s.update)
						r.Patch("/{id}", s.patch)
						r.Delete("/{id}", s.delete)
						r.Get("/{id}/_history", s.history)
						r.Get("/{id}/$everything", s.everything)
						r.Get("/$export", s.exportKickoff(interact.ExportAllPatients))
						r.Post("/$export", s.exportKickoff(interact.ExportAllPatients))
						r.Get("/{id}/$export", s.exportKickoff(""))
						r.Post("/{id}/$export", s.exportKickoff(""))
						r.Post("/$validate", s.validate)
						r.Post("/{id}/$validate", s.validate)
						r.Post("/{id}/$release", s.release)
						r.Get("/{id}/{ctype}", s.searchCompartment)
					})
				})
			})
		})
	})
	s.router = r
	return s
}

// readyz answers 200 when the store answers, 503 otherwise (a load
// balancer then sends requests elsewhere). While Hearth starts, the
// starting handler answers 503 for it too.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			s.log.WarnContext(r.Context(), "not ready: the store does not answer", slog.String("error", err.Error()))
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("store unavailable\n"))
			return
		}
	}
	w.Write([]byte("ready\n"))
}

// negotiate refuses, before any work is done, a request for a format
// Hearth does not produce.
func (s *Server) negotiate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := responseType(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// knownType answers 404 for a path segment that is not an R4 resource type.
func (s *Server) knownType(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if typ := chi.URLParam(r, "type"); !fhir.IsResourceType(typ) {
			s.writeError(w, r, errorf(http.StatusNotFound, "not-supported", "unknown resource type "+fhir.QuoteSafe(typ)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, errorf(http.StatusNotFound, "not-found", "no FHIR interaction at "+fhir.QuoteSafe(r.URL.Path)))
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, errorf(http.StatusMethodNotAllowed, "not-supported", r.Method+" is not supported on "+fhir.QuoteSafe(r.URL.Path)))
}

func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, s.capability)
}
