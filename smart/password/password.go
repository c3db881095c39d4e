// Package password is Hearth's password policy, after NIST SP 800-63B
// §5.1.1.2: a minimum length and no composition rules (no "one digit, one
// symbol"), but a password is refused when it is on a list of common ones,
// is a dictionary word or name with a little around it, repeats or runs in
// sequence ("aaaa…", "1234…", "qwerty…"), or holds the account's own
// username or e-mail. The lists are those of zxcvbn (Dropbox's password
// estimator, in its Go port's frequency lists): 30,000 passwords seen most
// in breaches, and English words, names and surnames. They are loaded on
// the first check, not at start: a server that never checks a password
// does not hold them.
package password

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn/frequency"
)

const (
	// MinLength is the shortest password accepted, in characters.
	MinLength = 12
	// MaxLength is the longest: NIST asks for at least 64; longer would
	// only feed bcrypt, which reads 72 bytes.
	MaxLength = 72
	// minDistinct: fewer different characters than this is a repeat.
	minDistinct = 5
)

// Policy errors name the problem in words a person can act on; they never
// repeat the password.
var (
	ErrTooShort  = errors.New("use at least 12 characters")
	ErrTooLong   = errors.New("use at most 72 bytes (about 72 letters)")
	ErrCommon    = errors.New("this password is on a list of common passwords; choose another")
	ErrGuessable = errors.New("this password is too easy to guess (a word or name with a little around it, a repeat or a sequence); a few unrelated words make a strong one")
	ErrPersonal  = errors.New("the password must not contain your username or e-mail address")
	ErrEncoding  = errors.New("the password is not valid text")
)

// lists are the blocklists, sorted for binary search.
type lists struct{ passwords, words []string }

var load = sync.OnceValue(func() lists {
	sorted := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, frequency.FrequencyLists[n]...)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return lists{passwords: sorted("passwords"), words: sorted("english_wikipedia", "us_tv_and_film", "surnames", "male_names", "female_names")}
})

func in(list []string, s string) bool {
	_, found := slices.BinarySearch(list, s)
	return found
}

// sequences are runs a password must not be made of, forwards or back
// (the alphabet and the digits wrap around; then keyboard rows and
// columns).
var sequences = []string{"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz", "01234567890123456789012345678901234567890123456789",
	"qwertyuiopasdfghjklzxcvbnm", "1234567890qwertyuiopasdfghjklzxcvbnm", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p", "qazwsxedcrfvtgbyhnujmikolp"}

// unleet reads common character substitutions back as letters.
var unleet = strings.NewReplacer("4", "a", "@", "a", "8", "b", "3", "e", "6", "g", "1", "i", "!", "i", "0", "o", "$", "s", "5", "s", "7", "t", "+", "t", "2", "z")

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
	l := load()
	if in(l.passwords, lower) {
		return ErrCommon
	}
	for _, w := range personal {
		w = strings.ToLower(strings.TrimSpace(w))
		words := []string{w}
		if local, _, ok := strings.Cut(w, "@"); ok {
			words = append(words, local)
		}
		for _, w := range words {
			if utf8.RuneCountInString(w) >= 4 && strings.Contains(lower, w) {
				return ErrPersonal
			}
		}
	}
	if guessable(lower, l) {
		return ErrGuessable
	}
	return nil
}

// guessable: a repeat, a sequence, or one common word (or password) with
// digits and symbols around it, or said twice.
func guessable(lower string, l lists) bool {
	distinct := map[rune]bool{}
	for _, r := range lower {
		distinct[r] = true
	}
	if len(distinct) < minDistinct {
		return true
	}
	letters := strings.TrimFunc(lower, func(r rune) bool { return !unicode.IsLetter(r) })
	for _, core := range []string{lower, letters, unleet.Replace(lower), unleet.Replace(letters)} {
		if core == "" {
			continue
		}
		if in(l.passwords, core) || in(l.words, core) {
			return true
		}
		// A word said twice ("passwordpassword").
		if half := len(core) / 2; len(core)%2 == 0 && core[:half] == core[half:] && (in(l.passwords, core[:half]) || in(l.words, core[:half])) {
			return true
		}
		for _, seq := range sequences {
			if strings.Contains(seq, core) || strings.Contains(reverse(seq), core) {
				return true
			}
		}
	}
	return false
}

func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}
