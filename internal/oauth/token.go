package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/x/errorsx"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
)

var supportedGrants = []string{grantAuthorizationCode, grantRefreshToken, grantClientCredentials, grantPassword, GrantMFAOTP}

// handleToken is POST /auth/token: authorization_code, refresh_token,
// client_credentials, password (with `otp` for a user with a second
// factor) and urn:gatehouse:grant-type:mfa-otp. Scopes for the grants without a browser
// are granted here (fosite grants none by itself).
func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess := newSession()
	if err := r.ParseForm(); err == nil {
		if err := resourcesAsAudience(r.PostForm); err != nil {
			p.writeTokenError(ctx, w, r, nil, err)
			return
		}
	}
	proof, err := p.checkDPoP(ctx, r, p.cfg.Issuer+PathToken, "")
	if err != nil {
		p.writeTokenError(ctx, w, r, nil, err)
		return
	}
	ar, err := p.fosite.NewAccessRequest(ctx, r, sess)
	if err != nil {
		if gt := r.PostForm.Get("grant_type"); gt != "" && !slices.Contains(supportedGrants, gt) {
			err = fosite.ErrUnsupportedGrantType.WithHintf("Grant type %q is not supported.", gt)
		}
		p.writeTokenError(ctx, w, r, ar, err)
		return
	}
	c, ok := ar.GetClient().(*client)
	if !ok {
		p.writeTokenError(ctx, w, r, ar, fosite.ErrServerError.WithDebug("unexpected client type"))
		return
	}
	if err := refreshAuthenticated(r, ar, c); err != nil {
		p.writeTokenError(ctx, w, r, ar, err)
		return
	}
	if err := bindDPoP(ar, c, proof); err != nil {
		p.writeTokenError(ctx, w, r, ar, err)
		return
	}
	if err := p.prepareGrant(ctx, ar, c); err != nil {
		p.writeTokenError(ctx, w, r, ar, err)
		return
	}
	resp, err := p.fosite.NewAccessResponse(ctx, ar)
	if err != nil {
		p.writeTokenError(ctx, w, r, ar, err)
		return
	}
	resp.SetTokenType("Bearer")
	if proof != nil {
		resp.SetTokenType(schemeDPoP)
		w.Header().Set(dpopNonceHeader, p.dpopNonce(p.now()))
	}
	p.fosite.WriteAccessResponse(ctx, w, ar, resp)
}

// refreshAuthenticated refuses a refresh without the client secret when
// the family's original grant needed one: a refresh token of a confidential
// grant is useless without the secret (RFC 6749 §10.4), even when another
// grant of the same client is public. A presented secret was already
// checked by authenticateClient.
func refreshAuthenticated(r *http.Request, ar fosite.AccessRequester, c *client) error {
	if !ar.GetGrantTypes().ExactOne(grantRefreshToken) || c.secretHash == "" {
		return nil
	}
	if c.secretOptional(sessionOf(ar).GrantType) {
		return nil
	}
	if _, sec, _, err := credentials(r, r.PostForm); err == nil && sec != "" {
		return nil
	}
	return errorsx.WithStack(fosite.ErrInvalidClient.WithHint("This refresh token belongs to a grant that needs the client secret; authenticate the client."))
}

// prepareGrant finishes what fosite leaves to us between parsing and
// issuing: scopes, audience and session for client_credentials and password,
// and for code and refresh a check that the user still exists and is active.
func (p *Provider) prepareGrant(ctx context.Context, ar fosite.AccessRequester, c *client) error {
	sess := sessionOf(ar)
	grant := ar.GetGrantTypes()[0]
	switch grant {
	case grantClientCredentials:
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s) // fosite checked them against the resource's scope list
		}
		grantAudience(ar, c.GetID())
		sess.Subject = c.GetID()
		sess.ClientID = c.GetID()
		sess.GrantType = grantClientCredentials
	case grantPassword, grantMFAOTP:
		// An mfa-otp completion continues a password grant: the family is a
		// password family, with its settings (format, lifespans, refresh).
		for _, s := range ar.GetRequestedScopes() {
			if s != scopeOfflineAccess && s != scopeOffline {
				ar.GrantScope(s)
			}
		}
		if c.refreshFor(grantPassword) {
			ar.GrantScope(scopeOfflineAccess)
		}
		grantAudience(ar, c.GetID())
		sess.UserID = sess.Subject
		sess.ClientID = c.GetID()
		sess.GrantType = grantPassword
		claims := sess.IDTokenClaims()
		claims.Subject = sess.Subject
		if claims.AuthTime.IsZero() {
			claims.AuthTime = p.now().Truncate(time.Second)
		}
		// A second factor proven on the way (passwordSecondFactor, the
		// mfa-otp grant, the sign-in API) already set pwd, otp, mfa.
		if len(claims.AuthenticationMethodsReferences) == 0 {
			claims.AuthenticationMethodsReferences = []string{"pwd"}
		}
		if claims.AuthenticationContextClassReference == "" {
			claims.AuthenticationContextClassReference = signin.ACRFor(claims.AuthenticationMethodsReferences)
		}
		claims.RequestedAt = claims.AuthTime
	case grantAuthorizationCode, grantRefreshToken:
		if err := p.checkHolder(ctx, sess); err != nil {
			return err
		}
		if grant == grantRefreshToken && !c.refreshFor(sess.GrantType) {
			return errorsx.WithStack(fosite.ErrInvalidGrant.WithHint("This client no longer uses refresh tokens."))
		}
		if err := narrowAudience(ar, c); err != nil {
			return err
		}
	}
	// fosite set the expiries from time.Now with its own rounding and, on a
	// refresh, from the wrong grant's settings. Issue time and lifetimes are
	// ours: whole seconds on our clock, per the family's original grant, so a
	// JWT's exp - iat is exactly the configured lifetime.
	now := p.now().Truncate(time.Second)
	sess.SetExpiresAt(fosite.AccessToken, now.Add(c.lifespan(sess.GrantType, fosite.AccessToken, p.cfg.AccessTokenLifespan)))
	if grant != grantClientCredentials {
		sess.SetExpiresAt(fosite.RefreshToken, now.Add(c.lifespan(sess.GrantType, fosite.RefreshToken, p.cfg.RefreshTokenLifespan)))
	}
	return nil
}

// checkUser refuses tokens for a user who was disabled or deleted after the
// grant (the admin API also deactivates their tokens; this closes the gap).
func (p *Provider) checkUser(ctx context.Context, userID string) error {
	if userID == "" {
		return nil
	}
	u, err := p.cfg.Store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) || err == nil && u.Inactive {
		return errorsx.WithStack(fosite.ErrInvalidGrant.WithHint("The account is not active."))
	}
	if err != nil {
		return errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(storeErr("get user", err)))
	}
	return nil
}

// checkHolder is checkUser for the user of a stored grant, from what the
// read of its record found when it looked.
func (p *Provider) checkHolder(ctx context.Context, sess *session) error {
	switch {
	case sess.UserID == "":
		return nil
	case sess.holder == store.HolderActive:
		return nil
	case sess.holder == store.HolderInactive:
		return errorsx.WithStack(fosite.ErrInvalidGrant.WithHint("The account is not active."))
	}
	return p.checkUser(ctx, sess.UserID)
}

// writeTokenError answers in RFC 6749 §5.2 form. Debug details go to the log
// only.
func (p *Provider) writeTokenError(ctx context.Context, w http.ResponseWriter, r *http.Request, ar fosite.AccessRequester, err error) {
	grant := r.PostForm.Get("grant_type")
	var de *dpopError
	switch {
	case errors.As(err, &de):
		if de.code == errDPoPNonce || r.Header.Get(dpopHeader) != "" {
			w.Header().Set(dpopNonceHeader, p.dpopNonce(p.now()))
		}
		err = de.rfcError()
	case errors.Is(err, errMFARequired):
		writeJSON(w, http.StatusForbidden, mfaRequiredBody(err))
		return
	case errors.As(err, new(*clientThrottled)):
		w.Header().Set("Retry-After", strconv.Itoa(account.RetryAfterOf(err)))
		w.Header().Set("WWW-Authenticate", `Basic realm="gatehouse", charset="UTF-8"`)
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": fosite.ErrInvalidClient.ErrorField,
			"error_description": "Too many failed client authentications. Try again after Retry-After seconds."})
		return
	case errors.Is(err, account.ErrThrottled):
		// Tell the owner plainly: invalid_grant, but 429 with the wait.
		w.Header().Set("Retry-After", strconv.Itoa(account.RetryAfterOf(err)))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": fosite.ErrInvalidGrant.ErrorField,
			"error_description": "Too many failed sign-ins for this account from this address. Sign-in is paused here; try again after Retry-After seconds."})
		return
	case errors.Is(err, account.ErrAccountDisabled):
		// Only the right password of an inactive account gets here.
		err = fosite.ErrInvalidGrant.WithDescription("This account is disabled.").WithWrap(err)
	case errors.Is(err, errInvalidOTP):
		// One plain answer for a wrong, malformed, reused or locked-out code.
		err = fosite.ErrInvalidGrant.WithDescription(errInvalidOTP.Error()).WithWrap(err)
	case errors.Is(err, errUnmetLevel):
		err = fosite.ErrAccessDenied.WithDescription(errUnmetLevel.Error()).WithWrap(err)
	case errors.Is(err, errLostRace), errors.Is(err, fosite.ErrInvalidatedAuthorizeCode):
		// Another request redeemed the code between our read and our
		// write. (A refresh that loses its race is settled, grace pair or
		// revoked family, by refreshGrant before it gets here.)
		err = fosite.ErrInvalidGrant.WithHint("The grant was already used.").WithWrap(err)
	case grant == grantRefreshToken && errors.Is(err, fosite.ErrInactiveToken):
		clientID := ""
		if ar != nil && ar.GetClient() != nil {
			clientID = ar.GetClient().GetID()
		}
		p.audit(ctx, store.AuditEvent{Type: audit.TokenReuse, ClientID: clientID, Detail: map[string]string{"token": "refresh_token"}})
	}
	if unavailable(err) && !errors.Is(err, fosite.ErrTemporarilyUnavailable) {
		err = fosite.ErrTemporarilyUnavailable.WithWrap(err)
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	if rfc.CodeField >= 500 {
		p.cfg.Logger.ErrorContext(ctx, "token request failed", "grant", grant, "err", rfc.ErrorField, "debug", rfc.Debug(), "cause", rfc.Cause())
	} else {
		p.cfg.Logger.InfoContext(ctx, "token request refused", "grant", grant, "err", rfc.ErrorField, "hint", rfc.HintField, "debug", rfc.Debug())
	}
	if rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
		w.Header().Set("WWW-Authenticate", `Basic realm="gatehouse", charset="UTF-8"`)
	}
	p.fosite.WriteAccessError(ctx, w, ar, rfc)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
