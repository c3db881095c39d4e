// Package mongotest gives tests a MongoDB wire-protocol server: the one
// named by HEARTH_MONGO_URI, or else a FerretDB started from the binary
// `make ferretdb` builds (bin/ferretdb, or HEARTH_FERRETDB), shared by the
// tests of one package and stopped with them. Without either the tests
// skip — unless HEARTH_REQUIRE_MONGO is set, as in CI, where they fail.
package mongotest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	once    sync.Once
	baseURI string
	startEr error
	proc    *exec.Cmd
	tmpDir  string
	counter atomic.Int64
)

// findBinary looks for bin/ferretdb from the working directory upwards.
func findBinary() string {
	if p := os.Getenv("HEARTH_FERRETDB"); p != "" {
		return p
	}
	dir, _ := os.Getwd()
	for i := 0; i < 6 && dir != "/"; i++ {
		p := filepath.Join(dir, "bin", "ferretdb")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		dir = filepath.Dir(dir)
	}
	return ""
}

func start() {
	if uri := os.Getenv("HEARTH_MONGO_URI"); uri != "" {
		baseURI = strings.TrimSuffix(uri, "/")
		return
	}
	bin := findBinary()
	if bin == "" {
		startEr = fmt.Errorf("no HEARTH_MONGO_URI and no bin/ferretdb (run make ferretdb)")
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		startEr = err
		return
	}
	addr := ln.Addr().String()
	ln.Close()
	tmpDir, err = os.MkdirTemp("", "ferretdb")
	if err != nil {
		startEr = err
		return
	}
	proc = exec.Command(bin, "--listen", addr, "--dir", tmpDir)
	if err := proc.Start(); err != nil {
		startEr = err
		return
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			baseURI = "mongodb://" + addr
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	startEr = fmt.Errorf("ferretdb did not come up on %s", addr)
}

// URI returns a connection string to a new, empty database.
func URI(t testing.TB) string {
	t.Helper()
	once.Do(start)
	if startEr != nil {
		if os.Getenv("HEARTH_REQUIRE_MONGO") != "" {
			t.Fatalf("MongoDB tests required: %v", startEr)
		}
		t.Skipf("MongoDB tests skipped: %v", startEr)
	}
	return fmt.Sprintf("%s/hearth_test_%d_%d", baseURI, os.Getpid(), counter.Add(1))
}

// Stop ends a FerretDB this package started; call it from TestMain.
func Stop() {
	if proc != nil && proc.Process != nil {
		proc.Process.Kill()
		proc.Wait()
	}
	if tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
}
