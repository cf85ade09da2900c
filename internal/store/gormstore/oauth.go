package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gatehouse/gatehouse/internal/store"
)

const oauthCols = "kind, signature, request_id, client_id, subject, requested_at, expires_at, active, scopes, granted_scopes, audience, granted_audience, form, session"

const oauthRowMarks = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

// oauthRowArgs are the INSERT arguments of r, in oauthCols order.
func oauthRowArgs(r store.OAuthRequest) ([]any, error) {
	if r.Kind == "" || r.Signature == "" {
		return nil, errors.New("empty kind or signature")
	}
	var lists [4]string
	for i, l := range [][]string{r.Scopes, r.GrantedScopes, r.Audience, r.GrantedAudience} {
		enc, err := encodeStrings(l)
		if err != nil {
			return nil, err
		}
		lists[i] = enc
	}
	return []any{string(r.Kind), r.Signature, r.RequestID, r.ClientID, r.Subject, tv(r.RequestedAt), tv(r.ExpiresAt), r.Active,
		lists[0], lists[1], lists[2], lists[3], r.Form, r.Session}, nil
}

// CreateOAuthRequest stores one record. Outside a transaction on SQLite the
// row joins a group commit (batch.go); elsewhere it is one INSERT.
func (s *Store) CreateOAuthRequest(ctx context.Context, r store.OAuthRequest) error {
	args, err := oauthRowArgs(r)
	if err != nil {
		return errorf("create %s request: %w", r.Kind, err)
	}
	if s.groupsInserts(ctx) {
		err = s.queueInsert(ctx, args)
	} else {
		err = s.insertOAuthRows(ctx, args)
	}
	if isDuplicate(err) {
		return errorf("create %s request: signature already stored: %w", r.Kind, store.ErrConflict)
	}
	if err != nil {
		return errorf("create %s request: %w", r.Kind, err)
	}
	return nil
}

// CreateOAuthRequests is one multi-row INSERT: a statement is atomic, so
// the rows are stored together or not at all.
func (s *Store) CreateOAuthRequests(ctx context.Context, rs []store.OAuthRequest) error {
	if len(rs) == 0 {
		return nil
	}
	rows := make([][]any, len(rs))
	for i, r := range rs {
		a, err := oauthRowArgs(r)
		if err != nil {
			return errorf("create %s request: %w", r.Kind, err)
		}
		rows[i] = a
	}
	err := s.insertOAuthRows(ctx, rows...)
	if isDuplicate(err) {
		return errorf("create %d oauth requests: a signature is already stored: %w", len(rs), store.ErrConflict)
	}
	if err != nil {
		return errorf("create %d oauth requests: %w", len(rs), err)
	}
	return nil
}

// insertOAuthRows is one INSERT of rows (oauthRowArgs each); the database's
// error is returned as it is, for the caller to name.
func (s *Store) insertOAuthRows(ctx context.Context, rows ...[]any) error {
	marks := make([]string, len(rows))
	args := make([]any, 0, 14*len(rows))
	for i, a := range rows {
		marks[i] = oauthRowMarks
		args = append(args, a...)
	}
	return s.conn(ctx).Exec("INSERT INTO oauth_requests ("+oauthCols+") VALUES "+strings.Join(marks, ", "), args...).Error
}

// kindsIn is the "(?, ?)" list and arguments of an IN over kinds.
func kindsIn(kinds []store.OAuthKind) (string, []any) {
	marks := make([]string, len(kinds))
	args := make([]any, len(kinds))
	for i, k := range kinds {
		marks[i], args[i] = "?", string(k)
	}
	return "(" + strings.Join(marks, ", ") + ")", args
}

// oauthWithHolderFrom reads the record's columns and its holder's inactive
// flag (NULL without a user) from oauth_requests r: a primary-key look-up
// in users, skipped for a record without a subject.
var oauthWithHolderFrom = "SELECT r." + strings.ReplaceAll(oauthCols, ", ", ", r.") +
	", u.inactive FROM oauth_requests r LEFT JOIN users u ON r.subject <> '' AND u.id = r.subject"

// GetOAuthRequests names every kind: the primary key (kind, signature)
// serves each as a point look-up.
func (s *Store) GetOAuthRequests(ctx context.Context, signature string, kinds []store.OAuthKind) ([]store.OAuthRequest, error) {
	if len(kinds) == 0 {
		return nil, nil
	}
	in, args := kindsIn(kinds)
	rows, err := s.conn(ctx).Raw(oauthWithHolderFrom+" WHERE r.kind IN "+in+" AND r.signature = ?", append(args, signature)...).Rows()
	if err != nil {
		return nil, errorf("get oauth requests: %w", err)
	}
	defer rows.Close()
	var out []store.OAuthRequest
	for rows.Next() {
		o, err := scanOAuthRequestWithHolder(rows)
		if err != nil {
			return nil, errorf("get oauth requests: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, errorf("get oauth requests: %w", err)
	}
	return out, nil
}

func (s *Store) DeleteOAuthRequests(ctx context.Context, signature string, kinds []store.OAuthKind) (int64, error) {
	if len(kinds) == 0 {
		return 0, nil
	}
	in, args := kindsIn(kinds)
	res := s.conn(ctx).Exec("DELETE FROM oauth_requests WHERE kind IN "+in+" AND signature = ?", append(args, signature)...)
	if res.Error != nil {
		return 0, errorf("delete oauth requests: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// scanOAuthRequestWithHolder scans a row of oauthWithHolderFrom.
func scanOAuthRequestWithHolder(r rowScanner) (store.OAuthRequest, error) {
	var inactive sql.NullBool
	o, err := scanOAuthRequest(r, &inactive)
	if err != nil {
		return o, err
	}
	o.Holder = store.HolderInactive
	if inactive.Valid && !inactive.Bool {
		o.Holder = store.HolderActive
	}
	return o, nil
}

// scanOAuthRequest scans a row of oauthCols, then extra.
func scanOAuthRequest(r rowScanner, extra ...any) (store.OAuthRequest, error) {
	var o store.OAuthRequest
	var kind string
	var ra, ea dbTime
	var lists [4]string
	dest := []any{&kind, &o.Signature, &o.RequestID, &o.ClientID, &o.Subject, &ra, &ea, &o.Active,
		&lists[0], &lists[1], &lists[2], &lists[3], &o.Form, &o.Session}
	if err := r.Scan(append(dest, extra...)...); err != nil {
		return store.OAuthRequest{}, err
	}
	o.Kind, o.RequestedAt, o.ExpiresAt = store.OAuthKind(kind), ra.T, ea.T
	for i, dst := range []*[]string{&o.Scopes, &o.GrantedScopes, &o.Audience, &o.GrantedAudience} {
		v, err := decodeStrings(lists[i])
		if err != nil {
			return store.OAuthRequest{}, errorf("decode lists: %w", err)
		}
		*dst = v
	}
	return o, nil
}

// GetOAuthRequest reads the holder of the records a grant redeems (codes,
// refresh tokens). An access token is read alone: introspection reads
// mostly client_credentials tokens, which have no holder, and on SQLite a
// join costs several plain reads.
func (s *Store) GetOAuthRequest(ctx context.Context, kind store.OAuthKind, signature string) (store.OAuthRequest, error) {
	var o store.OAuthRequest
	var err error
	if kind == store.KindAuthorizeCode || kind == store.KindRefreshToken {
		o, err = scanOAuthRequestWithHolder(s.conn(ctx).Raw(oauthWithHolderFrom+" WHERE r.kind = ? AND r.signature = ?",
			string(kind), signature).Row())
	} else {
		o, err = scanOAuthRequest(s.conn(ctx).Raw("SELECT "+oauthCols+" FROM oauth_requests WHERE kind = ? AND signature = ?",
			string(kind), signature).Row())
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.OAuthRequest{}, errorf("get %s request: %w", kind, store.ErrNotFound)
	}
	if err != nil {
		return store.OAuthRequest{}, errorf("get %s request: %w", kind, err)
	}
	return o, nil
}

func (s *Store) DeleteOAuthRequest(ctx context.Context, kind store.OAuthKind, signature string) error {
	res := s.conn(ctx).Exec("DELETE FROM oauth_requests WHERE kind = ? AND signature = ?", string(kind), signature)
	if res.Error != nil {
		return errorf("delete %s request: %w", kind, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorf("delete %s request: %w", kind, store.ErrNotFound)
	}
	return nil
}

// DeactivateOAuthRequest is one conditional UPDATE; only when it matches no
// row does a second query tell a missing record from an inactive one.
func (s *Store) DeactivateOAuthRequest(ctx context.Context, kind store.OAuthKind, signature string) error {
	db := s.conn(ctx)
	res := db.Exec("UPDATE oauth_requests SET active = ? WHERE kind = ? AND signature = ? AND active = ?",
		false, string(kind), signature, true)
	if res.Error != nil {
		return errorf("deactivate %s request: %w", kind, res.Error)
	}
	if res.RowsAffected == 1 {
		return nil
	}
	return errorf("deactivate %s request: %w", kind, missingOrInactive(db, kind, signature))
}

// missingOrInactive tells why a deactivation of the record changed nothing:
// ErrNotFound when there is none, else ErrConflict (it was inactive).
func missingOrInactive(db *gorm.DB, kind store.OAuthKind, signature string) error {
	var n int64
	if err := db.Raw("SELECT COUNT(*) FROM oauth_requests WHERE kind = ? AND signature = ?", string(kind), signature).Row().Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return fmt.Errorf("already inactive: %w", store.ErrConflict)
}

// RedeemAuthorizeCode flips the code and retires the other records in one
// UPDATE; RETURNING tells whether the code was among the rows it changed.
func (s *Store) RedeemAuthorizeCode(ctx context.Context, signature string, retire []store.OAuthKind, retireAt time.Time) error {
	code := string(store.KindAuthorizeCode)
	in, args := kindsIn(append([]store.OAuthKind{store.KindAuthorizeCode}, retire...))
	db := s.conn(ctx)
	rows, err := db.Raw("UPDATE oauth_requests SET active = ?, expires_at = CASE WHEN kind = ? THEN expires_at ELSE ? END"+
		" WHERE kind IN "+in+" AND signature = ? AND active = ? RETURNING kind",
		append(append([]any{false, code, tv(retireAt)}, args...), signature, true)...).Rows()
	if err != nil {
		return errorf("redeem code: %w", err)
	}
	redeemed := false
	for rows.Next() {
		var kind string
		if err := rows.Scan(&kind); err != nil {
			rows.Close()
			return errorf("redeem code: %w", err)
		}
		redeemed = redeemed || kind == code
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return errorf("redeem code: %w", err)
	}
	if redeemed {
		return nil
	}
	return errorf("redeem code: %w", missingOrInactive(db, store.KindAuthorizeCode, signature))
}

func (s *Store) DeactivateOAuthRequestsByRequestID(ctx context.Context, kind store.OAuthKind, requestID string) error {
	err := s.conn(ctx).Exec("UPDATE oauth_requests SET active = ? WHERE request_id = ? AND kind = ? AND active = ?",
		false, requestID, string(kind), true).Error
	if err != nil {
		return errorf("deactivate %s requests by request id: %w", kind, err)
	}
	return nil
}

func (s *Store) DeleteOAuthRequestsByRequestID(ctx context.Context, kind store.OAuthKind, requestID string) error {
	err := s.conn(ctx).Exec("DELETE FROM oauth_requests WHERE request_id = ? AND kind = ?", requestID, string(kind)).Error
	if err != nil {
		return errorf("delete %s requests by request id: %w", kind, err)
	}
	return nil
}

func (s *Store) DeactivateOAuthRequestsBySubject(ctx context.Context, subject string) error {
	if subject == "" {
		return errors.New("deactivate oauth requests by subject: empty subject")
	}
	err := s.conn(ctx).Exec("UPDATE oauth_requests SET active = ? WHERE subject = ? AND active = ?", false, subject, true).Error
	if err != nil {
		return errorf("deactivate oauth requests by subject: %w", err)
	}
	return nil
}

func (s *Store) DeactivateOtherOAuthRequests(ctx context.Context, subject, keepRequestID string) error {
	if subject == "" {
		return errors.New("deactivate other oauth requests: empty subject")
	}
	err := s.conn(ctx).Exec("UPDATE oauth_requests SET active = ? WHERE subject = ? AND active = ? AND request_id <> ?", false, subject, true, keepRequestID).Error
	if err != nil {
		return errorf("deactivate other oauth requests: %w", err)
	}
	return nil
}

// DeleteExpiredOAuthRequests purges records whose ExpiresAt is before
// before; records stored without an expiry are kept.
func (s *Store) DeleteExpiredOAuthRequests(ctx context.Context, before time.Time) (n int64, err error) {
	n, err = s.deleteInBatches(ctx, "oauth_requests", "kind, signature", "expires_at < ?", utc(before))
	if err != nil {
		return n, errorf("delete expired oauth requests: %w", err)
	}
	return n, nil
}
