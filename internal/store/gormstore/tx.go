package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

type txKey struct{}

// txState is one level of transaction carried in a context: the outermost
// level owns a database transaction, inner levels (nested BeginTx/InTx) are
// savepoints in it, so an inner failure can be undone without abandoning the
// outer work, and PostgreSQL's aborted-transaction state does not leak out.
type txState struct {
	store     *Store
	tx        *gorm.DB
	parent    *txState
	root      *txState
	seq       int // savepoints opened so far; only the root's counts
	savepoint string
	done      bool
	unlock    func() // the root's turn as SQLite writer
}

// current returns the innermost unfinished transaction level of this store in
// ctx, or nil. A finished level (committed, rolled back) no longer counts, so
// a context kept after CommitTx falls back to plain statements.
func (s *Store) current(ctx context.Context) *txState {
	st, _ := ctx.Value(txKey{}).(*txState)
	if st == nil || st.store != s {
		return nil
	}
	for st != nil && st.done {
		st = st.parent
	}
	return st
}

// conn is the handle every statement runs on: the transaction in ctx, if any.
func (s *Store) conn(ctx context.Context) *gorm.DB {
	if st := s.current(ctx); st != nil {
		return st.tx.WithContext(ctx)
	}
	return s.db.WithContext(ctx)
}

// BeginTx starts a transaction and returns a context carrying it. Inside an
// existing transaction it opens a savepoint instead.
func (s *Store) BeginTx(ctx context.Context) (context.Context, error) {
	parent := s.current(ctx)
	if parent == nil {
		unlock, err := s.lockWriter(ctx)
		if err != nil {
			return ctx, errorf("begin transaction: %w", err)
		}
		s.roundTrip()
		tx := s.db.WithContext(ctx).Begin()
		if tx.Error != nil {
			unlock()
			return ctx, errorf("begin transaction: %w", tx.Error)
		}
		// database/sql rolls the transaction back when ctx ends; give up the
		// turn then too, so a caller that is slow to roll back (or never
		// does) cannot stall the other writers.
		stop := context.AfterFunc(ctx, unlock)
		root := &txState{store: s, tx: tx, unlock: func() { stop(); unlock() }}
		root.root = root
		return context.WithValue(ctx, txKey{}, root), nil
	}
	// Unique names, so savepoints opened side by side under one parent
	// cannot release each other.
	parent.root.seq++
	st := &txState{store: s, tx: parent.tx, parent: parent, root: parent.root}
	st.savepoint = fmt.Sprintf("gatehouse_sp_%d", parent.root.seq)
	if err := parent.tx.WithContext(ctx).Exec("SAVEPOINT " + st.savepoint).Error; err != nil {
		return ctx, errorf("begin nested transaction: %w", err)
	}
	return context.WithValue(ctx, txKey{}, st), nil
}

func (s *Store) own(ctx context.Context) (*txState, error) {
	st, _ := ctx.Value(txKey{}).(*txState)
	if st == nil || st.store != s {
		return nil, errors.New("no transaction in context")
	}
	return st, nil
}

// CommitTx commits the transaction (or releases the savepoint) that ctx's
// BeginTx started.
func (s *Store) CommitTx(ctx context.Context) error {
	st, err := s.own(ctx)
	if err != nil {
		return errorf("commit: %w", err)
	}
	if st.done {
		return errors.New("commit: transaction already finished")
	}
	st.done = true
	if st.parent != nil {
		if err := st.tx.WithContext(ctx).Exec("RELEASE SAVEPOINT " + st.savepoint).Error; err != nil {
			// On PostgreSQL a failed statement inside the savepoint makes
			// RELEASE fail; undo the savepoint so the outer transaction
			// stays usable, and report the commit as failed.
			st.done = false
			if rbErr := s.RollbackTx(ctx); rbErr != nil {
				return errorf("commit nested transaction: %w", errors.Join(err, rbErr))
			}
			return errorf("commit nested transaction: %w", err)
		}
		return nil
	}
	s.roundTrip()
	defer st.unlock()
	if err := st.tx.Commit().Error; err != nil {
		return errorf("commit: %w", err)
	}
	return nil
}

// RollbackTx undoes the transaction (or the savepoint) that ctx's BeginTx
// started. After CommitTx or RollbackTx it does nothing.
func (s *Store) RollbackTx(ctx context.Context) error {
	st, err := s.own(ctx)
	if err != nil {
		return errorf("rollback: %w", err)
	}
	if st.done {
		return nil
	}
	st.done = true
	if st.parent != nil {
		// Rollback must work even when ctx was cancelled: the outer
		// transaction would otherwise keep the undone work.
		db := st.tx.WithContext(context.WithoutCancel(ctx))
		if err := db.Exec("ROLLBACK TO SAVEPOINT " + st.savepoint).Error; err != nil {
			return errorf("rollback nested transaction: %w", err)
		}
		if err := db.Exec("RELEASE SAVEPOINT " + st.savepoint).Error; err != nil {
			return errorf("rollback nested transaction: %w", err)
		}
		return nil
	}
	s.roundTrip()
	defer st.unlock()
	if err := st.tx.Rollback().Error; err != nil && !errors.Is(err, sql.ErrTxDone) {
		return errorf("rollback: %w", err)
	}
	return nil
}

// InTx runs fn in a transaction and commits when fn returns nil. Nested calls
// join the outer transaction through a savepoint: an inner error undoes only
// the inner work, and nothing is durable before the outermost commit.
func (s *Store) InTx(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	txCtx, err := s.BeginTx(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = s.RollbackTx(txCtx)
			panic(p)
		}
	}()
	if err := fn(txCtx); err != nil {
		if rbErr := s.RollbackTx(txCtx); rbErr != nil {
			return errors.Join(err, rbErr)
		}
		return err
	}
	return s.CommitTx(txCtx)
}
