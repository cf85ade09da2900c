package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// principal is the signed-in user behind a Bearer access token.
type principal struct {
	token  oauth.UserToken
	user   store.User
	client resource.Client
	ac     resource.AuthConfig
}

var (
	errInvalidToken = &apiError{Status: http.StatusUnauthorized, Code: "invalid_token",
		Desc: "A valid Bearer access token of the user is required."}
	errForeignClient = &apiError{Status: http.StatusForbidden, Code: "access_denied",
		Desc: "Tokens of this client cannot manage the account: use a first-party application."}
	errStale = &apiError{Status: http.StatusForbidden, Code: "reauthentication_required",
		Desc: "This change needs a password sign-in within the last 10 minutes. Sign in again and retry."}
)

// bearer authenticates the user by the access token in the Authorization
// header. The token's client supplies the CORS origins and the AuthConfig,
// and must be one the user trusts with the account: first_party, or one
// that signs users in with their password. A token a third-party app got
// through consent cannot enrol, remove or re-verify anything.
func (c *call) bearer() (*principal, error) {
	ctx := c.r.Context()
	scheme, tok, _ := strings.Cut(c.r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, errInvalidToken
	}
	ut, err := c.h.OAuth.VerifyUserToken(ctx, tok)
	if errors.Is(err, oauth.ErrInvalidToken) {
		return nil, errInvalidToken
	}
	if err != nil {
		return nil, err
	}
	cl, err := c.h.loadClient(ctx, ut.ClientID)
	if errors.Is(err, errNoClient) {
		return nil, errInvalidToken
	}
	if err != nil {
		return nil, err
	}
	if err := c.useClient(cl); err != nil {
		return nil, err
	}
	if !cl.FirstParty && !cl.HasGrant(resource.GrantPassword) {
		return nil, errForeignClient
	}
	u, err := c.h.Store.GetUser(ctx, ut.Subject)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Inactive) {
		return nil, errInvalidToken
	}
	if err != nil {
		return nil, fmt.Errorf("get user %q: %w", ut.Subject, err)
	}
	ac, err := c.h.authConfig(ctx, cl)
	if err != nil {
		return nil, err
	}
	return &principal{token: ut, user: u, client: cl, ac: ac}, nil
}

// fresh refuses a token whose password sign-in is older than FreshLogin.
func (c *call) fresh(a *principal) error {
	at := a.token.AuthTime
	if at.IsZero() || c.h.now().Sub(at) > FreshLogin {
		return errStale
	}
	return nil
}

// freshBearer is bearer followed by fresh.
func (c *call) freshBearer() (*principal, error) {
	a, err := c.bearer()
	if err != nil {
		return nil, err
	}
	if err := c.fresh(a); err != nil {
		return nil, err
	}
	return a, nil
}

// manageBinding binds the codes a signed-in user asks for to prove a
// change to their factor (POST /auth/mfa/challenge) to that user and that
// use: they open no sign-in, and no sign-in's code opens a change.
func manageBinding(userID string) string {
	return "mfa-manage:" + strconv.Itoa(len(userID)) + ":" + userID
}

// Authenticator is one entry of GET /auth/mfa/authenticators.
type Authenticator struct {
	ID                     string     `json:"id"`
	Type                   string     `json:"type"`
	EnrolledAt             *time.Time `json:"enrolledAt,omitempty"`
	Destination            string     `json:"destination,omitempty"` // masked
	RecoveryCodesRemaining int        `json:"recoveryCodesRemaining"`
	LockedUntil            *time.Time `json:"lockedUntil,omitempty"`
}

// authenticators lists a user's factors (at most one built-in) and says
// whether a TOTP enrolment is due at the next sign-in.
func (h *Handler) authenticators(c *call, userID string) (map[string]any, error) {
	ctx := c.r.Context()
	st, err := h.TwoFactor.Status(ctx, userID)
	if err != nil {
		return nil, err
	}
	list := []Authenticator{}
	if st.Enabled {
		a := Authenticator{ID: st.Method, Type: st.Method, RecoveryCodesRemaining: st.RecoveryCodesRemaining}
		if !st.EnrolledAt.IsZero() {
			t := st.EnrolledAt.UTC()
			a.EnrolledAt = &t
		}
		if st.Destination != "" {
			a.Destination = twofactor.MaskDestination(st.Destination)
		}
		if !st.LockedUntil.IsZero() {
			t := st.LockedUntil.UTC()
			a.LockedUntil = &t
		}
		list = append(list, a)
	}
	body := map[string]any{"authenticators": list}
	if h.Passkeys != nil {
		recs, err := h.Passkeys.List(ctx, userID)
		if err != nil {
			return nil, err
		}
		pks := []Passkey{}
		for _, r := range recs {
			pks = append(pks, PasskeyView(r))
		}
		body["passkeys"] = pks
	}
	tf, err := h.SignIn.TwoFactorOf(ctx, userID)
	if err != nil {
		return nil, err
	}
	if resource.TOTPEnrolmentDue(tf) {
		body["enrollmentDue"] = StrategyTOTP
	}
	return body, nil
}

// listAuthenticators is GET /auth/mfa/authenticators.
func (h *Handler) listAuthenticators(c *call) error {
	a, err := c.bearer()
	if err != nil {
		return err
	}
	body, err := h.authenticators(c, a.user.ID)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, body)
}

// startTOTP is POST /auth/mfa/totp: a fresh secret to pair an app with.
func (h *Handler) startTOTP(c *call) error {
	a, err := c.freshBearer()
	if err != nil {
		return err
	}
	tf, err := h.SignIn.TwoFactorOf(c.r.Context(), a.user.ID)
	if err != nil {
		return err
	}
	if tf.Enabled {
		return errAlreadyEnabled
	}
	e, err := h.TwoFactor.BeginTOTP(a.user, a.ac.Issuer())
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, associationOf(e))
}

// confirmTOTP is POST /auth/mfa/totp/confirm: {pending_token, code}.
func (h *Handler) confirmTOTP(c *call) error {
	a, err := c.freshBearer()
	if err != nil {
		return err
	}
	vals, err := c.need("pending_token", "code")
	if err != nil {
		return err
	}
	sec, err := h.TwoFactor.OpenPending(a.user.ID, vals[0])
	if err != nil {
		return errPending
	}
	codes, err := h.TwoFactor.ConfirmTOTP(c.r.Context(), twofactor.ConfirmInput{
		UserID: a.user.ID, Secret: sec, Code: vals[1], PastSteps: a.ac.PastTokens(), Meta: c.meta(a.client.ID),
		CurrentTokenFamily: a.token.RequestID,
	})
	if err := enableError(err); err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"enabled": true, "method": twofactor.MethodTOTP, "recovery_codes": codes})
}

// enableCodeMethod is POST /auth/mfa/sms and /auth/mfa/email: codes to the
// user's verified phone number or address become the second factor.
func (h *Handler) enableCodeMethod(method string) func(*call) error {
	return func(c *call) error {
		a, err := c.freshBearer()
		if err != nil {
			return err
		}
		codes, err := h.TwoFactor.EnableCodeMethod(c.r.Context(), twofactor.EnableCodeInput{
			UserID: a.user.ID, Method: method, Webhook: webhookOf(a.ac), Meta: c.meta(a.client.ID),
			CurrentTokenFamily: a.token.RequestID,
		})
		if err := enableError(err); err != nil {
			return err
		}
		dest := a.user.PhoneNumber
		if method == twofactor.MethodEmail {
			dest = a.user.Email
		}
		return c.json(http.StatusOK, map[string]any{
			"enabled": true, "method": method, "destination": twofactor.MaskDestination(dest), "recovery_codes": codes,
		})
	}
}

// challenge is POST /auth/mfa/challenge: sends the code that proves a
// change (delete, new recovery codes) for an SMS or e-mail factor, or
// pushes the current TOTP code when the AuthConfig has a webhook.
func (h *Handler) challenge(c *call) error {
	a, err := c.bearer()
	if err != nil {
		return err
	}
	sent, err := h.TwoFactor.SendLoginCode(c.r.Context(), twofactor.LoginCodeInput{
		User: a.user, BindingID: manageBinding(a.user.ID), PastSteps: a.ac.PastTokens(),
		Webhook: webhookOf(a.ac), Meta: c.meta(a.client.ID),
	})
	switch {
	case errors.Is(err, twofactor.ErrNotEnabled):
		return errNotEnabled
	case errors.Is(err, twofactor.ErrNoWebhook):
		return fail(http.StatusBadRequest, "challenge_not_needed",
			"Nothing is sent for this factor: read the code from your authenticator app.")
	case errors.Is(err, twofactor.ErrTooManySends):
		return errTooManySends
	case err != nil:
		return err
	}
	return c.json(http.StatusAccepted, map[string]any{
		"channel": sent.Channel, "destination": twofactor.MaskDestination(sent.Destination), "expires_at": sent.ExpiresAt,
	})
}

// deleteAuthenticator is DELETE /auth/mfa/{id} with a current code (or a
// recovery code) in the body or ?code=.
func (h *Handler) deleteAuthenticator(c *call) error {
	a, err := c.freshBearer()
	if err != nil {
		return err
	}
	tf, err := h.SignIn.TwoFactorOf(c.r.Context(), a.user.ID)
	if err != nil {
		return err
	}
	if !tf.Enabled || tf.Method != c.r.PathValue("id") {
		return fail(http.StatusNotFound, "not_found", "No such authenticator.")
	}
	vals, err := c.need("code")
	if err != nil {
		return err
	}
	err = h.TwoFactor.Disable(c.r.Context(), twofactor.VerifyInput{
		UserID: a.user.ID, Code: vals[0], PastSteps: a.ac.PastTokens(),
		BindingID: manageBinding(a.user.ID), Meta: c.meta(a.client.ID),
	}, "", a.token.RequestID)
	switch {
	case errors.Is(err, twofactor.ErrInvalidCode):
		return errInvalidCode
	case errors.Is(err, twofactor.ErrNotEnabled):
		return fail(http.StatusNotFound, "not_found", "No such authenticator.")
	case err != nil:
		return err
	}
	c.cors()
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// regenerateRecoveryCodes is POST /auth/mfa/recovery-codes: {code}.
func (h *Handler) regenerateRecoveryCodes(c *call) error {
	a, err := c.freshBearer()
	if err != nil {
		return err
	}
	vals, err := c.need("code")
	if err != nil {
		return err
	}
	codes, err := h.TwoFactor.RegenerateRecoveryCodes(c.r.Context(), twofactor.VerifyInput{
		UserID: a.user.ID, Code: vals[0], PastSteps: a.ac.PastTokens(),
		BindingID: manageBinding(a.user.ID), Meta: c.meta(a.client.ID),
	})
	switch {
	case errors.Is(err, twofactor.ErrNotEnabled):
		return errNotEnabled
	case errors.Is(err, twofactor.ErrInvalidCode):
		return errInvalidCode
	case err != nil:
		return err
	}
	return c.json(http.StatusOK, map[string]any{"recovery_codes": codes})
}

// recoveryVerify is POST /auth/mfa/recovery-codes/verify: {mfa_token,
// client_id, code, scope?} (Authing's "verify a recovery code"). The code
// completes the sign-in like attempt with backup_code, and the answer
// carries a fresh set of recovery codes that replaces the old one, so the
// user never holds a set with codes of unknown state.
func (h *Handler) recoveryVerify(c *call) error {
	s, err := c.openSignIn()
	if err != nil {
		return err
	}
	vals, err := c.need("code")
	if err != nil {
		return err
	}
	if !s.TwoFactor.Enabled || signin.LooksLikeOTP(vals[0]) {
		return errInvalidCode
	}
	codes, err := h.TwoFactor.RegenerateRecoveryCodes(c.r.Context(), twofactor.VerifyInput{
		UserID: s.User.ID, Code: vals[0], PastSteps: s.AuthConfig.PastTokens(), Meta: s.Meta,
	})
	switch {
	case errors.Is(err, twofactor.ErrInvalidCode), errors.Is(err, twofactor.ErrNotEnabled):
		return errInvalidCode
	case err != nil:
		return err
	}
	return h.completeSignIn(c, s, StrategyBackupCode, []string{"otp"}, map[string]any{"recovery_codes": codes})
}

// bindable is GET /auth/mfa/bindable?phone=… or ?email=…: whether the
// signed-in user could bind that destination (no other account holds it).
func (h *Handler) bindable(c *call) error {
	ctx := c.r.Context()
	a, err := c.bearer()
	if err != nil {
		return err
	}
	channel, dest, err := destinationParam(c.p.get("phone"), c.p.get("email"))
	if err != nil {
		return err
	}
	if err := h.spendLookup(ctx, a.user.ID); err != nil {
		return err
	}
	taken, err := h.takenByOther(ctx, channel, dest, a.user.ID)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"bindable": !taken})
}

// destinationParam takes exactly one of a phone number and an e-mail
// address and checks its form.
func destinationParam(phone, email string) (channel, dest string, err error) {
	phone, email = strings.TrimSpace(phone), strings.ToLower(strings.TrimSpace(email))
	switch {
	case phone != "" && email != "":
		return "", "", badRequest("Give a phone number or an e-mail address, not both.")
	case phone != "":
		if !resource.ValidPhone(phone) {
			return "", "", badRequest("phone must be an E.164 number such as +14155550123.")
		}
		return twofactor.MethodSMS, phone, nil
	case email != "":
		if !resource.ValidEmail(email) {
			return "", "", badRequest("email is not a valid e-mail address.")
		}
		return twofactor.MethodEmail, email, nil
	}
	return "", "", badRequest("phone or email is required.")
}
