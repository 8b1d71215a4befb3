package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// maxBatch caps how many writes share one transaction, so one commit's
// latency stays bounded however deep the queue gets.
const maxBatch = 256

// errClosed answers writes submitted after Close.
var errClosed = errors.New("sqlite: store is closed")

// errBatchBroken is what a clean op returns when it failed after writing
// and could not undo its writes: the whole batch is rolled back.
var errBatchBroken = errors.New("sqlite: write failed half-way and could not be undone")

// writeOp is one write waiting for the writer: fn runs inside the batch's
// transaction, and done is closed once the batch's commit has returned.
type writeOp struct {
	ctx context.Context
	fn  func(ctx context.Context, tx *sql.Tx) error
	// clean says fn undoes its own writes when it fails (returning
	// errBatchBroken when it cannot), so it needs no savepoint.
	clean bool
	err   error
	pval  any // a panic of fn, re-raised in the caller's goroutine
	done  chan struct{}
}

// writer is the group commit: every write of the store is queued to one
// goroutine, which takes everything pending (up to maxBatch), runs each
// write in its own savepoint of ONE transaction, commits once (one fsync
// under synchronous=FULL) and only then answers every waiter. A write that
// fails is rolled back to its savepoint without touching the others, so
// each write still sees the effects of those before it and behaves as if it
// had its own transaction; no waiter hears "done" before its data is
// durable.
type writer struct {
	db      *sql.DB
	mu      sync.Mutex
	pending []*writeOp
	closed  bool
	wake    chan struct{} // buffered(1): "pending is not empty"
	stopped chan struct{} // closed when run returns

	// commits counts committed batches (for tests and stats).
	commits atomic.Int64

	// syncer, when set, makes committed batches durable and answers them
	// (see walSyncer); nil answers at commit.
	syncer *walSyncer

	// Savepoint statements, prepared once on the write connection.
	savepoint, release, rollbackTo *sql.Stmt
}

func newWriter(ctx context.Context, db *sql.DB, syncer *walSyncer) (*writer, error) {
	w := &writer{db: db, syncer: syncer, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&w.savepoint, "SAVEPOINT op"},
		{&w.release, "RELEASE op"},
		{&w.rollbackTo, "ROLLBACK TO op"},
	} {
		st, err := db.PrepareContext(ctx, p.q)
		if err != nil {
			w.closeStmts()
			return nil, fmt.Errorf("sqlite: prepare: %w", err)
		}
		*p.dst = st
	}
	go w.run()
	return w, nil
}

func (w *writer) closeStmts() {
	for _, st := range []*sql.Stmt{w.savepoint, w.release, w.rollbackTo} {
		if st != nil {
			st.Close()
		}
	}
}

// do queues fn and waits until its batch committed (or failed). fn runs
// with ctx stripped of its cancellation: once a batch has started, one
// request going away must not interrupt the shared transaction. A request
// whose ctx is done before its turn is skipped with ctx's error.
func (w *writer) do(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return w.submit(&writeOp{ctx: ctx, fn: fn, done: make(chan struct{})})
}

// doClean is do for an fn that leaves nothing behind when it fails (see
// writeOp.clean): it runs without a savepoint, which saves copying every
// page it touches into the statement journal.
func (w *writer) doClean(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return w.submit(&writeOp{ctx: ctx, fn: fn, clean: true, done: make(chan struct{})})
}

func (w *writer) submit(op *writeOp) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errClosed
	}
	w.pending = append(w.pending, op)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	// Not selecting on ctx: the answer comes within one batch, and a
	// caller that left early could not tell whether its write committed.
	<-op.done
	if op.pval != nil {
		panic(op.pval)
	}
	return op.err
}

// close stops taking writes, lets the writer finish what is queued and
// waits for it.
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.wake)
	}
	w.mu.Unlock()
	<-w.stopped
	if w.syncer != nil {
		w.syncer.close()
	}
	w.closeStmts()
}

func (w *writer) run() {
	defer close(w.stopped)
	for range w.wake {
		for {
			w.mu.Lock()
			n := min(len(w.pending), maxBatch)
			batch := w.pending[:n:n]
			w.pending = w.pending[n:]
			if len(w.pending) == 0 {
				w.pending = nil
			}
			w.mu.Unlock()
			if n == 0 {
				break
			}
			w.runBatch(batch)
		}
	}
}

// runBatch runs the ops in one transaction and answers each of them after
// the commit, or hands them to the syncer, which answers them once the
// commit is on disk.
func (w *writer) runBatch(batch []*writeOp) {
	retry, committed := w.runTx(batch)
	answered := batch[:0:0]
	for _, op := range batch {
		if !slices.Contains(retry, op) {
			answered = append(answered, op)
		}
	}
	if len(retry) > 0 {
		w.mu.Lock()
		w.pending = append(retry, w.pending...)
		w.mu.Unlock()
	}
	if committed && w.syncer != nil {
		// The failed ops of the batch wait for the sync too: what they
		// saw (a name taken, an instance claimed) may be no more durable
		// than the rest of the batch.
		w.syncer.hand(answered)
		return
	}
	for _, op := range answered {
		close(op.done)
	}
}

// runTx runs the ops in one transaction and sets their results. It returns
// the ops to run again in a new batch (those rolled back only because
// another op in the batch broke it) and whether it committed.
func (w *writer) runTx(batch []*writeOp) (retry []*writeOp, committed bool) {
	ctx := context.Background()
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		for _, op := range batch {
			op.err = fmt.Errorf("sqlite: begin: %w", err)
		}
		return nil, false
	}
	// A lone write needs no savepoint: its failure rolls back the
	// transaction, as a transaction of its own would.
	single := len(batch) == 1
	var ok []*writeOp // ops whose fn succeeded, answered by the commit
	for _, op := range batch {
		if err := op.ctx.Err(); err != nil {
			op.err = err
			continue
		}
		opCtx := context.WithoutCancel(op.ctx)
		if op.clean {
			op.pval, op.err = runOp(opCtx, tx, op.fn)
			switch {
			case op.pval == nil && op.err == nil:
				ok = append(ok, op)
			case op.pval != nil || errors.Is(op.err, errBatchBroken):
				// Its writes may be half done: roll everything back,
				// answer it, and run the others again without it (those
				// that failed too: they saw state now rolled back).
				tx.Rollback()
				for _, o := range batch {
					switch {
					case o == op:
					case o.ctx.Err() != nil:
						o.err = o.ctx.Err()
					default:
						o.err = nil
						retry = append(retry, o)
					}
				}
				return retry, false
			case single:
				tx.Rollback()
				return nil, false
			}
			continue
		}
		if !single {
			if _, err := tx.StmtContext(ctx, w.savepoint).ExecContext(ctx); err != nil {
				w.abort(tx, batch, fmt.Errorf("sqlite: savepoint: %w", err))
				return nil, false
			}
		}
		op.pval, op.err = runOp(opCtx, tx, op.fn)
		if op.err == nil && op.pval == nil {
			if !single {
				if _, err := tx.StmtContext(ctx, w.release).ExecContext(ctx); err != nil {
					w.abort(tx, batch, fmt.Errorf("sqlite: release savepoint: %w", err))
					return nil, false
				}
			}
			ok = append(ok, op)
			continue
		}
		if single {
			tx.Rollback()
			return nil, false
		}
		// Undo this op only; ROLLBACK TO keeps the savepoint, RELEASE
		// drops it. Either failing means SQLite gave up the whole
		// transaction (I/O error, disk full): every op fails then.
		if _, err := tx.StmtContext(ctx, w.rollbackTo).ExecContext(ctx); err != nil {
			w.abort(tx, batch, fmt.Errorf("sqlite: rollback to savepoint: %w", err))
			return nil, false
		}
		if _, err := tx.StmtContext(ctx, w.release).ExecContext(ctx); err != nil {
			w.abort(tx, batch, fmt.Errorf("sqlite: release savepoint: %w", err))
			return nil, false
		}
	}
	if len(ok) == 0 {
		tx.Rollback()
		return nil, false
	}
	if err := tx.Commit(); err != nil {
		for _, op := range ok {
			op.err = fmt.Errorf("sqlite: commit: %w", err)
		}
		return nil, false
	}
	w.commits.Add(1)
	return nil, true
}

// abort rolls the batch back and fails every op that had not already
// failed on its own.
func (w *writer) abort(tx *sql.Tx, batch []*writeOp, err error) {
	tx.Rollback()
	for _, op := range batch {
		if op.err == nil && op.pval == nil {
			op.err = err
		}
	}
}

// runOp calls fn, turning a panic into a value for the caller to re-raise.
func runOp(ctx context.Context, tx *sql.Tx, fn func(ctx context.Context, tx *sql.Tx) error) (pval any, err error) {
	defer func() {
		if p := recover(); p != nil {
			pval = p
		}
	}()
	return nil, fn(ctx, tx)
}
