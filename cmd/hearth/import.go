package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

func importCmd(args []string) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	data := fs.String("data", "./hearth-data", "data directory to load into (must not be in use by a running server)")
	serverURL := fs.String("server", "", "FHIR base URL of a running Hearth to load into, instead of --data")
	storeKind := fs.String("store", "sqlite", "storage backend, as for serve")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: hearth import [--data DIR | --server URL] FILE.ndjson[.gz]...\n\nLoads NDJSON (one resource per line); ids are kept.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := envDefaults(fs); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no files to import")
	}
	var sink resourceSink
	if *serverURL != "" {
		sink = &httpSink{base: strings.TrimSuffix(*serverURL, "/"), client: &http.Client{Timeout: time.Minute}}
	} else {
		st, _, err := openStore(*storeKind, *data)
		if err != nil {
			return err
		}
		defer st.Close()
		sink = &storeSink{st: st}
	}
	sum, err := importFiles(context.Background(), sink, fs.Args(), os.Stderr)
	sum.print(os.Stdout)
	if err != nil {
		return err
	}
	if sum.rejected > 0 {
		return fmt.Errorf("%d resources rejected", sum.rejected)
	}
	return nil
}

// seed loads the demo patients into a fresh store.
func seed(st store.Store, dir string, log *slog.Logger) error {
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson*"))
	if len(files) == 0 {
		log.Warn("no demo data to seed; run from the repository root or pass --seed-dir", slog.String("seed_dir", dir))
		return nil
	}
	start := time.Now()
	sum, err := importFiles(context.Background(), &storeSink{st: st}, files, io.Discard)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	log.Info("seeded demo patients", slog.Int("resources", sum.loaded), slog.Int("rejected", sum.rejected), slog.Duration("took", time.Since(start)))
	return nil
}

// resourceSink is where import puts validated resources.
type resourceSink interface {
	// put stores a batch; it returns one error per resource (nil if stored).
	put(ctx context.Context, batch []parsedLine) ([]error, error)
}

type parsedLine struct {
	file string
	line int
	typ  string
	id   string
	body []byte
}

type summary struct {
	loaded   int
	rejected int
	byType   map[string]int
	reasons  []string
}

func (s summary) print(w io.Writer) {
	fmt.Fprintf(w, "loaded %d resources, rejected %d\n", s.loaded, s.rejected)
	types := make([]string, 0, len(s.byType))
	for t := range s.byType {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		fmt.Fprintf(w, "  %-28s %d\n", t, s.byType[t])
	}
	for i, r := range s.reasons {
		if i == 50 {
			fmt.Fprintf(w, "  … and %d more rejections\n", len(s.reasons)-50)
			break
		}
		fmt.Fprintln(w, "  rejected:", r)
	}
}

const importBatch = 500

// importFiles validates every line and stores the valid ones in batches.
// Rejections name the file, line and problem, never the line's content.
func importFiles(ctx context.Context, sink resourceSink, files []string, progress io.Writer) (summary, error) {
	sum := summary{byType: map[string]int{}}
	var total int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			total += fi.Size()
		}
	}
	var done int64
	reject := func(file string, line int, why string) {
		sum.rejected++
		sum.reasons = append(sum.reasons, fmt.Sprintf("%s:%d: %s", filepath.Base(file), line, why))
	}
	var batch []parsedLine
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		errs, err := sink.put(ctx, batch)
		if err != nil {
			return err
		}
		for i, e := range errs {
			if e != nil {
				reject(batch[i].file, batch[i].line, e.Error())
				continue
			}
			sum.loaded++
			sum.byType[batch[i].typ]++
		}
		batch = batch[:0]
		return nil
	}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			return sum, err
		}
		counted := &countingReader{r: f}
		var r io.Reader = counted
		if strings.HasSuffix(file, ".gz") {
			zr, err := gzip.NewReader(counted)
			if err != nil {
				f.Close()
				return sum, fmt.Errorf("%s: %w", file, err)
			}
			r = zr
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		line := 0
		for sc.Scan() {
			line++
			raw := bytes.TrimSpace(sc.Bytes())
			if len(raw) == 0 {
				continue
			}
			typ, issues, err := fhir.Validate(raw)
			if err != nil {
				reject(file, line, err.Error())
				continue
			}
			if len(issues) > 0 {
				reject(file, line, issues[0].Error()+moreIssues(len(issues)))
				continue
			}
			_, id, _ := fhir.ResourceHeader(raw)
			batch = append(batch, parsedLine{file: file, line: line, typ: typ, id: id, body: append([]byte(nil), raw...)})
			if len(batch) == importBatch {
				if err := flush(); err != nil {
					f.Close()
					return sum, err
				}
				showProgress(progress, done+counted.n, total, sum.loaded)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return sum, fmt.Errorf("%s:%d: %w", file, line, err)
		}
		done += counted.n
	}
	if err := flush(); err != nil {
		return sum, err
	}
	showProgress(progress, total, total, sum.loaded)
	fmt.Fprintln(progress)
	return sum, nil
}

func moreIssues(n int) string {
	if n <= 1 {
		return ""
	}
	return fmt.Sprintf(" (and %d more issues)", n-1)
}

func showProgress(w io.Writer, done, total int64, loaded int) {
	if total == 0 {
		return
	}
	const width = 30
	filled := int(done * width / total)
	fmt.Fprintf(w, "\r[%s%s] %3d%%  %d resources", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), done*100/total, loaded)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// storeSink writes a batch in one transaction. Lines with an id keep it
// (update-as-create); lines without one get a server id.
type storeSink struct{ st store.Store }

func (s *storeSink) put(ctx context.Context, batch []parsedLine) ([]error, error) {
	errs := make([]error, len(batch))
	err := s.st.Transact(ctx, func(tx store.Tx) error {
		for _, p := range batch {
			var err error
			if p.id == "" {
				_, err = tx.Create(ctx, store.Write{Type: p.typ, Body: p.body})
			} else {
				_, _, err = tx.Update(ctx, store.Write{Type: p.typ, ID: p.id, Body: p.body})
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	return errs, err
}

// httpSink PUTs (or POSTs, without an id) each resource to a running server.
type httpSink struct {
	base   string
	client *http.Client
}

func (h *httpSink) put(ctx context.Context, batch []parsedLine) ([]error, error) {
	errs := make([]error, len(batch))
	for i, p := range batch {
		method, url := http.MethodPut, h.base+"/"+p.typ+"/"+p.id
		if p.id == "" {
			method, url = http.MethodPost, h.base+"/"+p.typ
		}
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(p.body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Prefer", "return=minimal")
		resp, err := h.client.Do(req)
		if err != nil {
			return nil, err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			errs[i] = fmt.Errorf("server answered %s: %s", resp.Status, outcomeText(msg))
		}
	}
	return errs, nil
}

// outcomeText pulls the first diagnostics out of an OperationOutcome.
func outcomeText(body []byte) string {
	var oo struct {
		Issue []struct {
			Diagnostics string   `json:"diagnostics"`
			Expression  []string `json:"expression"`
		} `json:"issue"`
	}
	if fhirErr := json.Unmarshal(body, &oo); fhirErr != nil || len(oo.Issue) == 0 {
		return "no OperationOutcome"
	}
	is := oo.Issue[0]
	if len(is.Expression) > 0 {
		return is.Expression[0] + ": " + is.Diagnostics
	}
	return is.Diagnostics
}
