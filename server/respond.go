package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

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
	if rt, err := responseType(r); err == nil && rt == plainJSON {
		h["Content-Type"] = plainJSONHeader
	} else {
		h["Content-Type"] = fhirJSONHeader
	}
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

// setVersionHeaders sets ETag and Last-Modified for a resource version.
func setVersionHeaders(h http.Header, res store.Resource) {
	h["Etag"] = []string{`W/"` + strconv.FormatInt(res.VersionID, 10) + `"`}
	h["Last-Modified"] = []string{res.LastUpdated.UTC().Format(http.TimeFormat)}
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
	body, err := readAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), r.ContentLength, s.cfg.MaxBodyBytes)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "too-costly", "request body exceeds "+strconv.FormatInt(s.cfg.MaxBodyBytes, 10)+" bytes")
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

// preferReturn reads Prefer: return=…; representation is the default.
func preferReturn(r *http.Request) string {
	for _, p := range strings.Split(r.Header.Get("Prefer"), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "return") {
			return strings.Trim(strings.ToLower(v), `"`)
		}
	}
	return "representation"
}

// strictHandling reports Prefer: handling=strict (lenient is the default).
func strictHandling(r *http.Request) bool {
	for _, p := range strings.Split(r.Header.Get("Prefer"), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "handling") && strings.EqualFold(strings.Trim(v, `"`), "strict") {
			return true
		}
	}
	return false
}
