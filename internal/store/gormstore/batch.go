package gormstore

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
)

// Group commit of token INSERTs on SQLite.
//
// SQLite lets one writer in at a time, and an autocommit INSERT into
// oauth_requests pays for a whole commit: four B-trees (the table and its
// request_id, subject and expires_at indexes) and their WAL frames, all
// under this process's writer lock (writelock.go). With many clients asking
// for tokens at once, that lock, not the CPU, caps the token rate. So a
// CreateOAuthRequest outside a transaction queues its row, and one of the
// waiting callers, the leader, takes the writer lock and writes every row
// queued so far in one multi-row INSERT: one commit for the lot. One
// statement measured cheaper per row than BEGIN, an INSERT per row, COMMIT
// (BenchmarkOAuthInsertBatchShapes: 96 µs for a lone row; 35, 26, 26 µs a
// row in statements of 8, 32, 64 rows against 46, 34, 30 in transactions).
//
// Durability is unchanged: a caller returns only once the statement holding
// its row has committed (or failed), and a lone caller's batch is the single
// INSERT it always was. Leaders are callers, so no goroutine outlives a call.
// Inside a transaction, and on PostgreSQL (which locks rows, not the
// database), each call stays its own INSERT.

// maxInsertBatch bounds a batch: beyond a few dozen rows the cost per row
// stops falling, while the statement (14 parameters a row) keeps growing.
const maxInsertBatch = 64

// insertBatcher is the queue of rows waiting for a group commit.
type insertBatcher struct {
	mu    sync.Mutex
	queue []*queuedInsert
	// leading: a queued caller has been appointed to take the queue once it
	// holds the writer lock. There is at most one such caller; the leader
	// of the batch being written has already given the post up.
	leading bool
	// batches counts the batches written, for tests.
	batches atomic.Int64
}

// queuedInsert is one caller's row. taken and leader are guarded by
// insertBatcher.mu.
type queuedInsert struct {
	args   []any
	taken  bool // in a batch: its result will come on done
	leader bool // appointed to lead; a signal waits on lead
	lead   chan struct{}
	done   chan error
}

// groupsInserts reports whether a CreateOAuthRequest in ctx joins a group
// commit: only plain writes on SQLite; a write whose goroutine already holds
// the writer lock must not queue behind itself.
func (s *Store) groupsInserts(ctx context.Context) bool {
	return s.writers != nil && s.current(ctx) == nil && ctx.Value(writerKey{}) != s
}

// queueInsert queues args (one row of oauthRowArgs) and returns the result of
// the INSERT that carried it. A caller whose ctx ends while its row is queued
// withdraws it; once a leader has taken the row, the caller waits for the
// true result, so that it never reports a failure for a stored row.
func (s *Store) queueInsert(ctx context.Context, args []any) error {
	// The wait, queued or leading, keeps any writer's bound, counted from
	// when the row queues.
	ctx, cancel := context.WithTimeoutCause(ctx, sqliteBusyTimeout, errWriterQueueTimeout)
	defer cancel()
	q := &queuedInsert{args: args, lead: make(chan struct{}, 1), done: make(chan error, 1)}
	b := &s.inserts
	b.mu.Lock()
	b.queue = append(b.queue, q)
	if !b.leading {
		b.appointLocked(q)
	}
	b.mu.Unlock()

	select {
	case err := <-q.done:
		return err
	case <-q.lead:
		return s.leadInserts(ctx, q)
	case <-ctx.Done():
		if b.withdraw(q) {
			return errorf("wait for other writers: %w", context.Cause(ctx))
		}
		return <-q.done
	}
}

// leadInserts writes q and the rows queued before and after it, up to
// maxInsertBatch, under one turn of the writer lock, hands each caller its
// result and returns q's.
func (s *Store) leadInserts(ctx context.Context, q *queuedInsert) error {
	b := &s.inserts
	unlock, err := s.lockWriter(ctx)
	if err != nil {
		// Nothing was taken: the queue passes to the next caller.
		b.withdraw(q)
		return err
	}
	b.mu.Lock()
	batch := b.takeLocked(q)
	// Appoint the next leader now rather than after the write: it queues
	// for the writer lock behind this batch, and takes whatever arrived
	// meanwhile as soon as the lock is free.
	b.appointNextLocked()
	b.mu.Unlock()
	b.batches.Add(1)

	// The rows are the batch's now: the statement runs to the end even if
	// the leader's caller gives up, so every caller learns what happened to
	// its row. writerKey lets the statements use the turn taken above.
	wctx := context.WithValue(context.WithoutCancel(ctx), writerKey{}, s)
	errs := s.insertBatch(wctx, batch)
	unlock()
	for i, other := range batch[1:] {
		other.done <- errs[i+1]
	}
	return errs[0]
}

// insertBatch writes the rows of batch in one INSERT and returns each row's
// result, in batch order.
func (s *Store) insertBatch(ctx context.Context, batch []*queuedInsert) []error {
	rows := make([][]any, len(batch))
	for i, q := range batch {
		rows[i] = q.args
	}
	errs := make([]error, len(batch))
	err := s.insertOAuthRows(ctx, rows...)
	if err == nil {
		return errs
	}
	if len(batch) == 1 || !isDuplicate(err) {
		// Not about one row (say, another process holding the file, or
		// the database closed): each row's own INSERT would have met it.
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	// A row's signature is already stored (or two rows share one), and the
	// statement stored none. Writing each row alone fails only the
	// duplicate; this is the rare path, so its extra statements are fine.
	for i, row := range rows {
		errs[i] = s.insertOAuthRows(ctx, row)
	}
	return errs
}

// appointLocked makes q the caller that takes the queue next.
func (b *insertBatcher) appointLocked(q *queuedInsert) {
	b.leading = true
	q.leader = true
	q.lead <- struct{}{}
}

// appointNextLocked passes the lead to the longest-waiting caller, if any.
func (b *insertBatcher) appointNextLocked() {
	b.leading = false
	if len(b.queue) > 0 {
		b.appointLocked(b.queue[0])
	}
}

// takeLocked removes from the queue and returns the next batch: q first,
// then the oldest rows.
func (b *insertBatcher) takeLocked(q *queuedInsert) []*queuedInsert {
	b.removeLocked(q)
	n := min(len(b.queue), maxInsertBatch-1)
	batch := append([]*queuedInsert{q}, b.queue[:n]...)
	b.queue = slices.Delete(b.queue, 0, n)
	for _, t := range batch {
		t.taken = true
	}
	return batch
}

// withdraw takes q off the queue, passing the lead on if q held it. It
// reports false if q was already taken into a batch.
func (b *insertBatcher) withdraw(q *queuedInsert) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q.taken {
		return false
	}
	b.removeLocked(q)
	if q.leader {
		b.appointNextLocked()
	}
	return true
}

func (b *insertBatcher) removeLocked(q *queuedInsert) {
	if i := slices.Index(b.queue, q); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
	}
}
