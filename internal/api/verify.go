package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// channelDestination reads {channel, destination}: channel sms or email,
// destination an E.164 number or an address, defaulting to the user's
// current one for that channel.
func channelDestination(p params, u store.User) (string, string, error) {
	channel := strings.ToLower(strings.TrimSpace(p.get("channel")))
	dest := strings.TrimSpace(p.get("destination"))
	switch channel {
	case "":
		return "", "", missing("channel")
	case twofactor.MethodSMS:
		if dest == "" {
			dest = u.PhoneNumber
		}
		if dest == "" {
			return "", "", missing("destination")
		}
		if !resource.ValidPhone(dest) {
			return "", "", badRequest("destination must be an E.164 number such as +14155550123.")
		}
	case twofactor.MethodEmail:
		if dest == "" {
			dest = u.Email
		}
		dest = strings.ToLower(dest)
		if dest == "" {
			return "", "", missing("destination")
		}
		if !resource.ValidEmail(dest) {
			return "", "", badRequest("destination is not a valid e-mail address.")
		}
	default:
		return "", "", badRequest("channel must be sms or email.")
	}
	return channel, dest, nil
}

// sendCodeError maps the refusals of sending a code.
func sendCodeError(err error) error {
	switch {
	case errors.Is(err, twofactor.ErrTooManySends):
		return errTooManySends
	case errors.Is(err, twofactor.ErrNoWebhook):
		return errNoWebhook
	}
	return err
}

// sendVerification sends a verification code for dest to u.
func (h *Handler) sendVerification(ctx context.Context, u store.User, channel, dest string, ac resource.AuthConfig, m twofactor.Meta) (map[string]any, error) {
	if err := h.spendLookup(ctx, u.ID); err != nil {
		return nil, err
	}
	if taken, err := h.takenByOther(ctx, channel, dest, u.ID); err != nil {
		return nil, err
	} else if taken {
		return nil, errDestinationTaken
	}
	sent, err := h.TwoFactor.SendCode(ctx, twofactor.SendInput{
		User: u, Purpose: twofactor.PurposeVerify, Channel: channel, Destination: dest,
		BindingID: resource.VerificationBinding(u.ID, channel, dest), Webhook: webhookOf(ac), Meta: m,
	})
	if err != nil {
		return nil, sendCodeError(err)
	}
	return map[string]any{
		"channel": channel, "destination": twofactor.MaskDestination(dest), "expires_at": sent.ExpiresAt,
	}, nil
}

// verifyAndSet spends a verification code and marks the destination
// verified on the user. A wrong, expired or reused code changes nothing.
func (h *Handler) verifyAndSet(ctx context.Context, userID, channel, dest, code string, m twofactor.Meta) (store.User, error) {
	if strings.TrimSpace(code) == "" {
		return store.User{}, missing("code")
	}
	_, err := h.TwoFactor.VerifyCode(ctx, twofactor.VerifyCodeInput{
		UserID: userID, BindingID: resource.VerificationBinding(userID, channel, dest), Code: code, Meta: m,
	})
	if errors.Is(err, twofactor.ErrInvalidCode) {
		return store.User{}, errInvalidCode
	}
	if err != nil {
		return store.User{}, err
	}
	rec, err := h.setVerified(ctx, userID, channel, dest)
	if err != nil {
		return store.User{}, err
	}
	h.record(ctx, store.AuditEvent{Type: EventDestinationVerified, UserID: userID, ClientID: m.ClientID,
		RemoteAddr: m.RemoteAddr, RequestID: m.RequestID,
		Detail: map[string]string{"channel": channel, "destination": twofactor.MaskDestination(dest)}})
	return rec, nil
}

// sendVerificationCode is POST /auth/verification-codes: {channel,
// destination} for the signed-in user. 202; the code goes out by the
// webhook only.
func (h *Handler) sendVerificationCode(c *call) error {
	a, err := c.bearer()
	if err != nil {
		return err
	}
	channel, dest, err := channelDestination(c.p, a.user)
	if err != nil {
		return err
	}
	body, err := h.sendVerification(c.r.Context(), a.user, channel, dest, a.ac, c.meta(a.client.ID))
	if err != nil {
		return err
	}
	return c.json(http.StatusAccepted, body)
}

// verifyDestination is POST /auth/verify-destination: {channel,
// destination, code}. The destination becomes the user's phone number or
// address, verified; the answer is the User resource.
func (h *Handler) verifyDestination(c *call) error {
	ctx := c.r.Context()
	a, err := c.bearer()
	if err != nil {
		return err
	}
	channel, dest, err := channelDestination(c.p, a.user)
	if err != nil {
		return err
	}
	rec, err := h.verifyAndSet(ctx, a.user.ID, channel, dest, c.p.get("code"), c.meta(a.client.ID))
	if err != nil {
		return err
	}
	u, err := h.userView(ctx, rec)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, u)
}

// metaOf is the audit description of a request without a client.
func metaOf(r *http.Request) twofactor.Meta {
	return twofactor.Meta{RemoteAddr: remoteAddr(r), RequestID: audit.RequestID(r.Context())}
}
