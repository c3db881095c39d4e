package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokenKind uint8

const (
	tokEOF tokenKind = iota
	tokIdent
	tokDelimited // `name`
	tokString
	tokNumber
	tokDateTime // @2014-01-05T10:30, @2014
	tokTime     // @T10:30
	tokSymbol
	tokThis     // $this, $index, $total
	tokExternal // %name, %`name`, %'name'
)

type token struct {
	kind tokenKind
	text string // identifier, symbol, number or literal text; string literals unescaped
	pos  int
}

// SyntaxError is an expression that does not parse.
type SyntaxError struct {
	Pos int
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("FHIRPath syntax error at %d: %s", e.Pos, e.Msg)
}

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for {
		// Whitespace and comments.
		for i < len(src) {
			c := src[i]
			switch {
			case c == ' ' || c == '\t' || c == '\n' || c == '\r':
				i++
				continue
			case strings.HasPrefix(src[i:], "//"):
				for i < len(src) && src[i] != '\n' {
					i++
				}
				continue
			case strings.HasPrefix(src[i:], "/*"):
				end := strings.Index(src[i+2:], "*/")
				if end < 0 {
					return nil, &SyntaxError{i, "comment is not closed"}
				}
				i += end + 4
				continue
			}
			break
		}
		if i >= len(src) {
			return append(toks, token{kind: tokEOF, pos: i}), nil
		}
		start := i
		c := src[i]
		switch {
		case isIdentStart(c):
			for i < len(src) && isIdentPart(src[i]) {
				i++
			}
			toks = append(toks, token{tokIdent, src[start:i], start})
		case c == '`':
			s, n, err := quoted(src[i:], '`')
			if err != nil {
				return nil, &SyntaxError{start, err.Error()}
			}
			i += n
			toks = append(toks, token{tokDelimited, s, start})
		case c == '\'':
			s, n, err := quoted(src[i:], '\'')
			if err != nil {
				return nil, &SyntaxError{start, err.Error()}
			}
			i += n
			toks = append(toks, token{tokString, s, start})
		case c >= '0' && c <= '9':
			for i < len(src) && isDigit(src[i]) {
				i++
			}
			// A decimal point only when digits follow: 1.convertsToInteger()
			// is the integer 1 and a function.
			if i+1 < len(src) && src[i] == '.' && isDigit(src[i+1]) {
				i++
				for i < len(src) && isDigit(src[i]) {
					i++
				}
			}
			toks = append(toks, token{tokNumber, src[start:i], start})
		case c == '@':
			i++
			kind := tokDateTime
			if i < len(src) && src[i] == 'T' {
				kind = tokTime
				i++
			}
			for i < len(src) && (isDigit(src[i]) || strings.IndexByte("-:.TZ+", src[i]) >= 0) {
				// A '.' is part of the literal only before a digit
				// (seconds' fraction), not the invocation after it.
				if src[i] == '.' && (i+1 >= len(src) || !isDigit(src[i+1])) {
					break
				}
				i++
			}
			text := src[start+1 : i]
			if kind == tokTime {
				text = src[start+2 : i]
			}
			toks = append(toks, token{kind, text, start})
		case c == '$':
			i++
			for i < len(src) && isIdentPart(src[i]) {
				i++
			}
			toks = append(toks, token{tokThis, src[start:i], start})
		case c == '%':
			i++
			switch {
			case i < len(src) && (src[i] == '`' || src[i] == '\''):
				s, n, err := quoted(src[i:], src[i])
				if err != nil {
					return nil, &SyntaxError{start, err.Error()}
				}
				i += n
				toks = append(toks, token{tokExternal, s, start})
			default:
				for i < len(src) && isIdentPart(src[i]) {
					i++
				}
				if i == start+1 {
					return nil, &SyntaxError{start, "% must name a variable"}
				}
				toks = append(toks, token{tokExternal, src[start+1 : i], start})
			}
		default:
			sym := ""
			for _, s := range []string{"<=", ">=", "!=", "!~"} {
				if strings.HasPrefix(src[i:], s) {
					sym = s
					break
				}
			}
			if sym == "" {
				if strings.IndexByte(".[](){},+-*/|&=~<>", c) < 0 {
					r, _ := utf8.DecodeRuneInString(src[i:])
					return nil, &SyntaxError{start, fmt.Sprintf("unexpected character %q", r)}
				}
				sym = src[i : i+1]
			}
			i += len(sym)
			toks = append(toks, token{tokSymbol, sym, start})
		}
	}
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) }
func isDigit(c byte) bool      { return c >= '0' && c <= '9' }

// quoted reads a quoted literal starting at s[0] and returns its unescaped
// text and the bytes consumed.
func quoted(s string, q byte) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q:
			return b.String(), i + 1, nil
		case c != '\\':
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(s) {
			break
		}
		text, end, ok := escaped(s, i, "'\"`\\/", "fnrt")
		if !ok {
			return "", 0, fmt.Errorf("bad escape \\%c", s[i])
		}
		b.WriteString(text)
		i = end
	}
	return "", 0, fmt.Errorf("literal is not closed")
}

// controlEscapes are the escapes of control characters, by letter.
var controlEscapes = map[byte]string{'b': "\b", 'f': "\f", 'n': "\n", 'r': "\r", 't': "\t"}

// escaped decodes the escape sequence whose letter is s[i] (the byte
// after a backslash): one of literals standing for itself, one of
// controls (\n …), or \uXXXX. It returns the text and the index of the
// sequence's last byte. FHIRPath literals and JSON strings share it, each
// with its own letters.
func escaped(s string, i int, literals, controls string) (string, int, bool) {
	c := s[i]
	switch {
	case strings.IndexByte(literals, c) >= 0:
		return s[i : i+1], i, true
	case strings.IndexByte(controls, c) >= 0:
		return controlEscapes[c], i, true
	case c == 'u' && i+4 < len(s):
		r, err := strconv.ParseUint(s[i+1:i+5], 16, 32)
		if err != nil {
			return "", i, false
		}
		return string(rune(r)), i + 4, true
	}
	return "", i, false
}
