package password

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		pw       string
		personal []string
		want     error
	}{
		{"correct horse battery", nil, nil},
		{"Tr0ub4dor&3xyz!", nil, nil},
		{"river-lamp-oboe-quilt", []string{"alice", "alice@example.org"}, nil},
		{"ü-straße-möbel-kaffee", nil, nil}, // counted in characters, not bytes
		{"short", nil, ErrTooShort},
		{"elevenchars", nil, ErrTooShort},
		{"passwordpassword", nil, ErrGuessable},
		{"password1234", nil, ErrCommon},
		{"123456789012", nil, ErrGuessable},
		{"aaaaaaaaaaaaaaaa", nil, ErrGuessable},
		{"qwertyuiopasdf", nil, ErrGuessable},
		{"1qaz2wsx3edc", nil, ErrCommon},
		{"qazwsx123456", nil, ErrGuessable},
		{"mariasmith-rocks", []string{"mariasmith"}, ErrPersonal},
		{"jdoe1987-secret", []string{"someone", "jdoe1987@example.org"}, ErrPersonal},
		{strings.Repeat("river-lamp-", 7), nil, ErrTooLong},
		{"bad\xffutf8-padding", nil, ErrEncoding},
		{"Elephant2024!", nil, ErrGuessable},    // one word with digits and symbols around it
		{"p4ssw0rdp4ssw0rd", nil, ErrGuessable}, // a common password said twice, in leet
		{"ababababababab", nil, ErrGuessable},   // a repeat
		{"zyxwvutsrqponm", nil, ErrGuessable},   // a sequence backwards
		{"elephant-copper-window", nil, nil},    // words, but several
		{"my cat is called Biscuit", nil, nil},  // a phrase
	} {
		if err := Check(c.pw, c.personal...); !errors.Is(err, c.want) {
			t.Errorf("Check(%q) = %v, want %v", c.pw, err, c.want)
		}
	}
}

// TestErrorsNeverRepeatThePassword: the messages go on pages and in logs.
func TestErrorsNeverRepeatThePassword(t *testing.T) {
	for _, pw := range []string{"short", "passwordpassword", "1qaz2wsx3edc", "mariasmith-rocks"} {
		err := Check(pw, "mariasmith")
		if err == nil || strings.Contains(err.Error(), pw) {
			t.Errorf("Check(%q) = %v", pw, err)
		}
	}
}
