package signin

import (
	"context"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// PasswordlessInput is a sign-in without a password: a factor that both
// names the user and proves two factors (a passkey with user
// verification). Verify checks the answer and returns the methods it
// proved; every refusal is ErrInvalidCode.
type PasswordlessInput struct {
	User     store.User
	Strategy string
	Meta     twofactor.Meta
	Verify   func(ctx context.Context) ([]string, error)
}

// Passwordless runs Verify under the user's one attempt counter and
// lockout (the counter every factor shares) and returns the finished
// sign-in: amr the methods proved and mfa, acr phishing-resistant,
// auth_time now. The answer must prove more than one method (hwk and
// user); else it is refused as a second factor alone would be.
func (e *Engine) Passwordless(ctx context.Context, in PasswordlessInput) (Result, error) {
	var methods []string
	_, err := e.TwoFactor.Guard(ctx, in.User.ID, in.Strategy, in.Meta, func(ctx context.Context) (twofactor.Result, error) {
		m, err := in.Verify(ctx)
		if err != nil {
			return twofactor.Result{}, err
		}
		if len(m) < 2 {
			return twofactor.Result{}, ErrInvalidCode
		}
		methods = m
		return twofactor.Result{AMR: m}, nil
	})
	if err != nil {
		return Result{}, err
	}
	amr := []string{}
	for _, m := range methods {
		if m != AMRPassword && m != AMRMFA && !slices.Contains(amr, m) {
			amr = append(amr, m)
		}
	}
	return Result{UserID: in.User.ID, AMR: append(amr, AMRMFA), ACR: ACRPhishingResistant,
		AuthTime: e.now().Truncate(time.Second), Strategy: in.Strategy}, nil
}
