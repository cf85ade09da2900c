package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// ---- second factors

const twoFactorCols = "user_id, method, enabled, secret, destination, last_step, enrolled_at, failures, locked_until, lockouts, updated_at"

func (s *Store) GetTwoFactor(ctx context.Context, userID string) (store.TwoFactor, error) {
	var tf twoFactorScan
	err := s.conn(ctx).Raw("SELECT "+twoFactorCols+" FROM two_factors WHERE user_id = ?", userID).Row().Scan(tf.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return store.TwoFactor{}, errorf("get second factor of user %q: %w", userID, store.ErrNotFound)
	}
	if err != nil {
		return store.TwoFactor{}, errorf("get second factor of user %q: %w", userID, err)
	}
	return tf.twoFactor(userID), nil
}

// twoFactorScan receives twoFactorCols, each of which may be NULL: a user
// read with a LEFT JOIN of a factor it does not have.
type twoFactorScan struct {
	userID, method, destination  sql.NullString
	enabled                      sql.NullBool
	secret                       []byte
	lastStep, failures, lockouts sql.NullInt64
	enrolledAt, lockedUntil, ua  dbTime
}

func (f *twoFactorScan) dest() []any {
	return []any{&f.userID, &f.method, &f.enabled, &f.secret, &f.destination, &f.lastStep, &f.enrolledAt, &f.failures, &f.lockedUntil, &f.lockouts, &f.ua}
}

// twoFactor is the scanned factor; with none (all NULL), the disabled
// marker of userID.
func (f *twoFactorScan) twoFactor(userID string) store.TwoFactor {
	if !f.userID.Valid {
		return store.TwoFactor{UserID: userID}
	}
	return store.TwoFactor{
		UserID: f.userID.String, Method: f.method.String, Enabled: f.enabled.Bool, Secret: f.secret,
		Destination: f.destination.String, LastStep: f.lastStep.Int64, EnrolledAt: f.enrolledAt.T,
		Failures: int(f.failures.Int64), LockedUntil: f.lockedUntil.T, Lockouts: int(f.lockouts.Int64), UpdatedAt: f.ua.T,
	}
}

// PutTwoFactor creates or replaces the user's factor as given; UpdatedAt
// becomes now. The user must exist (ErrNotFound otherwise).
func (s *Store) PutTwoFactor(ctx context.Context, tf store.TwoFactor) error {
	if tf.UserID == "" || tf.Method == "" {
		return errors.New("put second factor: empty user id or method")
	}
	if _, err := s.upsertTwoFactor(ctx, tf, ""); err != nil {
		return errorf("put second factor of user %q: %w", tf.UserID, err)
	}
	return nil
}

// EnableTwoFactor writes tf like PutTwoFactor, but only over a factor that
// is not enabled: the condition is part of the upsert, so of two enrolments
// racing each other, on any number of processes, the second finds the
// first's row (waiting for its commit on PostgreSQL) and writes nothing.
func (s *Store) EnableTwoFactor(ctx context.Context, tf store.TwoFactor) error {
	if tf.UserID == "" || tf.Method == "" || !tf.Enabled {
		return errors.New("enable second factor: empty user id or method, or not enabled")
	}
	n, err := s.upsertTwoFactor(ctx, tf, "WHERE NOT two_factors.enabled")
	if err != nil {
		return errorf("enable second factor of user %q: %w", tf.UserID, err)
	}
	if n == 0 {
		return errorf("enable second factor of user %q: one is enabled already: %w", tf.UserID, store.ErrConflict)
	}
	return nil
}

// upsertTwoFactor writes tf over the user's record where the conflict
// clause's condition (SQL, "" for none) holds, and says how many rows it
// wrote.
func (s *Store) upsertTwoFactor(ctx context.Context, tf store.TwoFactor, condition string) (int64, error) {
	res := s.conn(ctx).Exec(`INSERT INTO two_factors (`+twoFactorCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET method = excluded.method, enabled = excluded.enabled, secret = excluded.secret,
			destination = excluded.destination, last_step = excluded.last_step, enrolled_at = excluded.enrolled_at,
			failures = excluded.failures, locked_until = excluded.locked_until, lockouts = excluded.lockouts,
			reserved_at = NULL, updated_at = excluded.updated_at `+condition,
		tf.UserID, tf.Method, tf.Enabled, tf.Secret, tf.Destination, tf.LastStep, tv(tf.EnrolledAt),
		tf.Failures, tv(tf.LockedUntil), tf.Lockouts, s.now())
	if res.Error != nil {
		return 0, keyErr(res.Error)
	}
	return res.RowsAffected, nil
}

// EnsureTwoFactor inserts an empty disabled record unless one exists.
func (s *Store) EnsureTwoFactor(ctx context.Context, userID string) error {
	err := s.conn(ctx).Exec(`INSERT INTO two_factors (`+twoFactorCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id) DO NOTHING`,
		userID, store.MethodNone, false, nil, "", 0, nil, 0, nil, 0, s.now()).Error
	if err != nil {
		return errorf("ensure second factor record of user %q: %w", userID, keyErr(err))
	}
	return nil
}

// DeleteTwoFactor removes the factor and the recovery codes together.
func (s *Store) DeleteTwoFactor(ctx context.Context, userID string) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		db := s.conn(ctx)
		if err := db.Exec("DELETE FROM recovery_codes WHERE user_id = ?", userID).Error; err != nil {
			return errorf("delete second factor of user %q: %w", userID, err)
		}
		res := db.Exec("DELETE FROM two_factors WHERE user_id = ?", userID)
		if res.Error != nil {
			return errorf("delete second factor of user %q: %w", userID, res.Error)
		}
		if res.RowsAffected == 0 {
			return errorf("delete second factor of user %q: %w", userID, store.ErrNotFound)
		}
		return nil
	})
}

// factorExists tells a missing factor from a lost condition after a
// conditional UPDATE matched no row.
func (s *Store) factorExists(ctx context.Context, userID string) (bool, error) {
	var n int64
	if err := s.conn(ctx).Raw("SELECT COUNT(*) FROM two_factors WHERE user_id = ?", userID).Row().Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

func (s *Store) AdvanceTOTPStep(ctx context.Context, userID string, step int64) error {
	res := s.conn(ctx).Exec("UPDATE two_factors SET last_step = ?, updated_at = ? WHERE user_id = ? AND last_step < ?", step, s.now(), userID, step)
	if res.Error != nil {
		return errorf("advance totp step of user %q: %w", userID, res.Error)
	}
	if res.RowsAffected == 1 {
		return nil
	}
	ok, err := s.factorExists(ctx, userID)
	if err != nil {
		return errorf("advance totp step of user %q: %w", userID, err)
	}
	if !ok {
		return errorf("advance totp step of user %q: %w", userID, store.ErrNotFound)
	}
	return errorf("advance totp step of user %q: step already used: %w", userID, store.ErrConflict)
}

// AcceptTOTPStep is AdvanceTOTPStep's conditional UPDATE that also clears
// the failure count, so a successful TOTP check settles its reservation
// without a second statement.
func (s *Store) AcceptTOTPStep(ctx context.Context, userID string, step int64) error {
	res := s.conn(ctx).Exec("UPDATE two_factors SET last_step = ?, failures = 0, lockouts = 0, updated_at = ? WHERE user_id = ? AND last_step < ?", step, s.now(), userID, step)
	if res.Error != nil {
		return errorf("accept totp step of user %q: %w", userID, res.Error)
	}
	if res.RowsAffected == 1 {
		return nil
	}
	ok, err := s.factorExists(ctx, userID)
	if err != nil {
		return errorf("accept totp step of user %q: %w", userID, err)
	}
	if !ok {
		return errorf("accept totp step of user %q: %w", userID, store.ErrNotFound)
	}
	return errorf("accept totp step of user %q: step already used: %w", userID, store.ErrConflict)
}

// ReserveFactorAttempt is one conditional UPDATE, so the limit holds however
// many attempts race: it increments Failures below the limit, or starts a new
// series when the row sits at the limit past its stale reservation's end.
// On PostgreSQL a writer that waited on the row lock re-checks the WHERE
// against the winner's row, so a stale row restarts once. A refused attempt
// reads the row to say until when.
func (s *Store) ReserveFactorAttempt(ctx context.Context, userID string, now time.Time, limit int, staleLock time.Duration) (store.FactorAttempt, error) {
	if staleLock <= 0 {
		return store.FactorAttempt{}, errorf("reserve factor attempt of user %q: stale lock %s is not positive", userID, staleLock)
	}
	now = utc(now)
	ctx, unlock, err := s.lockedWrite(ctx)
	if err != nil {
		return store.FactorAttempt{}, errorf("reserve factor attempt of user %q: %w", userID, err)
	}
	defer unlock()
	db := s.conn(ctx)
	var failures int64
	err = db.Raw(`UPDATE two_factors SET
			failures = CASE WHEN failures < ? THEN failures + 1 ELSE 1 END,
			lockouts = CASE WHEN failures < ? THEN lockouts ELSE lockouts + 1 END,
			reserved_at = ?, updated_at = ?
		WHERE user_id = ? AND (locked_until IS NULL OR locked_until <= ?)
			AND (failures < ? OR COALESCE(reserved_at, updated_at) <= ?)
		RETURNING failures`,
		limit, limit, now, s.now(), userID, now, limit, utc(now.Add(-staleLock))).Row().Scan(&failures)
	if err == nil {
		return store.FactorAttempt{Allowed: true, Failures: int(failures)}, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return store.FactorAttempt{}, errorf("reserve factor attempt of user %q: %w", userID, err)
	}
	var lu, ra, ua dbTime
	err = db.Raw("SELECT failures, locked_until, reserved_at, updated_at FROM two_factors WHERE user_id = ?", userID).Row().Scan(&failures, &lu, &ra, &ua)
	if errors.Is(err, sql.ErrNoRows) {
		return store.FactorAttempt{}, errorf("reserve factor attempt of user %q: %w", userID, store.ErrNotFound)
	}
	if err != nil {
		return store.FactorAttempt{}, errorf("reserve factor attempt of user %q: %w", userID, err)
	}
	a := store.FactorAttempt{Failures: int(failures)}
	switch {
	case lu.T.After(now):
		a.LockedUntil = lu.T
	case failures >= int64(limit):
		reserved := ra.T
		if reserved.IsZero() {
			reserved = ua.T
		}
		if end := reserved.Add(staleLock); end.After(now) {
			a.LockedUntil = end
		}
	}
	return a, nil
}

// ReleaseFactorAttempt takes one reservation back in one statement. It
// leaves reserved_at alone: a stale reservation still ends when it would.
func (s *Store) ReleaseFactorAttempt(ctx context.Context, userID string) error {
	res := s.conn(ctx).Exec("UPDATE two_factors SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END, updated_at = ? WHERE user_id = ?", s.now(), userID)
	if res.Error != nil {
		return errorf("release factor attempt of user %q: %w", userID, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("release factor attempt of user %q: %w", userID, store.ErrNotFound)
	}
	return nil
}

func (s *Store) ClearFactorFailures(ctx context.Context, userID string) error {
	res := s.conn(ctx).Exec("UPDATE two_factors SET failures = 0, lockouts = 0, updated_at = ? WHERE user_id = ?", s.now(), userID)
	if res.Error != nil {
		return errorf("clear factor failures of user %q: %w", userID, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("clear factor failures of user %q: %w", userID, store.ErrNotFound)
	}
	return nil
}

func (s *Store) LockFactor(ctx context.Context, userID string, until time.Time) error {
	res := s.conn(ctx).Exec("UPDATE two_factors SET locked_until = ?, failures = 0, lockouts = lockouts + 1, updated_at = ? WHERE user_id = ?",
		tv(until), s.now(), userID)
	if res.Error != nil {
		return errorf("lock factor of user %q: %w", userID, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("lock factor of user %q: %w", userID, store.ErrNotFound)
	}
	return nil
}

// ---- recovery codes

// ReplaceRecoveryCodes swaps the user's whole set in one transaction. The
// user must exist (ErrNotFound otherwise).
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, userID string, hashes []string) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		db := s.conn(ctx)
		if err := db.Exec("DELETE FROM recovery_codes WHERE user_id = ?", userID).Error; err != nil {
			return errorf("replace recovery codes of user %q: %w", userID, err)
		}
		if len(hashes) == 0 {
			return nil
		}
		q := "INSERT INTO recovery_codes (user_id, hash) VALUES "
		args := make([]any, 0, 2*len(hashes))
		for i, h := range hashes {
			if i > 0 {
				q += ", "
			}
			q += "(?, ?)"
			args = append(args, userID, h)
		}
		if err := db.Exec(q, args...).Error; err != nil {
			if isDuplicate(err) {
				return errorf("replace recovery codes of user %q: duplicate code: %w", userID, store.ErrConflict)
			}
			return errorf("replace recovery codes of user %q: %w", userID, keyErr(err))
		}
		return nil
	})
}

func (s *Store) UseRecoveryCode(ctx context.Context, userID, hash string, now time.Time) error {
	res := s.conn(ctx).Exec("UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND hash = ? AND used_at IS NULL", tv(now), userID, hash)
	if res.Error != nil {
		return errorf("use recovery code of user %q: %w", userID, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("use recovery code of user %q: %w", userID, store.ErrNotFound)
	}
	return nil
}

func (s *Store) CountRecoveryCodes(ctx context.Context, userID string) (int, error) {
	var n int64
	if err := s.conn(ctx).Raw("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL", userID).Row().Scan(&n); err != nil {
		return 0, errorf("count recovery codes of user %q: %w", userID, err)
	}
	return int(n), nil
}

// ---- one-time codes

const oneTimeCodeCols = "id, user_id, purpose, channel, destination, binding_id, code_hash, created_at, expires_at, used_at"

// CreateOneTimeCode stores a code; an empty ID gets a random one and a zero
// CreatedAt becomes now. ExpiresAt is required.
func (s *Store) CreateOneTimeCode(ctx context.Context, c store.OneTimeCode) error {
	if c.BindingID == "" || c.CodeHash == "" {
		return errors.New("create one-time code: empty binding or hash")
	}
	if c.ExpiresAt.IsZero() {
		return errors.New("create one-time code: no expiry")
	}
	if c.ID == "" {
		c.ID = newID()
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	err := s.conn(ctx).Exec("INSERT INTO one_time_codes ("+oneTimeCodeCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		c.ID, c.UserID, c.Purpose, c.Channel, c.Destination, c.BindingID, c.CodeHash, tv(c.CreatedAt), tv(c.ExpiresAt), tv(c.UsedAt)).Error
	if isDuplicate(err) {
		return errorf("create one-time code: id exists: %w", store.ErrConflict)
	}
	if err != nil {
		return errorf("create one-time code: %w", err)
	}
	return nil
}

// ConsumeOneTimeCode marks one matching code used in a single UPDATE. The
// conditions are repeated outside the subquery so that, on PostgreSQL, a
// caller that waited on the row lock re-checks them against the winner's
// update and matches nothing.
func (s *Store) ConsumeOneTimeCode(ctx context.Context, bindingID, codeHash string, now time.Time) (store.OneTimeCode, error) {
	now = utc(now)
	ctx, unlock, err := s.lockedWrite(ctx)
	if err != nil {
		return store.OneTimeCode{}, errorf("consume one-time code: %w", err)
	}
	defer unlock()
	var c store.OneTimeCode
	var ca, ea, ua dbTime
	err = s.conn(ctx).Raw(`UPDATE one_time_codes SET used_at = ?
		WHERE id = (SELECT id FROM one_time_codes WHERE binding_id = ? AND code_hash = ? AND used_at IS NULL AND expires_at > ? ORDER BY created_at DESC LIMIT 1)
		AND binding_id = ? AND code_hash = ? AND used_at IS NULL AND expires_at > ?
		RETURNING `+oneTimeCodeCols, now, bindingID, codeHash, now, bindingID, codeHash, now).Row().
		Scan(&c.ID, &c.UserID, &c.Purpose, &c.Channel, &c.Destination, &c.BindingID, &c.CodeHash, &ca, &ea, &ua)
	if errors.Is(err, sql.ErrNoRows) {
		return store.OneTimeCode{}, errorf("consume one-time code: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.OneTimeCode{}, errorf("consume one-time code: %w", err)
	}
	c.CreatedAt, c.ExpiresAt, c.UsedAt = ca.T, ea.T, ua.T
	return c, nil
}

func (s *Store) TrimOneTimeCodes(ctx context.Context, userID, purpose string, keep int) (int64, error) {
	if userID == "" || purpose == "" || keep < 0 {
		return 0, errors.New("trim one-time codes: a user, a purpose and a non-negative count are required")
	}
	res := s.conn(ctx).Exec(`DELETE FROM one_time_codes WHERE user_id = ? AND purpose = ? AND id NOT IN (
		SELECT id FROM one_time_codes WHERE user_id = ? AND purpose = ? ORDER BY created_at DESC, id DESC LIMIT ?)`,
		userID, purpose, userID, purpose, keep)
	if res.Error != nil {
		return 0, errorf("trim one-time codes of %q: %w", userID, res.Error)
	}
	return res.RowsAffected, nil
}

// CountOneTimeCodes counts codes created at or after since, for throttling
// sends. An empty userID or destination matches every value.
func (s *Store) CountOneTimeCodes(ctx context.Context, userID, destination string, since time.Time, purposes ...string) (int, error) {
	q := "SELECT COUNT(*) FROM one_time_codes WHERE created_at >= ?"
	args := []any{utc(since)}
	if userID != "" {
		q += " AND user_id = ?"
		args = append(args, userID)
	}
	if destination != "" {
		q += " AND destination = ?"
		args = append(args, destination)
	}
	if len(purposes) > 0 {
		q += " AND purpose IN ?"
		args = append(args, purposes)
	}
	var n int64
	if err := s.conn(ctx).Raw(q, args...).Row().Scan(&n); err != nil {
		return 0, errorf("count one-time codes: %w", err)
	}
	return int(n), nil
}

// DeleteExpiredOneTimeCodes uses the expires_at index; used codes go too.
func (s *Store) DeleteExpiredOneTimeCodes(ctx context.Context, before time.Time) (n int64, err error) {
	n, err = s.deleteInBatches(ctx, "one_time_codes", "id", "expires_at < ?", utc(before))
	if err != nil {
		return n, errorf("delete expired one-time codes: %w", err)
	}
	return n, nil
}
