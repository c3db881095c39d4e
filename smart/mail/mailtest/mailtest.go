// Package mailtest is a real SMTP server for tests (emersion/go-smtp on a
// loopback port) that keeps what it receives, so that a test can follow the
// link a confirmation or reset mail carries, as its recipient would.
package mailtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is a received e-mail, decoded.
type Message struct {
	From, To, Subject string
	Text              string
	Raw               []byte
}

// Server is a running SMTP server.
type Server struct {
	// URL is what hearth serve --smtp takes to send to it.
	URL string
	mu  sync.Mutex
	got []Message
	new chan struct{}
}

// Start runs a server until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{URL: "smtp://" + ln.Addr().String() + "?tls=none", new: make(chan struct{}, 1)}
	srv := smtp.NewServer(backend{s})
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.EnableSMTPUTF8 = true
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// Wait returns the first message to arrive for to after the ones already
// taken, waiting up to ten seconds.
func (s *Server) Wait(t testing.TB, to string) Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		s.mu.Lock()
		for i, m := range s.got {
			if strings.EqualFold(m.To, to) {
				s.got = append(s.got[:i:i], s.got[i+1:]...)
				s.mu.Unlock()
				return m
			}
		}
		s.mu.Unlock()
		select {
		case <-s.new:
		case <-ctx.Done():
			t.Fatalf("no e-mail to %s arrived", to)
		}
	}
}

// None fails the test if a message for to is waiting.
func (s *Server) None(t testing.TB, to string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.got {
		if strings.EqualFold(m.To, to) {
			t.Fatalf("unexpected e-mail to %s: %q", to, m.Subject)
		}
	}
}

var linkRE = regexp.MustCompile(`https?://\S+`)

// Link is the first URL in the message's text.
func (m Message) Link(t testing.TB) string {
	t.Helper()
	l := linkRE.FindString(m.Text)
	if l == "" {
		t.Fatalf("the e-mail %q holds no link:\n%s", m.Subject, m.Text)
	}
	return l
}

type backend struct{ s *Server }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: b.s}, nil }

type session struct {
	s        *Server
	from     string
	rcpts    []string
	received []Message
}

func (x *session) Reset()        { x.from, x.rcpts = "", nil }
func (x *session) Logout() error { return nil }

func (x *session) Mail(from string, _ *smtp.MailOptions) error { x.from = from; return nil }

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.rcpts = append(x.rcpts, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("mailtest: %w", err)
	}
	body, err := io.ReadAll(msg.Body)
	if err != nil {
		return err
	}
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return err
		}
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return err
	}
	if len(x.rcpts) == 0 {
		return errors.New("mailtest: no recipient")
	}
	x.s.mu.Lock()
	for _, to := range x.rcpts {
		x.s.got = append(x.s.got, Message{From: x.from, To: to, Subject: subject, Text: strings.ReplaceAll(string(body), "\r\n", "\n"), Raw: raw})
	}
	x.s.mu.Unlock()
	select {
	case x.s.new <- struct{}{}:
	default:
	}
	return nil
}
