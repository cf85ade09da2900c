package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/ory/fosite"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// handleIntrospect is POST /auth/introspect (RFC 7662). The caller must be a
// confidential client (client_secret_basic or client_secret_post); any
// authenticated client may introspect any token, as resource servers need.
// Unknown, expired, revoked tokens and tokens of disabled users are
// {"active":false}.
func (p *Provider) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The body is not a form.")
		return
	}
	if id, _, _, err := credentials(r, r.PostForm); !usesAssertion(r.PostForm) && (err != nil || id == "") {
		w.Header().Set("WWW-Authenticate", `Basic realm="gatehouse", charset="UTF-8"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication is required.")
		return
	}
	if _, err := p.authenticate(ctx, r, r.PostForm, grantClientCredentials, true); err != nil {
		if errors.Is(err, fosite.ErrTemporarilyUnavailable) {
			p.cfg.Logger.ErrorContext(ctx, "introspection client check failed", "err", err)
			writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "Try again later.")
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="gatehouse", charset="UTF-8"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The token parameter is missing.")
		return
	}
	tu, ar, err := p.introspect(ctx, token, fosite.TokenUse(r.PostForm.Get("token_type_hint")))
	if err != nil {
		if unavailable(err) {
			p.cfg.Logger.ErrorContext(ctx, "introspection failed", "err", err)
			writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "Try again later.")
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"active": false})
		return
	}
	sess := sessionOf(ar)
	out := map[string]any{
		"active":    true,
		"client_id": ar.GetClient().GetID(),
		"iss":       p.cfg.Issuer,
		"iat":       ar.GetRequestedAt().Unix(),
	}
	if sub := sess.GetSubject(); sub != "" {
		out["sub"] = sub
	}
	// How the user signed in, for a resource server that decides by it
	// (RFC 9470 §6.2: acr and auth_time in the introspection answer).
	if claims := sess.IDTokenClaims(); sess.UserID != "" {
		if !claims.AuthTime.IsZero() {
			out["auth_time"] = claims.AuthTime.Unix()
		}
		if claims.AuthenticationContextClassReference != "" {
			out["acr"] = claims.AuthenticationContextClassReference
		}
		if len(claims.AuthenticationMethodsReferences) > 0 {
			out["amr"] = claims.AuthenticationMethodsReferences
		}
	}
	if len(ar.GetGrantedScopes()) > 0 {
		out["scope"] = strings.Join(ar.GetGrantedScopes(), " ")
	}
	if aud := ar.GetGrantedAudience(); len(aud) > 0 {
		out["aud"] = []string(aud)
	}
	if sess.DPoPJKT != "" {
		out["cnf"] = map[string]string{"jkt": sess.DPoPJKT}
	}
	if tu == fosite.AccessToken {
		out["token_type"] = "Bearer"
		if sess.DPoPJKT != "" {
			out["token_type"] = schemeDPoP
		}
		if exp := sess.GetExpiresAt(fosite.AccessToken); !exp.IsZero() {
			out["exp"] = exp.Unix()
		}
	} else {
		out["token_type"] = "refresh_token"
		if exp := sess.GetExpiresAt(fosite.RefreshToken); !exp.IsZero() {
			out["exp"] = exp.Unix()
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// introspect looks a token up (access token first unless hinted otherwise)
// and checks that its user is still active.
func (p *Provider) introspect(ctx context.Context, token string, use fosite.TokenUse) (fosite.TokenUse, fosite.AccessRequester, error) {
	tu, ar, err := p.fosite.IntrospectToken(ctx, token, use, newSession())
	if err != nil {
		return "", nil, err
	}
	if err := p.checkHolder(ctx, sessionOf(ar)); err != nil {
		if unavailable(err) {
			return "", nil, err
		}
		return "", nil, fosite.ErrInactiveToken
	}
	return tu, ar, nil
}

// handleRevoke is POST /auth/revoke (RFC 7009). A client can revoke only its
// own tokens; anyone else's token, or an unknown one, gets the same 200 and
// nothing happens. fosite's writer answers 200 to every error but
// invalid_request and invalid_client; a storage failure here is 503 (RFC 7009
// §2.2.1), so the client knows to retry.
func (p *Provider) handleRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	err := p.fosite.NewRevocationRequest(ctx, r)
	switch {
	case err == nil:
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, fosite.ErrInvalidClient):
		w.Header().Set("WWW-Authenticate", `Basic realm="gatehouse", charset="UTF-8"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
	case errors.Is(err, fosite.ErrInvalidRequest):
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The revocation request is malformed.")
	case errors.Is(err, fosite.ErrUnauthorizedClient):
		// Not this client's token: revoke nothing, reveal nothing.
		p.cfg.Logger.InfoContext(ctx, "revocation of another client's token ignored")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	default:
		p.cfg.Logger.ErrorContext(ctx, "revocation failed", "err", err, "cause", fosite.ErrorToRFC6749Error(err).Cause())
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "The token could not be revoked; try again.")
	}
}

// handleUserinfo is GET/POST /auth/userinfo: the claims of the access
// token's user allowed by its granted scopes.
func (p *Provider) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Header.Get("Authorization") == "" && r.URL.Query().Has("access_token") {
		// RFC 6750 §2.3: a token in the URL ends up in logs and history.
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Send the access token in the Authorization header (or a POST form body), not in the URL.")
		return
	}
	token, dpopScheme := tokenFromRequest(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "A Bearer access token is required.")
		return
	}
	tu, ar, err := p.introspect(ctx, token, fosite.AccessToken)
	if err != nil || tu != fosite.AccessToken {
		if unavailable(err) {
			p.cfg.Logger.ErrorContext(ctx, "userinfo failed", "err", err)
			writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "Try again later.")
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="invalid_token"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "The access token is invalid, expired or revoked.")
		return
	}
	w.Header().Add("Vary", "Origin")
	p.allowOrigin(w, r, ar.GetClient().GetID())
	sess := sessionOf(ar)
	if err := p.checkResourceDPoP(ctx, r, p.cfg.Issuer+PathUserinfo, token, dpopScheme, sess.DPoPJKT); err != nil {
		if unavailable(err) {
			p.cfg.Logger.ErrorContext(ctx, "userinfo dpop check failed", "err", err)
		}
		p.writeResourceDPoPError(w, err)
		return
	}
	scopes := ar.GetGrantedScopes()
	if sess.UserID == "" || !scopes.Has(scopeOpenID) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="insufficient_scope", scope="openid"`)
		writeOAuthError(w, http.StatusForbidden, "insufficient_scope", "The access token was not granted the openid scope for a user.")
		return
	}
	u, err := p.cfg.Store.GetUser(ctx, sess.UserID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "The access token is invalid, expired or revoked.")
			return
		}
		p.cfg.Logger.ErrorContext(ctx, "userinfo: get user", "err", err)
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "Try again later.")
		return
	}
	writeJSON(w, http.StatusOK, userClaims(u, scopes))
}

// userClaims are the OpenID claims of u the scopes allow.
func userClaims(u store.User, scopes fosite.Arguments) map[string]any {
	out := map[string]any{"sub": u.ID}
	if scopes.Has(scopeEmail) && u.Email != "" {
		out["email"] = u.Email
		out["email_verified"] = u.EmailVerified
	}
	if scopes.Has(scopePhone) && u.PhoneNumber != "" {
		out["phone_number"] = u.PhoneNumber
		out["phone_number_verified"] = u.PhoneVerified
	}
	if scopes.Has(scopeProfile) {
		var ru resource.User
		if err := json.Unmarshal(u.Doc, &ru); err == nil && ru.Name != nil {
			name := strings.TrimSpace(ru.Name.GivenName + " " + ru.Name.FamilyName)
			if name != "" {
				out["name"] = name
			}
			if ru.Name.GivenName != "" {
				out["given_name"] = ru.Name.GivenName
			}
			if ru.Name.FamilyName != "" {
				out["family_name"] = ru.Name.FamilyName
			}
		}
	}
	return out
}

// VerifyAdminToken checks a Bearer token for the admin API: it must be an
// active access token of ours from the client_credentials grant. The scopes
// returned are the granted ones the client is still allowed now, so removing
// gatehouse:admin from a Client takes effect at once.
func (p *Provider) VerifyAdminToken(ctx context.Context, token string) (string, []string, error) {
	tu, ar, err := p.introspect(ctx, token, fosite.AccessToken)
	if err != nil {
		if unavailable(err) {
			return "", nil, err
		}
		return "", nil, errors.New("verify admin token: token is not active")
	}
	sess := sessionOf(ar)
	if tu != fosite.AccessToken || sess.GrantType != grantClientCredentials || sess.UserID != "" {
		return "", nil, errors.New("verify admin token: not a client_credentials access token")
	}
	if sess.DPoPJKT != "" {
		// The admin API takes Bearer tokens only: a bound token without
		// its proof is not its holder's.
		return "", nil, errors.New("verify admin token: a DPoP-bound token is not a Bearer token")
	}
	c, err := p.getClient(ctx, ar.GetClient().GetID(), grantClientCredentials)
	if err != nil {
		return "", nil, errors.New("verify admin token: client is gone")
	}
	allowed := c.GetScopes()
	var scopes []string
	for _, s := range ar.GetGrantedScopes() {
		if allowed.Has(s) && !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	return c.GetID(), scopes, nil
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}
