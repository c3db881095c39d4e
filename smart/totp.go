package smart

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"html/template"
	"image/png"
	"net/url"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// Two-step sign-in with an authenticator app: RFC 6238 codes (six digits,
// 30 seconds, SHA-1: what every app reads from a QR code), with pquerna/otp.
var totpOpts = totp.ValidateOpts{Period: 30, Skew: 0, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// newTOTPKey makes a new authenticator secret for username.
func (p *Provider) newTOTPKey(username string) (string, error) {
	key, err := totp.Generate(totp.GenerateOpts{Issuer: p.cfg.Brand.name(), AccountName: username})
	if err != nil {
		return "", err
	}
	return key.Secret(), nil
}

// totpEnrollment is what the enrolment page shows of a secret: the key to
// type, and the QR code an app scans (a data: URL of a PNG image).
func (p *Provider) totpEnrollment(username, secret string) *totpEnrollment {
	v := url.Values{"secret": {secret}, "issuer": {p.cfg.Brand.name()}, "algorithm": {"SHA1"}, "digits": {"6"}, "period": {"30"}}
	u := "otpauth://totp/" + url.PathEscape(p.cfg.Brand.name()+":"+username) + "?" + v.Encode()
	e := &totpEnrollment{Secret: secret, URL: u}
	key, err := otp.NewKeyFromURL(u)
	if err != nil {
		return e
	}
	img, err := key.Image(220, 220)
	if err != nil {
		return e
	}
	var buf bytes.Buffer
	if png.Encode(&buf, img) == nil {
		e.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()))
	}
	return e
}

// totpStep checks a code against secret at now, allowing one step of clock
// drift either way, and returns the time step it belongs to. A code is
// taken once: its step must be after last (the step of the code accepted
// before), so that a code seen over a shoulder cannot be replayed.
func totpStep(secret, code string, now time.Time, last int64) (int64, bool) {
	if len(code) != 6 {
		return 0, false
	}
	for _, drift := range []int64{0, -1, 1} {
		step := now.Unix()/30 + drift
		if step <= last {
			continue
		}
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*30, 0), totpOpts)
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return step, true
		}
	}
	return 0, false
}
