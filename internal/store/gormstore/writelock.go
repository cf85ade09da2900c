package gormstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"gorm.io/gorm"
)

// SQLite lets one writer in at a time, and a writer that finds the file
// locked sleeps in the busy handler in growing steps (up to 100 ms each), so
// under load a write could wait far longer than the writes ahead of it took.
// Writers of this process therefore queue on an in-process lock instead, held
// from BEGIN to COMMIT/ROLLBACK and around every write outside a transaction;
// busy_timeout is left for other processes sharing the file. PostgreSQL locks
// rows, not the database, so it has no such lock. Reads never take it: WAL
// readers do not block writers.

// errWriterQueueTimeout keeps the old bound on a writer's wait: a write that
// waited as long as busy_timeout would allow fails rather than hangs, also if
// a goroutine holding a transaction writes under an unrelated context.
var errWriterQueueTimeout = errors.New("timed out waiting for other writers")

// writerKey marks a context whose goroutine holds the write lock outside a
// transaction, so its statements do not queue again behind themselves.
type writerKey struct{}

func newWriterQueue() chan struct{} { return make(chan struct{}, 1) }

// lockWriter waits for this process's turn to write. It returns a function
// that gives the turn up (safe to call more than once), or a no-op when
// there is nothing to wait for: PostgreSQL, or a transaction or locked write
// in ctx that already holds the turn.
func (s *Store) lockWriter(ctx context.Context) (unlock func(), err error) {
	if s.writers == nil || s.current(ctx) != nil || ctx.Value(writerKey{}) == s {
		return func() {}, nil
	}
	select {
	case s.writers <- struct{}{}:
	default:
		t := time.NewTimer(sqliteBusyTimeout)
		defer t.Stop()
		select {
		case s.writers <- struct{}{}:
		case <-ctx.Done():
			return nil, errorf("wait for other writers: %w", context.Cause(ctx))
		case <-t.C:
			return nil, errWriterQueueTimeout
		}
	}
	var once sync.Once
	return func() { once.Do(func() { <-s.writers }) }, nil
}

// lockedWrite takes the write lock for a write that reads its result back
// (… RETURNING through Row): the statement only runs when the row is
// scanned, after gorm's callbacks are done, so the callbacks cannot hold the
// lock for it. The returned ctx lets further statements join the lock.
func (s *Store) lockedWrite(ctx context.Context) (context.Context, func(), error) {
	unlock, err := s.lockWriter(ctx)
	if err != nil {
		return ctx, nil, err
	}
	return context.WithValue(ctx, writerKey{}, s), unlock, nil
}

const writerUnlockKey = "gatehouse:writer_unlock"

// queueStatementWriters makes every Exec (and Create/Update/Delete) outside a
// transaction hold the write lock while it runs; those statements run to the
// end inside gorm's callbacks.
func (s *Store) queueStatementWriters(db *gorm.DB) error {
	cb := db.Callback()
	for _, err := range []error{
		cb.Raw().Before("gorm:raw").Register("gatehouse:lock_writer", s.lockStatement),
		cb.Raw().After("gorm:raw").Register("gatehouse:unlock_writer", unlockStatement),
		cb.Create().Before("gorm:create").Register("gatehouse:lock_writer", s.lockStatement),
		cb.Create().After("gorm:create").Register("gatehouse:unlock_writer", unlockStatement),
		cb.Update().Before("gorm:update").Register("gatehouse:lock_writer", s.lockStatement),
		cb.Update().After("gorm:update").Register("gatehouse:unlock_writer", unlockStatement),
		cb.Delete().Before("gorm:delete").Register("gatehouse:lock_writer", s.lockStatement),
		cb.Delete().After("gorm:delete").Register("gatehouse:unlock_writer", unlockStatement),
	} {
		if err != nil {
			return errorf("register writer queue: %w", err)
		}
	}
	return nil
}

func (s *Store) lockStatement(db *gorm.DB) {
	if db.Error != nil {
		return
	}
	// A statement on a transaction (ours, or a migration's) runs under the
	// lock its BEGIN took.
	if _, inTx := db.Statement.ConnPool.(gorm.TxCommitter); inTx {
		return
	}
	unlock, err := s.lockWriter(db.Statement.Context)
	if err != nil {
		_ = db.AddError(err)
		return
	}
	db.InstanceSet(writerUnlockKey, unlock)
}

func unlockStatement(db *gorm.DB) {
	if v, ok := db.InstanceGet(writerUnlockKey); ok {
		v.(func())()
	}
}
