package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/smart/mail"
)

// accountFlags are hearth serve's settings of patients' accounts: mail,
// sessions, passwords, second factors, and the pages' brand.
type accountFlags struct {
	smtp, mailFrom                   string
	idle, lifetime, passwordMaxAge   time.Duration
	proxyMFA, teenManagesProxies     bool
	brandName, brandLogo, brandColor string
	oidcIssuer, oidcClientID         string
	oidcClientSecret, oidcName       string
	signupWithoutCode                bool
}

func (a *accountFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.smtp, "smtp", "", "SMTP server for account e-mail (confirmation, recovery, invitations): smtp://[user:pass@]host[:587][?tls=mandatory|opportunistic|none] or smtps://…:465; without it e-mails are written to the log (development only)")
	fs.StringVar(&a.mailFrom, "mail-from", "", "sender address of account e-mail, e.g. \"Clinic <noreply@clinic.example>\" (required with --smtp)")
	fs.DurationVar(&a.idle, "session-idle", 15*time.Minute, "a sign-in session ends after this long without a request (online_access refresh tokens end with it)")
	fs.DurationVar(&a.lifetime, "session-max", 12*time.Hour, "a sign-in session ends this long after sign-in, however active")
	fs.DurationVar(&a.passwordMaxAge, "password-max-age", 180*24*time.Hour, "past this age a password must be changed at sign-in (0: never)")
	fs.BoolVar(&a.proxyMFA, "proxy-mfa", false, "accounts that act for someone else must use two-step sign-in (an authenticator app)")
	fs.BoolVar(&a.teenManagesProxies, "teen-manages-proxies", false, "a patient between --proxy-restricted-age and 18 sees and may end their proxies' access (state law varies)")
	fs.StringVar(&a.brandName, "brand-name", "Hearth", "the health system's name on the sign-in and account pages")
	fs.StringVar(&a.brandLogo, "brand-logo", "", "a PNG, JPEG or SVG logo file for the pages")
	fs.StringVar(&a.brandColor, "brand-color", "", "accent colour #rrggbb of the pages (white text on it must meet WCAG AA 4.5:1)")
	fs.BoolVar(&a.signupWithoutCode, "signup-without-code", false, "let a patient without an activation code sign up with family name, birth date and medical record number (only a patient who has no account yet; weaker proofing than a code)")
	fs.StringVar(&a.oidcIssuer, "oidc-issuer", "", "issuer URL of the health system's OpenID provider patients may sign in with (federated sign-in)")
	fs.StringVar(&a.oidcClientID, "oidc-client-id", "", "Hearth's client id at --oidc-issuer (redirect URI: BASE/account/federated/callback)")
	fs.StringVar(&a.oidcClientSecret, "oidc-client-secret", "", "Hearth's client secret at --oidc-issuer")
	fs.StringVar(&a.oidcName, "oidc-name", "", "the provider's name on the sign-in button (\"Sign in with NAME\")")
}

func (a *accountFlags) apply(c *smart.Config, log *slog.Logger) error {
	c.IdleTimeout, c.SessionLifetime, c.PasswordMaxAge = a.idle, a.lifetime, a.passwordMaxAge
	c.ProxyMFA, c.TeenManagesProxies, c.SignUpWithoutCode = a.proxyMFA, a.teenManagesProxies, a.signupWithoutCode
	if a.idle <= 0 || a.lifetime <= 0 || a.passwordMaxAge < 0 {
		return errors.New("--session-idle and --session-max must be positive, --password-max-age 0 or more")
	}
	c.Brand = smart.Brand{Name: a.brandName, Color: a.brandColor}
	if a.brandLogo != "" {
		logo, err := os.ReadFile(a.brandLogo)
		if err != nil {
			return fmt.Errorf("--brand-logo: %w", err)
		}
		c.Brand.Logo, c.Brand.LogoType = logo, http.DetectContentType(logo)
		if len(a.brandLogo) > 4 && a.brandLogo[len(a.brandLogo)-4:] == ".svg" {
			c.Brand.LogoType = "image/svg+xml"
		}
	}
	if a.oidcIssuer != "" {
		c.Federation = &smart.Federation{Issuer: a.oidcIssuer, ClientID: a.oidcClientID, ClientSecret: a.oidcClientSecret, Name: a.oidcName}
	}
	if a.smtp == "" {
		log.Warn("no --smtp: account e-mails (with their sign-in links) are written to the log; development only")
		c.Mail = mail.Log{Logger: log}
		return nil
	}
	s, err := mail.NewSMTP(a.smtp, a.mailFrom)
	if err != nil {
		return err
	}
	c.Mail = s
	return nil
}
