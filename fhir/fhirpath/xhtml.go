package fhirpath

import (
	"strings"

	"html"
)

// narrativeElements are the XHTML elements FHIR narrative may use (txt-1:
// the basic formatting elements of HTML 4.0 chapters 7–11 and 12, links,
// images and tables); no script, form, object, iframe or style element.
var narrativeElements = map[string]bool{}

func init() {
	for _, e := range strings.Fields(`a abbr acronym address b bdo big blockquote br caption cite code col colgroup
		dd del dfn div dl dt em h1 h2 h3 h4 h5 h6 hr i img ins kbd li ol p pre q samp small span strong sub sup
		table tbody td tfoot th thead tr tt ul var`) {
		narrativeElements[e] = true
	}
}

// SafeXHTML reports whether a narrative div holds only what txt-1 and
// txt-2 allow: permitted elements, no event handler attributes, no
// scripted links, and some text or an image. It scans the markup in place:
// a narrative may be megabytes, and a tokenizer would copy its text.
func SafeXHTML(s string) bool {
	hasContent := false
	for i := 0; i < len(s); {
		lt := strings.IndexByte(s[i:], '<')
		text := s[i:]
		if lt >= 0 {
			text = s[i : i+lt]
		}
		if !hasContent && strings.TrimSpace(text) != "" {
			hasContent = true
		}
		if lt < 0 {
			break
		}
		i += lt
		rest := s[i:]
		switch {
		case strings.HasPrefix(rest, "<!--"):
			end := strings.Index(rest[4:], "-->")
			if end < 0 {
				return false
			}
			i += 4 + end + 3
			continue
		case strings.HasPrefix(rest, "</"):
			end := strings.IndexByte(rest, '>')
			if end < 0 {
				return false
			}
			i += end + 1
			continue
		case strings.HasPrefix(rest, "<!") || strings.HasPrefix(rest, "<?"):
			return false // no doctype, CDATA or processing instruction
		}
		n, ok, img := startTag(rest)
		if !ok {
			return false
		}
		hasContent = hasContent || img
		i += n
	}
	return hasContent
}

// startTag checks the start tag at the front of s and returns its length.
func startTag(s string) (n int, ok, img bool) {
	j := 1
	for j < len(s) && (isIdentPart(s[j]) || s[j] == ':' || s[j] == '-') {
		j++
	}
	tag := strings.ToLower(s[1:j])
	if !narrativeElements[tag] {
		return 0, false, false
	}
	for {
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		switch {
		case j >= len(s):
			return 0, false, false
		case s[j] == '>':
			return j + 1, true, tag == "img"
		case strings.HasPrefix(s[j:], "/>"):
			return j + 2, true, tag == "img"
		}
		start := j
		for j < len(s) && !isSpace(s[j]) && s[j] != '=' && s[j] != '>' && s[j] != '/' {
			j++
		}
		attr := strings.ToLower(s[start:j])
		if attr == "" || strings.HasPrefix(attr, "on") {
			return 0, false, false
		}
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		if j >= len(s) || s[j] != '=' {
			continue
		}
		j++
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		if j >= len(s) {
			return 0, false, false
		}
		var val string
		if q := s[j]; q == '"' || q == '\'' {
			end := strings.IndexByte(s[j+1:], q)
			if end < 0 {
				return 0, false, false
			}
			val = s[j+1 : j+1+end]
			j += end + 2
		} else {
			vs := j
			for j < len(s) && !isSpace(s[j]) && s[j] != '>' {
				j++
			}
			val = s[vs:j]
		}
		if (attr == "href" || attr == "src") && scriptURL(val) {
			return 0, false, false
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func scriptURL(u string) bool {
	u = strings.ToLower(strings.Join(strings.Fields(html.UnescapeString(u)), ""))
	return strings.HasPrefix(u, "javascript:") || strings.HasPrefix(u, "vbscript:") || strings.HasPrefix(u, "data:text/html")
}
