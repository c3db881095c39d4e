package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// requestMemoryBudget is how far one request of at most --max-body-bytes
// (16 MiB) may move the server's own memory.
const requestMemoryBudget = 100 << 20

// TestLargeRequestsStayInMemoryBudget sends the largest requests of each
// shape a client may send to a real server process and samples its memory
// while each runs. The budget is checked against anonymous memory (the
// process's own: Go heap, SQLite's page caches); VmHWM, logged beside it,
// also counts pages of the memory-mapped database file, which belong to
// the kernel's page cache and are dropped under pressure.
func TestLargeRequestsStayInMemoryBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("sends several 16 MB requests")
	}
	narrative := `<div xmlns=\"http://www.w3.org/1999/xhtml\">` + strings.Repeat("x", 1200) + `</div>`
	patient := func(i int) string {
		return `{"resourceType":"Patient","text":{"status":"generated","div":"` + narrative + `"},"name":[{"family":"F` + strconv.Itoa(i) + `","given":["Given"]}],"gender":"female","birthDate":"1980-01-01","identifier":[{"system":"http://example.org/mrn","value":"` + strconv.Itoa(i) + `"}]}`
	}
	transaction := func(n int) string {
		entries := make([]string, n)
		for i := range entries {
			entries[i] = fmt.Sprintf(`{"fullUrl":"urn:uuid:00000000-0000-4000-8000-%012d","resource":%s,"request":{"method":"POST","url":"Patient"}}`, i, patient(i))
		}
		return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
	}
	tx := transaction(10_000)
	searches := make([]string, 1000)
	for i := range searches {
		searches[i] = `{"request":{"method":"GET","url":"Patient?_count=1000"}}`
	}
	cases := []struct {
		name, method, path, prefer, body string
		want                             int
		loaded                           bool // measured with the transaction's 10,000 patients stored
	}{
		{"transaction, return=minimal", "POST", "", "return=minimal", tx, 200, false},
		{"transaction, return=representation", "POST", "", "return=representation", tx, 200, false},
		{"batch of large searches", "POST", "", "", `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Join(searches, ",") + `]}`, 200, true},
		{"batch of empty entries", "POST", "", "", `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Repeat(`{},`, 5_000_000) + `{}]}`, 400, false},
		{"one large resource", "PUT", "/Patient/large", "", `{"resourceType":"Patient","id":"large","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">` + strings.Repeat("x", 16_000_000) + `</div>"}}`, 201, false},
	}
	for _, c := range cases {
		if len(c.body) > 16<<20 {
			t.Fatalf("%s: the body is %d bytes, more than the 16 MiB limit", c.name, len(c.body))
		}
		// A server of its own for each: what one request costs a fresh
		// server includes filling its caches.
		cmd, base := startServer(t, nil, "--no-seed", "--data", t.TempDir())
		pid := cmd.Process.Pid
		if c.loaded {
			if status, body := request(t, "POST", base, tx); status != 200 {
				t.Fatalf("loading: %d %.300s", status, body)
			}
		}
		before := memoryOf(t, pid)
		sampler := sampleMemory(pid)
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/fhir+json")
		if c.prefer != "" {
			req.Header.Set("Prefer", c.prefer)
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		peak := sampler()
		t.Logf("%s: %d, %d bytes answered in %v; anonymous memory %d → peak %d MiB (+%d); VmHWM %d → %d MiB",
			c.name, resp.StatusCode, n, time.Since(start).Round(time.Millisecond), before.anon>>20, peak.anon>>20, (peak.anon-before.anon)>>20, before.hwm>>20, peak.hwm>>20)
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
		if grew := peak.anon - before.anon; grew > requestMemoryBudget {
			t.Errorf("%s: the server's memory grew by %d MiB, more than the %d MiB budget", c.name, grew>>20, requestMemoryBudget>>20)
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
}

type memory struct{ anon, hwm int64 }

// memoryOf reads a process's anonymous resident memory and its resident
// high-water mark, in bytes.
func memoryOf(t *testing.T, pid int) memory {
	t.Helper()
	m, err := readMemory(pid)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, _ := bytes.Cut(sc.Bytes(), []byte(":"))
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(val)), " kB"), 10, 64)
		switch string(key) {
		case "RssAnon":
			m.anon = kb << 10
		case "VmHWM":
			m.hwm = kb << 10
		}
	}
	return m, sc.Err()
}

// sampleMemory samples a process's memory every 10 ms until the returned
// function is called, which answers the peak seen.
func sampleMemory(pid int) func() memory {
	var mu sync.Mutex
	var peak memory
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if m, err := readMemory(pid); err == nil {
				mu.Lock()
				peak.anon, peak.hwm = max(peak.anon, m.anon), max(peak.hwm, m.hwm)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() memory {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}
