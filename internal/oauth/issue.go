package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/ory/fosite"
)

// Refusals of IssueTokens and VerifyUserToken. Any other error they return
// is a failure of the database: answer 503 and let the caller retry.
var (
	ErrUnknownClient   = errors.New("unknown client")
	ErrGrantNotAllowed = errors.New("the client may not sign users in with a password (grant type password)")
	ErrInactiveUser    = errors.New("the account is not active")
	ErrInvalidToken    = errors.New("the access token is invalid, expired or revoked")
)

// UserToken is what a valid user access token says.
type UserToken struct {
	Subject  string
	ClientID string
	Scopes   []string
	AuthTime time.Time
	AMR      []string
	// RequestID names the token's family (kept across refreshes), for
	// store.DeactivateOtherOAuthRequests.
	RequestID string
}

// IssueTokens issues tokens to a client for a user who completed sign-in
// through the JSON API (password and any second factor already checked by
// the caller). The answer has the token endpoint's JSON shape
// (access_token, token_type, expires_in, scope, and refresh_token /
// id_token when they apply). The tokens belong to a password-grant family:
// the client needs grant type password (ErrGrantNotAllowed otherwise), and
// the format, lifetimes and refresh_token setting of its
// auth.password settings apply. g.Scopes are the scopes asked for; those the
// client may not have are dropped, and offline_access is added exactly when
// the password settings turn refresh tokens on. An id_token comes with
// openid. g.AMR and g.AuthTime (now when zero) go into the tokens.
// ErrUnknownClient, ErrInactiveUser for a disabled or deleted user.
//
// The request runs through fosite's token handlers like a token endpoint
// request, so the tokens are stored, introspectable and revocable like
// every other.
func (p *Provider) IssueTokens(ctx context.Context, clientID string, g Grant) (map[string]any, error) {
	if g.Subject == "" {
		return nil, errors.New("issue tokens: empty subject")
	}
	c, err := p.getClient(ctx, clientID, grantPassword)
	if errors.Is(err, fosite.ErrNotFound) {
		return nil, ErrUnknownClient
	}
	if err != nil {
		return nil, fmt.Errorf("issue tokens: %w", err)
	}
	if !c.hasGrant(grantPassword) {
		return nil, ErrGrantNotAllowed
	}
	if err := p.checkUser(ctx, g.Subject); err != nil {
		var se *storageError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("issue tokens: %w", se)
		}
		return nil, ErrInactiveUser
	}

	now := p.now()
	sess := newSession()
	sess.Subject = g.Subject
	sess.SessionID = g.SessionID
	claims := sess.IDTokenClaims()
	claims.AuthTime = g.AuthTime.UTC().Truncate(time.Second)
	claims.AuthenticationMethodsReferences = slices.Clone(g.AMR)
	claims.AuthenticationContextClassReference = g.ACR
	if g.SessionID != "" {
		claims.Add("sid", g.SessionID)
	}

	ar := fosite.NewAccessRequest(sess)
	ar.GrantTypes = fosite.Arguments{grantPassword}
	ar.Client = c
	ar.RequestedAt = now
	ar.Form = url.Values{"grant_type": {grantPassword}}
	allowed := c.GetScopes()
	var scopes fosite.Arguments
	for _, s := range g.Scopes {
		if allowed.Has(s) && !scopes.Has(s) {
			scopes = append(scopes, s)
		}
	}
	ar.SetRequestedScopes(scopes)
	if err := p.prepareGrant(ctx, ar, c); err != nil {
		return nil, fmt.Errorf("issue tokens: %w", err)
	}
	resp, err := p.fosite.NewAccessResponse(ctx, ar)
	if err != nil {
		rfc := fosite.ErrorToRFC6749Error(err)
		p.cfg.Logger.ErrorContext(ctx, "issue tokens", "client", c.GetID(), "err", rfc.ErrorField, "debug", rfc.Debug(), "cause", rfc.Cause())
		return nil, fmt.Errorf("issue tokens for client %q: %w", c.GetID(), err)
	}
	resp.SetTokenType("Bearer")
	return resp.ToMap(), nil
}

// VerifyUserToken validates a Bearer access token issued to a user (any
// user grant; not client_credentials): active, not expired, not revoked,
// its user still active. ErrInvalidToken for every refusal.
func (p *Provider) VerifyUserToken(ctx context.Context, token string) (UserToken, error) {
	if token == "" {
		return UserToken{}, ErrInvalidToken
	}
	tu, ar, err := p.introspect(ctx, token, fosite.AccessToken)
	if err != nil {
		var se *storageError
		if errors.As(err, &se) {
			return UserToken{}, fmt.Errorf("verify user token: %w", se)
		}
		return UserToken{}, ErrInvalidToken
	}
	sess := sessionOf(ar)
	// A DPoP-bound token is refused here: these callers take Bearer tokens.
	if tu != fosite.AccessToken || sess.UserID == "" || sess.GrantType == grantClientCredentials || sess.DPoPJKT != "" {
		return UserToken{}, ErrInvalidToken
	}
	claims := sess.IDTokenClaims()
	return UserToken{
		Subject:   sess.UserID,
		ClientID:  ar.GetClient().GetID(),
		Scopes:    slices.Clone([]string(ar.GetGrantedScopes())),
		AuthTime:  claims.AuthTime.UTC(),
		AMR:       slices.Clone(claims.AuthenticationMethodsReferences),
		RequestID: ar.GetID(),
	}, nil
}
