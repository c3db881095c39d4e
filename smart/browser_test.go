package smart_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hearth-fhir/hearth/smart"
)

// chromium finds the browser. CI sets HEARTH_REQUIRE_BROWSER=1 so that a
// missing browser fails the build instead of skipping the test.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("HEARTH_REQUIRE_BROWSER") != "" {
		t.Fatal("no Chromium found (apt-get install chromium)")
	}
	t.Skip("no Chromium found; CI installs it (apt-get install chromium)")
	return ""
}

// fhirClientApp serves a SMART app built on the official JavaScript client
// (npm fhirclient): launch.html starts a standalone launch of client with
// scope; index.html finishes it and shows "READ Patient/<id>" in #result.
// It returns the app's URL.
func fhirClientApp(t *testing.T, e *env, client, scope string) string {
	lib, err := os.ReadFile(filepath.Join("..", "testdata", "fhirclient", "fhir-client.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/fhir-client.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		w.Write(lib)
	})
	page := func(script string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(`<!doctype html><html><head><title>loading</title><script src="/fhir-client.js"></script></head><body><script>` + script + `</script></body></html>`))
		}
	}
	mux.HandleFunc("/launch.html", page(`FHIR.oauth2.authorize({clientId: "`+client+`", scope: "`+scope+`",
		redirectUri: "`+app+`/index.html", iss: "`+e.base+`", pkceMode: "required"});`))
	mux.HandleFunc("/index.html", page(`FHIR.oauth2.ready()
		.then(function (c) { return c.request("Patient/" + c.patient.id); })
		.then(function (p) { show("READ " + p.resourceType + "/" + p.id); })
		.catch(function (e) { show("ERROR " + e.message); });
		function show(text) { var el = document.createElement("p"); el.id = "result"; el.textContent = text; document.body.appendChild(el); }`))
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	if err := e.provider.AddClient(context.Background(), &smart.Client{ID: client, Name: "Health Diary", Public: true, RedirectURIs: []string{app + "/index.html"}}, ""); err != nil {
		t.Fatal(err)
	}
	return app
}

// newChrome starts headless Chromium for one test.
func newChrome(t *testing.T) context.Context {
	exe := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Flag("disable-background-networking", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestBrowserStandaloneLaunchWithFHIRClient runs the official SMART
// JavaScript client (npm fhirclient) in headless Chromium: a standalone
// launch against Hearth, sign-in as a proxy, the patient picker, consent,
// and a read of the chosen patient with the token.
func TestBrowserStandaloneLaunchWithFHIRClient(t *testing.T) {
	e := newEnv(t)
	app := fhirClientApp(t, e, "browser-app", "launch/patient openid fhirUser patient/*.rs")
	ctx := newChrome(t)
	var title string
	err := chromedp.Run(ctx,
		chromedp.Navigate(app+"/launch.html"),
		chromedp.WaitVisible(`input[name=username]`),
		chromedp.SendKeys(`input[name=username]`, "parent"),
		chromedp.SendKeys(`input[name=password]`, password),
		chromedp.Click(`main button[type=submit]`),
		chromedp.WaitVisible(`input[name=patient][value=kid2]`),
		chromedp.Click(`input[name=patient][value=kid2]`),
		chromedp.Click(`main button[type=submit]`),
		chromedp.WaitVisible(`button[value=allow]`),
		chromedp.Click(`button[value=allow]`),
		chromedp.WaitVisible(`#result`),
		chromedp.Text(`#result`, &title),
	)
	if err != nil {
		t.Fatalf("browser: %v (result %q)", err, title)
	}
	if !strings.HasPrefix(title, "READ Patient/kid2") {
		t.Fatalf("the app showed %q, want READ Patient/kid2", title)
	}
}
