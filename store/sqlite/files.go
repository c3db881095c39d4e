package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/store"
)

// Files live as plain files under DIR/files, beside the database: large
// exports stream to disk without growing the database or its WAL. The
// table files is what makes a file exist: a file is written to a
// temporary name, synced, renamed into place, and only then recorded, so
// a crash at any point leaves it whole or absent.
const filesSchema = `
CREATE TABLE IF NOT EXISTS files (name TEXT PRIMARY KEY, size INTEGER NOT NULL, expires INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS files_expires ON files (expires);
`

const filesDir = "files"

var _ store.Files = (*Store)(nil)

// filePath maps a file name to its path, refusing names that would leave
// the files directory.
func (s *Store) filePath(name string) (string, error) {
	clean := filepath.Clean("/" + name)
	if name == "" || clean != "/"+name || strings.Contains(name, "\x00") || strings.HasPrefix(filepath.Base(name), ".") {
		return "", fmt.Errorf("sqlite: file name %q", name)
	}
	return filepath.Join(s.dir, filesDir, filepath.FromSlash(name)), nil
}

func (s *Store) PutFile(ctx context.Context, name string, r io.Reader, expires time.Time) (int64, error) {
	path, err := s.filePath(name)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return 0, err
	}
	suffix := make([]byte, 8)
	rand.Read(suffix)
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+hex.EncodeToString(suffix))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	_, err = s.writer.ExecContext(ctx, `INSERT INTO files (name, size, expires) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET size = excluded.size, expires = excluded.expires`, name, n, expires.UnixMilli())
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (s *Store) OpenFile(ctx context.Context, name string) (io.ReadCloser, error) {
	path, err := s.filePath(name)
	if err != nil {
		return nil, store.ErrNotFound
	}
	var expires int64
	err = s.reader.QueryRowContext(ctx, `SELECT expires FROM files WHERE name = ?`, name).Scan(&expires)
	if errors.Is(err, sql.ErrNoRows) || err == nil && expires <= time.Now().UnixMilli() {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, store.ErrNotFound
	}
	return f, err
}

// deleteWhere deletes the files a condition on the table selects.
func (s *Store) deleteWhere(ctx context.Context, cond string, args ...any) (int, error) {
	rows, err := s.writer.QueryContext(ctx, `DELETE FROM files WHERE `+cond+` RETURNING name`, args...)
	if err != nil {
		return 0, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return 0, err
		}
		names = append(names, n)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}
	for _, n := range names {
		if path, err := s.filePath(n); err == nil {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return 0, err
			}
		}
	}
	return len(names), nil
}

func (s *Store) DeleteFiles(ctx context.Context, prefix string) error {
	// A range, not LIKE: a prefix may hold % and _.
	_, err := s.deleteWhere(ctx, `name >= ? AND name < ?`, prefix, prefix+"\U0010FFFF")
	return err
}

func (s *Store) PruneFiles(ctx context.Context, t time.Time) (int, error) {
	n, err := s.deleteWhere(ctx, `expires < ?`, t.UnixMilli())
	if err != nil {
		return n, err
	}
	// What a crash left half-written: temporary files an hour old.
	err = filepath.WalkDir(filepath.Join(s.dir, filesDir), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		if info, err := d.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
			os.Remove(path)
		}
		return nil
	})
	return n, err
}
