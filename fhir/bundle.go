package fhir

import (
	"bytes"
	"encoding/json"
	"io"
	"iter"
	"strconv"
)

// BundleLink is a Bundle.link.
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntryRequest is a Bundle.entry.request.
type BundleEntryRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

// BundleEntryResponse is a Bundle.entry.response.
type BundleEntryResponse struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// BundleEntrySearch is a Bundle.entry.search.
type BundleEntrySearch struct {
	Mode  string   `json:"mode,omitempty"`
	Score *float64 `json:"score,omitempty"`
}

// BundleEntry is one entry; Resource holds stored bytes, written verbatim.
type BundleEntry struct {
	FullURL  string
	Resource []byte
	Search   *BundleEntrySearch
	Request  *BundleEntryRequest
	Response *BundleEntryResponse
}

// Bundle is a Bundle the server writes (searchset, history, responses).
// Unlike a generic JSON encoder it writes each entry's stored resource
// bytes as they are: no decoding, no re-escaping, resourceType first.
type Bundle struct {
	Type    string
	Total   *int
	Links   []BundleLink
	Entries []BundleEntry
	// More, when set, yields entries after Entries as they are written: a
	// large answer is then made an entry at a time, never held whole. An
	// error it yields ends the writing (after a 200 was sent, the answer
	// is then cut short: invalid JSON rather than a partial bundle that
	// parses).
	More iter.Seq2[BundleEntry, error]
}

// MarshalJSON writes the bundle.
func (b *Bundle) MarshalJSON() ([]byte, error) {
	size := 256
	for _, e := range b.Entries {
		size += len(e.Resource) + 256
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	if _, err := b.WriteTo(buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteTo writes the bundle to w an entry at a time, so that a large
// response is streamed from the entries' stored bytes rather than copied
// into one buffer first.
func (b *Bundle) WriteTo(w io.Writer) (int64, error) {
	var buf bytes.Buffer // one entry's envelope at a time
	var n int64
	flush := func() error {
		m, err := w.Write(buf.Bytes())
		n += int64(m)
		buf.Reset()
		return err
	}
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// put writes a small value with the encoder, dropping its newline.
	put := func(v any) error {
		if err := enc.Encode(v); err != nil {
			return err
		}
		buf.Truncate(buf.Len() - 1)
		return nil
	}
	buf.WriteString(`{"resourceType":"Bundle","type":`)
	if err := put(b.Type); err != nil {
		return n, err
	}
	if b.Total != nil {
		buf.WriteString(`,"total":` + strconv.Itoa(*b.Total))
	}
	if len(b.Links) > 0 {
		buf.WriteString(`,"link":`)
		if err := put(b.Links); err != nil {
			return n, err
		}
	}
	entries := func(yield func(BundleEntry, error) bool) {
		for _, e := range b.Entries {
			if !yield(e, nil) {
				return
			}
		}
		if b.More != nil {
			b.More(yield)
		}
	}
	first := true
	for e, err := range entries {
		if err != nil {
			return n, err
		}
		if first {
			buf.WriteString(`,"entry":[`)
			first = false
		} else {
			buf.WriteByte(',')
		}
		if err := writeEntry(&buf, w, &n, e, put, flush); err != nil {
			return n, err
		}
		if buf.Len() > 32<<10 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if !first {
		buf.WriteByte(']')
	}
	buf.WriteByte('}')
	return n, flush()
}

// writeEntry writes one entry: its envelope into buf, its resource's own
// bytes straight to w (after flushing buf).
func writeEntry(buf *bytes.Buffer, w io.Writer, n *int64, e BundleEntry, put func(any) error, flush func() error) error {
	buf.WriteByte('{')
	sep := ""
	field := func(name string, v any) error {
		buf.WriteString(sep + `"` + name + `":`)
		sep = ","
		return put(v)
	}
	if e.FullURL != "" {
		if err := field("fullUrl", e.FullURL); err != nil {
			return err
		}
	}
	if len(e.Resource) > 0 {
		buf.WriteString(sep + `"resource":`)
		sep = ","
		if err := flush(); err != nil {
			return err
		}
		m, err := w.Write(e.Resource)
		*n += int64(m)
		if err != nil {
			return err
		}
	}
	if e.Search != nil {
		if err := field("search", e.Search); err != nil {
			return err
		}
	}
	if e.Request != nil {
		if err := field("request", e.Request); err != nil {
			return err
		}
	}
	if e.Response != nil {
		if err := field("response", e.Response); err != nil {
			return err
		}
	}
	buf.WriteByte('}')
	return nil
}
