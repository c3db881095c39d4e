package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/interact/audit"
	"github.com/hearth-fhir/hearth/store"
	"github.com/hearth-fhir/hearth/store/sqlite"
)

// auditCmd: hearth audit — the operator's view of the audit trail, as a
// table or NDJSON AuditEvents, filtered. It reads a data directory even
// while a server uses it, or a MongoDB.
func auditCmd(args []string) error {
	return runAudit(args, os.Stdout, os.Stderr)
}

func runAudit(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./hearth-data", "data directory of the embedded store (may be in use by a server)")
	storeKind := fs.String("store", "sqlite", "storage backend: sqlite or a mongodb:// URL")
	patient := fs.String("patient", "", "only events about this patient (Patient/ID or ID)")
	user := fs.String("user", "", "only events of this username")
	client := fs.String("client", "", "only events of this client app (its client id)")
	agent := fs.String("agent", "", "only events of this agent (Patient/x, RelatedPerson/y, Device/client)")
	since := fs.String("since", "", "from this time on: an instant or date (2026-12-01), or a duration ago (24h)")
	until := fs.String("until", "", "before this time: as --since")
	outcome := fs.String("outcome", "", "success, failure, or an outcome code (0, 4, 8)")
	subtype := fs.String("subtype", "", "only this kind of event: read, search-type, create … login, token-issued …")
	format := fs.String("format", "table", "table or ndjson (AuditEvents, one per line)")
	newest := fs.Bool("newest-first", false, "newest events first")
	limit := fs.Int("limit", 0, "at most this many events (0: all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := envDefaults(fs); err != nil {
		return err
	}
	if *format != "table" && *format != "ndjson" {
		return fmt.Errorf("--format must be table or ndjson, not %q", *format)
	}
	q := store.AuditQuery{Descending: *newest}
	if *patient != "" {
		q.Patients = []string{strings.TrimPrefix(*patient, "Patient/")}
	}
	if *client != "" {
		q.Agents = append(q.Agents, audit.ClientDevice(*client))
	}
	if *agent != "" {
		q.Agents = append(q.Agents, *agent)
	}
	if len(q.Agents) > 1 {
		return errors.New("give --client or --agent, not both")
	}
	if *subtype != "" {
		q.Subtypes = []string{*subtype}
	}
	switch *outcome {
	case "":
	case "success":
		q.Outcomes = []string{audit.Success}
	case "failure":
		q.Outcomes = []string{audit.Minor, audit.Serious, "12"}
	case "0", "4", "8", "12":
		q.Outcomes = []string{*outcome}
	default:
		return fmt.Errorf("--outcome must be success, failure, 0, 4, 8 or 12, not %q", *outcome)
	}
	var err error
	if q.Since, err = auditTime(*since); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if q.Until, err = auditTime(*until); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	trail, closeTrail, err := openTrail(*storeKind, *data)
	if err != nil {
		return err
	}
	defer closeTrail()

	w := bufio.NewWriter(stdout)
	defer w.Flush()
	var table *tabwriter.Writer
	if *format == "table" {
		table = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(table, "RECORDED\tOUTCOME\tEVENT\tUSER\tAS\tCLIENT\tPATIENTS\tWHAT\tFROM\tREQUEST")
	}
	ctx := context.Background()
	const page = 1000
	shown, read := 0, 0
	lastProgress := time.Now()
	for {
		q.Limit = page
		recs, err := trail.SearchAudit(ctx, q)
		if err != nil {
			return err
		}
		for _, r := range recs {
			read++
			a, e, err := audit.Parse(r)
			if err != nil {
				return err
			}
			if *user != "" && a.User != *user {
				continue
			}
			if table != nil {
				fmt.Fprintln(table, strings.Join([]string{fhir.FormatInstant(r.Recorded), outcomeWord(r.Outcome, e.Detail), eventName(r),
					dash(a.User), dash(a.FHIRUser), dash(a.Client), dash(strings.Join(e.Patients, ",")), dash(what(e)), dash(a.Address), dash(a.RequestID)}, "\t"))
			} else {
				body, err := audit.Render(r)
				if err != nil {
					return err
				}
				w.Write(body)
				w.WriteByte('\n')
			}
			shown++
			if *limit > 0 && shown >= *limit {
				break
			}
		}
		if table != nil {
			table.Flush()
		}
		// A progress line on large ranges, where the operator waits.
		if len(recs) > 0 && time.Since(lastProgress) > time.Second {
			fmt.Fprintf(stderr, "… %d events read, %d shown, up to %s\n", read, shown, fhir.FormatInstant(recs[len(recs)-1].Recorded))
			lastProgress = time.Now()
		}
		if len(recs) < page || (*limit > 0 && shown >= *limit) {
			break
		}
		q.After = recs[len(recs)-1].ID
	}
	if table != nil {
		w.Flush()
		fmt.Fprintf(stderr, "%d events\n", shown)
	}
	return nil
}

// openTrail opens the trail to read: a data directory without its lock
// (a server may be serving it), or a MongoDB.
func openTrail(kind, dir string) (interface {
	SearchAudit(context.Context, store.AuditQuery) ([]store.AuditRecord, error)
}, func(), error) {
	if isMongo(kind) {
		s, _, err := openStore(kind, dir)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	if kind != "" && kind != "sqlite" {
		return nil, nil, fmt.Errorf("--store must be sqlite or a mongodb:// URL, not %q", kind)
	}
	r, err := sqlite.OpenAuditReader(dir)
	if err != nil {
		return nil, nil, err
	}
	return r, func() { r.Close() }, nil
}

// auditTime reads --since and --until: an instant, a date, or a duration
// before now.
func auditTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an instant (2026-12-01T10:00:00Z), a date (2026-12-01) or a duration (24h)", s)
}

func outcomeWord(code, detail string) string {
	word := map[string]string{audit.Success: "ok", audit.Minor: "refused", audit.Serious: "failed", "12": "failed"}[code]
	if word == "" {
		word = code
	}
	if detail != "" {
		word += " (" + detail + ")"
	}
	return word
}

func eventName(r store.AuditRecord) string {
	if r.Type == "rest" {
		return r.Subtype
	}
	return "security:" + r.Subtype
}

// what the event touched: resources, or the query of a search.
func what(e audit.Event) string {
	parts := slices.Clone(e.Entities)
	if e.Query != "" {
		parts = append(parts, e.Query)
	}
	return strings.Join(parts, " ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
