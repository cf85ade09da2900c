package gormstore

import (
	"context"
	"fmt"
)

// defaultPurgeBatch bounds the rows one DELETE of a purge removes. A purge of
// a large backlog (an hour of expired tokens under load) as one statement
// would hold SQLite's write lock, or PostgreSQL's row locks and WAL, for as
// long as it runs, and requests would wait behind it; a batch of a thousand
// rows takes milliseconds, and the writers queued meanwhile go first.
const defaultPurgeBatch = 1000

func (s *Store) purgeBatch() int {
	if s.PurgeBatch > 0 {
		return s.PurgeBatch
	}
	return defaultPurgeBatch
}

// deleteInBatches deletes the rows of table matching where, at most
// purgeBatch rows per statement, each statement committed on its own (unless
// ctx carries a transaction), until a batch comes back short. key lists the
// table's primary-key columns, by which a batch is chosen. It returns how
// many rows went, also when a later batch fails. On PostgreSQL each batch
// runs free of the statement timeout (see withoutStatementTimeout): a batch
// is small, but it may wait on a lock held by maintenance work.
func (s *Store) deleteInBatches(ctx context.Context, table, key, where string, args ...any) (int64, error) {
	limit := s.purgeBatch()
	query := fmt.Sprintf("DELETE FROM %[1]s WHERE (%[2]s) IN (SELECT %[2]s FROM %[1]s WHERE %[3]s LIMIT %[4]d)", table, key, where, limit)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		var deleted int64
		err := s.withoutStatementTimeout(ctx, func(ctx context.Context) error {
			res := s.conn(ctx).Exec(query, args...)
			deleted = res.RowsAffected
			return res.Error
		})
		if err != nil {
			return n, err
		}
		n += deleted
		if deleted < int64(limit) {
			return n, nil
		}
	}
}
