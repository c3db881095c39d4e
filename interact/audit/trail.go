package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-fhir/hearth/store"
)

// Mode says when an answer may go out relative to its audit record.
type Mode int

const (
	// Grouped: records are written in groups, at most FlushEvery after
	// the answer (a kill -9 can lose that window's records).
	Grouped Mode = iota
	// Sync: an answer waits until its record is durable.
	Sync
)

// Options configure a Trail.
type Options struct {
	Mode       Mode
	FlushEvery time.Duration // grouping window (default 50 ms)
	MaxBatch   int           // records written in one transaction at most (default 2,000)
	// Retention is how long records are kept (default 6 years, as HIPAA
	// asks of its documentation); older ones are pruned daily.
	Retention time.Duration
	Log       *slog.Logger
}

// DefaultRetention is six years.
const DefaultRetention = 6 * 365 * 24 * time.Hour

// ErrUnavailable: the trail cannot write, so nothing is served unaudited.
var ErrUnavailable = errors.New("the audit trail cannot be written")

// Trail writes audit records to a store.AuditLog: grouped, or before the
// answer (Sync), never dropping one while the process lives. When a write
// fails the trail reports itself unavailable (Healthy) and keeps the
// records, retrying, until the store takes them.
type Trail struct {
	log  store.AuditLog
	opts Options

	mu      sync.Mutex
	pending []item
	spare   []item              // an emptied array for pending (flushAll)
	recs    []store.AuditRecord // write's, reused
	wake    chan struct{}
	failed  atomic.Bool
	stop    chan struct{}
	stopped chan struct{}
	now     func() time.Time
}

type item struct {
	agent Agent
	event Event
	at    time.Time
	done  chan error // Sync: told when the record is durable
}

// New starts a trail over log; Close flushes and stops it.
func New(log store.AuditLog, opts Options) *Trail {
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = 50 * time.Millisecond
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 2000
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	t := &Trail{log: log, opts: opts, wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}), now: time.Now}
	go t.run()
	return t
}

// Healthy is nil while the trail can write, ErrUnavailable after a write
// failed and until one succeeds.
func (t *Trail) Healthy() error {
	if t.failed.Load() {
		return ErrUnavailable
	}
	return nil
}

// Record adds an event to the trail. In Sync mode it returns once the
// record is durable; otherwise at once. It fails with ErrUnavailable when
// the trail cannot write (the record is kept and written later).
func (t *Trail) Record(ctx context.Context, a Agent, e Event) error {
	it := item{agent: a, event: e, at: t.now()}
	// Sync: the answer waits for the record, unless the trail is failing
	// (then it is refused at once; the record is kept all the same).
	if t.opts.Mode == Sync && !t.failed.Load() {
		it.done = make(chan error, 1)
	}
	t.mu.Lock()
	t.pending = append(t.pending, it)
	n := len(t.pending)
	t.mu.Unlock()
	if n == 1 || n >= t.opts.MaxBatch || it.done != nil {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
	if it.done == nil {
		return t.Healthy()
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// InTx records an event in a store transaction: a write's record commits
// (or rolls back) with the write.
func (t *Trail) InTx(ctx context.Context, tx store.Tx, a Agent, e Event) error {
	return tx.AppendAudit(ctx, []store.AuditRecord{Facts(a, e, t.now())})
}

// Close writes what is pending and stops the trail.
func (t *Trail) Close() {
	close(t.stop)
	<-t.stopped
}

func (t *Trail) run() {
	defer close(t.stopped)
	prune := time.NewTicker(24 * time.Hour)
	defer prune.Stop()
	t.prune()
	for {
		// Wait for a record, unless some came while the last group was
		// written (Record wakes the trail only for the first).
		t.mu.Lock()
		waiting := len(t.pending) > 0
		t.mu.Unlock()
		if !waiting {
			select {
			case <-t.wake:
			case <-prune.C:
				t.prune()
				continue
			case <-t.stop:
				t.drain()
				return
			}
		}
		if t.opts.Mode == Grouped {
			// Let the group gather, unless it is already full.
			timer := time.NewTimer(t.opts.FlushEvery)
		gather:
			for {
				t.mu.Lock()
				full := len(t.pending) >= t.opts.MaxBatch
				t.mu.Unlock()
				if full {
					break
				}
				select {
				case <-timer.C:
					break gather
				case <-t.wake:
				case <-t.stop:
					timer.Stop()
					t.drain()
					return
				}
			}
			timer.Stop()
		}
		t.flushAll()
	}
}

// drain writes every pending record, when the trail closes.
func (t *Trail) drain() {
	for {
		t.mu.Lock()
		n := len(t.pending)
		t.mu.Unlock()
		if n == 0 {
			return
		}
		t.flushAll()
	}
}

// flushAll writes the records pending when it starts, in batches, or
// until a write fails: the records are kept and retried after a pause.
// Records that come meanwhile wait for the next group (writing them at
// once made groups of a few dozen, a commit each). It takes the pending
// records whole and hands back an emptied array (spare): the trail
// allocates nothing per group once it has grown to its size.
func (t *Trail) flushAll() {
	t.mu.Lock()
	taken := t.pending
	t.pending, t.spare = t.spare[:0], nil
	t.mu.Unlock()
	defer func() {
		clear(taken) // let go of the records' strings
		t.mu.Lock()
		t.spare = taken[:0]
		t.mu.Unlock()
	}()
	batch := taken
	for len(batch) > 0 {
		n := min(len(batch), t.opts.MaxBatch)
		if err := t.write(batch[:n]); err != nil {
			if !t.failed.Swap(true) {
				t.opts.Log.Error("audit trail: write failed; requests are refused until it recovers", "error", err.Error())
			}
			// Sync: the answers waiting on records are refused now, not
			// when the store comes back; the records stay, retried.
			tell(batch, ErrUnavailable)
			t.mu.Lock()
			tell(t.pending, ErrUnavailable)
			t.mu.Unlock()
			select {
			case <-time.After(time.Second):
				continue
			case <-t.stop:
				// Closing: one last try was made.
				return
			}
		}
		if t.failed.Swap(false) {
			t.opts.Log.Info("audit trail: writing again")
		}
		tell(batch[:n], nil)
		batch = batch[n:]
	}
}

// tell the waiters of a batch how its write went. A waiter reads once: a
// record told of a failure and later written has no one listening, so
// telling never blocks.
func tell(batch []item, err error) {
	for _, it := range batch {
		if it.done == nil {
			continue
		}
		select {
		case it.done <- err:
		default:
		}
	}
}

func (t *Trail) write(batch []item) error {
	recs := t.recs[:0] // the trail goroutine's own, reused
	for _, it := range batch {
		recs = append(recs, Facts(it.agent, it.event, it.at))
	}
	defer func() { clear(recs); t.recs = recs[:0] }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return t.log.AppendAudit(ctx, recs)
}

func (t *Trail) prune() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n, err := t.log.PruneAudit(ctx, t.now().Add(-t.opts.Retention))
	switch {
	case err != nil:
		t.opts.Log.Error("audit trail: pruning failed", "error", err.Error())
	case n > 0:
		t.opts.Log.Info("audit trail: pruned records past retention", "records", n)
	}
}
