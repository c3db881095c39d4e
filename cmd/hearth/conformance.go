package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/hearth-fhir/hearth/conformance/kit"
)

// errNonConformant makes the command exit 1 when a check fails.
var errNonConformant = errors.New("checks failed")

// conformanceCmd runs the conformance kit against any FHIR R4 server.
func conformanceCmd(args []string) error {
	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	base := fs.String("base", "", "FHIR base URL of the server to check")
	token := fs.String("token", "", "bearer token for the data suites")
	clientID := fs.String("client-id", "", "backend client to get a token as (client_credentials), with --client-secret or --key")
	clientSecret := fs.String("client-secret", "", "its secret (client_secret_basic)")
	key := fs.String("key", "", "its PEM private key (private_key_jwt, SMART Backend Services)")
	keyID := fs.String("key-id", "", "the kid of --key, if the server needs one")
	scope := fs.String("scope", "system/*.cruds", "scopes the backend client asks for")
	suites := fs.String("suite", strings.Join(kit.AllSuites, ","), "comma-separated suites: "+strings.Join(kit.AllSuites, ", "))
	launchClient := fs.String("launch-client", "", "a registered user-facing app for the standalone launch")
	redirectURI := fs.String("redirect-uri", "", "its registered redirect URI (the kit never serves it: it reads the code from the redirect)")
	username := fs.String("username", "", "a patient user who signs in during the launch")
	password := fs.String("password", "", "that user's password")
	userField := fs.String("user-field", "username", "name of the sign-in form's username field")
	passwordField := fs.String("password-field", "password", "name of the sign-in form's password field")
	junit := fs.String("junit", "", "write JUnit XML here")
	htmlOut := fs.String("html", "", "write a self-contained HTML report here")
	quiet := fs.Bool("quiet", false, "no live progress line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := envDefaults(fs); err != nil {
		return err
	}
	cfg := kit.Config{
		Base: *base, Token: *token, ClientID: *clientID, ClientSecret: *clientSecret, KeyFile: *key, KeyID: *keyID, Scope: *scope,
		Suites: strings.Split(*suites, ","), LaunchClientID: *launchClient, RedirectURI: *redirectURI,
		Username: *username, Password: *password, UserField: *userField, PasswordField: *passwordField,
	}
	if !*quiet {
		cfg.Progress = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	report, err := kit.Run(ctx, cfg)
	if err != nil {
		return err
	}
	report.WriteSummary(os.Stdout)
	if *junit != "" {
		if err := writeReport(*junit, report.WriteJUnit); err != nil {
			return err
		}
	}
	if *htmlOut != "" {
		if err := writeReport(*htmlOut, report.WriteHTML); err != nil {
			return err
		}
	}
	if report.Failed() {
		return errNonConformant
	}
	return nil
}

func writeReport(path string, write func(w io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
