package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/passkey"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Sign-in states, as Clerk names them.
const (
	StatusComplete          = signin.StatusComplete
	StatusNeedsSecondFactor = signin.StatusNeedsSecondFactor
	StatusNeedsEnrollment   = signin.StatusNeedsEnrollment
)

// Bounds of the password step: longer input is refused as invalid
// credentials without a look-up.
const (
	maxUsernameLen = 320
	maxPasswordLen = 1024
)

var errInvalidCredentials = &apiError{Status: http.StatusUnauthorized, Code: "invalid_credentials",
	Desc: "The username or password is incorrect."}

// errAccountDisabled answers only the right password of an inactive account.
var errAccountDisabled = &apiError{Status: http.StatusForbidden, Code: "account_disabled",
	Desc: "This account is disabled. Contact your administrator."}

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
	if errors.Is(err, account.ErrAccountDisabled) {
		return errAccountDisabled
	}
	if errors.Is(err, account.ErrInvalidCredentials) {
		return errInvalidCredentials
	}
	if err != nil {
		return err
	}
	s, step, err := h.SignIn.Begin(ctx, signin.BeginInput{User: user, Client: cl, FirstFactorAt: h.now(), Meta: c.meta(cl.ID)})
	if errors.Is(err, signin.ErrUnmetLevel) {
		return errUnmetLevel
	}
	if err != nil {
		return err
	}
	if step.Status == StatusComplete {
		return h.complete(c, cl, step.Result.UserID, step.Result.AMR, nil)
	}
	token, exp, err := h.SignIn.Park(ctx, s, signin.APITTL)
	if err != nil {
		return err
	}
	body := map[string]any{"status": step.Status, "mfa_token": token, "expires_at": exp}
	if step.Status == StatusNeedsSecondFactor {
		if body["factors"], err = h.SignIn.Offers(ctx, s); err != nil {
			return err
		}
	} else {
		body["enrollable"] = h.SignIn.Enrollable(s)
		if step.Skippable {
			// The enrolment may wait (POST /auth/sign-in/enroll/skip) until then.
			body["skippable"], body["graceEndsAt"] = true, step.GraceEndsAt
		}
	}
	return c.json(http.StatusOK, body)
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
	si, err := h.SignIn.Open(ctx, raw, cl)
	if errors.Is(err, signin.ErrInvalidTicket) {
		return nil, errInvalidMFAToken
	}
	if err != nil {
		return nil, err
	}
	si.Meta = c.meta(cl.ID)
	return si, nil
}

// strategyOf reads the "strategy" parameter.
func (c *call) strategyOf() (string, error) {
	st := strings.TrimSpace(c.p.get("strategy"))
	if st == "" {
		return "", missing("strategy")
	}
	return st, nil
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
	case errors.Is(err, signin.ErrInvalidTicket):
		return errInvalidMFAToken
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
	st, err := c.strategyOf()
	if err != nil {
		return err
	}
	p, err := h.SignIn.Prepare(c.r.Context(), s, st, strings.TrimSpace(c.p.get("destination_id")))
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
	st, err := c.strategyOf()
	if err != nil {
		return err
	}
	code := c.p.get("code")
	if strings.TrimSpace(code) == "" {
		return missing("code")
	}
	res, err := h.SignIn.Attempt(c.r.Context(), s, st, code)
	var extra map[string]any
	if res.RecoveryCodesRemaining != nil {
		extra = map[string]any{"recovery_codes_remaining": *res.RecoveryCodesRemaining}
	}
	if st == passkey.StrategyPasskey && errors.Is(err, ErrInvalidCode) {
		return errInvalidPasskey
	}
	if err != nil {
		return factorError(err)
	}
	return h.complete(c, s.Client, res.UserID, res.AMR, extra)
}

// completeSignIn finishes s after a step outside Attempt proved a factor
// (an enrolment confirmed, a recovery code exchanged for new ones), and
// answers the tokens. Exactly one completion of a ticket wins.
func (h *Handler) completeSignIn(c *call, s *SignIn, strategy string, methods []string, extra map[string]any) error {
	res, err := h.SignIn.Complete(c.r.Context(), s, strategy, methods)
	if errors.Is(err, signin.ErrInvalidTicket) {
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
	return h.complete(c, s.Client, res.UserID, res.AMR, extra)
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
