package signin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Strategies of the built-in factors, named as Clerk names them.
const (
	StrategyTOTP       = "totp"
	StrategyPhoneCode  = "phone_code"
	StrategyEmailCode  = "email_code"
	StrategyBackupCode = "backup_code"
	// StrategyPasskey is the passkey factor's strategy: a success proves
	// amr hwk and reaches ACRPhishingResistant.
	StrategyPasskey = "passkey"
)

// Destination ids of the code factors: which of the user's destinations a
// prepare call names.
const (
	DestinationPhone = "phone"
	DestinationEmail = "email"
)

// factors returns the built-in factors followed by the deployment's own.
func (e *Engine) factors() []Factor {
	out := []Factor{
		totpFactor{e},
		codeFactor{e: e, strategy: StrategyPhoneCode, method: twofactor.MethodSMS, destinationID: DestinationPhone},
		codeFactor{e: e, strategy: StrategyEmailCode, method: twofactor.MethodEmail, destinationID: DestinationEmail},
		backupFactor{e},
	}
	return append(out, e.Factors...)
}

// BuiltIn reports whether strategy names a built-in factor.
func BuiltIn(strategy string) bool {
	switch strategy {
	case StrategyTOTP, StrategyPhoneCode, StrategyEmailCode, StrategyBackupCode:
		return true
	}
	return false
}

// verify runs the built-in check of a code on s's user: the replay guard,
// the shared lockout counter, and an SMS/e-mail code accepted only when it
// was sent for this sign-in (its ticket, or the password grant that began
// it).
func (e *Engine) verify(ctx context.Context, s *SignIn, code string, recovery bool) (Proof, error) {
	tf := s.TwoFactor
	in := twofactor.VerifyInput{
		UserID: s.User.ID, Code: code, PastSteps: s.Policy.PastSteps(), AllowRecovery: recovery, Meta: s.Meta,
		BindingID: s.Binding, Factor: &tf,
	}
	var res twofactor.Result
	var err error
	if s.Token.ID != "" {
		res, err = e.TwoFactor.VerifyMFAToken(ctx, s.Token, in)
	} else {
		res, err = e.TwoFactor.Verify(ctx, in)
	}
	if errors.Is(err, twofactor.ErrNotEnabled) {
		return Proof{}, ErrInvalidCode
	}
	if err != nil {
		return Proof{}, err
	}
	p := Proof{AMR: res.AMR, Strategy: BuiltinStrategy(store.TwoFactor{Method: res.Method})}
	if res.Method == twofactor.MethodRecovery {
		p.Strategy = StrategyBackupCode
		n := res.RecoveryCodesRemaining
		p.RecoveryCodesRemaining = &n
	}
	return p, nil
}

// sendCode delivers the code of s's built-in factor through the policy's
// webhook, bound to the sign-in (SignIn.Binding).
func (e *Engine) sendCode(ctx context.Context, s *SignIn) (twofactor.Sent, error) {
	return e.TwoFactor.SendLoginCode(ctx, twofactor.LoginCodeInput{
		User: s.User, BindingID: s.Binding, PastSteps: s.Policy.PastSteps(),
		Webhook: s.Policy.Webhook(), Meta: s.Meta,
	})
}

type totpFactor struct{ e *Engine }

func (totpFactor) Strategy() string { return StrategyTOTP }
func (totpFactor) guarded() bool    { return true }

func (totpFactor) Describe() Description {
	return Description{Label: "Authenticator app", Prompt: "Enter the 6-digit code from your authenticator app.", Input: InputCode}
}

func (f totpFactor) applies(s *SignIn) bool {
	return s.TwoFactor.Enabled && s.TwoFactor.Method == twofactor.MethodTOTP
}

func (f totpFactor) Offers(_ context.Context, s *SignIn) ([]Offer, error) {
	if f.applies(s) {
		return []Offer{{Strategy: StrategyTOTP}}, nil
	}
	return nil, nil
}

// Prepare pushes the current code through the AuthConfig's webhook, as
// Aidbox does when its code prompt shows; without a webhook the app needs
// no prepare.
func (f totpFactor) Prepare(ctx context.Context, s *SignIn, _ string) (Prepared, error) {
	if !f.applies(s) {
		return Prepared{}, ErrNotOffered
	}
	sent, err := f.e.sendCode(ctx, s)
	if errors.Is(err, twofactor.ErrNoWebhook) {
		return Prepared{}, ErrNotPreparable
	}
	if err != nil {
		return Prepared{}, err
	}
	return Prepared{Strategy: StrategyTOTP, ExpiresAt: sent.ExpiresAt}, nil
}

func (f totpFactor) Attempt(ctx context.Context, s *SignIn, code string) (Proof, error) {
	if !f.applies(s) {
		return Proof{}, ErrNotOffered
	}
	return f.e.verify(ctx, s, code, false)
}

// codeFactor is phone_code (method sms) or email_code (method email): a
// code sent by the webhook to the factor's destination, bound to the
// sign-in.
type codeFactor struct {
	e             *Engine
	strategy      string
	method        string
	destinationID string
}

func (f codeFactor) Strategy() string { return f.strategy }
func (codeFactor) guarded() bool      { return true }

func (f codeFactor) Describe() Description {
	if f.method == twofactor.MethodSMS {
		return Description{Label: "Text message", Prompt: "Enter the 6-digit code we sent by text message.", Input: InputCode, NeedsSend: true}
	}
	return Description{Label: "E-mail", Prompt: "Enter the 6-digit code we sent by e-mail.", Input: InputCode, NeedsSend: true}
}

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
	sent, err := f.e.sendCode(ctx, s)
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
	return f.e.verify(ctx, s, code, false)
}

// backupFactor is a recovery code in place of the factor's code.
type backupFactor struct{ e *Engine }

func (backupFactor) Strategy() string { return StrategyBackupCode }
func (backupFactor) guarded() bool    { return true }

func (backupFactor) Describe() Description {
	return Description{Label: "Recovery code", Prompt: "Enter one of the recovery codes you saved.", Input: InputText}
}

func (f backupFactor) Offers(ctx context.Context, s *SignIn) ([]Offer, error) {
	if !s.TwoFactor.Enabled {
		return nil, nil
	}
	n, err := f.e.Store.CountRecoveryCodes(ctx, s.User.ID)
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
	if LooksLikeOTP(code) {
		return Proof{}, ErrInvalidCode
	}
	return f.e.verify(ctx, s, code, true)
}

// anyCodeFactor is the default strategy of a user with a built-in factor:
// the factor's code or a recovery code in one box (the hosted page, the
// password grant's otp).
type anyCodeFactor struct{ e *Engine }

func (anyCodeFactor) Strategy() string { return "" }
func (anyCodeFactor) guarded() bool    { return true }

func (anyCodeFactor) Offers(context.Context, *SignIn) ([]Offer, error) { return nil, nil }

func (f anyCodeFactor) Prepare(ctx context.Context, s *SignIn, dest string) (Prepared, error) {
	switch s.TwoFactor.Method {
	case twofactor.MethodSMS:
		return codeFactor{e: f.e, strategy: StrategyPhoneCode, method: twofactor.MethodSMS, destinationID: DestinationPhone}.Prepare(ctx, s, dest)
	case twofactor.MethodEmail:
		return codeFactor{e: f.e, strategy: StrategyEmailCode, method: twofactor.MethodEmail, destinationID: DestinationEmail}.Prepare(ctx, s, dest)
	}
	return totpFactor{f.e}.Prepare(ctx, s, dest)
}

func (f anyCodeFactor) Attempt(ctx context.Context, s *SignIn, code string) (Proof, error) {
	// The box takes a recovery code too, unless the policy's methods
	// leave recovery codes out.
	return f.e.verify(ctx, s, code, f.e.usable(s, StrategyBackupCode))
}

// LooksLikeOTP reports a code that reads as six digits once the spaces and
// dashes people type are dropped.
func LooksLikeOTP(code string) bool {
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
