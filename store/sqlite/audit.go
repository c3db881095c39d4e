package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hearth-fhir/hearth/store"
)

// The audit trail is kept in blocks: a transaction's records (a group of
// the trail's, or a write's own), up to maxBlockRecords, are one row of
// audit_block, encoded together (blockBuilder), and audit_block_key has
// one row per patient, agent and entity a block names. The trail appends
// a record for every request: a row and index entries per record cost
// more than serving the request (35 µs a record against 29); a block
// costs a few µs a record.
//
// A search finds the blocks by key and time, decodes the records of each
// that can match (keyFilter) and keeps those that do. Blocks overlap in
// time (a write's block can land inside a group's window), so records are
// merged into recorded order as the blocks are read (auditMerge).
//
// A record's id is its block and place in it, enciphered with the
// store's own key (auditIDs): opaque, so that ids tell no one how much
// else was recorded between two of their own records, and found without
// an index. Block numbers are never given twice, even after pruning
// (AUTOINCREMENT keeps the highest). A Patient among the entities is
// keyed as the patient: every patient is an entity of the AuditEvent
// (with role patient).
const auditSchema = `
CREATE TABLE IF NOT EXISTS audit_block (
	seq      INTEGER PRIMARY KEY AUTOINCREMENT,
	earliest INTEGER NOT NULL, -- recorded (ms) of its earliest record
	latest   INTEGER NOT NULL, -- and of its latest
	records  BLOB    NOT NULL  -- the records: their count, then each (blockBuilder.add)
);
CREATE INDEX IF NOT EXISTS audit_block_earliest ON audit_block (earliest);
CREATE INDEX IF NOT EXISTS audit_block_latest ON audit_block (latest);
CREATE TABLE IF NOT EXISTS audit_id_key (
	one INTEGER PRIMARY KEY CHECK (one = 1),
	key BLOB    NOT NULL -- AES-128: ids are enciphered (block, place)
);
CREATE TABLE IF NOT EXISTS audit_block_key (
	key TEXT    NOT NULL, -- kind (p patient, a agent, e entity), then the value
	seq INTEGER NOT NULL, -- a block with a record that has it
	PRIMARY KEY (key, seq)
) WITHOUT ROWID;
`

// migrateAudit moves the records of the first audit schema (tables audit
// and audit_key, a row each, keyed by id) into blocks of 1,000.
func migrateAudit(db *sql.DB, ids auditIDs) error {
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit'`).Scan(&n); err != nil || n == 0 {
		return err
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.Query(`SELECT id, recorded, type, subtype, action, outcome, json,
		(SELECT group_concat(kind || value, char(30)) FROM audit_key k WHERE k.id = a.id) FROM audit a ORDER BY recorded, id`)
	if err != nil {
		return err
	}
	var recs []store.AuditRecord
	for rows.Next() {
		var r store.AuditRecord
		var ms int64
		var keys sql.NullString
		if err := rows.Scan(&r.ID, &ms, &r.Type, &r.Subtype, &r.Action, &r.Outcome, &r.Data, &keys); err != nil {
			rows.Close()
			return err
		}
		r.Recorded = time.UnixMilli(ms).UTC()
		for k := range strings.SplitSeq(keys.String, "\x1e") {
			switch {
			case strings.HasPrefix(k, "p"):
				r.Patients = append(r.Patients, k[1:])
			case strings.HasPrefix(k, "a"):
				r.Agents = append(r.Agents, k[1:])
			case strings.HasPrefix(k, "e"):
				r.Entities = append(r.Entities, k[1:])
			}
		}
		recs = append(recs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	ctx := context.Background()
	for chunk := range slices.Chunk(recs, maxBlockRecords) {
		seq, err := nextAuditBlock(ctx, tx)
		if err != nil {
			return err
		}
		if err := appendBlock(ctx, plainTx{tx}, ids, seq, chunk); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(`DROP TABLE audit_key; DROP TABLE audit`); err != nil {
		return err
	}
	return tx.Commit()
}

// plainTx appends in a transaction of its own (the migration's).
type plainTx struct{ *sql.Tx }

func (t plainTx) execKept(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.ExecContext(ctx, query, args...)
}

var _ store.AuditLog = (*Store)(nil)

// AppendAudit writes records in a transaction of their own.
func (s *Store) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	return s.Transact(ctx, func(t store.Tx) error { return t.AppendAudit(ctx, recs) })
}

// AppendAudit adds records to this transaction's block, written when it
// commits (or when full): a transaction's records are one block, however
// many entries of a bundle appended theirs, up to maxBlockRecords. Their
// ids are given at once: the block's number is known, the writer's lock
// being held.
func (t *tx) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	if t.auditSeq == 0 {
		t.auditSeq = t.s.nextBlock
	}
	if t.audit.n == 0 && len(recs) > 1 {
		// Room for the group at once, rather than doubling up to it.
		t.audit.grow(min(len(recs), maxBlockRecords) * (len(recs[0].Data) + 160))
	}
	for i := range recs {
		if t.audit.n == maxBlockRecords {
			// A full block is written at once: a transaction holds at
			// most one block's records.
			if err := t.flushAudit(ctx); err != nil {
				return err
			}
			t.audit = blockBuilder{}
			t.auditSeq++ // numbers are given here alone: the writer's lock is held
		}
		recs[i].ID = t.s.auditIDs.id(t.auditSeq, t.audit.n)
		t.audit.add(recs[i])
	}
	return nil
}

// maxBlockRecords bounds a block: what a search decodes to find one
// record, and what a transaction holds.
const maxBlockRecords = 1000

// flushAudit writes the transaction's block; the store's next block
// number moves past it once the transaction commits.
func (t *tx) flushAudit(ctx context.Context) error {
	if t.audit.n > 0 {
		t.auditUsed = t.auditSeq
	}
	return t.audit.write(ctx, t, t.auditSeq)
}

// nextAuditBlock is the number the next block gets: past every number
// ever given (AUTOINCREMENT keeps the highest, even once pruned). The
// store reads it when it opens and keeps it (Store.nextBlock): it is
// the one writer.
func nextAuditBlock(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (int64, error) {
	var seq int64
	err := q.QueryRowContext(ctx, `SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit_block'), 0),
		coalesce((SELECT max(seq) FROM audit_block), 0)) + 1`).Scan(&seq)
	return seq, err
}

// The statements of an append, prepared once for the store's life (the
// writer's keptStmts): every write appends its record, and parsing them
// cost as much as running them.
const (
	insertAuditBlock = `INSERT INTO audit_block (seq, earliest, latest, records) VALUES (?, ?, ?, ?)`
	insertAuditKey   = `INSERT INTO audit_block_key (key, seq) VALUES (?, ?)`
)

// appender is a transaction, as appendBlock needs it.
type appender interface {
	execKept(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// appendBlock stores records as block seq and gives each its id.
func appendBlock(ctx context.Context, tx appender, ids auditIDs, seq int64, recs []store.AuditRecord) error {
	var b blockBuilder
	for _, r := range recs {
		b.add(r)
	}
	if err := b.write(ctx, tx, seq); err != nil {
		return err
	}
	for i := range recs {
		recs[i].ID = ids.id(seq, i)
	}
	return nil
}

// blockBuilder gathers a block's records, encoded as they come (a
// 10,000-entry transaction holds 2 MB of them, not 10,000 records).
type blockBuilder struct {
	n                int
	earliest, latest int64
	records          []byte // room for the count (blockPrefix bytes), then each record
	keys             []blockKey
	seen             map[blockKey]bool
}

// blockPrefix is the room left for a block's count before its records:
// the most a uvarint takes, so that write need not copy the records.
const blockPrefix = binary.MaxVarintLen64

// grow makes room for n more bytes of records.
func (b *blockBuilder) grow(n int) {
	if b.records == nil {
		b.records = make([]byte, blockPrefix, blockPrefix+n)
		return
	}
	b.records = slices.Grow(b.records, n)
}

// blockKey is a key of audit_block_key, kept apart until written: looking
// one up allocates nothing.
type blockKey struct {
	kind  byte
	value string
}

func (b *blockBuilder) key(kind byte, value string) {
	k := blockKey{kind, value}
	if kind == 'e' {
		if id, ok := store.EntityPatient(value); ok {
			k = blockKey{'p', id} // a Patient entity is keyed as the patient (entityKey)
		}
	}
	if !b.seen[k] {
		b.seen[k] = true
		b.keys = append(b.keys, k)
	}
}

// add encodes a record: each field as a length-prefixed string (lists
// with their length first).
func (b *blockBuilder) add(r store.AuditRecord) {
	ms := r.Recorded.UnixMilli()
	if b.n == 0 {
		b.earliest, b.latest, b.seen = ms, ms, map[blockKey]bool{}
	}
	b.n++
	b.earliest, b.latest = min(b.earliest, ms), max(b.latest, ms)
	if b.records == nil {
		b.grow(len(r.Data) + 160)
	}
	for _, p := range r.Patients {
		b.key('p', p)
	}
	for _, a := range r.Agents {
		b.key('a', a)
	}
	for _, e := range r.Entities {
		b.key('e', e)
	}
	buf := b.records
	str := func(s string) { buf = append(binary.AppendUvarint(buf, uint64(len(s))), s...) }
	list := func(l []string) {
		buf = binary.AppendUvarint(buf, uint64(len(l)))
		for _, s := range l {
			str(s)
		}
	}
	buf = binary.AppendVarint(buf, ms)
	str(r.Type)
	str(r.Subtype)
	str(r.Action)
	str(r.Outcome)
	list(r.Patients)
	list(r.Agents)
	list(r.Entities)
	b.records = append(binary.AppendUvarint(buf, uint64(len(r.Data))), r.Data...)
}

// write inserts the block, its count first, and its keys.
func (b *blockBuilder) write(ctx context.Context, tx appender, seq int64) error {
	if b.n == 0 {
		return nil
	}
	var count [blockPrefix]byte
	c := binary.PutUvarint(count[:], uint64(b.n))
	start := blockPrefix - c
	copy(b.records[start:], count[:c])
	block := b.records[start:]
	if _, err := tx.execKept(ctx, insertAuditBlock, seq, b.earliest, b.latest, block); err != nil {
		return fmt.Errorf("sqlite: audit: %w", err)
	}
	for _, k := range b.keys {
		if _, err := tx.execKept(ctx, insertAuditKey, string(k.kind)+k.value, seq); err != nil {
			return fmt.Errorf("sqlite: audit: %w", err)
		}
	}
	return nil
}

// auditIDs makes and reads record ids: a block's number and a place in
// it, enciphered as one AES block (the last four bytes zero, so that an
// id this store did not give is told apart), in hex.
type auditIDs struct{ c cipher.Block }

// loadAuditIDs reads the store's id key, made the first time.
func loadAuditIDs(db *sql.DB) (auditIDs, error) {
	key := make([]byte, 16)
	rand.Read(key)
	if _, err := db.Exec(`INSERT OR IGNORE INTO audit_id_key (one, key) VALUES (1, ?)`, key); err != nil {
		return auditIDs{}, err
	}
	if err := db.QueryRow(`SELECT key FROM audit_id_key`).Scan(&key); err != nil {
		return auditIDs{}, err
	}
	c, err := aes.NewCipher(key)
	if err != nil {
		return auditIDs{}, err
	}
	return auditIDs{c}, nil
}

func (a auditIDs) id(seq int64, i int) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(seq))
	binary.BigEndian.PutUint32(b[8:12], uint32(i))
	a.c.Encrypt(b[:], b[:])
	return hex.EncodeToString(b[:])
}

func (a auditIDs) parse(id string) (seq int64, i int, ok bool) {
	var b [16]byte
	if len(id) != 32 {
		return 0, 0, false
	}
	if _, err := hex.Decode(b[:], []byte(id)); err != nil {
		return 0, 0, false
	}
	a.c.Decrypt(b[:], b[:])
	seq, i = int64(binary.BigEndian.Uint64(b[:8])), int(binary.BigEndian.Uint32(b[8:12]))
	return seq, i, binary.BigEndian.Uint32(b[12:]) == 0 && seq > 0 && i >= 0
}

// auditKeys are the keys a record is found by, distinct: each its kind's
// letter then the value.
func auditKeys(r store.AuditRecord) []string {
	keys := make([]string, 0, len(r.Patients)+len(r.Agents)+len(r.Entities))
	add := func(k string) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	for _, p := range r.Patients {
		add("p" + p)
	}
	for _, a := range r.Agents {
		add("a" + a)
	}
	for _, e := range r.Entities {
		add(entityKey(e))
	}
	return keys
}

// entityKey keys an entity; a Patient is keyed as the patient.
func entityKey(e string) string {
	if id, ok := store.EntityPatient(e); ok {
		return "p" + id
	}
	return "e" + e
}

var errBadBlock = errors.New("sqlite: audit: a block does not decode")

// decodeBlock decodes the records of block seq that f keeps (all, for a
// nil f). A record f does not keep is skipped without being decoded: a
// patient's view reads whole blocks for the few records that are theirs.
func decodeBlock(ids auditIDs, seq int64, b []byte, f *keyFilter) ([]store.AuditRecord, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errBadBlock
	}
	b = b[k:]
	bad := false
	bytesOf := func() []byte {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			bad = true
			return nil
		}
		v := b[k : k+int(l)]
		b = b[k+int(l):]
		return v
	}
	// The lists, as views into the block, their buffers reused.
	var lists [3][][]byte
	list := func(i int) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)) {
			bad = true
			return
		}
		b = b[k:]
		lists[i] = lists[i][:0]
		for range l {
			lists[i] = append(lists[i], bytesOf())
		}
	}
	strs := func(vs [][]byte) []string {
		if len(vs) == 0 {
			return nil
		}
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = string(v)
		}
		return out
	}
	var recs []store.AuditRecord
	for i := range int(n) {
		ms, k := binary.Varint(b)
		if k <= 0 {
			return nil, errBadBlock
		}
		b = b[k:]
		typ, subtype, action, outcome := bytesOf(), bytesOf(), bytesOf(), bytesOf()
		list(0)
		list(1)
		list(2)
		data := bytesOf()
		if bad {
			return nil, errBadBlock
		}
		if f != nil && !f.keeps(lists) {
			continue
		}
		recs = append(recs, store.AuditRecord{ID: ids.id(seq, i), Recorded: time.UnixMilli(ms).UTC(), Type: string(typ), Subtype: string(subtype),
			Action: string(action), Outcome: string(outcome), Patients: strs(lists[0]), Agents: strs(lists[1]), Entities: strs(lists[2]),
			Data: slices.Clone(data)})
	}
	return recs, nil
}

// keyFilter is a search's conditions on keys (patients, agents, entities:
// every group given must have a key of the record), checked on a record's
// encoded lists.
type keyFilter struct{ groups []keySet }

// keySet is one group's keys, by kind.
type keySet struct{ p, a, e map[string]bool }

func newKeyFilter(groups ...[]string) *keyFilter {
	f := &keyFilter{}
	for _, g := range groups {
		if len(g) == 0 {
			continue
		}
		ks := keySet{p: map[string]bool{}, a: map[string]bool{}, e: map[string]bool{}}
		for _, k := range g {
			switch k[0] {
			case 'p':
				ks.p[k[1:]] = true
			case 'a':
				ks.a[k[1:]] = true
			case 'e':
				ks.e[k[1:]] = true
			}
		}
		f.groups = append(f.groups, ks)
	}
	if len(f.groups) == 0 {
		return nil
	}
	return f
}

// keeps: the record with these patients, agents and entities has a key of
// every group (a Patient entity counts as the patient, as entityKey).
func (f *keyFilter) keeps(lists [3][][]byte) bool {
	for _, g := range f.groups {
		if !g.has(lists) {
			return false
		}
	}
	return true
}

func (g keySet) has(lists [3][][]byte) bool {
	for _, v := range lists[0] {
		if g.p[string(v)] {
			return true
		}
	}
	for _, v := range lists[1] {
		if g.a[string(v)] {
			return true
		}
	}
	for _, v := range lists[2] {
		// store.EntityPatient, on bytes: a record not kept costs no string.
		if id, ok := bytes.CutPrefix(v, []byte("Patient/")); ok && !bytes.Contains(id, []byte("/")) {
			if g.p[string(id)] {
				return true
			}
			continue
		}
		if g.e[string(v)] {
			return true
		}
	}
	return false
}

// SearchAudit answers the records q selects: the blocks that can hold
// them, by key and time, in order, merged.
func (s *Store) SearchAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	return AuditReader{s.reader, s.auditIDs}.SearchAudit(ctx, q)
}

// AuditReader reads the audit trail of a data directory, even one a
// server is using (OpenAuditReader): it takes no lock and writes nothing.
type AuditReader struct {
	db  *sql.DB
	ids auditIDs
}

// OpenAuditReader opens the trail of the embedded store in dir to read.
func OpenAuditReader(dir string) (*AuditReader, error) {
	path := filepath.Join(dir, dbFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	var key []byte
	if err := db.QueryRow(`SELECT key FROM audit_id_key`).Scan(&key); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: the audit trail: %w", err)
	}
	c, err := aes.NewCipher(key)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &AuditReader{db: db, ids: auditIDs{c}}, nil
}

// Close closes the reader.
func (s *AuditReader) Close() error { return s.db.Close() }

// SearchAudit answers the records q selects, as Store.SearchAudit.
func (s AuditReader) SearchAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	var where []string
	var args []any
	keyed := func(keys []string) {
		if len(keys) == 0 {
			return
		}
		where = append(where, "seq IN (SELECT seq FROM audit_block_key WHERE key IN ("+placeholders(len(keys))+"))")
		for _, k := range keys {
			args = append(args, k)
		}
	}
	var patients, agents, entities []string
	for _, p := range q.Patients {
		patients = append(patients, "p"+p)
	}
	for _, a := range q.Agents {
		agents = append(agents, "a"+a)
	}
	for _, e := range q.Entities {
		entities = append(entities, entityKey(e))
	}
	keyed(patients)
	keyed(agents)
	keyed(entities)
	if len(q.IDs) > 0 {
		var seqs []any
		for _, id := range q.IDs {
			if seq, _, ok := s.ids.parse(id); ok {
				seqs = append(seqs, seq)
			}
		}
		if len(seqs) == 0 {
			return nil, nil
		}
		where, args = append(where, "seq IN ("+placeholders(len(seqs))+")"), append(args, seqs...)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "latest >= ?"), append(args, q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		where, args = append(where, "earliest < ?"), append(args, q.Until.UnixMilli())
	}
	var after *store.AuditRecord
	if q.After != "" {
		r, err := s.auditRecord(ctx, q.After)
		if err != nil {
			return nil, err
		}
		after = &r
		if q.Descending {
			where, args = append(where, "earliest <= ?"), append(args, r.Recorded.UnixMilli())
		} else {
			where, args = append(where, "latest >= ?"), append(args, r.Recorded.UnixMilli())
		}
	}
	query := "SELECT seq, earliest, latest, records FROM audit_block"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	if q.Descending {
		query += " ORDER BY latest DESC, seq DESC"
	} else {
		query += " ORDER BY earliest, seq"
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit search: %w", err)
	}
	defer rows.Close()
	m := auditMerge{ids: s.ids, q: q, after: after, keys: [3][]string{patients, agents, entities}}
	filter := newKeyFilter(patients, agents, entities)
	for rows.Next() && !m.full() {
		var seq, earliest, latest int64
		var block []byte
		if err := rows.Scan(&seq, &earliest, &latest, &block); err != nil {
			return nil, fmt.Errorf("sqlite: audit search: %w", err)
		}
		// Every record still to come is recorded at or after this
		// block's earliest (before its latest, newest first).
		if q.Descending {
			m.release(latest)
		} else {
			m.release(earliest)
		}
		recs, err := decodeBlock(s.ids, seq, block, filter)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", seq, err)
		}
		m.add(recs)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: audit search: %w", err)
	}
	m.releaseAll()
	return m.out, nil
}

// auditRecord is the record with an id, or ErrInvalidCursor.
func (s AuditReader) auditRecord(ctx context.Context, id string) (store.AuditRecord, error) {
	seq, i, ok := s.ids.parse(id)
	if !ok {
		return store.AuditRecord{}, fmt.Errorf("audit cursor: %w", store.ErrInvalidCursor)
	}
	var block []byte
	err := s.db.QueryRowContext(ctx, `SELECT records FROM audit_block WHERE seq = ?`, seq).Scan(&block)
	if errors.Is(err, sql.ErrNoRows) {
		return store.AuditRecord{}, fmt.Errorf("audit cursor: %w", store.ErrInvalidCursor)
	}
	if err != nil {
		return store.AuditRecord{}, fmt.Errorf("sqlite: audit search: %w", err)
	}
	recs, err := decodeBlock(s.ids, seq, block, nil)
	if err != nil {
		return store.AuditRecord{}, err
	}
	if i >= len(recs) {
		return store.AuditRecord{}, fmt.Errorf("audit cursor: %w", store.ErrInvalidCursor)
	}
	return recs[i], nil
}

// auditMerge puts the matching records of blocks, read in the order of
// their earliest (latest, newest first) record, into recorded order: a
// record held is given out once no block still to come can hold an
// earlier one.
type auditMerge struct {
	ids   auditIDs
	q     store.AuditQuery
	after *store.AuditRecord
	keys  [3][]string // patients, agents, entities, as keys
	held  []store.AuditRecord
	out   []store.AuditRecord
}

func (m *auditMerge) full() bool { return m.q.Limit > 0 && len(m.out) >= m.q.Limit }

// before orders records as the query asks: by recorded time, then id
// (block, then place in it).
func (m *auditMerge) before(a, b store.AuditRecord) bool {
	c := a.Recorded.Compare(b.Recorded)
	if c == 0 {
		as, ai, _ := m.ids.parse(a.ID)
		bs, bi, _ := m.ids.parse(b.ID)
		c = cmp.Or(cmp.Compare(as, bs), cmp.Compare(ai, bi))
	}
	if m.q.Descending {
		return c > 0
	}
	return c < 0
}

func (m *auditMerge) add(recs []store.AuditRecord) {
	for _, r := range recs {
		if m.matches(r) {
			m.held = append(m.held, r)
		}
	}
}

// release gives out the held records recorded before ms (after it,
// newest first).
func (m *auditMerge) release(ms int64) {
	slices.SortFunc(m.held, func(a, b store.AuditRecord) int {
		if m.before(a, b) {
			return -1
		}
		if m.before(b, a) {
			return 1
		}
		return 0
	})
	n := 0
	for _, r := range m.held {
		t := r.Recorded.UnixMilli()
		if m.full() || (!m.q.Descending && t >= ms) || (m.q.Descending && t <= ms) {
			break
		}
		m.out = append(m.out, r)
		n++
	}
	m.held = slices.Delete(m.held, 0, n)
}

func (m *auditMerge) releaseAll() {
	if m.q.Descending {
		m.release(-1 << 62)
	} else {
		m.release(1 << 62)
	}
}

// matches: a record the query selects, past the cursor.
func (m *auditMerge) matches(r store.AuditRecord) bool {
	q := m.q
	anyKey := func(want []string, have []string) bool {
		return len(want) == 0 || slices.ContainsFunc(have, func(k string) bool { return slices.Contains(want, k) })
	}
	keys := auditKeys(r)
	oneOf := func(want []string, v string) bool { return len(want) == 0 || slices.Contains(want, v) }
	switch {
	case !anyKey(m.keys[0], keys), !anyKey(m.keys[1], keys), !anyKey(m.keys[2], keys),
		!oneOf(q.IDs, r.ID), !oneOf(q.Types, r.Type), !oneOf(q.Subtypes, r.Subtype), !oneOf(q.Outcomes, r.Outcome), !oneOf(q.Actions, r.Action),
		!q.Since.IsZero() && r.Recorded.Before(q.Since), !q.Until.IsZero() && !r.Recorded.Before(q.Until):
		return false
	}
	return m.after == nil || m.before(*m.after, r)
}

// PruneAudit deletes the blocks whose records were all recorded before a
// time (a block straddling it is kept whole), a few at a time so that
// writes go on meanwhile.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.Transact(ctx, func(t store.Tx) error {
			tx := t.(*tx).tx
			rows, err := tx.QueryContext(ctx, `SELECT seq, records FROM audit_block WHERE latest < ? ORDER BY latest LIMIT 20`, before.UnixMilli())
			if err != nil {
				return err
			}
			type block struct {
				seq  int64
				recs []store.AuditRecord
			}
			var gone []block
			for rows.Next() {
				var b block
				var data []byte
				if err := rows.Scan(&b.seq, &data); err != nil {
					rows.Close()
					return err
				}
				if b.recs, err = decodeBlock(s.auditIDs, b.seq, data, nil); err != nil {
					rows.Close()
					return err
				}
				gone = append(gone, b)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, b := range gone {
				var keys []string
				for _, r := range b.recs {
					keys = append(keys, auditKeys(r)...)
				}
				slices.Sort(keys)
				for _, k := range slices.Compact(keys) {
					if _, err := tx.ExecContext(ctx, `DELETE FROM audit_block_key WHERE key = ? AND seq = ?`, k, b.seq); err != nil {
						return err
					}
				}
				if _, err := tx.ExecContext(ctx, `DELETE FROM audit_block WHERE seq = ?`, b.seq); err != nil {
					return err
				}
				n += int64(len(b.recs))
			}
			if len(gone) == 0 {
				n = -1
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("sqlite: audit prune: %w", err)
		}
		if n < 0 {
			return total, nil
		}
		total += n
	}
}
