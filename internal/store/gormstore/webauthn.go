package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// ---- passkeys (WebAuthn credentials and ceremony challenges)

const webAuthnCredentialCols = "id, user_id, public_key, attestation_type, attestation_fmt, aaguid, sign_count, transports, attachment, " +
	"user_present, user_verified, backup_eligible, backup_state, name, created_at, last_used_at"

func scanWebAuthnCredential(r rowScanner) (store.WebAuthnCredential, error) {
	var c store.WebAuthnCredential
	var transports string
	var signCount int64
	var ca, lu dbTime
	if err := r.Scan(&c.ID, &c.UserID, &c.PublicKey, &c.AttestationType, &c.AttestationFmt, &c.AAGUID, &signCount, &transports, &c.Attachment,
		&c.UserPresent, &c.UserVerified, &c.BackupEligible, &c.BackupState, &c.Name, &ca, &lu); err != nil {
		return store.WebAuthnCredential{}, err
	}
	t, err := decodeStrings(transports)
	if err != nil {
		return store.WebAuthnCredential{}, errorf("decode transports of credential %q: %w", c.ID, err)
	}
	c.Transports = t
	c.SignCount = uint32(signCount)
	c.CreatedAt, c.LastUsedAt = ca.T, lu.T
	return c, nil
}

func (s *Store) CreateWebAuthnCredential(ctx context.Context, c store.WebAuthnCredential) error {
	if c.ID == "" || c.UserID == "" || len(c.PublicKey) == 0 {
		return errors.New("create webauthn credential: empty id, user id or public key")
	}
	transports, err := encodeStrings(c.Transports)
	if err != nil {
		return errorf("create webauthn credential for user %q: %w", c.UserID, err)
	}
	created := c.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	err = s.conn(ctx).Exec(`INSERT INTO webauthn_credentials (`+webAuthnCredentialCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.UserID, c.PublicKey, c.AttestationType, c.AttestationFmt, c.AAGUID, int64(c.SignCount), transports, c.Attachment,
		c.UserPresent, c.UserVerified, c.BackupEligible, c.BackupState, c.Name, utc(created), tv(c.LastUsedAt)).Error
	if err != nil {
		return errorf("create webauthn credential for user %q: %w", c.UserID, keyErr(err))
	}
	return nil
}

func (s *Store) GetWebAuthnCredential(ctx context.Context, id string) (store.WebAuthnCredential, error) {
	c, err := scanWebAuthnCredential(s.conn(ctx).Raw("SELECT "+webAuthnCredentialCols+" FROM webauthn_credentials WHERE id = ?", id).Row())
	if errors.Is(err, sql.ErrNoRows) {
		return store.WebAuthnCredential{}, errorf("get webauthn credential: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.WebAuthnCredential{}, errorf("get webauthn credential: %w", err)
	}
	return c, nil
}

func (s *Store) ListWebAuthnCredentials(ctx context.Context, userID string) ([]store.WebAuthnCredential, error) {
	rows, err := s.conn(ctx).Raw("SELECT "+webAuthnCredentialCols+" FROM webauthn_credentials WHERE user_id = ? ORDER BY created_at, id", userID).Rows()
	if err != nil {
		return nil, errorf("list webauthn credentials of user %q: %w", userID, err)
	}
	defer rows.Close()
	var out []store.WebAuthnCredential
	for rows.Next() {
		c, err := scanWebAuthnCredential(rows)
		if err != nil {
			return nil, errorf("list webauthn credentials of user %q: %w", userID, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, errorf("list webauthn credentials of user %q: %w", userID, err)
	}
	return out, nil
}

func (s *Store) RenameWebAuthnCredential(ctx context.Context, userID, id, name string) error {
	res := s.conn(ctx).Exec("UPDATE webauthn_credentials SET name = ? WHERE id = ? AND user_id = ?", name, id, userID)
	if res.Error != nil {
		return errorf("rename webauthn credential of user %q: %w", userID, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("rename webauthn credential of user %q: %w", userID, store.ErrNotFound)
	}
	return nil
}

func (s *Store) DeleteWebAuthnCredential(ctx context.Context, userID, id string) error {
	res := s.conn(ctx).Exec("DELETE FROM webauthn_credentials WHERE id = ? AND user_id = ?", id, userID)
	if res.Error != nil {
		return errorf("delete webauthn credential of user %q: %w", userID, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("delete webauthn credential of user %q: %w", userID, store.ErrNotFound)
	}
	return nil
}

// UseWebAuthnCredential is one conditional UPDATE: the counter check and
// the write are the same statement, so of two assertions carrying the same
// counter (a clone, or a replay racing the original) one wins.
func (s *Store) UseWebAuthnCredential(ctx context.Context, userID, id string, signCount uint32, backupState, userVerified bool, now time.Time) error {
	n := int64(signCount)
	res := s.conn(ctx).Exec(`UPDATE webauthn_credentials SET sign_count = ?, backup_state = ?, user_verified = (user_verified OR ?), last_used_at = ?
		WHERE id = ? AND user_id = ? AND (sign_count < ? OR (sign_count = 0 AND ? = 0))`,
		n, backupState, userVerified, utc(now), id, userID, n, n)
	if res.Error != nil {
		return errorf("use webauthn credential of user %q: %w", userID, res.Error)
	}
	if res.RowsAffected == 1 {
		return nil
	}
	var count int64
	if err := s.conn(ctx).Raw("SELECT COUNT(*) FROM webauthn_credentials WHERE id = ? AND user_id = ?", id, userID).Row().Scan(&count); err != nil {
		return errorf("use webauthn credential of user %q: %w", userID, err)
	}
	if count == 0 {
		return errorf("use webauthn credential of user %q: %w", userID, store.ErrNotFound)
	}
	return errorf("use webauthn credential of user %q: sign counter did not advance: %w", userID, store.ErrConflict)
}

const webAuthnChallengeCols = "challenge, user_id, binding_id, purpose, session, created_at, expires_at"

func (s *Store) CreateWebAuthnChallenge(ctx context.Context, c store.WebAuthnChallenge) error {
	if c.Challenge == "" || c.BindingID == "" || c.Purpose == "" || c.ExpiresAt.IsZero() {
		return errors.New("create webauthn challenge: empty challenge, binding, purpose or expiry")
	}
	created := c.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	err := s.conn(ctx).Exec(`INSERT INTO webauthn_challenges (`+webAuthnChallengeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		c.Challenge, c.UserID, c.BindingID, c.Purpose, c.Session, utc(created), utc(c.ExpiresAt)).Error
	if err != nil {
		return errorf("create webauthn challenge: %w", keyErr(err))
	}
	return nil
}

// ConsumeWebAuthnChallenge is one DELETE … RETURNING: the first caller gets
// the row, everyone after it finds nothing.
func (s *Store) ConsumeWebAuthnChallenge(ctx context.Context, challenge, bindingID, purpose string, now time.Time) (store.WebAuthnChallenge, error) {
	ctx, unlock, err := s.lockedWrite(ctx)
	if err != nil {
		return store.WebAuthnChallenge{}, errorf("consume webauthn challenge: %w", err)
	}
	defer unlock()
	var c store.WebAuthnChallenge
	var ca, ea dbTime
	err = s.conn(ctx).Raw(`DELETE FROM webauthn_challenges WHERE challenge = ? AND binding_id = ? AND purpose = ? AND expires_at > ?
		RETURNING `+webAuthnChallengeCols, challenge, bindingID, purpose, utc(now)).Row().
		Scan(&c.Challenge, &c.UserID, &c.BindingID, &c.Purpose, &c.Session, &ca, &ea)
	if errors.Is(err, sql.ErrNoRows) {
		return store.WebAuthnChallenge{}, errorf("consume webauthn challenge: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.WebAuthnChallenge{}, errorf("consume webauthn challenge: %w", err)
	}
	c.CreatedAt, c.ExpiresAt = ca.T, ea.T
	return c, nil
}

func (s *Store) DeleteExpiredWebAuthnChallenges(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.deleteInBatches(ctx, "webauthn_challenges", "challenge", "expires_at < ?", utc(before))
	if err != nil {
		return n, errorf("delete expired webauthn challenges: %w", err)
	}
	return n, nil
}
