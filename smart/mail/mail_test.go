package mail_test

import (
	"context"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/smart/mail"
	"github.com/hearth-fhir/hearth/smart/mail/mailtest"
)

// TestSMTPDelivers sends through go-mail to a real SMTP server.
func TestSMTPDelivers(t *testing.T) {
	srv := mailtest.Start(t)
	s, err := mail.NewSMTP(srv.URL, "Clinic <noreply@clinic.example>")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), mail.Message{To: "pat@example.org", Subject: "Confirm your e-mail — Hearth", Text: "Open https://hearth.example/account/verify?t=abc to confirm.\n"}); err != nil {
		t.Fatal(err)
	}
	m := srv.Wait(t, "pat@example.org")
	if m.Subject != "Confirm your e-mail — Hearth" || m.Link(t) != "https://hearth.example/account/verify?t=abc" || !strings.Contains(m.From, "noreply@clinic.example") {
		t.Fatalf("received %+v", m)
	}
}

// TestSMTPRequiresTLSByDefault: smtp:// without tls= refuses a server that
// offers no STARTTLS rather than send a reset link in the clear.
func TestSMTPRequiresTLSByDefault(t *testing.T) {
	srv := mailtest.Start(t)
	s, err := mail.NewSMTP(strings.TrimSuffix(srv.URL, "?tls=none"), "noreply@clinic.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), mail.Message{To: "pat@example.org", Subject: "x", Text: "y"}); err == nil {
		t.Fatal("sent without TLS")
	}
	srv.None(t, "pat@example.org")
}

func TestNewSMTPRefusesBadConfig(t *testing.T) {
	for _, c := range []struct{ url, from string }{
		{"smtp://mail.example", ""},
		{"http://mail.example", "a@b.example"},
		{"smtp://", "a@b.example"},
		{"smtp://mail.example?tls=maybe", "a@b.example"},
		{"smtp://mail.example", "not an address"},
	} {
		if _, err := mail.NewSMTP(c.url, c.from); err == nil {
			t.Errorf("NewSMTP(%q, %q) accepted", c.url, c.from)
		}
	}
}
