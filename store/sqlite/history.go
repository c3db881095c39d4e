package sqlite

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/hearth-fhir/hearth/store"
)

// History pages through versions newest first. The cursor pins the highest
// sequence number seen by the first page (the snapshot) and the last one
// served, so concurrent writes never shift or repeat entries across pages.
func (s *Store) History(ctx context.Context, q store.HistoryQuery) (store.HistoryPage, error) {
	var snapshot, before int64
	if q.Cursor != "" {
		var err error
		snapshot, before, err = parseCursor(q.Cursor)
		if err != nil {
			return store.HistoryPage{}, err
		}
	} else {
		if err := s.reader.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM versions`).Scan(&snapshot); err != nil {
			return store.HistoryPage{}, fmt.Errorf("sqlite: history: %w", err)
		}
		before = snapshot + 1
	}
	where := []string{"seq <= ?"}
	args := []any{snapshot}
	if q.Type != "" {
		where = append(where, "type = ?")
		args = append(args, q.Type)
	}
	if q.ID != "" {
		where = append(where, "id = ?")
		args = append(args, q.ID)
	}
	if !q.Since.IsZero() {
		where = append(where, "last_updated >= ?")
		args = append(args, q.Since.UnixMilli())
	}
	cond := strings.Join(where, " AND ")
	var page store.HistoryPage
	if err := s.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM versions WHERE `+cond, args...).Scan(&page.Total); err != nil {
		return store.HistoryPage{}, fmt.Errorf("sqlite: history count: %w", err)
	}
	count := q.Count
	if count <= 0 {
		count = 50
	}
	rows, err := s.reader.QueryContext(ctx, `SELECT seq, type, id, version, last_updated, op, json FROM versions WHERE `+cond+` AND seq < ? ORDER BY seq DESC LIMIT ?`,
		append(args, before, count+1)...)
	if err != nil {
		return store.HistoryPage{}, fmt.Errorf("sqlite: history: %w", err)
	}
	defer rows.Close()
	var lastSeq int64
	for rows.Next() {
		var (
			seq, version, lu int64
			typ, id, op      string
			body             []byte
		)
		if err := rows.Scan(&seq, &typ, &id, &version, &lu, &op, &body); err != nil {
			return store.HistoryPage{}, fmt.Errorf("sqlite: history: %w", err)
		}
		if len(page.Versions) == count {
			page.Next = fmt.Sprintf("%d.%d", snapshot, lastSeq)
			break
		}
		page.Versions = append(page.Versions, makeResource(typ, id, version, lu, op, body))
		lastSeq = seq
	}
	return page, rows.Err()
}

func parseCursor(c string) (snapshot, before int64, err error) {
	a, b, ok := strings.Cut(c, ".")
	if ok {
		snapshot, err = strconv.ParseInt(a, 10, 64)
		if err == nil {
			before, err = strconv.ParseInt(b, 10, 64)
		}
	}
	if !ok || err != nil || snapshot < 0 || before < 0 {
		return 0, 0, fmt.Errorf("history cursor %q: %w", c, store.ErrInvalidCursor)
	}
	return snapshot, before, nil
}
