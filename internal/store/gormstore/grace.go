package gormstore

import (
	"context"
	"time"
)

// MarkTwoFactorRequired inserts the user's row unless there is one, then
// reads it: two processes racing store one time, and both see it.
func (s *Store) MarkTwoFactorRequired(ctx context.Context, userID string, at time.Time) (time.Time, error) {
	db := s.conn(ctx)
	err := db.Exec("INSERT INTO two_factor_requirements (user_id, since) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING", userID, tv(at)).Error
	if err != nil {
		return time.Time{}, errorf("mark second factor required for %q: %w", userID, keyErr(s.translate(err)))
	}
	var since dbTime
	if err := db.Raw("SELECT since FROM two_factor_requirements WHERE user_id = ?", userID).Row().Scan(&since); err != nil {
		return time.Time{}, errorf("read when a second factor became required for %q: %w", userID, err)
	}
	return since.T, nil
}
