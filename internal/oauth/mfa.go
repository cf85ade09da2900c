package oauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/x/errorsx"

	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// GrantMFAOTP finishes a password grant that answered 403 mfa_required:
// `grant_type=urn:gatehouse:grant-type:mfa-otp` with the `mfa_token` of that
// answer and `otp` (a TOTP, SMS or e-mail code, or a recovery code), with
// the usual client authentication. Only the client the token was issued to
// may use it, and only a client with grant type password: the tokens are a
// password-grant family and follow its auth.password settings.
const GrantMFAOTP = "urn:gatehouse:grant-type:mfa-otp"

const grantMFAOTP = GrantMFAOTP

// Refusals of a second factor at the token endpoint. Their text is the
// error_description the client gets, deliberately plain.
var (
	errInvalidOTP      = errors.New("invalid code")
	errInvalidMFAToken = errors.New("invalid or expired mfa_token")
)

// mfaRequiredError is errMFARequired with what the 403 tells the client.
type mfaRequiredError struct {
	token string // the mfa_token to continue with; "" when none can be issued
	enrol bool   // the client requires a second factor the user has not set up
}

func (e *mfaRequiredError) Error() string        { return errMFARequired.Error() }
func (e *mfaRequiredError) Is(target error) bool { return target == errMFARequired }

// mfaRequiredBody is the 403 answer (Auth0's and Freshcom's shape).
func mfaRequiredBody(err error) map[string]string {
	body := map[string]string{"error": "mfa_required"}
	var me *mfaRequiredError
	errors.As(err, &me)
	switch {
	case me != nil && me.token != "":
		body["error_description"] = "A second factor is required. Repeat the request with otp, or use grant_type " +
			GrantMFAOTP + " with this mfa_token and otp."
		body["mfa_token"] = me.token
	case me != nil && me.enrol:
		body["error_description"] = "A second factor is required and the account has none set up yet; set one up first (sign in on the hosted login page, or through /auth/sign-in and /auth/sign-in/enroll)."
	default:
		body["error_description"] = "This account signs in with a second factor; the password grant alone cannot issue tokens for it."
	}
	return body
}

// passwordSecondFactor decides what a correct password for u leads to in a
// password grant. Without a second factor: tokens, unless the client or its
// AuthConfig requires one, or the account has a TOTP enrolment due (403
// mfa_required, nothing to continue with).
// With one and no `otp`: 403 mfa_required with an mfa_token, and the code
// goes out through the AuthConfig's webhook (SMS/e-mail, or the current TOTP
// code when a webhook is set). With `otp`: the code is checked like on the
// hosted pages (replay guard, shared lockout, recovery codes) and the
// session gets amr pwd+otp+mfa, or the answer is invalid_grant.
func (p *Provider) passwordSecondFactor(ctx context.Context, ar fosite.AccessRequester, c *client, u store.User) error {
	tf, err := p.cfg.Store.GetTwoFactor(ctx, u.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return storeErr("get second factor", err)
	}
	if err == nil && resource.TOTPEnrolmentDue(tf) {
		// The account was created with a TOTP enrolment due (AuthConfig
		// twoFactor.defaultMethod totp): like a required factor the user
		// has not set up, whatever the client.
		return &mfaRequiredError{enrol: true}
	}
	if err != nil || !tf.Enabled {
		if c == nil {
			return nil
		}
		if c.res.TwoFactor != nil && c.res.TwoFactor.Required {
			return &mfaRequiredError{enrol: true}
		}
		ac, err := p.authConfig(ctx, c)
		if err != nil {
			return err
		}
		if ac.TwoFactorRequired() {
			return &mfaRequiredError{enrol: true}
		}
		return nil
	}
	svc := p.cfg.TwoFactor
	if svc == nil || c == nil || ar == nil {
		return &mfaRequiredError{}
	}
	ac, err := p.authConfig(ctx, c)
	if err != nil {
		return err
	}
	form := ar.GetRequestForm()
	otp := form.Get("otp")
	delete(form, "otp") // never stored with the request
	m := metaOf(ctx, c.GetID())
	binding := twofactor.PasswordGrantBinding(c.GetID(), u.ID)
	if otp == "" {
		token, _, err := svc.IssueMFAToken(ctx, u.ID, c.GetID())
		if err != nil {
			return storeErr("issue mfa_token", err)
		}
		p.sendLoginCode(ctx, u, ac, binding, m)
		return &mfaRequiredError{token: token}
	}
	res, err := svc.Verify(ctx, twofactor.VerifyInput{
		UserID:        u.ID,
		Code:          otp,
		PastSteps:     ac.PastTokens(),
		AllowRecovery: true,
		BindingID:     binding,
		Meta:          m,
	})
	switch {
	case errors.Is(err, twofactor.ErrInvalidCode), errors.Is(err, twofactor.ErrNotEnabled):
		return errInvalidOTP
	case err != nil:
		return storeErr("verify second factor", err)
	}
	p.secondFactorProven(sessionOf(ar), res)
	return nil
}

// secondFactorProven records in the session how the user signed in.
func (p *Provider) secondFactorProven(sess *session, res twofactor.Result) {
	amr := []string{"pwd"}
	for _, v := range res.AMR {
		if !slices.Contains(amr, v) {
			amr = append(amr, v)
		}
	}
	claims := sess.IDTokenClaims()
	claims.AuthenticationMethodsReferences = amr
	claims.AuthTime = p.now().Truncate(time.Second)
}

// sendLoginCode delivers the code a password grant is waiting for. Nothing
// here fails the request: the 403 with the mfa_token goes out regardless,
// and the client may repeat the password request to send again.
func (p *Provider) sendLoginCode(ctx context.Context, u store.User, ac resource.AuthConfig, binding string, m twofactor.Meta) {
	sent, err := p.cfg.TwoFactor.SendLoginCode(ctx, twofactor.LoginCodeInput{
		User:      u,
		BindingID: binding,
		PastSteps: ac.PastTokens(),
		Webhook:   webhookOf(ac),
		Meta:      m,
	})
	log := p.cfg.Logger
	switch {
	case err == nil && !sent.Delivered:
		log.WarnContext(ctx, "second-factor code not delivered at the first attempt; retrying in the background",
			"user", u.ID, "client", m.ClientID, "channel", sent.Channel, "request_id", m.RequestID)
	case err == nil:
	case errors.Is(err, twofactor.ErrNoWebhook):
		// Normal for TOTP (the user reads the app); for SMS/e-mail the
		// AuthConfig lost its webhook after the factor was enabled.
		log.InfoContext(ctx, "no webhook configured; no second-factor code sent", "user", u.ID, "client", m.ClientID, "request_id", m.RequestID)
	case errors.Is(err, twofactor.ErrTooManySends):
		log.WarnContext(ctx, "second-factor code not sent: send limit reached", "user", u.ID, "client", m.ClientID, "request_id", m.RequestID)
	case errors.Is(err, twofactor.ErrNothingToSend):
		log.InfoContext(ctx, "no TOTP code pushed: the next usable step has not begun", "user", u.ID, "client", m.ClientID, "request_id", m.RequestID)
	default:
		log.ErrorContext(ctx, "send second-factor code", "user", u.ID, "client", m.ClientID, "request_id", m.RequestID, "err", err)
	}
}

// authConfig resolves the AuthConfig that applies to c. A reference to a
// missing AuthConfig is a configuration fault, answered like a storage one
// (503) rather than by silently dropping a required second factor.
func (p *Provider) authConfig(ctx context.Context, c *client) (resource.AuthConfig, error) {
	ac, err := resource.ResolveAuthConfig(ctx, p.cfg.Store, c.res)
	if err != nil {
		return resource.AuthConfig{}, storeErr("resolve auth config", err)
	}
	return ac, nil
}

// webhookOf is the delivery target of ac's codes (zero when none).
func webhookOf(ac resource.AuthConfig) notify.Webhook {
	w := ac.Webhook()
	if w == nil {
		return notify.Webhook{}
	}
	return notify.Webhook{Endpoint: w.Endpoint, TimeoutMS: w.Timeout, Headers: w.Headers, Secret: w.Secret}
}

// metaOf names the request for the audit log.
func metaOf(ctx context.Context, clientID string) twofactor.Meta {
	m := twofactor.Meta{ClientID: clientID}
	if r, ok := ctx.Value(fosite.RequestContextKey).(*http.Request); ok {
		m.RemoteAddr = remoteIP(r)
		m.RequestID = requestID(ctx, r)
	}
	return m
}

// mfaOTPGrant is the token endpoint handler of GrantMFAOTP. It checks the
// mfa_token and the code, spends the token (one success per token, however
// many requests race), and issues tokens with fosite's helpers exactly as
// the password grant does; prepareGrant and userIDTokens do the rest.
type mfaOTPGrant struct {
	p *Provider
	*oauth2.HandleHelper
	RefreshTokenStrategy oauth2.RefreshTokenStrategy
}

var _ fosite.TokenEndpointHandler = (*mfaOTPGrant)(nil)

func (h *mfaOTPGrant) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(grantMFAOTP)
}

func (h *mfaOTPGrant) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

func (h *mfaOTPGrant) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return errorsx.WithStack(fosite.ErrUnknownRequest)
	}
	svc := h.p.cfg.TwoFactor
	if svc == nil {
		return errorsx.WithStack(fosite.ErrUnsupportedGrantType.WithHint("Second factors are not enabled on this server."))
	}
	c, ok := r.GetClient().(*client)
	if !ok {
		return errorsx.WithStack(fosite.ErrServerError.WithDebug("unexpected client type"))
	}
	if !c.hasGrant(grantPassword) {
		return errorsx.WithStack(fosite.ErrUnauthorizedClient.WithHint("The mfa-otp grant continues a password grant; the client needs grant type password."))
	}
	cfg := h.p.fcfg
	for _, s := range r.GetRequestedScopes() {
		if !cfg.GetScopeStrategy(ctx)(c.GetScopes(), s) {
			return errorsx.WithStack(fosite.ErrInvalidScope.WithHintf("The OAuth 2.0 Client is not allowed to request scope '%s'.", s))
		}
	}
	if err := cfg.GetAudienceStrategy(ctx)(c.GetAudience(), r.GetRequestedAudience()); err != nil {
		return err
	}
	form := r.GetRequestForm()
	raw, otp := form.Get("mfa_token"), form.Get("otp")
	delete(form, "mfa_token") // neither is ever stored with the request
	delete(form, "otp")
	if raw == "" || otp == "" {
		return errorsx.WithStack(fosite.ErrInvalidRequest.WithHint("mfa_token and otp are required."))
	}
	t, err := svc.OpenMFAToken(ctx, raw, c.GetID())
	switch {
	case errors.Is(err, twofactor.ErrInvalidMFAToken):
		return errorsx.WithStack(fosite.ErrInvalidGrant.WithDescription(errInvalidMFAToken.Error()).WithWrap(err))
	case err != nil:
		return errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(storeErr("open mfa_token", err)))
	}
	if err := h.p.checkUser(ctx, t.UserID); err != nil {
		return err
	}
	ac, err := h.p.authConfig(ctx, c)
	if err != nil {
		return errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(err))
	}
	res, err := svc.VerifyMFAToken(ctx, t, twofactor.VerifyInput{
		Code:          otp,
		PastSteps:     ac.PastTokens(),
		AllowRecovery: true,
		Meta:          metaOf(ctx, c.GetID()),
	})
	switch {
	case errors.Is(err, twofactor.ErrInvalidCode), errors.Is(err, twofactor.ErrNotEnabled):
		return errorsx.WithStack(fosite.ErrInvalidGrant.WithDescription(errInvalidOTP.Error()).WithWrap(err))
	case err != nil:
		return errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(storeErr("verify second factor", err)))
	}
	switch err := svc.CompleteMFAToken(ctx, t); {
	case errors.Is(err, twofactor.ErrInvalidMFAToken):
		// Another request completed the token with another valid code.
		return errorsx.WithStack(fosite.ErrInvalidGrant.WithDescription(errInvalidMFAToken.Error()).WithWrap(err))
	case err != nil:
		return errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(storeErr("complete mfa_token", err)))
	}
	sess := sessionOf(r)
	sess.SetSubject(t.UserID)
	h.p.secondFactorProven(sess, res)
	return nil
}

// PopulateTokenEndpointResponse issues the access token and, when the
// password settings grant offline_access, a refresh token: fosite's
// password handler's steps, on our grant type.
func (h *mfaOTPGrant) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return errorsx.WithStack(fosite.ErrUnknownRequest)
	}
	cfg := h.p.fcfg
	atLifespan := fosite.GetEffectiveLifespan(r.GetClient(), fosite.GrantTypePassword, fosite.AccessToken, cfg.GetAccessTokenLifespan(ctx))
	atSignature, err := h.IssueAccessToken(ctx, atLifespan, r, resp)
	if err != nil {
		return err
	}
	if r.GetGrantedScopes().HasOneOf(cfg.GetRefreshTokenScopes(ctx)...) {
		rt, rtSignature, err := h.RefreshTokenStrategy.GenerateRefreshToken(ctx, r)
		if err != nil {
			return errorsx.WithStack(fosite.ErrServerError.WithWrap(err).WithDebug(err.Error()))
		}
		if err := h.p.storage.CreateRefreshTokenSession(ctx, rtSignature, atSignature, r.Sanitize([]string{})); err != nil {
			return errorsx.WithStack(fosite.ErrServerError.WithWrap(err).WithDebug(err.Error()))
		}
		resp.SetExtra("refresh_token", rt)
	}
	return nil
}

// userIDTokens adds an ID token to the password and mfa-otp grants when
// openid was granted (fosite's OpenID handlers cover only the code flow and
// refresh). It runs after the handler that issued the access token, whose
// at_hash the ID token carries.
type userIDTokens struct {
	p       *Provider
	helper  *openid.IDTokenHandleHelper
	grantOf []string
}

var _ fosite.TokenEndpointHandler = (*userIDTokens)(nil)

func (h *userIDTokens) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	for _, g := range h.grantOf {
		if r.GetGrantTypes().ExactOne(g) {
			return true
		}
	}
	return false
}

func (h *userIDTokens) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// HandleTokenEndpointRequest has nothing to check: the grant's own handler did.
func (h *userIDTokens) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return errorsx.WithStack(fosite.ErrUnknownRequest)
	}
	return nil
}

func (h *userIDTokens) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) || !r.GetGrantedScopes().Has(scopeOpenID) {
		return errorsx.WithStack(fosite.ErrUnknownRequest)
	}
	sess := sessionOf(r)
	claims := sess.IDTokenClaims()
	if claims.Subject == "" {
		return errorsx.WithStack(fosite.ErrServerError.WithDebug("ID token without a subject"))
	}
	claims.AccessTokenHash = h.helper.GetAccessTokenHash(ctx, r, resp)
	lifespan := fosite.GetEffectiveLifespan(r.GetClient(), fosite.GrantTypePassword, fosite.IDToken, h.p.fcfg.GetIDTokenLifespan(ctx))
	return h.helper.IssueExplicitIDToken(ctx, lifespan, r, resp)
}
