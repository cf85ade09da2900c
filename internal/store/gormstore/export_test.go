package gormstore

import (
	"context"
	"fmt"
	"time"
)

// OAuthInsertBatches is the number of group commits of token INSERTs so far.
func (s *Store) OAuthInsertBatches() int64 { return s.inserts.batches.Load() }

// QueuedOAuthInserts is the number of rows waiting for a group commit.
func (s *Store) QueuedOAuthInserts() int {
	s.inserts.mu.Lock()
	defer s.inserts.mu.Unlock()
	return len(s.inserts.queue)
}

// QueryString runs a query that answers one text value (SHOW, a function).
func (s *Store) QueryString(ctx context.Context, query string) (string, error) {
	var v string
	err := s.conn(ctx).Raw(query).Row().Scan(&v)
	return v, err
}

// FillDisk makes a SQLite database refuse to grow, as a full disk does: the
// pool keeps one connection, whose page limit is set to the current size.
func (s *Store) FillDisk(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	sqlDB.SetMaxOpenConns(1)
	var pages int64
	if err := s.db.WithContext(ctx).Raw("PRAGMA page_count").Row().Scan(&pages); err != nil {
		return err
	}
	return s.db.WithContext(ctx).Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages)).Error
}

// ChangeListenerPID is the PostgreSQL server process of the change feed's
// latest connection (0 before the first).
func (s *Store) ChangeListenerPID() uint32 { return s.listenerPID.Load() }

// SetChangeProbes paces the change feed's probes: one after every quiet
// interval, to be heard within timeout.
func (s *Store) SetChangeProbes(every, timeout time.Duration) {
	s.pingEvery, s.pingTimeout = every, timeout
}
