package server_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestHalfClosedClientNeverSeesAFalseSuccess: a client that sends a
// transaction and then closes its sending side may still read the answer.
// Whatever the race between the handler and the server noticing the close,
// a 2xx comes only with the work done: a success status means the
// resources are stored, and anything else means they are not.
func TestHalfClosedClientNeverSeesAFalseSuccess(t *testing.T) {
	ts := newServerWithLimit(t, 1<<20)
	addr := strings.TrimPrefix(ts.URL, "http://")
	for i := range 8 {
		id := fmt.Sprintf("hc%d", i)
		body := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":%q},"request":{"method":"PUT","url":"Patient/%s"}}]}`, id, id)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /fhir HTTP/1.1\r\nHost: %s\r\nContent-Type: application/fhir+json\r\nContent-Length: %d\r\n\r\n%s", addr, len(body), body)
		conn.(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		status := 0
		if err == nil {
			status = resp.StatusCode
			resp.Body.Close()
		}
		conn.Close()
		stored := do(t, ts, "GET", "/fhir/Patient/"+id, "").status == 200
		if status >= 200 && status < 300 && !stored {
			t.Errorf("try %d: %d but nothing stored", i, status)
		}
		if status != 0 && (status < 200 || status >= 300) && stored {
			t.Errorf("try %d: %d but the transaction was stored", i, status)
		}
		t.Logf("try %d: status %d, stored %v", i, status, stored)
	}
}
