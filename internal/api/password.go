package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Paths of the password endpoints.
const (
	PathPasswordReset        = "/auth/password-reset"
	PathPasswordResetConfirm = "/auth/password-reset/confirm"
	PathPassword             = "/auth/password"
	pathAdminPasswordReset   = "/User/{id}/$send-password-reset"
)

// StatusSent is the answer to a password reset request, whether or not
// the address belongs to anyone.
const StatusSent = "sent"

var (
	errInvalidResetCode = &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid_code",
		Desc: "The reset code is wrong or has expired. Ask for a new one."}
	errNoMailDelivery = &apiError{Status: http.StatusConflict, Code: "delivery_not_configured",
		Desc: "E-mail delivery is not configured for this application (AuthConfig email.smtp or twoFactor.webhook)."}
)

func retryAfter(err error) time.Duration {
	return time.Duration(account.RetryAfterOf(err)) * time.Second
}

// passwordRefused maps the refusals of a new password.
func passwordRefused(err error) error {
	var re *resource.PasswordRuleError
	if errors.As(err, &re) {
		return fail(http.StatusBadRequest, "invalid_password", strings.ToUpper(re.Error()[:1])+re.Error()[1:]+".")
	}
	if errors.Is(err, account.ErrInvalidResetCode) {
		return errInvalidResetCode
	}
	return err
}

// passwordReset is POST /auth/password-reset: {client_id, email}. It
// answers 202 with a reset_id whether or not the address is anyone's; the
// owner gets an e-mail with a code (and a link to the hosted page).
func (h *Handler) passwordReset(c *call) error {
	ctx := c.r.Context()
	cl, err := c.authClient()
	if err != nil {
		return err
	}
	pol, err := h.SignIn.Policy.For(ctx, cl)
	if err != nil {
		return err
	}
	if !pol.CanDeliver(twofactor.MethodEmail) {
		return errNoMailDelivery
	}
	vals, err := c.need("email")
	if err != nil {
		return err
	}
	started, err := h.Passwords.RequestReset(ctx, account.ResetRequest{Login: vals[0], Webhook: pol.Webhook(), Meta: c.meta(cl.ID)})
	switch {
	case errors.Is(err, account.ErrThrottled):
		return &apiError{Status: http.StatusTooManyRequests, Code: "too_many_requests",
			Desc: "Too many password reset e-mails were asked for. Try again later.", RetryAfter: retryAfter(err)}
	case errors.Is(err, account.ErrInvalidCredentials):
		return badRequest("email is not valid.")
	case err != nil:
		return err
	}
	return c.json(http.StatusAccepted, map[string]any{"status": StatusSent, "reset_id": started.ID, "expires_at": started.ExpiresAt})
}

// passwordResetConfirm is POST /auth/password-reset/confirm: {client_id,
// reset_id, code, new_password}. It sets the new password and ends every
// session and token of the user; a second factor stays required.
func (h *Handler) passwordResetConfirm(c *call) error {
	ctx := c.r.Context()
	cl, err := c.authClient()
	if err != nil {
		return err
	}
	ac, err := h.authConfig(ctx, cl)
	if err != nil {
		return err
	}
	vals, err := c.need("reset_id", "code")
	if err != nil {
		return err
	}
	pw := c.p.get("new_password")
	if pw == "" {
		return missing("new_password")
	}
	if _, err := h.Passwords.ConfirmReset(ctx, vals[0], vals[1], pw, ac, c.meta(cl.ID)); err != nil {
		return passwordRefused(err)
	}
	return c.json(http.StatusOK, map[string]any{"status": "password_changed"})
}

// changePassword is POST /auth/password with the user's Bearer token:
// {current_password, new_password, code?}. The code (TOTP, SMS or e-mail
// code sent by POST /auth/mfa/challenge, or a recovery code) is required
// when the user has a second factor. Other sessions and tokens end; the
// token that asked keeps working.
func (h *Handler) changePassword(c *call) error {
	ctx := c.r.Context()
	a, err := c.bearer()
	if err != nil {
		return err
	}
	cur, pw := c.p.get("current_password"), c.p.get("new_password")
	switch {
	case cur == "":
		return missing("current_password")
	case pw == "":
		return missing("new_password")
	case len(cur) > maxPasswordLen:
		return errInvalidCredentials
	}
	if err := a.ac.CheckNewPassword(pw); err != nil {
		return passwordRefused(err)
	}
	m := c.meta(a.client.ID)
	_, err = h.Accounts.CheckPassword(ctx, account.Attempt{
		Login: a.user.ID, Password: cur, RemoteAddr: m.RemoteAddr, ClientID: a.client.ID, RequestID: audit.RequestID(ctx),
	})
	switch {
	case errors.Is(err, account.ErrThrottled):
		return throttled(err)
	case errors.Is(err, account.ErrInvalidCredentials):
		return fail(http.StatusForbidden, "invalid_credentials", "The current password is wrong.")
	case err != nil:
		return err
	}
	tf, err := h.SignIn.TwoFactorOf(ctx, a.user.ID)
	if err != nil {
		return err
	}
	if tf.Enabled {
		code := strings.TrimSpace(c.p.get("code"))
		if code == "" {
			return fail(http.StatusForbidden, "mfa_required", "This account has a second factor: send its code as code.")
		}
		_, err := h.TwoFactor.Verify(ctx, twofactor.VerifyInput{
			UserID: a.user.ID, Code: code, PastSteps: a.ac.PastTokens(), AllowRecovery: true,
			BindingID: manageBinding(a.user.ID), Meta: m,
		})
		if errors.Is(err, twofactor.ErrInvalidCode) {
			return errInvalidCode
		}
		if err != nil {
			return err
		}
	}
	if err := h.Passwords.Set(ctx, a.user.ID, pw, a.ac, account.Keep{TokenFamily: a.token.RequestID}, "change", m); err != nil {
		return passwordRefused(err)
	}
	c.cors()
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// adminSendPasswordReset is POST /User/{id}/$send-password-reset:
// {client_id?}. The user gets the reset e-mail; the limits of the public
// request apply.
func (h *Handler) adminSendPasswordReset(c *call) error {
	ctx := c.r.Context()
	u, err := c.adminUser()
	if err != nil {
		return err
	}
	switch {
	case u.Inactive:
		return fail(http.StatusConflict, "inactive", "The user is inactive and cannot sign in.")
	case u.Email == "":
		return fail(http.StatusUnprocessableEntity, "no_email", "The user has no e-mail address.")
	}
	ac, clientID, err := c.adminAuthConfig()
	if err != nil {
		return err
	}
	pol := policy.Policy{AuthConfig: ac, ServerSMTP: h.SignIn.Policy.SMTP}
	if !pol.CanDeliver(twofactor.MethodEmail) {
		return errNoMailDelivery
	}
	m := metaOf(c.r)
	m.ClientID = clientID
	started, err := h.Passwords.RequestReset(ctx, account.ResetRequest{Login: u.ID, Webhook: pol.Webhook(), Meta: m})
	if errors.Is(err, account.ErrThrottled) {
		return &apiError{Status: http.StatusTooManyRequests, Code: "too_many_requests",
			Desc: "Too many password reset e-mails were sent to this user. Try again later.", RetryAfter: retryAfter(err)}
	}
	if err != nil {
		return err
	}
	return c.json(http.StatusAccepted, map[string]any{
		"status": StatusSent, "destination": twofactor.MaskDestination(u.Email), "expires_at": started.ExpiresAt,
	})
}
