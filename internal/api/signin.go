package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Sign-in states, as Clerk names them.
const (
	StatusComplete          = "complete"
	StatusNeedsSecondFactor = "needs_second_factor"
	StatusNeedsEnrollment   = "needs_enrollment"
)

// Bounds of the password step: longer input is refused as invalid
// credentials without a look-up.
const (
	maxUsernameLen = 320
	maxPasswordLen = 1024
)

var errInvalidCredentials = &apiError{Status: http.StatusUnauthorized, Code: "invalid_credentials",
	Desc: "The username or password is incorrect."}

// signIn is POST /auth/sign-in: {username, password, client_id,
// client_secret?, scope?}.
func (h *Handler) signIn(c *call) error {
	ctx := c.r.Context()
	cl, err := c.authClient()
	if err != nil {
		return err
	}
	username := strings.TrimSpace(c.p.get("username"))
	password := c.p.get("password")
	if username == "" {
		return missing("username")
	}
	if password == "" {
		return missing("password")
	}
	if len(username) > maxUsernameLen || len(password) > maxPasswordLen {
		return errInvalidCredentials
	}
	user, err := h.Accounts.CheckPassword(ctx, account.Attempt{
		Login: username, Password: password, RemoteAddr: remoteAddr(c.r),
		ClientID: cl.ID, RequestID: audit.RequestID(ctx),
	})
	if errors.Is(err, account.ErrThrottled) {
		return throttled(err)
	}
	if errors.Is(err, account.ErrInvalidCredentials) {
		return errInvalidCredentials
	}
	if err != nil {
		return err
	}
	ac, err := h.authConfig(ctx, cl)
	if err != nil {
		return err
	}
	s := &SignIn{User: user, Client: cl, AuthConfig: ac, Meta: c.meta(cl.ID)}
	if s.TwoFactor, err = h.twoFactorOf(ctx, user.ID); err != nil {
		return err
	}
	offers, err := h.offers(ctx, s)
	if err != nil {
		return err
	}
	status := StatusNeedsSecondFactor
	if len(offers) == 0 {
		if !cl.TwoFactorRequired() && !ac.TwoFactorRequired() && !resource.TOTPEnrolmentDue(s.TwoFactor) {
			return h.complete(c, cl, user.ID, []string{"pwd"}, nil)
		}
		status = StatusNeedsEnrollment
	}
	token, t, err := h.TwoFactor.IssueMFAToken(ctx, user.ID, cl.ID)
	if err != nil {
		return err
	}
	body := map[string]any{"status": status, "mfa_token": token, "expires_at": t.ExpiresAt}
	if status == StatusNeedsSecondFactor {
		body["factors"] = offers
	} else {
		body["enrollable"] = h.enrollable(s)
	}
	return c.json(http.StatusOK, body)
}

// twoFactorOf is the user's built-in factor record; the zero record when
// there is none.
func (h *Handler) twoFactorOf(ctx context.Context, userID string) (store.TwoFactor, error) {
	tf, err := h.Store.GetTwoFactor(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return store.TwoFactor{UserID: userID}, nil
	}
	if err != nil {
		return store.TwoFactor{}, fmt.Errorf("get second factor of %q: %w", userID, err)
	}
	return tf, nil
}

// enrollable lists the factors a user without one may set up during the
// sign-in: TOTP always, and codes to a verified phone or address when the
// AuthConfig has a webhook to deliver them.
func (h *Handler) enrollable(s *SignIn) []Offer {
	out := []Offer{{Strategy: StrategyTOTP}}
	if webhookOf(s.AuthConfig).Endpoint == "" {
		return out
	}
	if s.User.PhoneNumber != "" && s.User.PhoneVerified {
		out = append(out, Offer{Strategy: StrategyPhoneCode, DestinationID: DestinationPhone, Destination: twofactor.MaskDestination(s.User.PhoneNumber)})
	}
	if s.User.Email != "" && s.User.EmailVerified {
		out = append(out, Offer{Strategy: StrategyEmailCode, DestinationID: DestinationEmail, Destination: twofactor.MaskDestination(s.User.Email)})
	}
	return out
}

// openSignIn authenticates the client and opens the mfa_token of a sign-in
// in progress: genuine, unexpired, this client's, not completed, and its
// user still active.
func (c *call) openSignIn() (*SignIn, error) {
	ctx := c.r.Context()
	h := c.h
	cl, err := c.authClient()
	if err != nil {
		return nil, err
	}
	raw := strings.TrimSpace(c.p.get("mfa_token"))
	if raw == "" {
		return nil, missing("mfa_token")
	}
	t, err := h.TwoFactor.OpenMFAToken(ctx, raw, cl.ID)
	if errors.Is(err, twofactor.ErrInvalidMFAToken) {
		return nil, errInvalidMFAToken
	}
	if err != nil {
		return nil, err
	}
	user, err := h.Store.GetUser(ctx, t.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && user.Inactive) {
		return nil, errInvalidMFAToken
	}
	if err != nil {
		return nil, fmt.Errorf("get user %q: %w", t.UserID, err)
	}
	ac, err := h.authConfig(ctx, cl)
	if err != nil {
		return nil, err
	}
	s := &SignIn{Token: t, User: user, Client: cl, AuthConfig: ac, Meta: c.meta(cl.ID)}
	if s.TwoFactor, err = h.twoFactorOf(ctx, user.ID); err != nil {
		return nil, err
	}
	return s, nil
}

// strategyOf reads and resolves the "strategy" parameter.
func (c *call) strategyOf() (Factor, error) {
	st := strings.TrimSpace(c.p.get("strategy"))
	if st == "" {
		return nil, missing("strategy")
	}
	f := c.h.factor(st)
	if f == nil {
		return nil, errStrategy
	}
	return f, nil
}

var (
	errStrategy = &apiError{Status: http.StatusBadRequest, Code: "strategy_not_available",
		Desc: "This strategy is not available for this sign-in; use one of the factors listed."}
	errNotPreparable = &apiError{Status: http.StatusBadRequest, Code: "strategy_not_preparable",
		Desc: "This strategy needs no prepare step: attempt it with the code."}
)

// factorError maps a Factor's refusals to answers.
func factorError(err error) error {
	switch {
	case errors.Is(err, ErrInvalidCode):
		return errInvalidCode
	case errors.Is(err, ErrNotOffered):
		return errStrategy
	case errors.Is(err, ErrNotPreparable):
		return errNotPreparable
	case errors.Is(err, ErrTooManySends):
		return errTooManySends
	case errors.Is(err, twofactor.ErrNoWebhook):
		return errNoWebhook
	}
	return err
}

// prepare is POST /auth/sign-in/prepare: {mfa_token, client_id, strategy,
// destination_id?}. It sends a code (again, when called again).
func (h *Handler) prepare(c *call) error {
	s, err := c.openSignIn()
	if err != nil {
		return err
	}
	f, err := c.strategyOf()
	if err != nil {
		return err
	}
	p, err := f.Prepare(c.r.Context(), s, strings.TrimSpace(c.p.get("destination_id")))
	if err != nil {
		return factorError(err)
	}
	return c.json(http.StatusOK, map[string]any{"status": StatusNeedsSecondFactor, "prepared": p})
}

// attempt is POST /auth/sign-in/attempt: {mfa_token, client_id, strategy,
// code, scope?}. A success spends the mfa_token and answers the tokens.
func (h *Handler) attempt(c *call) error {
	s, err := c.openSignIn()
	if err != nil {
		return err
	}
	f, err := c.strategyOf()
	if err != nil {
		return err
	}
	code := c.p.get("code")
	if strings.TrimSpace(code) == "" {
		return missing("code")
	}
	proof, err := f.Attempt(c.r.Context(), s, code)
	if err != nil {
		return factorError(err)
	}
	var extra map[string]any
	if proof.RecoveryCodesRemaining != nil {
		extra = map[string]any{"recovery_codes_remaining": *proof.RecoveryCodesRemaining}
	}
	return h.completeMFA(c, s, proof.AMR, extra)
}

// completeMFA spends the mfa_token of a sign-in whose second factor was
// proven and answers the tokens. Exactly one completion of a token wins.
func (h *Handler) completeMFA(c *call, s *SignIn, amr []string, extra map[string]any) error {
	err := h.TwoFactor.CompleteMFAToken(c.r.Context(), s.Token)
	if errors.Is(err, twofactor.ErrInvalidMFAToken) {
		if len(extra) > 0 {
			e := *errInvalidMFAToken
			e.Extra = extra
			return &e
		}
		return errInvalidMFAToken
	}
	if err != nil {
		return err
	}
	return h.complete(c, s.Client, s.User.ID, amrWith(amr), extra)
}

// amrWith is pwd followed by the proven methods, mfa last.
func amrWith(methods []string) []string {
	out := []string{"pwd"}
	for _, m := range methods {
		if m != "pwd" && m != "mfa" && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return append(out, "mfa")
}

// complete issues the tokens of a finished sign-in and answers them with
// status complete (and extra fields).
func (h *Handler) complete(c *call, cl resource.Client, userID string, amr []string, extra map[string]any) error {
	tokens, err := h.issue(c, cl, userID, amr)
	if err != nil {
		return err
	}
	body := map[string]any{}
	for k, v := range tokens {
		body[k] = v
	}
	for k, v := range extra {
		body[k] = v
	}
	body["status"] = StatusComplete
	return c.json(http.StatusOK, body)
}

func (h *Handler) issue(c *call, cl resource.Client, userID string, amr []string) (map[string]any, error) {
	tokens, err := h.OAuth.IssueTokens(c.r.Context(), cl.ID, oauth.Grant{
		Subject:  userID,
		AuthTime: h.now().Truncate(time.Second),
		AMR:      amr,
		Scopes:   strings.Fields(c.p.get("scope")),
	})
	switch {
	case errors.Is(err, oauth.ErrInactiveUser):
		return nil, errInvalidCredentials
	case errors.Is(err, oauth.ErrUnknownClient):
		return nil, errInvalidClient
	case errors.Is(err, oauth.ErrGrantNotAllowed):
		return nil, fail(http.StatusForbidden, "unauthorized_client", "This client may not sign users in through the API: add the password grant to its grant_types.")
	case err != nil:
		return nil, err
	}
	return tokens, nil
}
