package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Backup writes a consistent copy of the store in dir to the file out,
// while a server may be using it: VACUUM INTO reads one snapshot of the
// database (WAL readers never block the writer nor see half a commit) and
// writes it compacted. It takes no lock on dir; out must not exist.
func Backup(ctx context.Context, dir, out string) error {
	path := filepath.Join(dir, dbFile)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("sqlite: backup: no database in %s: %w", dir, err)
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("sqlite: backup: %s exists", out)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, out); err != nil {
		os.Remove(out)
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	return Verify(ctx, out)
}

// Verify checks a backup: SQLite's integrity check passes and the schema
// is one this version of Hearth can open (migrating it if older).
func Verify(ctx context.Context, file string) error {
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		return fmt.Errorf("sqlite: verify: %w", err)
	}
	defer db.Close()
	var result string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&result); err != nil {
		return fmt.Errorf("sqlite: verify %s: %w", file, err)
	}
	if result != "ok" {
		return fmt.Errorf("sqlite: verify %s: integrity check: %s", file, result)
	}
	var v, tables int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return fmt.Errorf("sqlite: verify %s: %w", file, err)
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('current', 'versions', 'auth')`).Scan(&tables); err != nil {
		return fmt.Errorf("sqlite: verify %s: %w", file, err)
	}
	if tables != 3 || v < 1 || v > schemaVersion {
		return fmt.Errorf("sqlite: verify %s: not a Hearth database this version can open (schema %d)", file, v)
	}
	return nil
}

// Restore replaces the store in dir with the backup from, after verifying
// it. dir must not be in use (its lock is taken); an existing database is
// replaced only with replace. The backup is copied beside the database
// and renamed over it, so an interrupted restore leaves the old one.
func Restore(ctx context.Context, dir, from string, replace bool) error {
	if err := Verify(ctx, from); err != nil {
		return err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	path := filepath.Join(dir, dbFile)
	if _, err := os.Stat(path); err == nil && !replace {
		return fmt.Errorf("sqlite: restore: %s holds a database; pass --replace to replace it", dir)
	}
	tmp := path + ".restoring"
	if err := copyFile(from, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("sqlite: restore: %w", err)
	}
	// The old database's log belongs to it, not to the restored one.
	for _, f := range []string{path + "-wal", path + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sqlite: restore: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("sqlite: restore: %w", err)
	}
	return syncDir(dir)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
