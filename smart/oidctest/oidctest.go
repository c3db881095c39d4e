// Package oidctest starts a real OpenID Provider for tests of federated
// sign-in: bin/oidc-op (zitadel/oidc's example provider, built by `make
// bin/oidc-op` from its own module in ./op), or HEARTH_OIDC_OP. Without
// it the tests skip — unless HEARTH_REQUIRE_OP is set, as in CI.
package oidctest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// OP is a running provider with one client and one user.
type OP struct {
	Issuer                 string
	ClientID, ClientSecret string
	Username, Password     string
	bin, port              string
}

func findBinary() string {
	if p := os.Getenv("HEARTH_OIDC_OP"); p != "" {
		return p
	}
	dir, _ := os.Getwd()
	for i := 0; i < 6 && dir != "/"; i++ {
		p := filepath.Join(dir, "bin", "oidc-op")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		dir = filepath.Dir(dir)
	}
	return ""
}

// Reserve picks the provider's address, so that the relying party can be
// configured with its issuer before it runs (Run).
func Reserve(t testing.TB) *OP {
	t.Helper()
	bin := findBinary()
	if bin == "" {
		if os.Getenv("HEARTH_REQUIRE_OP") != "" {
			t.Fatal("no bin/oidc-op (make bin/oidc-op)")
		}
		t.Skip("no bin/oidc-op: make bin/oidc-op builds it")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return &OP{Issuer: "http://localhost:" + port + "/", ClientID: "hearth", ClientSecret: "op-client-secret",
		Username: "pat@hospital.example", Password: "correct-horse-staple", bin: bin, port: port}
}

// Run starts the provider until the test ends; its client may redirect to
// redirectURI.
func (op *OP) Run(t testing.TB, redirectURI string) {
	t.Helper()
	bin, port := op.bin, op.port
	cmd := exec.Command(bin, "--listen", "127.0.0.1:"+port, "--issuer", op.Issuer, "--client", op.ClientID+":"+op.ClientSecret,
		"--redirect-uri", redirectURI, "--user", "pat-1:"+op.Username+":"+op.Password)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://127.0.0.1:" + port + "/.well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal(fmt.Errorf("the OpenID provider did not start"))
}
