package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

const (
	fhirJSON  = "application/fhir+json"
	plainJSON = "application/json"
)

var (
	fhirJSONHeader  = []string{fhirJSON + "; charset=utf-8"}
	plainJSONHeader = []string{plainJSON + "; charset=utf-8"}
)

// responseType picks the response media type from _format or Accept. Only
// JSON is served; asking for anything else is a 406.
func responseType(r *http.Request) (string, error) {
	if r.URL.RawQuery == "" {
		switch r.Header.Get("Accept") {
		case "", fhirJSON, "*/*":
			return fhirJSON, nil // the common cases, without parsing
		}
	}
	if f := r.URL.Query().Get("_format"); f != "" {
		switch strings.TrimSpace(strings.SplitN(f, ";", 2)[0]) {
		case "json", fhirJSON, "application/json+fhir":
			return fhirJSON, nil
		case plainJSON:
			return plainJSON, nil
		}
		return "", errorf(http.StatusNotAcceptable, "not-supported", "_format: only JSON (json, application/fhir+json, application/json) is supported")
	}
	accept := r.Header.Get("Accept")
	if accept == "" {
		return fhirJSON, nil
	}
	plainWanted := false
	for _, part := range strings.Split(accept, ",") {
		mt := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		switch mt {
		case fhirJSON, "application/json+fhir", "*/*", "application/*":
			return fhirJSON, nil
		case plainJSON:
			plainWanted = true
		}
	}
	if plainWanted {
		return plainJSON, nil
	}
	return "", errorf(http.StatusNotAcceptable, "not-supported", "Accept: only application/fhir+json and application/json are supported")
}

// writeJSON writes a JSON body in the negotiated type, pretty-printed when
// _pretty=true. The body is written as is, never decoded.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	h := w.Header()
	setContentType(h, r)
	if r.URL.RawQuery != "" && r.URL.Query().Get("_pretty") == "true" {
		var b bytes.Buffer
		if json.Indent(&b, body, "", "  ") == nil {
			body = b.Bytes()
		}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// setContentType sets the negotiated JSON media type.
func setContentType(h http.Header, r *http.Request) {
	if rt, err := responseType(r); err == nil && rt == plainJSON {
		h["Content-Type"] = plainJSONHeader
		return
	}
	h["Content-Type"] = fhirJSONHeader
}

// writeBundle answers 200 with a Bundle, streamed from its entries' bytes
// (chunked; no Content-Length), so a large page is not copied into one
// buffer first. _pretty=true is indented whole, as writeJSON does.
func (s *Server) writeBundle(w http.ResponseWriter, r *http.Request, b *fhir.Bundle) {
	if r.URL.RawQuery != "" && r.URL.Query().Get("_pretty") == "true" {
		body, err := b.MarshalJSON()
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeJSON(w, r, http.StatusOK, body)
		return
	}
	setContentType(w.Header(), r)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	bw := bundleWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	_, err := b.WriteTo(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	bundleWriters.Put(bw)
	if err != nil {
		// The status is sent: the client went away mid-answer, or an entry
		// made as it was written failed. Ending the handler normally would
		// finish the answer as if whole; aborting cuts the connection, so
		// the client sees an incomplete answer, not a short bundle.
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "answer cut short",
			slog.String("request_id", requestID(r.Context())), slog.String("error", err.Error()))
		panic(http.ErrAbortHandler)
	}
}

// bundleWriters reuses the buffers answers stream through.
var bundleWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// setVersionHeaders sets ETag and Last-Modified for a resource version.
func setVersionHeaders(h http.Header, res store.Resource) {
	h["Etag"] = []string{`W/"` + strconv.FormatInt(res.VersionID, 10) + `"`}
	h["Last-Modified"] = []string{httpDate(res.LastUpdated)}
}

// httpDate formats t as an HTTP date (http.TimeFormat) without the
// general formatter, which was 2% of a read.
func httpDate(t time.Time) string {
	t = t.UTC()
	const days, months = "SunMonTueWedThuFriSat", "JanFebMarAprMayJunJulAugSepOctNovDec"
	var b [29]byte
	y, mo, d := t.Date()
	hh, mm, ss := t.Clock()
	wd := int(t.Weekday())
	copy(b[0:3], days[wd*3:wd*3+3])
	b[3], b[4] = ',', ' '
	b[5], b[6], b[7] = byte('0'+d/10), byte('0'+d%10), ' '
	copy(b[8:11], months[(int(mo)-1)*3:int(mo)*3])
	b[11] = ' '
	b[12], b[13], b[14], b[15] = byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10)
	b[16] = ' '
	b[17], b[18], b[19] = byte('0'+hh/10), byte('0'+hh%10), ':'
	b[20], b[21], b[22] = byte('0'+mm/10), byte('0'+mm%10), ':'
	b[23], b[24] = byte('0'+ss/10), byte('0'+ss%10)
	copy(b[25:], " GMT")
	return string(b[:])
}

// readBody reads a request body of a JSON media type, enforcing the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, allowed ...string) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		return nil, errorf(http.StatusUnsupportedMediaType, "not-supported", "Content-Type must be one of "+strings.Join(allowed, ", "))
	}
	ok := false
	for _, a := range allowed {
		if strings.EqualFold(mt, a) {
			ok = true
		}
	}
	if !ok {
		return nil, errorf(http.StatusUnsupportedMediaType, "not-supported", "Content-Type "+mt+" is not supported here; use one of "+strings.Join(allowed, ", "))
	}
	tooBig := errorf(http.StatusRequestEntityTooLarge, "too-costly", "request body exceeds "+strconv.FormatInt(s.cfg.MaxBodyBytes, 10)+" bytes")
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, tooBig // announced: refused unread
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), r.ContentLength, s.cfg.MaxBodyBytes)
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return nil, tooBig
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "structure", "could not read the request body")
	}
	return body, nil
}

// readAll reads a body into one buffer of its announced length, where
// io.ReadAll would grow one by doubling (a 16 MB body then costs 32 MB of
// garbage besides itself).
func readAll(rd io.Reader, length, limit int64) ([]byte, error) {
	if length <= 0 || length > limit {
		return io.ReadAll(rd)
	}
	buf := bytes.NewBuffer(make([]byte, 0, length+1))
	_, err := buf.ReadFrom(rd)
	return buf.Bytes(), err
}

// preference reads one preference of the Prefer header (all its fields,
// as RFC 9110 joins them): its value, lower-cased and unquoted, and
// whether it is there at all.
func preference(r *http.Request, name string) (string, bool) {
	for _, p := range strings.Split(strings.Join(r.Header.Values("Prefer"), ","), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, name) {
			return strings.Trim(strings.ToLower(v), `"`), true
		}
	}
	return "", false
}

// preferReturn reads Prefer: return=…; representation is the default.
func preferReturn(r *http.Request) string {
	if v, ok := preference(r, "return"); ok {
		return v
	}
	return "representation"
}

// strictHandling reports Prefer: handling=strict (lenient is the default).
func strictHandling(r *http.Request) bool {
	v, _ := preference(r, "handling")
	return v == "strict"
}
