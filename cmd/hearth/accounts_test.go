package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearth-fhir/hearth/smart"
	"github.com/hearth-fhir/hearth/smart/mail/mailtest"
	"github.com/hearth-fhir/hearth/store/sqlite"
)

// TestServeSendsAccountMail: hearth serve --smtp sends the account mails
// through the SMTP server it names: a forgotten username, asked on the
// running server's page, arrives with the username in it.
func TestServeSendsAccountMail(t *testing.T) {
	data := t.TempDir()
	st, err := sqlite.Open(data, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acc := smart.NewAccounts(st)
	u, err := acc.AddUser(context.Background(), "mailuser", "a long enough password", "")
	if err == nil {
		err = acc.SetEmail(context.Background(), u, "mailuser@example.org")
	}
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	srv := mailtest.Start(t)
	root := startAuthServer(t, "--data", data, "--no-seed", "--smtp", srv.URL, "--mail-from", "Clinic <noreply@clinic.example>", "--brand-name", "Clinic")
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	resp, err := client.Get(root + "/account/forgot-username")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(page))
	if csrf == nil || !strings.Contains(string(page), "Clinic") {
		t.Fatalf("the page: %.300s", page)
	}
	resp, err = client.PostForm(root+"/account/forgot-username", url.Values{"csrf": {csrf[1]}, "email": {"mailuser@example.org"}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("forgot username: %v %v", resp, err)
	}
	resp.Body.Close()
	m := srv.Wait(t, "mailuser@example.org")
	if !strings.Contains(m.Text, "  mailuser\n") || !strings.Contains(m.From, "noreply@clinic.example") || !strings.Contains(m.Subject, "Clinic") {
		t.Fatalf("the mail: %+v", m)
	}
}

// TestServeRefusesBadAccountSettings: settings that cannot work stop the
// server at start with a message, rather than serve pages no one can read
// or mail that never goes.
func TestServeRefusesBadAccountSettings(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--brand-color", "#ffff00"}, "contrast"},
		{[]string{"--smtp", "smtp://mail.example"}, "--mail-from"},
		{[]string{"--smtp", "ftp://mail.example", "--mail-from", "a@b.example"}, "scheme"},
		{[]string{"--oidc-issuer", "https://idp.example"}, "client id"},
	} {
		// A server that wrongly starts is stopped after 30 s (and the
		// case fails).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, binary, append([]string{"serve", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--no-seed"}, c.args...)...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: %v, %s", c.args, err, out)
		}
	}
}
