package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// versioned describes a table of versioned documents for putVersioned.
type versioned struct {
	table string
	cols  []string // data columns besides id, version, created_at, updated_at
}

var (
	usersTable = versioned{"users", []string{
		"email", "phone_number", "email_verified", "phone_verified", "password_hash", "inactive", "doc",
	}}
	clientsTable     = versioned{"clients", []string{"secret_hash", "doc"}}
	authConfigsTable = versioned{"auth_configs", []string{"doc"}}
)

// putVersioned writes one row in a single statement and returns the stored
// version and creation time. With ifVersion > 0 it is an UPDATE guarded by the
// version (no row: ErrConflict, also when the record is missing). Without, it
// is an upsert whose conflict branch bumps the version, so concurrent creators
// of one id end with exactly one insert (version 1) and the rest as updates.
func (s *Store) putVersioned(ctx context.Context, t versioned, id string, vals []any, ifVersion int64, now time.Time) (version int64, createdAt time.Time, created bool, err error) {
	var q strings.Builder
	args := make([]any, 0, len(vals)+5)
	if ifVersion > 0 {
		fmt.Fprintf(&q, "UPDATE %s SET ", t.table)
		for i, c := range t.cols {
			fmt.Fprintf(&q, "%s = ?, ", c)
			args = append(args, vals[i])
		}
		q.WriteString("version = version + 1, updated_at = ? WHERE id = ? AND version = ? RETURNING version, created_at")
		args = append(args, now, id, ifVersion)
	} else {
		fmt.Fprintf(&q, "INSERT INTO %s (id, %s, version, created_at, updated_at) VALUES (?, ", t.table, strings.Join(t.cols, ", "))
		q.WriteString(strings.Repeat("?, ", len(t.cols)))
		q.WriteString("1, ?, ?) ON CONFLICT (id) DO UPDATE SET ")
		for _, c := range t.cols {
			fmt.Fprintf(&q, "%s = excluded.%s, ", c, c)
		}
		fmt.Fprintf(&q, "version = %s.version + 1, updated_at = excluded.updated_at RETURNING version, created_at", t.table)
		args = append(args, id)
		args = append(args, vals...)
		args = append(args, now, now)
	}
	ctx, unlock, err := s.lockedWrite(ctx)
	if err != nil {
		return 0, time.Time{}, false, err
	}
	defer unlock()
	var ca dbTime
	err = s.conn(ctx).Raw(q.String(), args...).Row().Scan(&version, &ca)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, false, errorf("stored version is not %d: %w", ifVersion, store.ErrConflict)
	}
	if err != nil {
		err = s.translate(err)
		if isDuplicate(err) {
			return 0, time.Time{}, false, errorf("a unique value is already in use: %w", store.ErrConflict)
		}
		return 0, time.Time{}, false, err
	}
	return version, ca.T, version == 1 && ifVersion == 0, nil
}

// countAll totals a table for a listing whose page came back empty; other
// pages get their total from a window count in the same query. An empty
// first page (or an unpaged listing) needs no count: the table is empty.
func (s *Store) countAll(ctx context.Context, table string, p store.Page) (int, error) {
	if p.Count <= 0 || p.Offset() == 0 {
		return 0, nil
	}
	var n int64
	if err := s.conn(ctx).Raw("SELECT COUNT(*) FROM " + table).Row().Scan(&n); err != nil {
		return 0, err
	}
	return int(n), nil
}

// ---- users

const userCols = "id, email, phone_number, email_verified, phone_verified, password_hash, inactive, doc, version, created_at, updated_at"

type rowScanner interface{ Scan(dest ...any) error }

func scanUser(r rowScanner, extra ...any) (store.User, error) {
	var u store.User
	var email dbString
	var ca, ua dbTime
	dest := append([]any{&u.ID, &email, &u.PhoneNumber, &u.EmailVerified, &u.PhoneVerified, &u.PasswordHash, &u.Inactive, &u.Doc, &u.Version, &ca, &ua}, extra...)
	if err := r.Scan(dest...); err != nil {
		return store.User{}, err
	}
	u.Email, u.CreatedAt, u.UpdatedAt = email.S, ca.T, ua.T
	return u, nil
}

func (s *Store) GetUser(ctx context.Context, id string) (store.User, error) {
	u, err := s.readUser(ctx, false, "u.id = ?", id)
	if err != nil {
		return store.User{}, errorf("get user %q: %w", id, err)
	}
	return u, nil
}

// FindUser matches the id first, then the e-mail, in one query.
func (s *Store) FindUser(ctx context.Context, login string) (store.User, error) {
	return s.findUser(ctx, login, false)
}

func (s *Store) GetUserWithFactors(ctx context.Context, id string) (store.User, error) {
	u, err := s.readUser(ctx, true, "u.id = ?", id)
	if err != nil {
		return store.User{}, errorf("get user %q with factors: %w", id, err)
	}
	return u, nil
}

func (s *Store) FindUserWithFactors(ctx context.Context, login string) (store.User, error) {
	return s.findUser(ctx, login, true)
}

func (s *Store) findUser(ctx context.Context, login string, factors bool) (store.User, error) {
	if login == "" {
		return store.User{}, errorf("find user: %w", store.ErrNotFound)
	}
	email := strings.ToLower(strings.TrimSpace(login))
	u, err := s.readUser(ctx, factors, "u.id = ? OR u.email = ? ORDER BY CASE WHEN u.id = ? THEN 0 ELSE 1 END LIMIT 1",
		login, email, login)
	if err != nil {
		return store.User{}, errorf("find user: %w", err)
	}
	return u, nil
}

// userWithFactorsCols are the user's columns, then its built-in factor's
// (NULL without one: the LEFT JOIN) and its count of passkeys.
var userWithFactorsCols = "u." + strings.ReplaceAll(userCols, ", ", ", u.") +
	", t." + strings.ReplaceAll(twoFactorCols, ", ", ", t.") +
	", (SELECT COUNT(*) FROM webauthn_credentials w WHERE w.user_id = u.id)"

// readUser reads the one user that where (on users u) finds, and with
// factors its second factors in the same statement. No user is
// store.ErrNotFound.
func (s *Store) readUser(ctx context.Context, factors bool, where string, args ...any) (store.User, error) {
	var (
		u   store.User
		err error
	)
	if factors {
		var tf twoFactorScan
		var passkeys int64
		u, err = scanUser(s.conn(ctx).Raw("SELECT "+userWithFactorsCols+" FROM users u LEFT JOIN two_factors t ON t.user_id = u.id WHERE "+where, args...).Row(),
			append(tf.dest(), &passkeys)...)
		if err == nil {
			u.Factors = &store.UserFactors{TwoFactor: tf.twoFactor(u.ID), Passkeys: int(passkeys)}
		}
	} else {
		u, err = scanUser(s.conn(ctx).Raw("SELECT "+userCols+" FROM users u WHERE "+where, args...).Row())
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, store.ErrNotFound
	}
	return u, err
}

// FindUserByPhone reads at most two verified holders, which tells one from
// several, through the phone_number index.
func (s *Store) FindUserByPhone(ctx context.Context, phone string) (store.User, error) {
	if phone == "" {
		return store.User{}, errorf("find user by phone: %w", store.ErrNotFound)
	}
	rows, err := s.conn(ctx).Raw("SELECT "+userCols+" FROM users WHERE phone_number = ? AND phone_verified ORDER BY id LIMIT 2", phone).Rows()
	if err != nil {
		return store.User{}, errorf("find user by phone: %w", err)
	}
	defer rows.Close()
	var found []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return store.User{}, errorf("find user by phone: %w", err)
		}
		found = append(found, u)
	}
	if err := rows.Err(); err != nil {
		return store.User{}, errorf("find user by phone: %w", err)
	}
	switch len(found) {
	case 0:
		return store.User{}, errorf("find user by phone: %w", store.ErrNotFound)
	case 1:
		return found[0], nil
	default:
		return store.User{}, errorf("find user by phone: several users hold the number verified: %w", store.ErrConflict)
	}
}

func (s *Store) ListUsers(ctx context.Context, p store.Page) ([]store.User, int, error) {
	lim, largs := pageSQL(p)
	rows, err := s.conn(ctx).Raw("SELECT "+userCols+", COUNT(*) OVER () FROM users ORDER BY id"+lim, largs...).Rows()
	if err != nil {
		return nil, 0, errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []store.User
	var total int64
	for rows.Next() {
		u, err := scanUser(rows, &total)
		if err != nil {
			return nil, 0, errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, errorf("list users: %w", err)
	}
	if len(out) == 0 {
		n, err := s.countAll(ctx, "users", p)
		if err != nil {
			return nil, 0, errorf("list users: %w", err)
		}
		return nil, n, nil
	}
	return out, int(total), nil
}

// PutUser stores the e-mail lower-cased, so uniqueness and FindUser ignore case.
func (s *Store) PutUser(ctx context.Context, u store.User, ifVersion int64) (store.User, bool, error) {
	if u.ID == "" {
		return store.User{}, false, errors.New("put user: empty id")
	}
	u.Email = strings.ToLower(strings.TrimSpace(u.Email))
	now := s.now()
	v, ca, created, err := s.putVersioned(ctx, usersTable, u.ID, []any{
		nullString(u.Email), u.PhoneNumber, u.EmailVerified, u.PhoneVerified, u.PasswordHash, u.Inactive, u.Doc,
	}, ifVersion, now)
	if err != nil {
		return store.User{}, false, errorf("put user %q: %w", u.ID, err)
	}
	u.Version, u.CreatedAt, u.UpdatedAt = v, ca, now
	return u, created, nil
}

// DeleteUser removes the user with everything that belongs to it, in one
// transaction. Its OAuth tokens are the oauth package's to revoke.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		db := s.conn(ctx)
		for _, q := range []string{
			"DELETE FROM browser_sessions WHERE user_id = ?",
			"DELETE FROM recovery_codes WHERE user_id = ?",
			"DELETE FROM two_factors WHERE user_id = ?",
			"DELETE FROM one_time_codes WHERE user_id = ?",
			"DELETE FROM consents WHERE user_id = ?",
			"DELETE FROM remembered_devices WHERE user_id = ?",
			"DELETE FROM two_factor_requirements WHERE user_id = ?",
			"DELETE FROM webauthn_credentials WHERE user_id = ?",
			"DELETE FROM webauthn_challenges WHERE user_id = ?",
		} {
			if err := db.Exec(q, id).Error; err != nil {
				return errorf("delete user %q: %w", id, err)
			}
		}
		res := db.Exec("DELETE FROM users WHERE id = ?", id)
		if res.Error != nil {
			return errorf("delete user %q: %w", id, res.Error)
		}
		if res.RowsAffected == 0 {
			return errorf("delete user %q: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// ---- clients

const clientCols = "id, secret_hash, doc, version, created_at, updated_at"

func scanClient(r rowScanner, extra ...any) (store.Client, error) {
	var c store.Client
	var ca, ua dbTime
	if err := r.Scan(append([]any{&c.ID, &c.SecretHash, &c.Doc, &c.Version, &ca, &ua}, extra...)...); err != nil {
		return store.Client{}, err
	}
	c.CreatedAt, c.UpdatedAt = ca.T, ua.T
	return c, nil
}

func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	c, err := scanClient(s.conn(ctx).Raw("SELECT "+clientCols+" FROM clients WHERE id = ?", id).Row())
	if errors.Is(err, sql.ErrNoRows) {
		return store.Client{}, errorf("get client %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Client{}, errorf("get client %q: %w", id, err)
	}
	return c, nil
}

func (s *Store) ListClients(ctx context.Context, p store.Page) ([]store.Client, int, error) {
	lim, largs := pageSQL(p)
	rows, err := s.conn(ctx).Raw("SELECT "+clientCols+", COUNT(*) OVER () FROM clients ORDER BY id"+lim, largs...).Rows()
	if err != nil {
		return nil, 0, errorf("list clients: %w", err)
	}
	defer rows.Close()
	var out []store.Client
	var total int64
	for rows.Next() {
		c, err := scanClient(rows, &total)
		if err != nil {
			return nil, 0, errorf("list clients: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, errorf("list clients: %w", err)
	}
	if len(out) == 0 {
		n, err := s.countAll(ctx, "clients", p)
		if err != nil {
			return nil, 0, errorf("list clients: %w", err)
		}
		return nil, n, nil
	}
	return out, int(total), nil
}

func (s *Store) PutClient(ctx context.Context, c store.Client, ifVersion int64) (store.Client, bool, error) {
	if c.ID == "" {
		return store.Client{}, false, errors.New("put client: empty id")
	}
	now := s.now()
	v, ca, created, err := s.putVersioned(ctx, clientsTable, c.ID, []any{c.SecretHash, c.Doc}, ifVersion, now)
	if err != nil {
		return store.Client{}, false, errorf("put client %q: %w", c.ID, err)
	}
	c.Version, c.CreatedAt, c.UpdatedAt = v, ca, now
	return c, created, nil
}

// DeleteClient removes the client; its consents go with it (foreign key).
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		db := s.conn(ctx)
		// What was issued to the client goes with it: its tokens and codes
		// would otherwise come back to life with a new client of that id.
		for _, q := range []string{
			"DELETE FROM consents WHERE client_id = ?",
			"DELETE FROM oauth_requests WHERE client_id = ?",
		} {
			if err := db.Exec(q, id).Error; err != nil {
				return errorf("delete client %q: %w", id, err)
			}
		}
		res := db.Exec("DELETE FROM clients WHERE id = ?", id)
		if res.Error != nil {
			return errorf("delete client %q: %w", id, res.Error)
		}
		if res.RowsAffected == 0 {
			return errorf("delete client %q: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// ---- auth configs

const authConfigCols = "id, doc, version, created_at, updated_at"

func scanAuthConfig(r rowScanner, extra ...any) (store.AuthConfig, error) {
	var a store.AuthConfig
	var ca, ua dbTime
	if err := r.Scan(append([]any{&a.ID, &a.Doc, &a.Version, &ca, &ua}, extra...)...); err != nil {
		return store.AuthConfig{}, err
	}
	a.CreatedAt, a.UpdatedAt = ca.T, ua.T
	return a, nil
}

func (s *Store) GetAuthConfig(ctx context.Context, id string) (store.AuthConfig, error) {
	a, err := scanAuthConfig(s.conn(ctx).Raw("SELECT "+authConfigCols+" FROM auth_configs WHERE id = ?", id).Row())
	if errors.Is(err, sql.ErrNoRows) {
		return store.AuthConfig{}, errorf("get auth config %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.AuthConfig{}, errorf("get auth config %q: %w", id, err)
	}
	return a, nil
}

// FindAuthConfig orders the preferred record first and counts the table in
// the same statement (a window count): the preferred one if it exists, else
// the only one when the count is one.
func (s *Store) FindAuthConfig(ctx context.Context, preferredID string) (store.AuthConfig, error) {
	var total int64
	a, err := scanAuthConfig(s.conn(ctx).Raw("SELECT "+authConfigCols+", COUNT(*) OVER () FROM auth_configs ORDER BY CASE WHEN id = ? THEN 0 ELSE 1 END, id LIMIT 1", preferredID).Row(), &total)
	if errors.Is(err, sql.ErrNoRows) {
		return store.AuthConfig{}, errorf("find auth config %q: %w", preferredID, store.ErrNotFound)
	}
	if err != nil {
		return store.AuthConfig{}, errorf("find auth config %q: %w", preferredID, err)
	}
	if a.ID != preferredID && total != 1 {
		return store.AuthConfig{}, errorf("find auth config %q: none by that id and %d others: %w", preferredID, total, store.ErrNotFound)
	}
	return a, nil
}

func (s *Store) ListAuthConfigs(ctx context.Context, p store.Page) ([]store.AuthConfig, int, error) {
	lim, largs := pageSQL(p)
	rows, err := s.conn(ctx).Raw("SELECT "+authConfigCols+", COUNT(*) OVER () FROM auth_configs ORDER BY id"+lim, largs...).Rows()
	if err != nil {
		return nil, 0, errorf("list auth configs: %w", err)
	}
	defer rows.Close()
	var out []store.AuthConfig
	var total int64
	for rows.Next() {
		a, err := scanAuthConfig(rows, &total)
		if err != nil {
			return nil, 0, errorf("list auth configs: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, errorf("list auth configs: %w", err)
	}
	if len(out) == 0 {
		n, err := s.countAll(ctx, "auth_configs", p)
		if err != nil {
			return nil, 0, errorf("list auth configs: %w", err)
		}
		return nil, n, nil
	}
	return out, int(total), nil
}

func (s *Store) PutAuthConfig(ctx context.Context, a store.AuthConfig, ifVersion int64) (store.AuthConfig, bool, error) {
	if a.ID == "" {
		return store.AuthConfig{}, false, errors.New("put auth config: empty id")
	}
	now := s.now()
	v, ca, created, err := s.putVersioned(ctx, authConfigsTable, a.ID, []any{a.Doc}, ifVersion, now)
	if err != nil {
		return store.AuthConfig{}, false, errorf("put auth config %q: %w", a.ID, err)
	}
	a.Version, a.CreatedAt, a.UpdatedAt = v, ca, now
	return a, created, nil
}

func (s *Store) DeleteAuthConfig(ctx context.Context, id string) error {
	res := s.conn(ctx).Exec("DELETE FROM auth_configs WHERE id = ?", id)
	if res.Error != nil {
		return errorf("delete auth config %q: %w", id, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("delete auth config %q: %w", id, store.ErrNotFound)
	}
	return nil
}
