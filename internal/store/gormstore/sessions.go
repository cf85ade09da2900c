package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// ---- browser sessions

const sessionCols = "id, user_id, auth_time, amr, state, created_at, updated_at, expires_at"

// CreateBrowserSession stores a new session. ExpiresAt is required: a session
// without an end would never expire. Zero CreatedAt/UpdatedAt become now.
func (s *Store) CreateBrowserSession(ctx context.Context, bs store.BrowserSession) error {
	if bs.ID == "" {
		return errors.New("create browser session: empty id")
	}
	if bs.ExpiresAt.IsZero() {
		return errors.New("create browser session: no expiry")
	}
	amr, err := encodeStrings(bs.AMR)
	if err != nil {
		return errorf("create browser session: %w", err)
	}
	now := s.now()
	if bs.CreatedAt.IsZero() {
		bs.CreatedAt = now
	}
	if bs.UpdatedAt.IsZero() {
		bs.UpdatedAt = now
	}
	err = s.conn(ctx).Exec("INSERT INTO browser_sessions ("+sessionCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		bs.ID, nullString(bs.UserID), tv(bs.AuthTime), amr, bs.State, tv(bs.CreatedAt), tv(bs.UpdatedAt), tv(bs.ExpiresAt)).Error
	if isDuplicate(err) {
		return errorf("create browser session: %w", store.ErrConflict)
	}
	if err != nil {
		return errorf("create browser session: %w", err)
	}
	return nil
}

// GetBrowserSession returns a session that has not expired by the store's clock.
func (s *Store) GetBrowserSession(ctx context.Context, id string) (store.BrowserSession, error) {
	var bs store.BrowserSession
	var uid, amr dbString
	var at, ca, ua, ea dbTime
	err := s.conn(ctx).Raw("SELECT "+sessionCols+" FROM browser_sessions WHERE id = ? AND expires_at > ?", id, s.now()).Row().
		Scan(&bs.ID, &uid, &at, &amr, &bs.State, &ca, &ua, &ea)
	if errors.Is(err, sql.ErrNoRows) {
		// The id is a hash of the cookie, but still a credential: not in errors.
		return store.BrowserSession{}, errorf("get browser session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.BrowserSession{}, errorf("get browser session: %w", err)
	}
	bs.UserID, bs.AuthTime, bs.CreatedAt, bs.UpdatedAt, bs.ExpiresAt = uid.S, at.T, ca.T, ua.T, ea.T
	if bs.AMR, err = decodeStrings(amr.S); err != nil {
		return store.BrowserSession{}, errorf("get browser session: decode amr: %w", err)
	}
	return bs, nil
}

// UpdateBrowserSession replaces everything but CreatedAt; UpdatedAt becomes
// now. A missing session is ErrNotFound.
func (s *Store) UpdateBrowserSession(ctx context.Context, bs store.BrowserSession) error {
	if bs.ExpiresAt.IsZero() {
		return errors.New("update browser session: no expiry")
	}
	amr, err := encodeStrings(bs.AMR)
	if err != nil {
		return errorf("update browser session: %w", err)
	}
	res := s.conn(ctx).Exec("UPDATE browser_sessions SET user_id = ?, auth_time = ?, amr = ?, state = ?, updated_at = ?, expires_at = ? WHERE id = ?",
		nullString(bs.UserID), tv(bs.AuthTime), amr, bs.State, s.now(), tv(bs.ExpiresAt), bs.ID)
	if res.Error != nil {
		return errorf("update browser session: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("update browser session: %w", store.ErrNotFound)
	}
	return nil
}

// ReplaceBrowserSession rewrites the record's key and every field in one
// UPDATE: a rotation costs one statement instead of an insert and a delete
// in a transaction, and the old id is gone the moment the new one exists.
func (s *Store) ReplaceBrowserSession(ctx context.Context, oldID string, bs store.BrowserSession) error {
	if bs.ID == "" {
		return errors.New("replace browser session: empty id")
	}
	if bs.ExpiresAt.IsZero() {
		return errors.New("replace browser session: no expiry")
	}
	amr, err := encodeStrings(bs.AMR)
	if err != nil {
		return errorf("replace browser session: %w", err)
	}
	now := s.now()
	if bs.CreatedAt.IsZero() {
		bs.CreatedAt = now
	}
	if bs.UpdatedAt.IsZero() {
		bs.UpdatedAt = now
	}
	res := s.conn(ctx).Exec("UPDATE browser_sessions SET id = ?, user_id = ?, auth_time = ?, amr = ?, state = ?, created_at = ?, updated_at = ?, expires_at = ? WHERE id = ?",
		bs.ID, nullString(bs.UserID), tv(bs.AuthTime), amr, bs.State, tv(bs.CreatedAt), tv(bs.UpdatedAt), tv(bs.ExpiresAt), oldID)
	if err := s.translate(res.Error); isDuplicate(err) {
		return errorf("replace browser session: %w", store.ErrConflict)
	} else if err != nil {
		return errorf("replace browser session: %w", err)
	}
	if res.RowsAffected == 0 {
		return errorf("replace browser session: %w", store.ErrNotFound)
	}
	return nil
}

func (s *Store) DeleteBrowserSession(ctx context.Context, id string) error {
	res := s.conn(ctx).Exec("DELETE FROM browser_sessions WHERE id = ?", id)
	if res.Error != nil {
		return errorf("delete browser session: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("delete browser session: %w", store.ErrNotFound)
	}
	return nil
}

func (s *Store) DeleteBrowserSessionsByUser(ctx context.Context, userID, exceptID string) error {
	if userID == "" {
		return errors.New("delete browser sessions by user: empty user id")
	}
	err := s.conn(ctx).Exec("DELETE FROM browser_sessions WHERE user_id = ? AND id <> ?", userID, exceptID).Error
	if err != nil {
		return errorf("delete browser sessions of user %q: %w", userID, err)
	}
	return nil
}

func (s *Store) ListBrowserSessionsByUser(ctx context.Context, userID string, limit int) ([]store.BrowserSession, error) {
	rows, err := s.conn(ctx).Raw("SELECT "+sessionCols+" FROM browser_sessions WHERE user_id = ? AND expires_at > ? ORDER BY updated_at DESC LIMIT ?",
		userID, s.now(), limit).Rows()
	if err != nil {
		return nil, errorf("list browser sessions of user %q: %w", userID, err)
	}
	defer rows.Close()
	var out []store.BrowserSession
	for rows.Next() {
		var bs store.BrowserSession
		var uid, amr dbString
		var at, ca, ua, ea dbTime
		if err := rows.Scan(&bs.ID, &uid, &at, &amr, &bs.State, &ca, &ua, &ea); err != nil {
			return nil, errorf("list browser sessions of user %q: %w", userID, err)
		}
		bs.UserID, bs.AuthTime, bs.CreatedAt, bs.UpdatedAt, bs.ExpiresAt = uid.S, at.T, ca.T, ua.T, ea.T
		if bs.AMR, err = decodeStrings(amr.S); err != nil {
			return nil, errorf("list browser sessions of user %q: decode amr: %w", userID, err)
		}
		out = append(out, bs)
	}
	if err := rows.Err(); err != nil {
		return nil, errorf("list browser sessions of user %q: %w", userID, err)
	}
	return out, nil
}

func (s *Store) DeleteExpiredBrowserSessions(ctx context.Context, before time.Time) (n int64, err error) {
	n, err = s.deleteInBatches(ctx, "browser_sessions", "id", "expires_at < ?", utc(before))
	if err != nil {
		return n, errorf("delete expired browser sessions: %w", err)
	}
	return n, nil
}

// ---- signing keys

func (s *Store) CreateSigningKey(ctx context.Context, k store.SigningKey) error {
	if k.ID == "" {
		return errors.New("create signing key: empty id")
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.now()
	}
	err := s.conn(ctx).Exec("INSERT INTO signing_keys (id, algorithm, private_key, public_jwk, created_at, retired_at, not_after) VALUES (?, ?, ?, ?, ?, ?, ?)",
		k.ID, k.Algorithm, k.PrivateKey, k.PublicJWK, tv(k.CreatedAt), tv(k.RetiredAt), tv(k.NotAfter)).Error
	if isDuplicate(err) {
		return errorf("create signing key %q: %w", k.ID, store.ErrConflict)
	}
	if err != nil {
		return errorf("create signing key %q: %w", k.ID, err)
	}
	return nil
}

func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	rows, err := s.conn(ctx).Raw("SELECT id, algorithm, private_key, public_jwk, created_at, retired_at, not_after FROM signing_keys ORDER BY created_at DESC, id DESC").Rows()
	if err != nil {
		return nil, errorf("list signing keys: %w", err)
	}
	defer rows.Close()
	var out []store.SigningKey
	for rows.Next() {
		var k store.SigningKey
		var ca, ra, na dbTime
		if err := rows.Scan(&k.ID, &k.Algorithm, &k.PrivateKey, &k.PublicJWK, &ca, &ra, &na); err != nil {
			return nil, errorf("list signing keys: %w", err)
		}
		k.CreatedAt, k.RetiredAt, k.NotAfter = ca.T, ra.T, na.T
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, errorf("list signing keys: %w", err)
	}
	return out, nil
}

func (s *Store) RetireSigningKey(ctx context.Context, id string, retiredAt, notAfter time.Time) error {
	if retiredAt.IsZero() {
		return errorf("retire signing key %q: zero retirement time", id)
	}
	res := s.conn(ctx).Exec("UPDATE signing_keys SET retired_at = ?, not_after = ? WHERE id = ?", tv(retiredAt), tv(notAfter), id)
	if res.Error != nil {
		return errorf("retire signing key %q: %w", id, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("retire signing key %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// ---- consents

func (s *Store) GetConsent(ctx context.Context, userID, clientID string) (store.Consent, error) {
	c := store.Consent{UserID: userID, ClientID: clientID}
	var scopes string
	var ga dbTime
	err := s.conn(ctx).Raw("SELECT scopes, granted_at FROM consents WHERE user_id = ? AND client_id = ?", userID, clientID).Row().Scan(&scopes, &ga)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Consent{}, errorf("get consent of user %q for client %q: %w", userID, clientID, store.ErrNotFound)
	}
	if err != nil {
		return store.Consent{}, errorf("get consent of user %q for client %q: %w", userID, clientID, err)
	}
	c.GrantedAt = ga.T
	if c.Scopes, err = decodeStrings(scopes); err != nil {
		return store.Consent{}, errorf("get consent of user %q for client %q: decode scopes: %w", userID, clientID, err)
	}
	return c, nil
}

// PutConsent creates or replaces the consent. The user and the client must
// exist (ErrNotFound otherwise). A zero GrantedAt becomes now.
func (s *Store) PutConsent(ctx context.Context, c store.Consent) error {
	scopes, err := encodeStrings(c.Scopes)
	if err != nil {
		return errorf("put consent: %w", err)
	}
	if c.GrantedAt.IsZero() {
		c.GrantedAt = s.now()
	}
	err = s.conn(ctx).Exec(`INSERT INTO consents (user_id, client_id, scopes, granted_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at`,
		c.UserID, c.ClientID, scopes, tv(c.GrantedAt)).Error
	if err != nil {
		return errorf("put consent of user %q for client %q: %w", c.UserID, c.ClientID, keyErr(err))
	}
	return nil
}

func (s *Store) DeleteConsents(ctx context.Context, userID string) error {
	if err := s.conn(ctx).Exec("DELETE FROM consents WHERE user_id = ?", userID).Error; err != nil {
		return errorf("delete consents of user %q: %w", userID, err)
	}
	return nil
}
