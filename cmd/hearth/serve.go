package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/server"
	"github.com/hearth-fhir/hearth/smart"
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
	proxyAge := fs.Int("proxy-restricted-age", 12, "age from which a proxy no longer sees the patient's restricted and sensitive records (-1: never)")
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
	st, fresh, err := openStore(*storeKind, *data)
	if err != nil {
		return err
	}
	defer st.Close()

	// MongoDB is the production backend: demo accounts with published
	// passwords go into it only when asked for.
	seedFresh := !*noSeed
	if isMongo(*storeKind) {
		seedFresh = *demo
	}
	// Listen before seeding and building the handler so that --listen
	// 127.0.0.1:0 gets a base URL with the real port, which the seed's
	// door declares local as the API's does.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *baseURL == "" {
		*baseURL = "http://" + ln.Addr().String() + "/fhir"
	}
	door := interact.New(st, interact.Config{BaseURL: *baseURL})
	if fresh && seedFresh {
		if err := seed(st, *baseURL, strings.Split(*seedDir, ","), log); err != nil {
			return err
		}
		if err := seedAccounts(st, door); err != nil {
			return fmt.Errorf("demo accounts: %w", err)
		}
	}
	var auth *smart.Provider
	if *open {
		log.Warn("--open: the API is served WITHOUT authorization; never use this with real patient data")
	} else if auth, err = smart.New(context.Background(), smart.Config{FHIRBase: *baseURL, ProxyRestrictedAge: *proxyAge, Registration: *registration}, st, door.Unrestricted(), log); err != nil {
		return err
	}
	handler := server.New(server.Config{
		BaseURL:        *baseURL,
		MaxBodyBytes:   *maxBody,
		CORSOrigins:    strings.Split(*corsOrigins, ","),
		Version:        version,
		Auth:           auth,
		Open:           *open,
		RequestTimeout: *requestTimeout,
	}, door, log)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       *readTimeout,
		WriteTimeout:      *writeTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
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
