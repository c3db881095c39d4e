// Package password is Hearth's password policy, after NIST SP 800-63B
// §5.1.1.2: a minimum length and no composition rules (no "one digit, one
// symbol"), but a password that is common, guessable from the account's
// own details, or made of repeats, sequences and keyboard walks is
// refused. The estimate is zxcvbn's (Dropbox's estimator, in its Go port),
// whose bundled lists — 30,000 common passwords from breaches, names,
// English words — are the blocklist NIST asks for.
package password

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
	"github.com/trustelem/zxcvbn/frequency"
)

const (
	// MinLength is the shortest password accepted, in characters.
	MinLength = 12
	// MaxLength is the longest: NIST asks for at least 64; longer would
	// only feed bcrypt, which reads 72 bytes.
	MaxLength = 72
	// minScore is zxcvbn's "safely unguessable: moderate protection from
	// offline slow-hash scenario" (guesses ≥ 10^10).
	minScore = 3
)

// Policy errors name the problem in words a person can act on; they never
// repeat the password.
var (
	ErrTooShort  = errors.New("use at least 12 characters")
	ErrTooLong   = errors.New("use at most 72 bytes (about 72 letters)")
	ErrCommon    = errors.New("this password is on a list of common passwords; choose another")
	ErrGuessable = errors.New("this password is too easy to guess (a word, a name, a date, a repeat or a sequence); a few unrelated words make a strong one")
	ErrPersonal  = errors.New("the password must not contain your username or e-mail address")
	ErrEncoding  = errors.New("the password is not valid text")
)

// common is zxcvbn's list of passwords seen most often in breaches.
var common = func() map[string]bool {
	list := frequency.FrequencyLists["passwords"]
	m := make(map[string]bool, len(list))
	for _, p := range list {
		m[p] = true
	}
	return m
}()

// Check tells whether pw may be a password of the account whose own words
// (username, e-mail, name) are personal. Personal words shorter than four
// characters are not looked for inside the password.
func Check(pw string, personal ...string) error {
	if !utf8.ValidString(pw) {
		return ErrEncoding
	}
	switch {
	case utf8.RuneCountInString(pw) < MinLength:
		return ErrTooShort
	case len(pw) > MaxLength:
		return ErrTooLong
	}
	lower := strings.ToLower(pw)
	if common[lower] {
		return ErrCommon
	}
	var inputs []string
	for _, w := range personal {
		w = strings.ToLower(strings.TrimSpace(w))
		if w == "" {
			continue
		}
		inputs = append(inputs, w)
		if local, _, ok := strings.Cut(w, "@"); ok && local != "" {
			inputs = append(inputs, local)
		}
	}
	for _, w := range inputs {
		if utf8.RuneCountInString(w) >= 4 && strings.Contains(lower, w) {
			return ErrPersonal
		}
	}
	if zxcvbn.PasswordStrength(pw, append(inputs, "hearth", "patient", "portal", "health")).Score < minScore {
		return ErrGuessable
	}
	return nil
}
