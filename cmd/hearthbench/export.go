package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// exportBench runs a full system $export on a server freshly started on
// the dataset and reports resources per second and the server's peak
// resident memory while it ran (a fresh server: the read cache that
// searches filled is not the export's); the export is deleted afterwards.
func exportBench(hearth, data string) {
	addr := freeAddr()
	srv := exec.Command(hearth, "serve", "--listen", addr, "--data", data, "--no-seed", "--log-level", "warn", "--open")
	srv.Stderr = os.Stderr
	check(srv.Start())
	stop := func() { srv.Process.Kill(); srv.Wait() }
	defer stop()
	// fail exits at once: the server is stopped first, or it would keep
	// the data directory locked.
	die := func(msg string) { stop(); fail(msg) }
	base := "http://" + addr + "/fhir"
	waitUp(base + "/metadata")
	pid := srv.Process.Pid
	idle := rssKB(pid)
	req, _ := http.NewRequest("GET", base+"/$export", nil)
	req.Header.Set("Prefer", "respond-async")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	check(err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		die("export kick-off: " + resp.Status)
	}
	status := resp.Header.Get("Content-Location")
	peak := 0
	var manifest struct {
		Output []struct{ Count int }
	}
	for {
		peak = max(peak, rssKB(pid))
		resp, err := http.Get(status)
		check(err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			check(json.Unmarshal(body, &manifest))
			break
		}
		if resp.StatusCode != http.StatusAccepted {
			die("export status: " + resp.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	elapsed := time.Since(start)
	n := 0
	for _, o := range manifest.Output {
		n += o.Count
	}
	fmt.Printf("%-34s %10.0f resources/s (%d resources, %d files in %v; server RSS %d MB idle, %d MB peak)\n",
		"$export (system, ndjson)", float64(n)/elapsed.Seconds(), n, len(manifest.Output), elapsed.Round(100*time.Millisecond), idle/1024, peak/1024)
	del, _ := http.NewRequest("DELETE", status, nil)
	if resp, err := http.DefaultClient.Do(del); err == nil {
		resp.Body.Close()
	}
}

// rssKB is a process's resident set size in kB (Linux), 0 if unknown.
func rssKB(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}
