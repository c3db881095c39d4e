package sqlite

import (
	"context"
	"strings"

	"github.com/hearth-fhir/hearth/fhir"
)

var indexTables = []string{"idx_string", "idx_token", "idx_token_patient", "idx_ref", "idx_date", "idx_number", "idx_quantity", "idx_uri", "idx_composite", "compartment"}

var indexColumns = map[string][]string{
	"idx_string": {"type", "id", "param", "norm", "exact"},
	"idx_token":  {"type", "id", "param", "system", "code", "text"},
	// idx_token_patient repeats the token keys once per patient the
	// resource refers to, indexed patient first: Observation?patient=X&
	// code=Y then reads X's few rows with that code, together, instead of
	// probing each of X's thousand Observations.
	"idx_token_patient": {"type", "id", "param", "system", "code", "patient_id"},
	"idx_ref":           {"type", "id", "param", "target_type", "target_id", "url", "ident_system", "ident_value"},
	"idx_date":          {"type", "id", "param", "lo", "hi"},
	"idx_number":        {"type", "id", "param", "value"},
	"idx_quantity":      {"type", "id", "param", "value", "system", "code", "unit"},
	"idx_uri":           {"type", "id", "param", "uri"},
	"idx_composite":     {"type", "id", "param", "a_system", "a_code", "b_system", "b_code", "b_unit", "b_lo", "b_hi"},
	"compartment":       {"type", "id", "patient_id"},
}

// maxRowsPerInsert keeps a multi-row INSERT under SQLite's variable limit.
const maxRowsPerInsert = 400

// writeIndex replaces the search index rows of one resource. New rows are
// queued and written in multi-row INSERTs when the transaction searches or
// commits: a bulk load writes dozens of rows per resource, and one
// statement per row dominated its cost. replacing is false for a first
// version, which has no rows to delete.
func (t *tx) writeIndex(ctx context.Context, typ, id string, replacing bool, ix fhir.Index) error {
	if replacing {
		if err := t.flushIndex(ctx); err != nil {
			return err
		}
		for _, table := range indexTables {
			if _, err := t.exec(ctx, `DELETE FROM `+table+` WHERE type = ? AND id = ?`, typ, id); err != nil {
				return err
			}
		}
	}
	for _, k := range ix.Strings {
		t.queue("idx_string", typ, id, k.Param, k.Norm, k.Exact)
	}
	for _, k := range ix.Tokens {
		t.queue("idx_token", typ, id, k.Param, k.System, k.Code, k.Text)
	}
	for _, p := range patientsOf(typ, ix) {
		for _, k := range ix.Tokens {
			t.queue("idx_token_patient", typ, id, k.Param, k.System, k.Code, p)
		}
	}
	for _, k := range ix.Refs {
		t.queue("idx_ref", typ, id, k.Param, k.Type, k.ID, k.URL, k.IdentSystem, k.IdentValue)
	}
	for _, k := range ix.Dates {
		t.queue("idx_date", typ, id, k.Param, k.Lo, k.Hi)
	}
	for _, k := range ix.Numbers {
		t.queue("idx_number", typ, id, k.Param, k.Value)
	}
	for _, k := range ix.Quantities {
		t.queue("idx_quantity", typ, id, k.Param, k.Value, k.System, k.Code, k.Unit)
	}
	for _, k := range ix.URIs {
		t.queue("idx_uri", typ, id, k.Param, k.URI)
	}
	for _, k := range ix.Composites {
		t.queue("idx_composite", typ, id, k.Param, k.A.System, k.A.Code, k.B.System, k.B.Code, k.B.Unit, k.B.Lo, k.B.Hi)
	}
	for _, p := range ix.Compartments {
		t.queue("compartment", typ, id, p)
	}
	if t.queued > maxQueuedValues {
		return t.flushIndex(ctx)
	}
	return nil
}

// patientsOf is every Patient a resource is in the compartment of or
// refers to by any reference parameter (or by a reference without a type).
// A search anchored on one patient — a compartment search, or a reference
// parameter naming one Patient — only matches resources whose set holds
// that patient, so idx_token_patient can drive it; the anchor itself is
// still checked.
//
// Patients themselves are left out (their searches are by id, name and
// identifier, not anchored on another patient), which keeps patient
// registration as cheap as before; the compiler never anchors a Patient
// search.
func patientsOf(typ string, ix fhir.Index) []string {
	if typ == "Patient" {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	add := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	for _, p := range ix.Compartments {
		add(p)
	}
	for _, r := range ix.Refs {
		if r.Type == "Patient" || r.Type == "" {
			add(r.ID)
		}
	}
	return out
}

func (t *tx) queue(table string, vals ...any) {
	if t.pending == nil {
		t.pending = map[string][]any{}
	}
	t.pending[table] = append(t.pending[table], vals...)
	t.queued += len(vals)
}

// maxQueuedValues bounds the index values a transaction holds before it
// writes them: a 10,000-entry transaction queued 57 MB of index rows for
// its commit. Flushing early writes the same rows in the same transaction.
const maxQueuedValues = 50_000

// flushIndex writes the queued index rows.
func (t *tx) flushIndex(ctx context.Context) error {
	t.queued = 0
	for _, table := range indexTables {
		vals := t.pending[table]
		if len(vals) == 0 {
			continue
		}
		cols := indexColumns[table]
		n := len(cols)
		row := "(" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
		for start := 0; start < len(vals); start += n * maxRowsPerInsert {
			chunk := vals[start:min(start+n*maxRowsPerInsert, len(vals))]
			rows := len(chunk) / n
			query := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES " + strings.TrimSuffix(strings.Repeat(row+",", rows), ",")
			// Full chunks reuse one prepared statement per table; a tail
			// chunk's row count varies from flush to flush, and keeping
			// its statement would hold SQLite memory for each count seen.
			exec := t.exec
			if rows < maxRowsPerInsert {
				exec = t.tx.ExecContext
			}
			if _, err := exec(ctx, query, chunk...); err != nil {
				return err
			}
		}
		clear(vals) // the backing array is kept: let go of the values
		t.pending[table] = vals[:0]
	}
	return nil
}
