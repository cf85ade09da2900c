package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/store"
)

// errLostRace marks the loser of a race for a single-use record (a code
// being redeemed, a refresh token being rotated) so the token endpoint can
// answer invalid_grant instead of fosite's server_error.
var errLostRace = errors.New("token already used by a concurrent request")

// errMFARequired: the password was right but the user has a second factor;
// the token endpoint turns it into 403 mfa_required.
var errMFARequired = errors.New("second factor required")

// storageError marks a failure of the database (not a missing record), so
// handlers can answer 503 where fosite would answer "inactive".
type storageError struct{ err error }

func (e *storageError) Error() string { return e.err.Error() }
func (e *storageError) Unwrap() error { return e.err }

func storeErr(op string, err error) error {
	return &storageError{err: fmt.Errorf("%s: %w", op, err)}
}

// fositeStore implements fosite's storage interfaces on store.Store. Each
// fosite record is a store.OAuthRequest keyed by (kind, signature), with the
// request's parts as columns and the session as JSON; fosite.Request does not
// unmarshal (its Client is an interface), so reads rebuild it, fetching the
// client afresh: a deleted client's tokens die with it.
type fositeStore struct {
	p *Provider
}

var (
	_ fosite.Storage                                      = (*fositeStore)(nil)
	_ oauth2.CoreStorage                                  = (*fositeStore)(nil)
	_ oauth2.TokenRevocationStorage                       = (*fositeStore)(nil)
	_ oauth2.ResourceOwnerPasswordCredentialsGrantStorage = (*fositeStore)(nil)
	_ pkce.PKCERequestStorage                             = (*fositeStore)(nil)
	_ openid.OpenIDConnectRequestStorage                  = (*fositeStore)(nil)
)

func (s *fositeStore) st() store.Store { return s.p.cfg.Store }

// GetClient returns the authorization endpoint's view of the client.
func (s *fositeStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	return s.p.getClient(ctx, id, "")
}

// Transactions: fosite's code exchange and refresh run in one. The records
// they create are queued and stored together at the commit.

func (s *fositeStore) BeginTX(ctx context.Context) (context.Context, error) {
	if err := s.flushQueued(ctx); err != nil {
		return ctx, err
	}
	txCtx, err := s.st().BeginTx(ctx)
	if err != nil {
		return ctx, err
	}
	return withWriteBatch(txCtx), nil
}

// Commit stores the queued records, then commits. A failed store leaves the
// transaction open for fosite's rollback. The commit of a refresh rotation
// with a grace period also keeps the new pair (rotation.go), in the same
// INSERT as the pair's own records.
func (s *fositeStore) Commit(ctx context.Context) error {
	if rot := rotationOf(ctx); rot != nil {
		rec, err := s.graceRecord(ctx, rot)
		if err != nil {
			return err
		}
		if !writeBatchOf(ctx).add(rec) {
			return errors.New("keep the rotated pair: no transaction batch")
		}
	}
	if err := s.flushQueued(ctx); err != nil {
		return err
	}
	return s.st().CommitTx(ctx)
}

func (s *fositeStore) Rollback(ctx context.Context) error {
	writeBatchOf(ctx).discard()
	recordMemoOf(ctx).forgetAll() // what this request wrote is undone
	return s.st().RollbackTx(ctx)
}

// flushQueued stores the records queued in ctx. Every statement other than
// a queued create runs it first, so writes reach the database in fosite's
// order.
func (s *fositeStore) flushQueued(ctx context.Context) error {
	if err := writeBatchOf(ctx).flush(ctx, s.st()); err != nil {
		return storeErr("store oauth requests", err)
	}
	return nil
}

// create persists r as a record of kind under signature.
func (s *fositeStore) create(ctx context.Context, kind store.OAuthKind, signature string, r fosite.Requester, expires time.Time) error {
	sess := sessionOf(r)
	body, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("marshal session: %w", err)
	}
	rec := store.OAuthRequest{
		Kind:            kind,
		Signature:       signature,
		RequestID:       r.GetID(),
		ClientID:        r.GetClient().GetID(),
		Subject:         sess.UserID,
		RequestedAt:     r.GetRequestedAt().UTC(),
		ExpiresAt:       expires.UTC(),
		Active:          true,
		Scopes:          r.GetRequestedScopes(),
		GrantedScopes:   r.GetGrantedScopes(),
		Audience:        r.GetRequestedAudience(),
		GrantedAudience: r.GetGrantedAudience(),
		Form:            r.GetRequestForm().Encode(),
		Session:         body,
	}
	if writeBatchOf(ctx).add(rec) {
		return nil
	}
	recordMemoOf(ctx).forget(kind, signature)
	if err := s.st().CreateOAuthRequest(ctx, rec); err != nil {
		return storeErr(fmt.Sprintf("store %s", kind), err)
	}
	return nil
}

// codeBundle is what a code exchange reads under the code's signature.
var codeBundle = []store.OAuthKind{store.KindAuthorizeCode, store.KindPKCE, store.KindOIDC}

// read returns the record of kind under signature, from the request memo
// when this request read it already. Reading a code (with a memo) reads
// its PKCE and OpenID records in the same statement: the exchange asks for
// them next.
func (s *fositeStore) read(ctx context.Context, kind store.OAuthKind, signature string) (store.OAuthRequest, error) {
	if err := s.flushQueued(ctx); err != nil {
		return store.OAuthRequest{}, err
	}
	m := recordMemoOf(ctx)
	if e, ok := m.lookup(kind, signature); ok {
		if !e.found {
			return store.OAuthRequest{}, store.ErrNotFound
		}
		return e.rec, nil
	}
	if m != nil && kind == store.KindAuthorizeCode {
		recs, err := s.st().GetOAuthRequests(ctx, signature, codeBundle)
		if err != nil {
			return store.OAuthRequest{}, err
		}
		for _, k := range codeBundle {
			m.put(k, signature, memoRecord{})
		}
		for _, r := range recs {
			m.put(r.Kind, signature, memoRecord{rec: r, found: true})
		}
		if e, _ := m.lookup(kind, signature); e.found {
			return e.rec, nil
		}
		return store.OAuthRequest{}, store.ErrNotFound
	}
	rec, err := s.st().GetOAuthRequest(ctx, kind, signature)
	switch {
	case err == nil:
		m.put(kind, signature, memoRecord{rec: rec, found: true})
	case errors.Is(err, store.ErrNotFound):
		m.put(kind, signature, memoRecord{})
	}
	return rec, err
}

// get rebuilds the record of kind under signature. A missing record (or
// client) is fosite.ErrNotFound; an inactive one comes back with inactive
// set so callers can return the request together with the right error.
func (s *fositeStore) get(ctx context.Context, kind store.OAuthKind, signature string, tmpl fosite.Session) (fosite.Requester, bool, error) {
	rec, err := s.read(ctx, kind, signature)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, fosite.ErrNotFound
	}
	var se *storageError
	if errors.As(err, &se) {
		return nil, false, err
	}
	if err != nil {
		return nil, false, storeErr(fmt.Sprintf("get %s", kind), err)
	}
	c, err := s.p.getClient(ctx, rec.ClientID, "")
	if err != nil {
		return nil, false, err
	}
	sess, ok := tmpl.(*session)
	if !ok || sess == nil {
		sess = newSession()
	}
	if err := json.Unmarshal(rec.Session, sess); err != nil {
		return nil, false, fmt.Errorf("decode %s session: %w", kind, err)
	}
	sess.holder = rec.Holder
	form, err := url.ParseQuery(rec.Form)
	if err != nil {
		return nil, false, fmt.Errorf("decode %s form: %w", kind, err)
	}
	r := &fosite.Request{
		ID:                rec.RequestID,
		RequestedAt:       rec.RequestedAt,
		Client:            c,
		RequestedScope:    fosite.Arguments(rec.Scopes),
		GrantedScope:      fosite.Arguments(rec.GrantedScopes),
		RequestedAudience: fosite.Arguments(rec.Audience),
		GrantedAudience:   fosite.Arguments(rec.GrantedAudience),
		Form:              form,
		Session:           sess,
	}
	return r, !rec.Active, nil
}

func (s *fositeStore) delete(ctx context.Context, kind store.OAuthKind, signature string) error {
	if err := s.flushQueued(ctx); err != nil {
		return err
	}
	m := recordMemoOf(ctx)
	if e, ok := m.lookup(kind, signature); ok && e.deleted {
		return nil // deleted by this request already, with its code
	}
	err := s.st().DeleteOAuthRequest(ctx, kind, signature)
	if err == nil || errors.Is(err, store.ErrNotFound) {
		m.put(kind, signature, memoRecord{})
	} else {
		m.forget(kind, signature)
	}
	if errors.Is(err, store.ErrNotFound) {
		return fosite.ErrNotFound
	}
	if err != nil {
		return storeErr(fmt.Sprintf("delete %s", kind), err)
	}
	return nil
}

func (s *fositeStore) expiry(r fosite.Requester, tt fosite.TokenType, fallback time.Duration) time.Time {
	if exp := r.GetSession().GetExpiresAt(tt); !exp.IsZero() {
		return exp
	}
	if fallback <= 0 {
		return time.Time{}
	}
	return r.GetRequestedAt().Add(fallback)
}

// codeRecordLife: a used code is kept past its expiry so a replay in that
// window still revokes the tokens it produced.
const codeRecordLife = 24 * time.Hour

// Authorization codes.

func (s *fositeStore) CreateAuthorizeCodeSession(ctx context.Context, signature string, r fosite.Requester) error {
	exp := s.expiry(r, fosite.AuthorizeCode, s.p.cfg.AuthCodeLifespan).Add(codeRecordLife)
	return s.create(ctx, store.KindAuthorizeCode, signature, r, exp)
}

func (s *fositeStore) GetAuthorizeCodeSession(ctx context.Context, signature string, tmpl fosite.Session) (fosite.Requester, error) {
	r, inactive, err := s.get(ctx, store.KindAuthorizeCode, signature, tmpl)
	if err != nil {
		return nil, err
	}
	if inactive {
		sess := sessionOf(r)
		s.p.audit(ctx, store.AuditEvent{Type: audit.TokenReuse, UserID: sess.UserID, ClientID: r.GetClient().GetID(),
			Detail: map[string]string{"token": "authorization_code"}})
		return r, fosite.ErrInvalidatedAuthorizeCode
	}
	return r, nil
}

// InvalidateAuthorizeCodeSession flips the code inactive atomically: of many
// concurrent redemptions exactly one gets past this point. The PKCE record
// is retired in the same statement (it was kept until now; see
// DeletePKCERequestSession), and so is the OpenID record when this request
// holds it in its memo: the OpenID handler, next, reads it from there, and
// its delete is then done already. Retired records are inactive and due
// for the next purge; nothing reads them but through their active code.
func (s *fositeStore) InvalidateAuthorizeCodeSession(ctx context.Context, signature string) error {
	if err := s.flushQueued(ctx); err != nil {
		return err
	}
	m := recordMemoOf(ctx)
	retire := []store.OAuthKind{store.KindPKCE}
	oidc, ok := m.lookup(store.KindOIDC, signature)
	early := ok && oidc.found && !oidc.deleted
	if early {
		retire = append(retire, store.KindOIDC)
	}
	err := s.st().RedeemAuthorizeCode(ctx, signature, retire, s.p.now())
	switch {
	case errors.Is(err, store.ErrConflict):
		m.deactivated(store.KindAuthorizeCode, signature)
		return fmt.Errorf("invalidate code: %w", errLostRace)
	case errors.Is(err, store.ErrNotFound):
		m.put(store.KindAuthorizeCode, signature, memoRecord{})
		return fosite.ErrNotFound
	case err != nil:
		m.forget(store.KindAuthorizeCode, signature)
		return storeErr("invalidate code", err)
	}
	m.deactivated(store.KindAuthorizeCode, signature)
	m.put(store.KindPKCE, signature, memoRecord{})
	if early {
		oidc.deleted = true
		m.put(store.KindOIDC, signature, oidc)
	}
	return nil
}

// Access tokens.

func (s *fositeStore) CreateAccessTokenSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.create(ctx, store.KindAccessToken, signature, r, s.expiry(r, fosite.AccessToken, s.p.cfg.AccessTokenLifespan))
}

func (s *fositeStore) GetAccessTokenSession(ctx context.Context, signature string, tmpl fosite.Session) (fosite.Requester, error) {
	r, inactive, err := s.get(ctx, store.KindAccessToken, signature, tmpl)
	if err != nil {
		return nil, err
	}
	if inactive {
		return r, fosite.ErrInactiveToken
	}
	return r, nil
}

func (s *fositeStore) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return s.delete(ctx, store.KindAccessToken, signature)
}

// Refresh tokens.

func (s *fositeStore) CreateRefreshTokenSession(ctx context.Context, signature, _ string, r fosite.Requester) error {
	return s.create(ctx, store.KindRefreshToken, signature, refreshRecord(r), s.expiry(r, fosite.RefreshToken, 0))
}

// GetRefreshTokenSession returns an inactive token with ErrInactiveToken
// (fosite then revokes its family), except in the refresh grant when the
// token was rotated within its grace period: then it passes as active, for
// fosite to validate it, and the rotation, finding it rotated, answers with
// the pair kept for it (refreshGrant.settle).
func (s *fositeStore) GetRefreshTokenSession(ctx context.Context, signature string, tmpl fosite.Session) (fosite.Requester, error) {
	r, inactive, err := s.get(ctx, store.KindRefreshToken, signature, tmpl)
	if err != nil {
		return nil, err
	}
	if !inactive {
		return r, nil
	}
	if inRefreshGrant(ctx) {
		live, err := s.graceLive(ctx, signature, r.GetClient())
		if err != nil {
			return nil, err
		}
		if live {
			return r, nil
		}
	}
	return r, fosite.ErrInactiveToken
}

// DeleteRefreshTokenSession is fosite's first step on a detected reuse. A
// record already gone was deleted by a concurrent reuse of the same token:
// the revocation of the family goes on all the same (fosite would stop and
// answer invalid_request).
func (s *fositeStore) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	err := s.delete(ctx, store.KindRefreshToken, signature)
	if errors.Is(err, fosite.ErrNotFound) {
		return nil
	}
	return err
}

// RotateRefreshToken retires the presented refresh token (atomically: of
// concurrent refreshes one wins) and the family's access tokens, which the
// new pair replaces. A token found inactive or gone (a concurrent refresh
// rotated it, or a detected reuse deleted it) is a lost race, which
// refreshGrant.settle answers.
func (s *fositeStore) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	if err := s.flushQueued(ctx); err != nil {
		return err
	}
	recordMemoOf(ctx).forgetAll() // by request id below
	err := s.st().DeactivateOAuthRequest(ctx, store.KindRefreshToken, signature)
	switch {
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("rotate refresh token: %w", errors.Join(errLostRace, fosite.ErrSerializationFailure))
	case err != nil:
		return storeErr("rotate refresh token", err)
	}
	if err := s.st().DeactivateOAuthRequestsByRequestID(ctx, store.KindAccessToken, requestID); err != nil {
		return storeErr("deactivate replaced access tokens", err)
	}
	return nil
}

func (s *fositeStore) RevokeRefreshToken(ctx context.Context, requestID string) error {
	if err := s.flushQueued(ctx); err != nil {
		return err
	}
	recordMemoOf(ctx).forgetAll()
	if err := s.st().DeactivateOAuthRequestsByRequestID(ctx, store.KindRefreshToken, requestID); err != nil {
		return storeErr("revoke refresh tokens", err)
	}
	return nil
}

func (s *fositeStore) RevokeAccessToken(ctx context.Context, requestID string) error {
	if err := s.flushQueued(ctx); err != nil {
		return err
	}
	recordMemoOf(ctx).forgetAll()
	if err := s.st().DeactivateOAuthRequestsByRequestID(ctx, store.KindAccessToken, requestID); err != nil {
		return storeErr("revoke access tokens", err)
	}
	return nil
}

// PKCE.

func (s *fositeStore) CreatePKCERequestSession(ctx context.Context, signature string, r fosite.Requester) error {
	exp := s.expiry(r, fosite.AuthorizeCode, s.p.cfg.AuthCodeLifespan).Add(codeRecordLife)
	return s.create(ctx, store.KindPKCE, signature, r, exp)
}

func (s *fositeStore) GetPKCERequestSession(ctx context.Context, signature string, tmpl fosite.Session) (fosite.Requester, error) {
	r, _, err := s.get(ctx, store.KindPKCE, signature, tmpl)
	return r, err
}

// DeletePKCERequestSession does nothing: fosite calls it before it checks the
// verifier, so a wrong verifier followed by a retry without one would find no
// challenge and pass (fosite PR #883). The record goes when the code is
// redeemed (InvalidateAuthorizeCodeSession).
func (s *fositeStore) DeletePKCERequestSession(context.Context, string) error { return nil }

// OpenID Connect sessions. fosite keys them by the code itself; we store
// them under the code's signature, never the code.

func (s *fositeStore) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	exp := s.expiry(r, fosite.AuthorizeCode, s.p.cfg.AuthCodeLifespan).Add(codeRecordLife)
	return s.create(ctx, store.KindOIDC, s.p.strategy.AuthorizeCodeSignature(ctx, code), r, exp)
}

// GetOpenIDConnectSession reads into a fresh session: the caller's requester
// is the token request, whose session must not be overwritten.
func (s *fositeStore) GetOpenIDConnectSession(ctx context.Context, code string, _ fosite.Requester) (fosite.Requester, error) {
	out, _, err := s.get(ctx, store.KindOIDC, s.p.strategy.AuthorizeCodeSignature(ctx, code), newSession())
	return out, err
}

func (s *fositeStore) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	err := s.delete(ctx, store.KindOIDC, s.p.strategy.AuthorizeCodeSignature(ctx, code))
	if errors.Is(err, fosite.ErrNotFound) {
		return nil
	}
	return err
}

// Authenticate is the password grant's user check. Unknown user, wrong
// password, inactive and throttled accounts are all fosite.ErrNotFound
// (invalid_grant). After a right password, passwordSecondFactor decides:
// errMFARequired (403 mfa_required, with an mfa_token when the user can
// continue) or errInvalidOTP for a wrong `otp`.
func (s *fositeStore) Authenticate(ctx context.Context, name, password string) (string, error) {
	// The address the server's middleware resolved (trusted proxies
	// honoured), as the hosted login and the sign-in API throttle by.
	at := account.Attempt{Login: name, Password: password, RemoteAddr: s.p.clientAddr(ctx)}
	if r, ok := ctx.Value(fosite.RequestContextKey).(*http.Request); ok {
		at.RequestID = requestID(ctx, r)
	}
	var c *client
	ar, _ := ctx.Value(fosite.AccessRequestContextKey).(fosite.AccessRequester)
	if ar != nil && ar.GetClient() != nil {
		at.ClientID = ar.GetClient().GetID()
		c, _ = ar.GetClient().(*client)
	}
	u, err := s.p.cfg.Accounts.CheckPassword(ctx, at)
	if errors.Is(err, account.ErrThrottled) {
		return "", err // writeTokenError answers 429 with Retry-After
	}
	if errors.Is(err, account.ErrAccountDisabled) {
		return "", err // writeTokenError says so
	}
	if errors.Is(err, account.ErrInvalidCredentials) {
		return "", fosite.ErrNotFound
	}
	if err != nil {
		return "", storeErr("check password", err)
	}
	if err := s.p.passwordSecondFactor(ctx, ar, c, u); err != nil {
		return "", err
	}
	return u.ID, nil
}
