package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// totpAssociation is a started TOTP enrolment as the API shows it. The
// pending_token is the secret sealed for this user with its expiry: there
// is no browser session to keep it in, so the client sends it back with the
// first code.
type totpAssociation struct {
	Secret       string    `json:"secret"`
	OTPAuthURI   string    `json:"otpauth_uri"`
	QR           string    `json:"qr"` // data:image/png;base64,…
	Issuer       string    `json:"issuer"`
	Account      string    `json:"account"`
	PendingToken string    `json:"pending_token"`
	ExpiresAt    time.Time `json:"expires_at"`
}

func associationOf(e twofactor.Enrollment) totpAssociation {
	return totpAssociation{
		Secret: e.Secret, OTPAuthURI: e.URI, QR: e.QR, Issuer: e.Issuer, Account: e.Account,
		PendingToken: e.Pending, ExpiresAt: e.ExpiresAt,
	}
}

var errPending = &apiError{Status: http.StatusBadRequest, Code: "invalid_pending_token",
	Desc: "The pending_token is invalid or expired; start the association again."}

// enroll is POST /auth/sign-in/enroll: {mfa_token, client_id, strategy}
// for a sign-in in state needs_enrollment. totp answers the association to
// confirm at /auth/sign-in/enroll/confirm; phone_code and email_code enable
// codes to the user's verified phone or address, answer the recovery codes,
// and the sign-in goes on as needs_second_factor (prepare, attempt).
func (h *Handler) enroll(c *call) error {
	s, err := c.openSignIn()
	if err != nil {
		return err
	}
	if err := h.mustHaveNoFactor(c, s); err != nil {
		return err
	}
	switch strings.TrimSpace(c.p.get("strategy")) {
	case "":
		return missing("strategy")
	case StrategyTOTP:
		e, err := h.TwoFactor.BeginTOTP(s.User, s.AuthConfig.Issuer())
		if err != nil {
			return err
		}
		return c.json(http.StatusOK, map[string]any{"status": StatusNeedsEnrollment, "totp": associationOf(e)})
	case StrategyPhoneCode:
		return h.enrollCodes(c, s, twofactor.MethodSMS)
	case StrategyEmailCode:
		return h.enrollCodes(c, s, twofactor.MethodEmail)
	}
	return errStrategy
}

// mustHaveNoFactor refuses to enrol over a factor the sign-in can already
// use.
func (h *Handler) mustHaveNoFactor(c *call, s *SignIn) error {
	if s.TwoFactor.Enabled {
		return errAlreadyEnabled
	}
	offers, err := h.SignIn.Offers(c.r.Context(), s)
	if err != nil {
		return err
	}
	if len(offers) > 0 {
		return errAlreadyEnabled
	}
	return nil
}

func (h *Handler) enrollCodes(c *call, s *SignIn, method string) error {
	ctx := c.r.Context()
	codes, err := h.TwoFactor.EnableCodeMethod(ctx, twofactor.EnableCodeInput{
		UserID: s.User.ID, Method: method, Webhook: webhookOf(s.AuthConfig), Meta: s.Meta,
	})
	if err := enableError(err); err != nil {
		return err
	}
	if err := h.SignIn.Refresh(ctx, s); err != nil {
		return err
	}
	offers, err := h.SignIn.Offers(ctx, s)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{
		"status": StatusNeedsSecondFactor, "factors": offers, "recovery_codes": codes,
	})
}

// enableError maps the refusals of enabling a factor.
func enableError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, twofactor.ErrUnverified):
		return errUnverified
	case errors.Is(err, twofactor.ErrNoWebhook):
		return errNoWebhook
	case errors.Is(err, twofactor.ErrAlreadyEnabled):
		return errAlreadyEnabled
	case errors.Is(err, twofactor.ErrPendingExpired):
		return errPending
	case errors.Is(err, twofactor.ErrInvalidCode):
		return errInvalidCode
	case errors.Is(err, store.ErrNotFound):
		return errInvalidToken
	}
	return err
}

// enrollConfirm is POST /auth/sign-in/enroll/confirm: {mfa_token,
// client_id, pending_token, code, scope?}. The first code enables TOTP and
// completes the sign-in: tokens and the recovery codes, once.
func (h *Handler) enrollConfirm(c *call) error {
	ctx := c.r.Context()
	s, err := c.openSignIn()
	if err != nil {
		return err
	}
	vals, err := c.need("pending_token", "code")
	if err != nil {
		return err
	}
	sec, err := h.TwoFactor.OpenPending(s.User.ID, vals[0])
	if err != nil {
		return errPending
	}
	codes, err := h.TwoFactor.ConfirmTOTP(ctx, twofactor.ConfirmInput{
		UserID: s.User.ID, Secret: sec, Code: vals[1], PastSteps: s.AuthConfig.PastTokens(), Meta: s.Meta,
	})
	if err := enableError(err); err != nil {
		return err
	}
	return h.completeSignIn(c, s, StrategyTOTP, []string{"otp"}, map[string]any{"recovery_codes": codes})
}
