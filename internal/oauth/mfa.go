package oauth

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/x/errorsx"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/signin"
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
	// errUnmetLevel: the client's two-factor methods leave out every
	// factor the account has, and none can be set up in this grant.
	errUnmetLevel = errors.New("this client accepts second factors this account does not have")
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
// password grant, by asking the sign-in engine: complete (tokens), an
// enrolment due (403 mfa_required, nothing to continue with), or a second
// factor. Without `otp` that is 403 mfa_required with an mfa_token, and the
// engine prepares the default factor (sends the SMS/e-mail code, or the
// current TOTP code when a webhook is set), bound to this user at this
// client so that both continuations can use it. With `otp` (and an
// optional `strategy`, default: the user's code factor or a recovery code)
// the engine checks it like every surface does, and the session gets the
// engine's amr, or the answer is invalid_grant.
func (p *Provider) passwordSecondFactor(ctx context.Context, ar fosite.AccessRequester, c *client, u store.User) error {
	var cl resource.Client
	if c != nil {
		cl = c.res
	}
	eng := p.cfg.SignIn
	m := metaOf(ctx, cl.ID)
	s, step, err := eng.Begin(ctx, signin.BeginInput{User: u, Client: cl, FirstFactorAt: p.now(), Meta: m})
	if errors.Is(err, signin.ErrUnmetLevel) {
		return errUnmetLevel
	}
	if err != nil {
		return storeErr("begin sign-in", err)
	}
	switch step.Status {
	case signin.StatusComplete:
		return nil
	case signin.StatusNeedsEnrollment:
		return &mfaRequiredError{enrol: true}
	}
	if c == nil || ar == nil || p.cfg.TwoFactor == nil {
		return &mfaRequiredError{}
	}
	form := ar.GetRequestForm()
	otp, strategy := form.Get("otp"), form.Get("strategy")
	delete(form, "otp") // never stored with the request
	if otp == "" {
		p.prepareSecondFactor(ctx, s, strategy, m)
		token, _, err := eng.Park(ctx, s, signin.APITTL)
		if err != nil {
			return storeErr("issue mfa_token", err)
		}
		return &mfaRequiredError{token: token}
	}
	res, err := eng.Attempt(ctx, s, strategy, otp)
	switch {
	case errors.Is(err, signin.ErrInvalidCode), errors.Is(err, signin.ErrNotOffered):
		return errInvalidOTP
	case err != nil:
		return storeErr("verify second factor", err)
	}
	secondFactorProven(sessionOf(ar), res)
	return nil
}

// secondFactorProven records in the session how the user signed in.
func secondFactorProven(sess *session, res signin.Result) {
	claims := sess.IDTokenClaims()
	claims.AuthenticationMethodsReferences = slices.Clone(res.AMR)
	claims.AuthenticationContextClassReference = res.ACR
	claims.AuthTime = res.AuthTime
}

// prepareSecondFactor sends the code a password grant is waiting for.
// Nothing here fails the request: the 403 with the mfa_token goes out
// regardless, and the client may repeat the password request to send again.
func (p *Provider) prepareSecondFactor(ctx context.Context, s *signin.SignIn, strategy string, m twofactor.Meta) {
	_, err := p.cfg.SignIn.Prepare(ctx, s, strategy, "")
	log := p.cfg.Logger
	switch {
	case err == nil:
	case errors.Is(err, signin.ErrNotPreparable), errors.Is(err, signin.ErrNoDelivery):
		// Normal for TOTP (the user reads the app); for SMS/e-mail the
		// AuthConfig lost its webhook after the factor was enabled.
		log.InfoContext(ctx, "no second-factor code sent: nothing to deliver it", "user", s.User.ID, "client", m.ClientID, "request_id", m.RequestID)
	case errors.Is(err, signin.ErrTooManySends):
		log.WarnContext(ctx, "second-factor code not sent: send limit reached", "user", s.User.ID, "client", m.ClientID, "request_id", m.RequestID)
	case errors.Is(err, twofactor.ErrNothingToSend):
		log.InfoContext(ctx, "no TOTP code pushed: the next usable step has not begun", "user", s.User.ID, "client", m.ClientID, "request_id", m.RequestID)
	case errors.Is(err, signin.ErrNotOffered):
		log.InfoContext(ctx, "second-factor strategy not offered; nothing sent", "user", s.User.ID, "client", m.ClientID, "request_id", m.RequestID)
	default:
		log.ErrorContext(ctx, "send second-factor code", "user", s.User.ID, "client", m.ClientID, "request_id", m.RequestID, "err", err)
	}
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
	if h.p.cfg.TwoFactor == nil {
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
	eng := h.p.cfg.SignIn
	si, err := eng.Open(ctx, raw, c.res)
	switch {
	case errors.Is(err, signin.ErrInvalidTicket):
		return errorsx.WithStack(fosite.ErrInvalidGrant.WithDescription(errInvalidMFAToken.Error()).WithWrap(err))
	case err != nil:
		return errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(storeErr("open mfa_token", err)))
	}
	if err := h.p.checkUser(ctx, si.User.ID); err != nil {
		return err
	}
	si.Meta = metaOf(ctx, c.GetID())
	res, err := eng.Attempt(ctx, si, form.Get("strategy"), otp)
	switch {
	case errors.Is(err, signin.ErrInvalidCode), errors.Is(err, signin.ErrNotOffered):
		return errorsx.WithStack(fosite.ErrInvalidGrant.WithDescription(errInvalidOTP.Error()).WithWrap(err))
	case errors.Is(err, signin.ErrInvalidTicket):
		// Another request completed the ticket with another valid code.
		return errorsx.WithStack(fosite.ErrInvalidGrant.WithDescription(errInvalidMFAToken.Error()).WithWrap(err))
	case err != nil:
		return errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(storeErr("verify second factor", err)))
	}
	sess := sessionOf(r)
	sess.SetSubject(res.UserID)
	secondFactorProven(sess, res)
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
