// Package sqlite is Hearth's embedded store: one SQLite database file
// (modernc.org/sqlite, pure Go) in WAL mode with synchronous=FULL, so an
// acknowledged write survives a crash or kill -9.
//
// Layout: `versions` keeps every version (history, vread) in write order;
// `current` keeps the latest version of each resource (read, search);
// `token_index` holds the token search keys of current versions, extracted at
// write time. Writes are serialised by one writer connection; reads use a
// pool of read-only connections and a cache of current versions that the
// writer invalidates after each commit. The data directory is locked so that
// only one process opens it.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/hearth-fhir/hearth/fhir"
	"github.com/hearth-fhir/hearth/store"
)

// dbFile is the database's name in its data directory.
const dbFile = "hearth.db"

// schemaVersion is stored in PRAGMA user_version. Version 2 made the
// search indexes covering (the columns a probe tests are in the index, so a
// probe never visits the table); version 3 added idx_token_patient. Opening
// an older database rebuilds or fills what changed.
const schemaVersion = 3

// coveringIndexes are the indexes version 2 redefined.
var coveringIndexes = []string{"idx_string_value", "idx_string_owner", "idx_token_value", "idx_token_owner",
	"idx_ref_value", "idx_ref_owner", "idx_date_value", "idx_date_owner", "compartment_owner"}

const schema = `
CREATE TABLE IF NOT EXISTS versions (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	type         TEXT    NOT NULL,
	id           TEXT    NOT NULL,
	version      INTEGER NOT NULL,
	last_updated INTEGER NOT NULL, -- Unix milliseconds, UTC
	op           TEXT    NOT NULL,
	json         BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS versions_by_resource ON versions (type, id, version);
CREATE INDEX IF NOT EXISTS versions_by_type ON versions (type, seq);
-- OAuth state (store.AuthRecord); expires_at is Unix milliseconds, 0 = never.
CREATE TABLE IF NOT EXISTS auth (
	kind       TEXT    NOT NULL,
	key        TEXT    NOT NULL,
	request_id TEXT    NOT NULL,
	subject    TEXT    NOT NULL,
	active     INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	data       BLOB,
	PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS auth_by_grant ON auth (kind, request_id);
CREATE INDEX IF NOT EXISTS auth_by_subject ON auth (kind, subject, key);
CREATE TABLE IF NOT EXISTS current (
	type         TEXT    NOT NULL,
	id           TEXT    NOT NULL,
	version      INTEGER NOT NULL,
	last_updated INTEGER NOT NULL,
	op           TEXT    NOT NULL,
	json         BLOB,
	UNIQUE (type, id)
);
CREATE TABLE IF NOT EXISTS idx_string (type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_string_value ON idx_string (type, param, norm, id);
CREATE INDEX IF NOT EXISTS idx_string_owner ON idx_string (type, id, param, norm);
CREATE TABLE IF NOT EXISTS idx_token (type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_token_value ON idx_token (type, param, code, system, id);
CREATE INDEX IF NOT EXISTS idx_token_owner ON idx_token (type, id, param, code, system);
CREATE TABLE IF NOT EXISTS idx_ref (type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, target_type TEXT NOT NULL, target_id TEXT NOT NULL, url TEXT NOT NULL, ident_system TEXT NOT NULL, ident_value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_ref_value ON idx_ref (type, param, target_id, target_type, id);
CREATE INDEX IF NOT EXISTS idx_ref_url ON idx_ref (type, param, url);
CREATE INDEX IF NOT EXISTS idx_ref_owner ON idx_ref (type, id, param, target_type, target_id);
CREATE INDEX IF NOT EXISTS idx_ref_target ON idx_ref (target_id, target_type);
CREATE TABLE IF NOT EXISTS idx_date (type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS idx_date_value ON idx_date (type, param, lo, hi, id);
CREATE INDEX IF NOT EXISTS idx_date_owner ON idx_date (type, id, param, lo, hi);
CREATE TABLE IF NOT EXISTS idx_number (type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, value REAL NOT NULL);
CREATE INDEX IF NOT EXISTS idx_number_value ON idx_number (type, param, value);
CREATE INDEX IF NOT EXISTS idx_number_owner ON idx_number (type, id);
CREATE TABLE IF NOT EXISTS idx_quantity (type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, value REAL NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, unit TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_quantity_value ON idx_quantity (type, param, value);
CREATE INDEX IF NOT EXISTS idx_quantity_owner ON idx_quantity (type, id);
CREATE TABLE IF NOT EXISTS idx_uri (type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, uri TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_uri_value ON idx_uri (type, param, uri);
CREATE INDEX IF NOT EXISTS idx_uri_owner ON idx_uri (type, id);
CREATE TABLE IF NOT EXISTS idx_composite (type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, a_system TEXT NOT NULL, a_code TEXT NOT NULL,
	b_system TEXT NOT NULL, b_code TEXT NOT NULL, b_unit TEXT NOT NULL, b_lo REAL NOT NULL, b_hi REAL NOT NULL);
CREATE INDEX IF NOT EXISTS idx_composite_value ON idx_composite (type, param, a_code, a_system);
CREATE INDEX IF NOT EXISTS idx_composite_owner ON idx_composite (type, id);
CREATE TABLE IF NOT EXISTS idx_token_patient (type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, patient_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_token_patient_value ON idx_token_patient (patient_id, type, param, code, system, id);
CREATE INDEX IF NOT EXISTS idx_token_patient_owner ON idx_token_patient (type, id);
CREATE TABLE IF NOT EXISTS compartment (patient_id TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS compartment_members ON compartment (patient_id, type, id);
CREATE INDEX IF NOT EXISTS compartment_owner ON compartment (type, id, patient_id);
CREATE TABLE IF NOT EXISTS search_snapshots (token TEXT PRIMARY KEY, expires INTEGER NOT NULL, ids BLOB NOT NULL);
`

// Store is the SQLite backend. It implements store.Store.
type Store struct {
	dir    string  // the data directory
	writer *sql.DB // exactly one connection: SQLite has one writer
	reader *sql.DB // read-only pool
	lock   *os.File
	// closing makes a second Close a no-op.
	closing atomic.Bool

	writeMu  sync.Mutex
	lastTime time.Time // last lastUpdated assigned; keeps history ordered
	cache    *cache
	readStmt *sql.Stmt
	authStmt *sql.Stmt // GetAuth: every API request checks its token
	searches *stmtCache
	auditIDs auditIDs
	// nextBlock is the number the next audit block gets (under writeMu).
	nextBlock int64
	kept      map[string]*sql.Stmt // the writer's statements of every transaction, prepared once (tx.execKept)

	// checkpointer copies committed WAL frames into the database file in
	// the background, so that a commit never pays for it (SQLite's
	// automatic checkpoint ran inside the committing write: 12% of ingest).
	checkpointer *sql.DB
	stop         chan struct{}
	stopped      chan struct{}
}

var _ store.Store = (*Store)(nil)

// Options tune the store; the zero value is a sensible default.
type Options struct {
	// CacheEntries bounds the read cache of current versions (0: 100,000).
	CacheEntries int
}

// lockDir creates dir if needed and takes its exclusive lock, held until
// the returned file is closed: a second process gets store.ErrLocked.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: data directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: lock file: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", dir, store.ErrLocked)
	}
	return lock, nil
}

// Open opens (creating if needed) the store in dir, taking an exclusive
// lock on it: a second process gets store.ErrLocked.
func Open(dir string, opts Options) (*Store, error) {
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	// Whatever is opened is closed again, newest first, if Open fails.
	opened := []io.Closer{lock}
	ok := false
	defer func() {
		for i := len(opened) - 1; i >= 0 && !ok; i-- {
			opened[i].Close()
		}
	}()
	path := filepath.Join(dir, dbFile)
	// A 64 MiB page cache per connection and memory-mapped reads keep index
	// pages out of read(2) calls; synchronous=FULL makes every commit durable.
	// Checkpoints run in the background (see checkpoint), not in commits.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(OFF)" +
		"&_pragma=cache_size(-65536)&_pragma=mmap_size(1073741824)&_pragma=temp_store(MEMORY)&_pragma=wal_autocheckpoint(0)"
	// The writer takes the write lock when its transaction begins
	// (IMMEDIATE), waiting out a checkpoint that holds it: a deferred
	// transaction that began reading before a checkpoint reset the WAL could
	// not then write (SQLITE_BUSY_SNAPSHOT, which no busy timeout retries).
	//
	// The writer's own page cache is small (4 MiB): what it holds beyond
	// the hot index pages are a transaction's dirty pages, which SQLite
	// spills to the WAL once the cache is full, and the index pages it
	// reads come from the memory-mapped file. At 16 MiB it cost a large
	// transaction 22 MiB more memory; importing 250,000 resources took
	// 174 s against 181 s at 4 MiB (two runs each, within their spread).
	writer, err := sql.Open("sqlite", strings.Replace(dsn, "cache_size(-65536)", "cache_size(-4096)", 1)+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	opened = append(opened, writer)
	writer.SetMaxOpenConns(1)
	if err := migrate(writer); err != nil {
		return nil, fmt.Errorf("sqlite: migrate: %w", err)
	}
	if _, err := writer.Exec(schema); err != nil {
		return nil, fmt.Errorf("sqlite: schema: %w", err)
	}
	if _, err := writer.Exec(filesSchema); err != nil {
		return nil, fmt.Errorf("sqlite: files schema: %w", err)
	}
	if _, err := writer.Exec(auditSchema); err != nil {
		return nil, fmt.Errorf("sqlite: audit schema: %w", err)
	}
	auditIDs, err := loadAuditIDs(writer)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit trail: %w", err)
	}
	if err := migrateAudit(writer, auditIDs); err != nil {
		return nil, fmt.Errorf("sqlite: migrate the audit trail: %w", err)
	}
	nextBlock, err := nextAuditBlock(context.Background(), writer)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit trail: %w", err)
	}
	reader, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open reader: %w", err)
	}
	opened = append(opened, reader)
	// Each connection has its own page cache: a few connections, each
	// serving many queries, keep the hot index pages cached (on a 2-core
	// machine 3 readers served patient-scoped searches 60% faster than 8).
	readers := runtime.GOMAXPROCS(0) + 1
	reader.SetMaxOpenConns(readers)
	reader.SetMaxIdleConns(readers)
	readStmt, err := reader.Prepare(`SELECT version, last_updated, op, json FROM current WHERE type = ? AND id = ?`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: prepare: %w", err)
	}
	opened = append(opened, readStmt)
	authStmt, err := reader.Prepare(`SELECT request_id, subject, active, expires_at, data FROM auth WHERE kind = ? AND key = ? AND (expires_at = 0 OR expires_at > ?)`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: prepare: %w", err)
	}
	opened = append(opened, authStmt)
	kept := map[string]*sql.Stmt{}
	for _, q := range []string{insertAuditBlock, insertAuditKey} {
		st, err := writer.Prepare(q)
		if err != nil {
			return nil, fmt.Errorf("sqlite: prepare: %w", err)
		}
		opened = append(opened, st)
		kept[q] = st
	}
	checkpointer, err := sql.Open("sqlite", strings.Replace(dsn, "cache_size(-65536)", "cache_size(-2048)", 1))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	checkpointer.SetMaxOpenConns(1)
	n := opts.CacheEntries
	if n == 0 {
		n = 100_000
	}
	s := &Store{dir: dir, writer: writer, reader: reader, lock: lock, cache: newCache(n), readStmt: readStmt, authStmt: authStmt, searches: newStmtCache(reader), kept: kept, auditIDs: auditIDs, nextBlock: nextBlock,
		checkpointer: checkpointer, stop: make(chan struct{}), stopped: make(chan struct{})}
	go s.checkpoint()
	ok = true
	return s, nil
}

// checkpointEvery is how often the background checkpoint runs; between two
// runs the WAL grows by at most what the writer commits meanwhile.
const checkpointEvery = 200 * time.Millisecond

// maxWALFrames bounds the WAL (64 MiB of 4 KiB pages, checked every run):
// under a steady stream of writes passive checkpoints never catch up with
// the writer, so past this a checkpoint waits for the current write to
// finish, copies everything and truncates the log.
const maxWALFrames = 16384

// checkpoint runs passive checkpoints (they never block the writer or the
// readers) until Close, and a truncating one when the WAL grows too long.
func (s *Store) checkpoint() {
	defer close(s.stopped)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			var busy, frames, copied int
			if err := s.checkpointer.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
				continue
			}
			if frames > maxWALFrames {
				s.checkpointer.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
			}
		}
	}
}

// Close closes the database and releases the directory lock; closing a
// closed store does nothing.
func (s *Store) Close() error {
	if !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	close(s.stop)
	<-s.stopped
	s.readStmt.Close()
	s.authStmt.Close()
	s.searches.close()
	for _, st := range s.kept {
		st.Close()
	}
	err := errors.Join(s.reader.Close(), s.checkpointer.Close(), s.writer.Close())
	s.lock.Close()
	return err
}

func cacheKey(typ, id string) string { return typ + "/" + id }

// Read serves the current version from the cache or the database.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	key := cacheKey(typ, id)
	if r, ok := s.cache.get(key); ok {
		return r, readErr(r)
	}
	gen := s.cache.generation()
	var (
		version int64
		lu      int64
		op      string
		body    []byte
	)
	err := s.readStmt.QueryRowContext(ctx, typ, id).Scan(&version, &lu, &op, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Resource{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
	}
	if err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: read: %w", err)
	}
	r := makeResource(typ, id, version, lu, op, body)
	s.cache.putIfGeneration(key, r, gen)
	return r, readErr(r)
}

func readErr(r store.Resource) error {
	if r.Deleted {
		return fmt.Errorf("%s/%s: %w", r.Type, r.ID, store.ErrGone)
	}
	return nil
}

func makeResource(typ, id string, version, lu int64, op string, body []byte) store.Resource {
	return store.Resource{
		Type: typ, ID: id, VersionID: version,
		LastUpdated: time.UnixMilli(lu).UTC(),
		Op:          store.Op(op), Deleted: op == string(store.OpDelete),
		JSON: body,
	}
}

// VRead returns one version; a deletion version is returned with ErrGone.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (store.Resource, error) {
	var (
		lu   int64
		op   string
		body []byte
	)
	err := s.reader.QueryRowContext(ctx, `SELECT last_updated, op, json FROM versions WHERE type = ? AND id = ? AND version = ?`, typ, id, version).Scan(&lu, &op, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Resource{}, fmt.Errorf("%s/%s/_history/%d: %w", typ, id, version, store.ErrNotFound)
	}
	if err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: vread: %w", err)
	}
	r := makeResource(typ, id, version, lu, op, body)
	return r, readErr(r)
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Transact runs fn inside one SQLite transaction on the writer connection.
func (s *Store) Transact(ctx context.Context, fn func(store.Tx) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	sqlTx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	t := &tx{s: s, tx: sqlTx, now: s.nextTime()}
	if err := fn(t); err != nil {
		sqlTx.Rollback()
		return err
	}
	if err := t.flushIndex(ctx); err != nil {
		sqlTx.Rollback()
		return fmt.Errorf("sqlite: index: %w", err)
	}
	if err := t.flushAudit(ctx); err != nil {
		sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	if t.auditUsed > 0 {
		s.nextBlock = t.auditUsed + 1
	}
	s.lastTime = t.now
	// Invalidate after the commit, so no reader can cache a version older
	// than the one just written.
	s.cache.invalidate(t.touched)
	return nil
}

// nextTime returns the lastUpdated for the next transaction: now, but never
// before the previous one, so history order and _since agree.
func (s *Store) nextTime() time.Time {
	now := time.Now().UTC().Truncate(time.Millisecond)
	if now.Before(s.lastTime) {
		now = s.lastTime
	}
	return now
}

type tx struct {
	s       *Store
	tx      *sql.Tx
	now     time.Time
	touched []string
	stmts   map[string]*sql.Stmt
	pending map[string][]any // queued index rows, by table
	queued  int              // values in pending
	// audit is the transaction's block of audit records, written as it
	// commits, with block number auditSeq.
	audit     blockBuilder
	auditSeq  int64
	auditUsed int64 // the last block written, once one is
}

// exec runs a statement prepared once per transaction: bulk loads write
// dozens of index rows per resource.
func (t *tx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, ok := t.stmts[query]
	if !ok {
		var err error
		st, err = t.tx.PrepareContext(ctx, query)
		if err != nil {
			return nil, err
		}
		if t.stmts == nil {
			t.stmts = map[string]*sql.Stmt{}
		}
		t.stmts[query] = st
	}
	return st.ExecContext(ctx, args...)
}

// execKept runs one of the writer's kept statements: prepared on its one
// connection when the store opened, so no transaction parses it again.
func (t *tx) execKept(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, ok := t.stmts[query]
	if !ok {
		kept, ok := t.s.kept[query]
		if !ok {
			return t.exec(ctx, query, args...)
		}
		// Bound to this transaction once: each binding is held until the
		// transaction ends (a 10,000-entry transaction made 40,000).
		st = t.tx.StmtContext(ctx, kept)
		if t.stmts == nil {
			t.stmts = map[string]*sql.Stmt{}
		}
		t.stmts[query] = st
	}
	return st.ExecContext(ctx, args...)
}

func (t *tx) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	var (
		version int64
		lu      int64
		op      string
		body    []byte
	)
	err := t.tx.QueryRowContext(ctx, `SELECT version, last_updated, op, json FROM current WHERE type = ? AND id = ?`, typ, id).Scan(&version, &lu, &op, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Resource{}, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
	}
	if err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: read: %w", err)
	}
	r := makeResource(typ, id, version, lu, op, body)
	return r, readErr(r)
}

// Search runs inside the transaction, so a conditional write sees the
// writes made before it in the same transaction.
func (t *tx) Search(ctx context.Context, q *fhir.SearchQuery, limit int) ([]store.Resource, error) {
	if err := t.flushIndex(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: index: %w", err)
	}
	ids, err := searchIDs(ctx, t.tx, q, "", limit)
	if err != nil {
		return nil, err
	}
	out := make([]store.Resource, 0, len(ids))
	for _, id := range ids {
		r, err := t.Read(ctx, q.Type, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (t *tx) Create(ctx context.Context, w store.Write) (store.Resource, error) {
	if w.ID == "" {
		w.ID = store.NewID()
	} else if _, err := t.Read(ctx, w.Type, w.ID); store.CreateCheck(w, err) != nil {
		return store.Resource{}, store.CreateCheck(w, err)
	}
	return t.put(ctx, w, 1, store.OpCreate)
}

func (t *tx) Update(ctx context.Context, w store.Write) (store.Resource, bool, error) {
	cur, err := t.Read(ctx, w.Type, w.ID)
	version, op, created, err := store.NextVersion(w, cur, err)
	if err != nil {
		return store.Resource{}, false, err
	}
	r, err := t.put(ctx, w, version, op)
	return r, created, err
}

func (t *tx) Delete(ctx context.Context, typ, id string, ifMatch int64) (store.Resource, error) {
	cur, err := t.Read(ctx, typ, id)
	version, done, err := store.DeleteVersion(typ, id, ifMatch, cur, err)
	if err != nil || done {
		return cur, err
	}
	return t.put(ctx, store.Write{Type: typ, ID: id}, version, store.OpDelete)
}

// put writes one version: the history row, the current row and the index.
func (t *tx) put(ctx context.Context, w store.Write, version int64, op store.Op) (store.Resource, error) {
	var body []byte
	var ix fhir.Index
	if op != store.OpDelete {
		var err error
		if body, ix, err = store.StampAndIndex(w, version, t.now); err != nil {
			return store.Resource{}, fmt.Errorf("sqlite: %w", err)
		}
	}
	lu := t.now.UnixMilli()
	if _, err := t.exec(ctx, `INSERT INTO versions (type, id, version, last_updated, op, json) VALUES (?, ?, ?, ?, ?, ?)`,
		w.Type, w.ID, version, lu, string(op), body); err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: insert version: %w", err)
	}
	if _, err := t.exec(ctx, `INSERT INTO current (type, id, version, last_updated, op, json) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated, op = excluded.op, json = excluded.json`,
		w.Type, w.ID, version, lu, string(op), body); err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: upsert current: %w", err)
	}
	if err := t.writeIndex(ctx, w.Type, w.ID, version > 1, ix); err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: index: %w", err)
	}
	t.touched = append(t.touched, cacheKey(w.Type, w.ID))
	return makeResource(w.Type, w.ID, version, lu, string(op), body), nil
}

// migrate drops the indexes an older schema defined differently; the schema
// then creates them afresh. On a large database this takes minutes, once.
func migrate(db *sql.DB) error {
	var v int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		return err
	}
	if v >= schemaVersion {
		return nil
	}
	if v < 2 {
		for _, name := range coveringIndexes {
			if _, err := db.Exec(`DROP INDEX IF EXISTS ` + name); err != nil {
				return err
			}
		}
	}
	if _, err := db.Exec(schema); err != nil {
		return err
	}
	if v < 3 {
		// The token keys of every resource, once per patient it refers to
		// (see patientsOf), from the index tables version 2 already has.
		_, err := db.Exec(`INSERT INTO idx_token_patient (type, id, param, system, code, patient_id)
			SELECT t.type, t.id, t.param, t.system, t.code, p.patient_id FROM (
				SELECT type, id, patient_id FROM compartment
				UNION SELECT type, id, target_id FROM idx_ref WHERE target_type IN ('Patient', '') AND target_id <> ''
			) p JOIN idx_token t INDEXED BY idx_token_owner ON t.type = p.type AND t.id = p.id WHERE p.type <> 'Patient'`)
		if err != nil {
			return err
		}
	}
	_, err := db.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, schemaVersion))
	return err
}
