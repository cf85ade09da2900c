package passkey

import (
	"context"
	"errors"

	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// StrategyPasskey is the passkey factor's strategy on every surface.
const StrategyPasskey = "passkey"

// Factor is a passkey as a second factor of the sign-in engine: offered to
// a user with a passkey, prepared by issuing request options bound to the
// sign-in, answered with the browser's assertion JSON. Attempts go through
// the engine's one attempt counter (it is not a built-in factor, so the
// engine guards it), every refusal is signin.ErrInvalidCode, and a success
// proves hwk (and user when the authenticator verified the user).
type Factor struct{ Passkeys *Service }

var (
	_ signin.Factor    = Factor{}
	_ signin.Describer = Factor{}
)

func (Factor) Strategy() string { return StrategyPasskey }

func (Factor) Describe() signin.Description {
	return signin.Description{Label: "Passkey", Prompt: "Use your passkey to continue.", Input: signin.InputPasskey, NeedsSend: true}
}

func (f Factor) Offers(ctx context.Context, s *signin.SignIn) ([]signin.Offer, error) {
	ok := false
	if known := s.User.Factors; known != nil {
		// Counted when the user was read: no statement of its own.
		ok = known.Passkeys > 0
	} else {
		var err error
		if ok, err = f.Passkeys.HasPasskeys(ctx, s.User.ID); err != nil {
			return nil, err
		}
	}
	if !ok {
		return nil, nil
	}
	return []signin.Offer{{Strategy: StrategyPasskey}}, nil
}

// Prepare issues request options for the user's passkeys, bound to the
// sign-in (its ticket, or the browser session on the hosted pages); each
// call issues a fresh challenge.
func (f Factor) Prepare(ctx context.Context, s *signin.SignIn, _ string) (signin.Prepared, error) {
	if s.Token.ID == "" && s.Binding == twofactor.PasswordGrantBinding(s.Client.ID, s.User.ID) {
		// A password grant's answer carries no options: the client asks
		// for them with the mfa_token (/auth/sign-in/prepare).
		return signin.Prepared{}, signin.ErrNotPreparable
	}
	opts, exp, err := f.Passkeys.BeginAssertion(ctx, s.AuthConfig, s.User, s.Binding)
	if errors.Is(err, ErrNoPasskeys) {
		return signin.Prepared{}, signin.ErrNotOffered
	}
	if err != nil {
		return signin.Prepared{}, err
	}
	return signin.Prepared{Strategy: StrategyPasskey, ExpiresAt: exp, Options: opts}, nil
}

func (f Factor) Attempt(ctx context.Context, s *signin.SignIn, answer string) (signin.Proof, error) {
	a, err := f.Passkeys.FinishAssertion(ctx, s.AuthConfig, s.User, s.Binding, []byte(answer), s.Meta)
	if errors.Is(err, ErrInvalid) {
		return signin.Proof{}, signin.ErrInvalidCode
	}
	if err != nil {
		return signin.Proof{}, err
	}
	return signin.Proof{AMR: a.AMR()}, nil
}
