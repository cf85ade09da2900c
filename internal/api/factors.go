package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Strategies of the built-in factors, named as Clerk names them.
const (
	StrategyTOTP       = "totp"
	StrategyPhoneCode  = "phone_code"
	StrategyEmailCode  = "email_code"
	StrategyBackupCode = "backup_code"
)

// Destination ids of the code factors: which of the user's destinations a
// prepare call names.
const (
	DestinationPhone = "phone"
	DestinationEmail = "email"
)

// SignIn is a sign-in that passed the password and owes a second factor.
// Factors receive it; they must not keep it.
type SignIn struct {
	Token      twofactor.MFAToken
	User       store.User
	Client     resource.Client
	AuthConfig resource.AuthConfig
	// TwoFactor is the user's built-in factor; Enabled is false when the
	// user has none.
	TwoFactor store.TwoFactor
	Meta      twofactor.Meta
}

// Offer is one way to finish a sign-in, as the "factors" list shows it.
type Offer struct {
	Strategy      string `json:"strategy"`
	DestinationID string `json:"destination_id,omitempty"`
	Destination   string `json:"destination,omitempty"` // masked: +1•••••4567, a•••@example.com
}

// Prepared describes what a prepare call sent.
type Prepared struct {
	Strategy      string    `json:"strategy"`
	DestinationID string    `json:"destination_id,omitempty"`
	Destination   string    `json:"destination,omitempty"` // masked
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
}

// Proof is how a factor was proven.
type Proof struct {
	// AMR are the authentication method references (RFC 8176) to add to
	// "pwd" in the tokens, e.g. otp and mfa.
	AMR []string
	// RecoveryCodesRemaining is set when a recovery code was spent.
	RecoveryCodesRemaining *int
}

// Factor is one second-factor strategy of the sign-in API. The built-in
// totp, phone_code, email_code and backup_code are Factors; a deployment
// adds its own (a face check by a vendor's SDK, a hardware token of its
// own) through Handler.Factors and the same three endpoints serve it:
//
//   - Offers lists the ways this factor can finish the sign-in for s.User
//     (none: the factor does not apply). A user with any offer must pass a
//     second factor.
//   - Prepare starts a challenge (sends a code, opens a vendor session)
//     for one of the offers; ErrNotPreparable when nothing needs starting.
//   - Attempt checks the caller's answer ("code": a code, or whatever token
//     the client obtained from the vendor). Every refusal must be
//     ErrInvalidCode, and a factor of one's own must limit guesses itself
//     (e.g. Store.HitCounter per user), as the built-ins do with the
//     shared lockout.
//
// Errors other than the exported ones are failures of the service (503).
type Factor interface {
	Strategy() string
	Offers(ctx context.Context, s *SignIn) ([]Offer, error)
	Prepare(ctx context.Context, s *SignIn, destinationID string) (Prepared, error)
	Attempt(ctx context.Context, s *SignIn, code string) (Proof, error)
}

// Errors a Factor returns.
var (
	// ErrInvalidCode: the answer is refused (wrong, reused, expired,
	// malformed, locked). Shown as 422 invalid_code.
	ErrInvalidCode = twofactor.ErrInvalidCode
	// ErrNotPreparable: the strategy needs no prepare step (400).
	ErrNotPreparable = errors.New("this strategy needs no prepare step")
	// ErrNotOffered: the strategy or destination does not apply to this
	// sign-in (400 strategy_not_available).
	ErrNotOffered = errors.New("this strategy is not available for this sign-in")
	// ErrTooManySends: the factor's send limit was reached (429).
	ErrTooManySends = twofactor.ErrTooManySends
)

// factors returns the built-in factors followed by the deployment's own.
func (h *Handler) factors() []Factor {
	out := []Factor{
		totpFactor{h},
		codeFactor{h: h, strategy: StrategyPhoneCode, method: twofactor.MethodSMS, destinationID: DestinationPhone},
		codeFactor{h: h, strategy: StrategyEmailCode, method: twofactor.MethodEmail, destinationID: DestinationEmail},
		backupFactor{h},
	}
	return append(out, h.Factors...)
}

func (h *Handler) factor(strategy string) Factor {
	for _, f := range h.factors() {
		if f.Strategy() == strategy {
			return f
		}
	}
	return nil
}

// offers collects every factor's offers for s.
func (h *Handler) offers(ctx context.Context, s *SignIn) ([]Offer, error) {
	var out []Offer
	for _, f := range h.factors() {
		o, err := f.Offers(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("offers of %s: %w", f.Strategy(), err)
		}
		out = append(out, o...)
	}
	return out, nil
}

// verify runs the built-in check with the sign-in's lockout counter, which
// the hosted pages share.
func (h *Handler) verify(ctx context.Context, s *SignIn, code string, recovery bool) (Proof, error) {
	// VerifyMFAToken accepts an SMS/e-mail code sent for this token (the
	// prepare step) or by the password grant that issued it, never one sent
	// for another sign-in.
	res, err := h.TwoFactor.VerifyMFAToken(ctx, s.Token, twofactor.VerifyInput{
		Code:          code,
		PastSteps:     s.AuthConfig.PastTokens(),
		AllowRecovery: recovery,
		Meta:          s.Meta,
	})
	if errors.Is(err, twofactor.ErrNotEnabled) {
		return Proof{}, ErrInvalidCode
	}
	if err != nil {
		return Proof{}, err
	}
	p := Proof{AMR: res.AMR}
	if res.Method == twofactor.MethodRecovery {
		n := res.RecoveryCodesRemaining
		p.RecoveryCodesRemaining = &n
	}
	return p, nil
}

type totpFactor struct{ h *Handler }

func (totpFactor) Strategy() string { return StrategyTOTP }

func (f totpFactor) Offers(_ context.Context, s *SignIn) ([]Offer, error) {
	if s.TwoFactor.Enabled && s.TwoFactor.Method == twofactor.MethodTOTP {
		return []Offer{{Strategy: StrategyTOTP}}, nil
	}
	return nil, nil
}

// Prepare pushes the current code through the AuthConfig's webhook, as
// Aidbox does when its code prompt shows; without a webhook the app needs
// no prepare.
func (f totpFactor) Prepare(ctx context.Context, s *SignIn, _ string) (Prepared, error) {
	if !s.TwoFactor.Enabled || s.TwoFactor.Method != twofactor.MethodTOTP {
		return Prepared{}, ErrNotOffered
	}
	sent, err := f.h.TwoFactor.SendLoginCode(ctx, twofactor.LoginCodeInput{
		User: s.User, BindingID: s.Token.ID, PastSteps: s.AuthConfig.PastTokens(),
		Webhook: webhookOf(s.AuthConfig), Meta: s.Meta,
	})
	if errors.Is(err, twofactor.ErrNoWebhook) {
		return Prepared{}, ErrNotPreparable
	}
	if err != nil {
		return Prepared{}, err
	}
	return Prepared{Strategy: StrategyTOTP, ExpiresAt: sent.ExpiresAt}, nil
}

func (f totpFactor) Attempt(ctx context.Context, s *SignIn, code string) (Proof, error) {
	if !s.TwoFactor.Enabled || s.TwoFactor.Method != twofactor.MethodTOTP {
		return Proof{}, ErrNotOffered
	}
	return f.h.verify(ctx, s, code, false)
}

// codeFactor is phone_code (method sms) or email_code (method email): a
// code sent by the webhook to the factor's destination, bound to the
// mfa_token.
type codeFactor struct {
	h             *Handler
	strategy      string
	method        string
	destinationID string
}

func (f codeFactor) Strategy() string { return f.strategy }

func (f codeFactor) applies(s *SignIn) bool {
	return s.TwoFactor.Enabled && s.TwoFactor.Method == f.method
}

func (f codeFactor) Offers(_ context.Context, s *SignIn) ([]Offer, error) {
	if !f.applies(s) {
		return nil, nil
	}
	return []Offer{{Strategy: f.strategy, DestinationID: f.destinationID, Destination: twofactor.MaskDestination(s.TwoFactor.Destination)}}, nil
}

func (f codeFactor) Prepare(ctx context.Context, s *SignIn, destinationID string) (Prepared, error) {
	if !f.applies(s) || (destinationID != "" && destinationID != f.destinationID) {
		return Prepared{}, ErrNotOffered
	}
	sent, err := f.h.TwoFactor.SendLoginCode(ctx, twofactor.LoginCodeInput{
		User: s.User, BindingID: s.Token.ID, PastSteps: s.AuthConfig.PastTokens(),
		Webhook: webhookOf(s.AuthConfig), Meta: s.Meta,
	})
	if err != nil {
		return Prepared{}, err
	}
	return Prepared{
		Strategy: f.strategy, DestinationID: f.destinationID,
		Destination: twofactor.MaskDestination(sent.Destination), ExpiresAt: sent.ExpiresAt,
	}, nil
}

func (f codeFactor) Attempt(ctx context.Context, s *SignIn, code string) (Proof, error) {
	if !f.applies(s) {
		return Proof{}, ErrNotOffered
	}
	return f.h.verify(ctx, s, code, false)
}

// backupFactor is a recovery code in place of the factor's code.
type backupFactor struct{ h *Handler }

func (backupFactor) Strategy() string { return StrategyBackupCode }

func (f backupFactor) Offers(ctx context.Context, s *SignIn) ([]Offer, error) {
	if !s.TwoFactor.Enabled {
		return nil, nil
	}
	n, err := f.h.Store.CountRecoveryCodes(ctx, s.User.ID)
	if err != nil {
		return nil, fmt.Errorf("count recovery codes of %q: %w", s.User.ID, err)
	}
	if n == 0 {
		return nil, nil
	}
	return []Offer{{Strategy: StrategyBackupCode}}, nil
}

func (backupFactor) Prepare(context.Context, *SignIn, string) (Prepared, error) {
	return Prepared{}, ErrNotPreparable
}

func (f backupFactor) Attempt(ctx context.Context, s *SignIn, code string) (Proof, error) {
	if !s.TwoFactor.Enabled {
		return Proof{}, ErrNotOffered
	}
	// A six-digit code is the factor's own code, not a recovery code:
	// refuse it here rather than let Verify accept it under this strategy.
	if looksLikeOTP(code) {
		return Proof{}, ErrInvalidCode
	}
	return f.h.verify(ctx, s, code, true)
}

// looksLikeOTP reports a code that reads as six digits once the spaces and
// dashes people type are dropped.
func looksLikeOTP(code string) bool {
	n := 0
	for _, r := range strings.TrimSpace(code) {
		switch {
		case r == ' ' || r == '-' || r == '\t':
		case r >= '0' && r <= '9':
			n++
		default:
			return false
		}
	}
	return n == twofactor.Digits
}
