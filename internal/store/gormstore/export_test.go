package gormstore

import "context"

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
