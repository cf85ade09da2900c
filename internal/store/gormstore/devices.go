package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// ---- remembered devices

const deviceCols = "id, user_id, token_hash, strategy, label, created_at, last_used_at, expires_at"

// CreateRememberedDevice stores d and drops the user's oldest records
// beyond keep, in one transaction. The user must exist (ErrNotFound); a
// token hash already stored is ErrConflict.
func (s *Store) CreateRememberedDevice(ctx context.Context, d store.RememberedDevice, keep int) error {
	if d.ID == "" || d.UserID == "" || d.TokenHash == "" {
		return errors.New("create remembered device: empty id, user or token hash")
	}
	if d.ExpiresAt.IsZero() {
		return errors.New("create remembered device: no expiry")
	}
	if keep < 1 {
		keep = 1
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = s.now()
	}
	return s.InTx(ctx, func(ctx context.Context) error {
		db := s.conn(ctx)
		err := db.Exec("INSERT INTO remembered_devices ("+deviceCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			d.ID, d.UserID, d.TokenHash, d.Strategy, d.Label, tv(d.CreatedAt), tv(d.LastUsedAt), tv(d.ExpiresAt)).Error
		if err != nil {
			return errorf("create remembered device of user %q: %w", d.UserID, keyErr(s.translate(err)))
		}
		// Keep the newest: everything older than the keep-th newest goes.
		err = db.Exec(`DELETE FROM remembered_devices WHERE user_id = ? AND id NOT IN (
			SELECT id FROM remembered_devices WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?)`,
			d.UserID, d.UserID, keep).Error
		if err != nil {
			return errorf("drop oldest remembered devices of user %q: %w", d.UserID, err)
		}
		return nil
	})
}

func scanDevice(sc interface{ Scan(...any) error }) (store.RememberedDevice, error) {
	var d store.RememberedDevice
	var ca, lu, ea dbTime
	if err := sc.Scan(&d.ID, &d.UserID, &d.TokenHash, &d.Strategy, &d.Label, &ca, &lu, &ea); err != nil {
		return store.RememberedDevice{}, err
	}
	d.CreatedAt, d.LastUsedAt, d.ExpiresAt = ca.T, lu.T, ea.T
	return d, nil
}

func (s *Store) FindRememberedDevice(ctx context.Context, tokenHash string, now time.Time) (store.RememberedDevice, error) {
	d, err := scanDevice(s.conn(ctx).Raw("SELECT "+deviceCols+" FROM remembered_devices WHERE token_hash = ? AND expires_at > ?", tokenHash, utc(now)).Row())
	if errors.Is(err, sql.ErrNoRows) {
		// The hash names a credential: it stays out of the error.
		return store.RememberedDevice{}, errorf("find remembered device: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.RememberedDevice{}, errorf("find remembered device: %w", err)
	}
	return d, nil
}

func (s *Store) TouchRememberedDevice(ctx context.Context, id string, at time.Time) error {
	res := s.conn(ctx).Exec("UPDATE remembered_devices SET last_used_at = ? WHERE id = ?", tv(at), id)
	if res.Error != nil {
		return errorf("touch remembered device %q: %w", id, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("touch remembered device %q: %w", id, store.ErrNotFound)
	}
	return nil
}

func (s *Store) ListRememberedDevices(ctx context.Context, userID string, now time.Time) ([]store.RememberedDevice, error) {
	rows, err := s.conn(ctx).Raw("SELECT "+deviceCols+" FROM remembered_devices WHERE user_id = ? AND expires_at > ? ORDER BY created_at DESC, id DESC",
		userID, utc(now)).Rows()
	if err != nil {
		return nil, errorf("list remembered devices of user %q: %w", userID, err)
	}
	defer rows.Close()
	var out []store.RememberedDevice
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, errorf("list remembered devices of user %q: %w", userID, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, errorf("list remembered devices of user %q: %w", userID, err)
	}
	return out, nil
}

func (s *Store) DeleteRememberedDevice(ctx context.Context, userID, id string) error {
	res := s.conn(ctx).Exec("DELETE FROM remembered_devices WHERE user_id = ? AND id = ?", userID, id)
	if res.Error != nil {
		return errorf("delete remembered device %q of user %q: %w", id, userID, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("delete remembered device %q of user %q: %w", id, userID, store.ErrNotFound)
	}
	return nil
}

func (s *Store) DeleteRememberedDevices(ctx context.Context, userID string) (int64, error) {
	res := s.conn(ctx).Exec("DELETE FROM remembered_devices WHERE user_id = ?", userID)
	if res.Error != nil {
		return 0, errorf("delete remembered devices of user %q: %w", userID, res.Error)
	}
	return res.RowsAffected, nil
}

func (s *Store) DeleteExpiredRememberedDevices(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.deleteInBatches(ctx, "remembered_devices", "id", "expires_at < ?", utc(before))
	if err != nil {
		return n, errorf("delete expired remembered devices: %w", err)
	}
	return n, nil
}
