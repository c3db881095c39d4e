package kit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html"

	"github.com/hearth-fhir/hearth/smart/backend"
)

// smartConfig reads .well-known/smart-configuration.
func (k *kit) smartConfig() (map[string]any, error) {
	r, err := k.doWith("", "GET", ".well-known/smart-configuration", nil, "Accept", "application/json")
	if err != nil {
		return nil, err
	}
	if err := r.expect("smart-configuration", 200); err != nil {
		return nil, err
	}
	if r.json == nil {
		return nil, fmt.Errorf("smart-configuration is not a JSON object")
	}
	return r.json, nil
}

// clientCredentials obtains a token as a backend service: client secret
// (client_secret_basic) or a signed assertion (private_key_jwt).
func (k *kit) clientCredentials() (string, error) {
	sc, err := k.smartConfig()
	if err != nil {
		return "", err
	}
	tokenURL := str(sc, "token_endpoint")
	if tokenURL == "" {
		return "", fmt.Errorf("smart-configuration names no token_endpoint")
	}
	scope := k.cfg.Scope
	if scope == "" {
		scope = "system/*.cruds"
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	req, _ := http.NewRequestWithContext(k.ctx, "POST", tokenURL, nil)
	if k.cfg.KeyFile != "" {
		assertion, err := k.clientAssertion(tokenURL)
		if err != nil {
			return "", err
		}
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", assertion)
	} else {
		req.SetBasicAuth(url.QueryEscape(k.cfg.ClientID), url.QueryEscape(k.cfg.ClientSecret))
	}
	return k.tokenRequest(req, form)
}

func (k *kit) tokenRequest(req *http.Request, form url.Values) (string, error) {
	req.Body = io.NopCloser(strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := k.cfg.HTTP.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		return "", fmt.Errorf("token endpoint: HTTP %d, not JSON", resp.StatusCode)
	}
	if resp.StatusCode != 200 || str(tok, "access_token") == "" {
		return "", fmt.Errorf("token endpoint: HTTP %d %s %s", resp.StatusCode, str(tok, "error"), str(tok, "error_description"))
	}
	k.lastToken = tok
	return str(tok, "access_token"), nil
}

// clientAssertion signs the JWT of SMART Backend Services with the key.
func (k *kit) clientAssertion(aud string) (string, error) {
	key, err := backend.LoadKey(k.cfg.KeyFile, k.cfg.KeyID)
	if err != nil {
		return "", err
	}
	return key.Assertion(k.cfg.ClientID, aud)
}

// standaloneLaunch runs a SMART standalone launch as a person would in a
// browser: it follows the authorization endpoint's pages, signs in with the
// configured form fields, keeps the defaults of any choice (whose record,
// which scopes), allows, and exchanges the code (PKCE S256). It returns the
// token response.
func (k *kit) standaloneLaunch(scope string) (map[string]any, error) {
	sc, err := k.smartConfig()
	if err != nil {
		return nil, err
	}
	verifier := randomString(48)
	sum := sha256.Sum256([]byte(verifier))
	state := randomString(16)
	q := url.Values{
		"response_type": {"code"}, "client_id": {k.cfg.LaunchClientID}, "redirect_uri": {k.cfg.RedirectURI},
		"scope": {scope}, "state": {state}, "aud": {k.cfg.Base},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), k.cfg.RedirectURI) {
			return http.ErrUseLastResponse // the app's page: the code is in its URL
		}
		return nil
	}}
	next, err := http.NewRequestWithContext(k.ctx, "GET", str(sc, "authorization_endpoint")+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	for step := 0; step < 8; step++ {
		resp, err := browser.Do(next)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && strings.HasPrefix(loc, k.cfg.RedirectURI) {
			back, err := url.Parse(loc)
			if err != nil {
				return nil, err
			}
			if e := back.Query().Get("error"); e != "" {
				return nil, fmt.Errorf("the server answered the app with error=%s", e)
			}
			if back.Query().Get("state") != state {
				return nil, fmt.Errorf("the state came back changed")
			}
			return k.exchangeCode(str(sc, "token_endpoint"), back.Query().Get("code"), verifier)
		}
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("authorization step %d: HTTP %d", step+1, resp.StatusCode)
		}
		if next, err = k.fillForm(resp.Request.URL, body); err != nil {
			return nil, fmt.Errorf("authorization step %d: %w", step+1, err)
		}
	}
	return nil, fmt.Errorf("no code after 8 pages")
}

func (k *kit) exchangeCode(tokenURL, code, verifier string) (map[string]any, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {k.cfg.RedirectURI},
		"client_id": {k.cfg.LaunchClientID}, "code_verifier": {verifier}}
	req, _ := http.NewRequestWithContext(k.ctx, "POST", tokenURL, nil)
	if _, err := k.tokenRequest(req, form); err != nil {
		return nil, err
	}
	return k.lastToken, nil
}

// fillForm reads the page's first form that does not sign out (a page
// may carry a sign-out form in its header) and makes the request
// submitting it: credentials into the sign-in fields, every other field as the page
// set it, and the allowing button where there is a choice.
func (k *kit) fillForm(page *url.URL, body []byte) (*http.Request, error) {
	doc, err := html.Parse(strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	form := firstForm(doc)
	if form == nil {
		return nil, fmt.Errorf("the page has no form")
	}
	userField, passField := k.cfg.UserField, k.cfg.PasswordField
	if userField == "" {
		userField = "username"
	}
	if passField == "" {
		passField = "password"
	}
	values := url.Values{}
	var submit []*html.Node
	walk(form, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		name, typ := attr(n, "name"), strings.ToLower(attr(n, "type"))
		switch {
		case n.Data == "button" || n.Data == "input" && typ == "submit":
			submit = append(submit, n)
		case n.Data == "input" && name == userField:
			values.Set(name, k.cfg.Username)
		case n.Data == "input" && name == passField:
			values.Set(name, k.cfg.Password)
		case n.Data == "input" && (typ == "checkbox" || typ == "radio"):
			if hasAttr(n, "checked") {
				values.Add(name, valueOr(n, "on"))
			}
		case n.Data == "input" && name != "":
			values.Add(name, attr(n, "value"))
		}
	})
	// The button that allows, if the page asks (Allow / Deny); else the first.
	for i, b := range submit {
		label := strings.ToLower(attr(b, "value") + " " + text(b))
		if i == 0 || strings.Contains(label, "allow") || strings.Contains(label, "approve") || strings.Contains(label, "authorize") {
			if name := attr(b, "name"); name != "" {
				values.Set(name, attr(b, "value"))
			}
		}
		if strings.Contains(label, "allow") {
			break
		}
	}
	action, err := page.Parse(attr(form, "action"))
	if err != nil {
		return nil, err
	}
	method := strings.ToUpper(attr(form, "method"))
	if method == "" {
		method = "GET"
	}
	if method == "GET" {
		action.RawQuery = values.Encode()
		return http.NewRequestWithContext(k.ctx, "GET", action.String(), nil)
	}
	req, err := http.NewRequestWithContext(k.ctx, "POST", action.String(), strings.NewReader(values.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

// firstForm is the page's first form other than a sign-out form.
func firstForm(doc *html.Node) *html.Node {
	var found *html.Node
	walk(doc, func(n *html.Node) {
		if found != nil || n.Type != html.ElementNode || n.Data != "form" {
			return
		}
		action := strings.ToLower(attr(n, "action"))
		words := strings.ToLower(text(n))
		for _, out := range []string{"logout", "log out", "signout", "sign out", "sign-out"} {
			if strings.Contains(action, out) || strings.Contains(words, out) && !strings.Contains(words, "password") {
				return
			}
		}
		found = n
	})
	return found
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

func valueOr(n *html.Node, d string) string {
	if hasAttr(n, "value") {
		return attr(n, "value")
	}
	return d
}

func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	})
	return b.String()
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
