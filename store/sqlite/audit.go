package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/store"
)

// The audit trail has tables of its own: audit holds each AuditEvent's
// bytes and the codes it is filtered by; audit_key one row per patient,
// agent and entity it names, so "who looked at Patient/x" is one index
// range. Records are ordered by (recorded, id); ids are time-ordered.
const auditSchema = `
CREATE TABLE IF NOT EXISTS audit (
	id       TEXT    PRIMARY KEY,
	recorded INTEGER NOT NULL,
	type     TEXT    NOT NULL,
	subtype  TEXT    NOT NULL,
	action   TEXT    NOT NULL,
	outcome  TEXT    NOT NULL,
	json     BLOB    NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_recorded ON audit (recorded, id);
CREATE TABLE IF NOT EXISTS audit_key (
	kind     TEXT    NOT NULL, -- p (patient), a (agent), e (entity)
	value    TEXT    NOT NULL,
	recorded INTEGER NOT NULL,
	id       TEXT    NOT NULL,
	PRIMARY KEY (kind, value, recorded, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_key_id ON audit_key (id);
`

var _ store.AuditLog = (*Store)(nil)

// AppendAudit writes records in a transaction of their own.
func (s *Store) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	return s.Transact(ctx, func(t store.Tx) error { return t.AppendAudit(ctx, recs) })
}

// AppendAudit writes records in this transaction.
func (t *tx) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	for _, r := range recs {
		ms := r.Recorded.UnixMilli()
		if _, err := t.exec(ctx, `INSERT INTO audit (id, recorded, type, subtype, action, outcome, json) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			r.ID, ms, r.Type, r.Subtype, r.Action, r.Outcome, r.JSON); err != nil {
			return fmt.Errorf("sqlite: audit: %w", err)
		}
		for _, k := range auditKeys(r) {
			if _, err := t.exec(ctx, `INSERT OR IGNORE INTO audit_key (kind, value, recorded, id) VALUES (?, ?, ?, ?)`, k[0], k[1], ms, r.ID); err != nil {
				return fmt.Errorf("sqlite: audit: %w", err)
			}
		}
	}
	return nil
}

// auditKeys are the (kind, value) keys a record is found by.
func auditKeys(r store.AuditRecord) [][2]string {
	var keys [][2]string
	for _, p := range r.Patients {
		keys = append(keys, [2]string{"p", p})
	}
	for _, a := range r.Agents {
		keys = append(keys, [2]string{"a", a})
	}
	for _, e := range r.Entities {
		keys = append(keys, [2]string{"e", e})
	}
	return keys
}

// SearchAudit answers the records q selects.
func (s *Store) SearchAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	var where []string
	var args []any
	in := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		where = append(where, col+" IN ("+strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")+")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	keyed := func(kind string, vals []string) {
		if len(vals) == 0 {
			return
		}
		where = append(where, "a.id IN (SELECT id FROM audit_key WHERE kind = ? AND value IN ("+strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")+"))")
		args = append(args, kind)
		for _, v := range vals {
			args = append(args, v)
		}
	}
	keyed("p", q.Patients)
	keyed("a", q.Agents)
	keyed("e", q.Entities)
	in("a.id", q.IDs)
	in("a.type", q.Types)
	in("a.subtype", q.Subtypes)
	in("a.outcome", q.Outcomes)
	in("a.action", q.Actions)
	if !q.Since.IsZero() {
		where, args = append(where, "a.recorded >= ?"), append(args, q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		where, args = append(where, "a.recorded < ?"), append(args, q.Until.UnixMilli())
	}
	order := "ASC"
	if q.Descending {
		order = "DESC"
	}
	if q.After != "" {
		cmp := ">"
		if q.Descending {
			cmp = "<"
		}
		where = append(where, "(a.recorded, a.id) "+cmp+" (SELECT recorded, id FROM audit WHERE id = ?)")
		args = append(args, q.After)
	}
	query := "SELECT a.id, a.recorded, a.type, a.subtype, a.action, a.outcome, a.json FROM audit a"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY a.recorded " + order + ", a.id " + order
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit search: %w", err)
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		var r store.AuditRecord
		var ms int64
		if err := rows.Scan(&r.ID, &ms, &r.Type, &r.Subtype, &r.Action, &r.Outcome, &r.JSON); err != nil {
			return nil, fmt.Errorf("sqlite: audit search: %w", err)
		}
		r.Recorded = time.UnixMilli(ms).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// PruneAudit deletes the records recorded before a time.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.Transact(ctx, func(t store.Tx) error {
		ms := before.UnixMilli()
		if _, err := t.(*tx).tx.ExecContext(ctx, `DELETE FROM audit_key WHERE id IN (SELECT id FROM audit WHERE recorded < ?)`, ms); err != nil {
			return err
		}
		res, err := t.(*tx).tx.ExecContext(ctx, `DELETE FROM audit WHERE recorded < ?`, ms)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: audit prune: %w", err)
	}
	return n, nil
}
