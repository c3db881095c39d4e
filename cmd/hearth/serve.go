package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hearth-fhir/hearth/conformance/profile"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/server"
	"github.com/hearth-fhir/hearth/server/metrics"
	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/store"
)

func serveCmd(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	data := fs.String("data", "./hearth-data", "data directory of the embedded store")
	baseURL := fs.String("base-url", "", "public URL of the FHIR base (default http://LISTEN/fhir)")
	storeKind := fs.String("store", "sqlite", "storage backend: sqlite (embedded) or a mongodb:// URL")
	noSeed := fs.Bool("no-seed", false, "do not load the demo patients into a fresh data directory")
	demo := fs.Bool("seed", false, "load the demo patients and accounts into an empty MongoDB database (the embedded store seeds a fresh data directory unless --no-seed)")
	seedDir := fs.String("seed-dir", "testdata/synthea-10,testdata/synthea-bundles", "comma-separated directories of NDJSON and Bundle files loaded into a fresh data directory")
	open := fs.Bool("open", false, "serve without authorization (development only)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	maxBody := fs.Int64("max-body-bytes", 16<<20, "largest request body accepted")
	corsOrigins := fs.String("cors-origins", "*", "comma-separated browser origins allowed to call the API, or *")
	registration := fs.String("registration", "open", "dynamic client registration: open (user-facing apps; backend clients need an initial access token), token (every registration needs one) or off")
	readTimeout := fs.Duration("read-timeout", 30*time.Second, "longest time to read a request, body included (a slow body is cut off)")
	writeTimeout := fs.Duration("write-timeout", 90*time.Second, "longest time from the end of a request's headers to the end of its response")
	requestTimeout := fs.Duration("request-timeout", 60*time.Second, "longest time an interaction may work before it is stopped (503)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) to serve HTTPS with (TLS 1.2+, HTTP/2, HSTS); with --tls-key")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	auditMode := fs.String("audit", "grouped", "when an answer may go out relative to its audit record: grouped (records are written in groups within 50 ms; a kill -9 can lose that window of reads) or sync (every answer waits for its record); off only for measuring the trail's cost")
	auditRetention := fs.Duration("audit-retention", audit.DefaultRetention, "how long audit records are kept")
	exportRetention := fs.Duration("export-retention", 24*time.Hour, "how long a bulk export's files are kept after they are written")
	exportPerClient := fs.Int("export-per-client", 3, "bulk exports one client may run at once (429 beyond)")
	exportWorkers := fs.Int("export-workers", 2, "bulk exports this process runs at once")
	exportFileSize := fs.Int("export-file-size", 50_000, "most resources in one bulk export file (a resumed export redoes at most the file it was writing)")
	exportLease := fs.Duration("export-lease", 15*time.Second, "how long after a process dies another takes its bulk exports over")
	pprofListen := fs.String("pprof-listen", "", "serve Go's profiler (net/http/pprof) on this address, for diagnosis (keep it private: loopback)")
	releaseDelay := fs.String("release-delay", "", "how long final results of a category wait for a clinician's $release before patients see them, e.g. laboratory=72h,imaging=0,clinical-note=24h (categories not named: at once)")
	validateProfiles := fs.Bool("validate-profiles", false, "check every written resource against the profiles it claims in meta.profile (the bundled US Core 5.0.1 profiles); one that does not conform is refused")
	proxyAge := fs.Int("proxy-restricted-age", 12, "age from which a proxy no longer sees the patient's restricted and sensitive records (-1: never)")
	var acct accountFlags
	acct.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := envDefaults(fs); err != nil {
		return err
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	// Listen first, and answer at once: 503 with Retry-After while the
	// store opens and the demo data loads, so that nobody waits on a
	// silent port. Listening first also gives --listen 127.0.0.1:0 a base
	// URL with the real port, which the seed's door declares local as the
	// API's does.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	useTLS := *tlsCert != "" || *tlsKey != ""
	if useTLS && (*tlsCert == "" || *tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if *baseURL == "" {
		scheme := "http://"
		if useTLS {
			scheme = "https://"
		}
		*baseURL = scheme + ln.Addr().String() + "/fhir"
	}
	if !useTLS && !isLoopback(ln.Addr()) {
		log.Warn("serving plain HTTP on a non-loopback address: patients must reach Hearth over HTTPS (--tls-cert/--tls-key, or a TLS proxy in front)")
	}
	if *pprofListen != "" {
		pl, err := net.Listen("tcp", *pprofListen)
		if err != nil {
			return fmt.Errorf("--pprof-listen: %w", err)
		}
		go http.Serve(pl, pprofMux())
	}
	m := metrics.New()
	handler := &switchHandler{}
	handler.set(starting())
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       *readTimeout,
		WriteTimeout:      *writeTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() {
		if useTLS {
			errc <- srv.ServeTLS(ln, *tlsCert, *tlsKey) // HTTP/2 included
			return
		}
		errc <- srv.Serve(ln)
	}()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}()

	// MongoDB is the production backend: demo accounts with published
	// passwords go into it only when asked for.
	seedFresh := !*noSeed
	if isMongo(*storeKind) {
		seedFresh = *demo
	}
	seedDemo := func(st store.Store) error {
		fmt.Fprintf(os.Stderr, "Loading the demo patients (about 10-20 s; the API answers 503 until then)…\n")
		// Ctrl-C stops the loading at once; the next start loads again.
		if err := seed(ctx, st, *baseURL, strings.Split(*seedDir, ","), log, os.Stderr, m); err != nil {
			return err
		}
		if err := seedAccounts(st, interact.New(st, interact.Config{BaseURL: *baseURL})); err != nil {
			return fmt.Errorf("demo accounts: %w", err)
		}
		return nil
	}
	raw, err := openServed(*storeKind, *data, seedFresh, seedDemo)
	if err != nil {
		return err
	}
	defer raw.Close()
	st := m.Store(raw) // every store operation timed
	var trail *audit.Trail
	switch *auditMode {
	case "grouped", "sync":
		mode := audit.Grouped
		if *auditMode == "sync" {
			mode = audit.Sync
		}
		trail = audit.New(raw, audit.Options{Mode: mode, Retention: *auditRetention, Log: log})
		defer trail.Close() // before the store closes: what is pending is written
	case "off":
		log.Warn("--audit=off: interactions are NOT recorded in the audit trail; for measuring its cost only")
	default:
		return fmt.Errorf("--audit must be grouped, sync or off, not %q", *auditMode)
	}
	delays, err := parseReleaseDelays(*releaseDelay)
	if err != nil {
		return err
	}
	dcfg := interact.Config{BaseURL: *baseURL, Audit: trail, ReleaseDelays: delays}
	if *validateProfiles {
		reg, err := profile.USCore()
		if err != nil {
			return fmt.Errorf("--validate-profiles: %w", err)
		}
		dcfg.Profiles = reg
	}
	door := interact.New(st, dcfg)
	go releaseDueResults(ctx, door, log)
	exports := interact.NewExports(door, st, st, interact.ExportConfig{Retention: *exportRetention, PerClient: *exportPerClient,
		Workers: *exportWorkers, Lease: *exportLease, PartSize: *exportFileSize, Log: log})
	go exports.Run(ctx)
	var security audit.Recorder // the security events, in the same trail
	if trail != nil {
		security = trail
	}
	var auth *smart.Provider
	if *open {
		log.Warn("--open: the API is served WITHOUT authorization; never use this with real patient data")
	} else {
		scfg := smart.Config{FHIRBase: *baseURL, ProxyRestrictedAge: *proxyAge, Registration: *registration, Audit: security}
		if err := acct.apply(&scfg, log); err != nil {
			return err
		}
		if auth, err = smart.New(context.Background(), scfg, st, door.Unrestricted(authorizationServer), log); err != nil {
			return err
		}
	}
	handler.set(server.New(server.Config{
		BaseURL:        *baseURL,
		MaxBodyBytes:   *maxBody,
		CORSOrigins:    strings.Split(*corsOrigins, ","),
		Version:        version,
		Auth:           auth,
		Audit:          security,
		Open:           *open,
		RequestTimeout: *requestTimeout,
		Metrics:        m,
		Ready:          storeAnswers(st),
		TLS:            useTLS,
		Exports:        exports,
	}, door, log))
	log.Info("hearth serving", slog.String("fhir_base", *baseURL), slog.String("listen", ln.Addr().String()), slog.String("data", *data))
	fmt.Fprintf(os.Stderr, "\nHearth is up. Try:\n  curl %s/metadata\n\n", *baseURL)
	if auth != nil {
		printDemoAccounts(st)
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// pprofMux serves the profiler's endpoints, on their own listener: never on
// the API's.
func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// storeAnswers is /readyz's check: one lookup the store answers without
// touching resources.
func storeAnswers(st store.AuthStore) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := st.GetAuth(ctx, "readyz", "probe")
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// switchHandler serves through the handler set last: the starting page,
// then the API.
type switchHandler struct{ h atomic.Pointer[http.Handler] }

func (s *switchHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *switchHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// starting answers while the store opens and the demo data loads: /healthz
// says the process is alive, everything else is a 503 to retry.
func starting() http.Handler {
	outcome := fhir.OperationOutcome(fhir.Issue{Severity: "error", Code: "transient", Diagnostics: "Hearth is starting (loading its data); retry shortly"})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("starting\n"))
			return
		}
		w.Header().Set("Retry-After", "2")
		w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write(outcome)
	})
}

// openServed opens the store to serve, seeding it first when it is fresh
// and seeding is wanted. The embedded store is seeded in a staging
// directory moved into place only once complete, so an interrupted first
// start leaves no half-seeded data directory: the next start seeds again.
func openServed(kind, dataDir string, seedFresh bool, seedDemo func(store.Store) error) (store.Store, error) {
	if isMongo(kind) || !seedFresh {
		st, fresh, err := openStore(kind, dataDir)
		if err != nil {
			return nil, err
		}
		if fresh && seedFresh {
			if err := seedDemo(st); err != nil {
				st.Close()
				return nil, err
			}
		}
		return st, nil
	}
	if _, err := os.Stat(filepath.Join(dataDir, sqliteFile)); err == nil {
		st, _, err := openStore(kind, dataDir)
		return st, err
	}
	staging := strings.TrimSuffix(dataDir, "/") + ".seeding"
	if err := os.RemoveAll(staging); err != nil {
		return nil, err
	}
	st, _, err := openStore(kind, staging)
	if err != nil {
		return nil, err
	}
	if err := seedDemo(st); err != nil {
		st.Close()
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(staging, sqliteFile+"*"))
	if err != nil {
		return nil, err
	}
	// The database file last: until it is in place, the data directory
	// still counts as fresh.
	slices.SortFunc(files, func(a, b string) int { return strings.Compare(b, a) })
	for _, f := range files {
		if err := os.Rename(f, filepath.Join(dataDir, filepath.Base(f))); err != nil {
			return nil, err
		}
	}
	os.RemoveAll(staging)
	st, _, err = openStore(kind, dataDir)
	return st, err
}

// authorizationServer is the audit agent of what the authorization server
// writes itself (a proxy link's RelatedPerson).
var authorizationServer = audit.Agent{User: "hearth-authorization-server"}

// operator is the agent of the admin commands and the importer, whose
// doors keep no trail of their own: they run as the operator, on the data
// directory or database directly.
var operator = audit.Agent{User: "operator"}

// parseReleaseDelays reads --release-delay: category=duration, …
func parseReleaseDelays(v string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	if strings.TrimSpace(v) == "" {
		return out, nil
	}
	for _, part := range strings.Split(v, ",") {
		cat, d, ok := strings.Cut(strings.TrimSpace(part), "=")
		switch cat {
		case interact.ReleaseLaboratory, interact.ReleaseImaging, interact.ReleaseClinicalNote:
		default:
			return nil, fmt.Errorf("--release-delay: unknown category %q (laboratory, imaging, clinical-note)", cat)
		}
		dur, err := time.ParseDuration(d)
		if !ok || err != nil || dur < 0 {
			return nil, fmt.Errorf("--release-delay: %q is not category=duration (72h, 0)", part)
		}
		out[cat] = dur
	}
	return out, nil
}

// releaseDueResults releases, every minute, the pending results whose
// delay has passed, and frees the slots bookings claimed and never held,
// until ctx ends.
func releaseDueResults(ctx context.Context, door *interact.Door, log *slog.Logger) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		if n, err := door.ReleaseDue(ctx); err != nil {
			log.Warn("releasing due results failed", slog.String("error", err.Error()))
		} else if n > 0 {
			log.Info("released results whose delay passed", slog.Int("count", n))
		}
		if n, err := door.FreeOrphanSlots(ctx); err != nil {
			log.Warn("freeing orphan slots failed", slog.String("error", err.Error()))
		} else if n > 0 {
			log.Info("freed slots a booking claimed and never held", slog.Int("count", n))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
