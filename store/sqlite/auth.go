package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/hearth-fhir/hearth/store"
)

// OAuth state lives in one table, keyed by (kind, key). Expired rows are
// filtered out on every read and removed when a record of the same kind is
// written, so the table does not grow without bound.

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func unexpired(now time.Time) (string, int64) {
	return "(expires_at = 0 OR expires_at > ?)", now.UnixMilli()
}

func (s *Store) CreateAuth(ctx context.Context, rec store.AuthRecord) error {
	now := time.Now()
	if _, err := s.writer.ExecContext(ctx, `DELETE FROM auth WHERE kind = ? AND key = ? AND expires_at != 0 AND expires_at <= ?`, rec.Kind, rec.Key, now.UnixMilli()); err != nil {
		return fmt.Errorf("sqlite: auth: %w", err)
	}
	res, err := s.writer.ExecContext(ctx, `INSERT INTO auth (kind, key, request_id, subject, active, expires_at, data) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		rec.Kind, rec.Key, rec.RequestID, rec.Subject, rec.Active, millis(rec.ExpiresAt), rec.Data)
	if err != nil {
		return fmt.Errorf("sqlite: auth: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("auth %s record exists: %w", rec.Kind, store.ErrConflict)
	}
	return nil
}

func (s *Store) PutAuth(ctx context.Context, rec store.AuthRecord) error {
	_, err := s.writer.ExecContext(ctx, `INSERT INTO auth (kind, key, request_id, subject, active, expires_at, data) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (kind, key) DO UPDATE SET request_id = excluded.request_id, subject = excluded.subject, active = excluded.active, expires_at = excluded.expires_at, data = excluded.data`,
		rec.Kind, rec.Key, rec.RequestID, rec.Subject, rec.Active, millis(rec.ExpiresAt), rec.Data)
	if err != nil {
		return fmt.Errorf("sqlite: auth: %w", err)
	}
	s.sweepAuth(ctx, rec.Kind)
	return nil
}

// sweepAuth removes expired records of a kind. It runs after writes so that
// short-lived kinds (codes, assertion ids) do not pile up; failure is
// harmless because reads ignore expired rows anyway.
func (s *Store) sweepAuth(ctx context.Context, kind string) {
	s.writer.ExecContext(ctx, `DELETE FROM auth WHERE kind = ? AND expires_at != 0 AND expires_at <= ?`, kind, time.Now().UnixMilli())
}

func (s *Store) GetAuth(ctx context.Context, kind, key string) (store.AuthRecord, error) {
	rec := store.AuthRecord{Kind: kind, Key: key}
	var exp int64
	err := s.authStmt.QueryRowContext(ctx, kind, key, time.Now().UnixMilli()).
		Scan(&rec.RequestID, &rec.Subject, &rec.Active, &exp, &rec.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return rec, fmt.Errorf("auth %s record: %w", kind, store.ErrNotFound)
	}
	if err != nil {
		return rec, fmt.Errorf("sqlite: auth: %w", err)
	}
	if exp != 0 {
		rec.ExpiresAt = time.UnixMilli(exp).UTC()
	}
	return rec, nil
}

func (s *Store) DeleteAuth(ctx context.Context, kind, key string) error {
	if _, err := s.writer.ExecContext(ctx, `DELETE FROM auth WHERE kind = ? AND key = ?`, kind, key); err != nil {
		return fmt.Errorf("sqlite: auth: %w", err)
	}
	return nil
}

func (s *Store) DeactivateAuth(ctx context.Context, kind, key string) error {
	cond, now := unexpired(time.Now())
	res, err := s.writer.ExecContext(ctx, `UPDATE auth SET active = 0 WHERE kind = ? AND key = ? AND `+cond, kind, key, now)
	if err != nil {
		return fmt.Errorf("sqlite: auth: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("auth %s record: %w", kind, store.ErrNotFound)
	}
	return nil
}

func (s *Store) DeactivateGrant(ctx context.Context, kind, requestID string) error {
	if _, err := s.writer.ExecContext(ctx, `UPDATE auth SET active = 0 WHERE kind = ? AND request_id = ?`, kind, requestID); err != nil {
		return fmt.Errorf("sqlite: auth: %w", err)
	}
	return nil
}

func (s *Store) DeleteGrant(ctx context.Context, kind, requestID string) error {
	if _, err := s.writer.ExecContext(ctx, `DELETE FROM auth WHERE kind = ? AND request_id = ?`, kind, requestID); err != nil {
		return fmt.Errorf("sqlite: auth: %w", err)
	}
	return nil
}

func (s *Store) ListAuth(ctx context.Context, kind, subject string) ([]store.AuthRecord, error) {
	cond, now := unexpired(time.Now())
	q := `SELECT key, request_id, subject, active, expires_at, data FROM auth WHERE kind = ? AND ` + cond
	args := []any{kind, now}
	if subject != "" {
		q += ` AND subject = ?`
		args = append(args, subject)
	}
	rows, err := s.reader.QueryContext(ctx, q+` ORDER BY key`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: auth: %w", err)
	}
	defer rows.Close()
	var out []store.AuthRecord
	for rows.Next() {
		rec := store.AuthRecord{Kind: kind}
		var exp int64
		if err := rows.Scan(&rec.Key, &rec.RequestID, &rec.Subject, &rec.Active, &exp, &rec.Data); err != nil {
			return nil, fmt.Errorf("sqlite: auth: %w", err)
		}
		if exp != 0 {
			rec.ExpiresAt = time.UnixMilli(exp).UTC()
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}
