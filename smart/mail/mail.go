// Package mail sends the account e-mails — address confirmation, password
// reset, forgotten usernames, proxy invitations — over SMTP with
// wneessen/go-mail, or, where no SMTP server is configured (development),
// writes them to the log. The mails carry links and codes, never PHI: no
// name, no record, nothing about a patient.
package mail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Message is one plain-text e-mail.
type Message struct {
	To      string
	Subject string
	Text    string
}

// Sender sends messages.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// SMTP sends through an SMTP server.
type SMTP struct {
	host string
	from string
	opts []gomail.Option
}

// NewSMTP configures sending through the server a URL names:
//
//	smtp://[user:password@]host[:port][?tls=mandatory|opportunistic|none]
//	smtps://[user:password@]host[:port]   (TLS from the first byte, port 465)
//
// smtp:// requires STARTTLS unless tls says otherwise (none is for a relay
// on the same host). from is the sender address ("Clinic <noreply@…>").
func NewSMTP(rawURL, from string) (*SMTP, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("--smtp: %w", err)
	}
	if u.Hostname() == "" {
		return nil, errors.New("--smtp: the URL names no host")
	}
	if from == "" {
		return nil, errors.New("--mail-from: a sender address is required with --smtp")
	}
	opts := []gomail.Option{gomail.WithTimeout(20 * time.Second)}
	port := 587
	switch u.Scheme {
	case "smtp":
		switch tls := u.Query().Get("tls"); tls {
		case "", "mandatory":
			opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
		case "opportunistic":
			opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
		case "none":
			opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
		default:
			return nil, fmt.Errorf("--smtp: tls=%q: want mandatory, opportunistic or none", tls)
		}
	case "smtps":
		port = 465
		opts = append(opts, gomail.WithSSL())
	default:
		return nil, fmt.Errorf("--smtp: scheme %q: want smtp or smtps", u.Scheme)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("--smtp: port %q", p)
		}
		port = n
	}
	opts = append(opts, gomail.WithPort(port))
	if u.User != nil {
		pw, _ := u.User.Password()
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover), gomail.WithUsername(u.User.Username()), gomail.WithPassword(pw))
	}
	m := gomail.NewMsg()
	if err := m.From(from); err != nil {
		return nil, fmt.Errorf("--mail-from: %w", err)
	}
	return &SMTP{host: u.Hostname(), from: from, opts: opts}, nil
}

// Send delivers one message, connecting for it: account mails are few.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg := gomail.NewMsg()
	if err := msg.From(s.from); err != nil {
		return err
	}
	if err := msg.To(m.To); err != nil {
		return fmt.Errorf("recipient: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	c, err := gomail.NewClient(s.host, s.opts...)
	if err != nil {
		return err
	}
	return c.DialAndSendWithContext(ctx, msg)
}

// Log writes messages to the log instead of sending them: development
// only, since the links in them sign people in. The server warns when it
// starts with it.
type Log struct{ Logger *slog.Logger }

// Send logs m.
func (l Log) Send(ctx context.Context, m Message) error {
	l.Logger.WarnContext(ctx, "e-mail not sent (no --smtp; development mode)", "to", m.To, "subject", m.Subject, "text", m.Text)
	return nil
}
