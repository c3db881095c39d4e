package fhirpath

import (
	"strings"

	"golang.org/x/net/html"
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
// scripted links, and some text or an image.
func SafeXHTML(s string) bool {
	z := html.NewTokenizer(strings.NewReader(s))
	hasContent := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			return hasContent
		case html.TextToken:
			if strings.TrimSpace(string(z.Text())) != "" {
				hasContent = true
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			if !narrativeElements[tag] {
				return false
			}
			if tag == "img" {
				hasContent = true
			}
			for hasAttr {
				var key, val []byte
				key, val, hasAttr = z.TagAttr()
				k := strings.ToLower(string(key))
				if strings.HasPrefix(k, "on") {
					return false
				}
				if (k == "href" || k == "src") && scriptURL(string(val)) {
					return false
				}
			}
		}
	}
}

func scriptURL(u string) bool {
	u = strings.ToLower(strings.Join(strings.Fields(u), ""))
	return strings.HasPrefix(u, "javascript:") || strings.HasPrefix(u, "vbscript:") || strings.HasPrefix(u, "data:text/html")
}
