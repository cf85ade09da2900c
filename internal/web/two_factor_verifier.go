package web

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// TwoFactorVerifier is the SecondFactorVerifier of a real deployment: the
// code goes through twofactor.Service.Verify (replay guard, lockout,
// recovery codes) with the past-step window of the AuthConfig that applies
// to the login's client.
type TwoFactorVerifier struct {
	Service *twofactor.Service
	Store   store.Store
}

var _ SecondFactorVerifier = (*TwoFactorVerifier)(nil)

// VerifyLoginCode implements SecondFactorVerifier. Every refusal, a user
// whose factor was switched off since the password included, is
// ErrInvalidCode.
func (v *TwoFactorVerifier) VerifyLoginCode(ctx context.Context, user store.User, code string, at LoginAttempt) ([]string, error) {
	ac, err := authConfigOfClient(ctx, v.Store, at.ClientID)
	if err != nil {
		return nil, err
	}
	res, err := v.Service.Verify(ctx, twofactor.VerifyInput{
		UserID:        user.ID,
		Code:          code,
		PastSteps:     ac.PastTokens(),
		AllowRecovery: true,
		BindingID:     at.BindingID,
		Meta:          twofactor.Meta{ClientID: at.ClientID, RemoteAddr: at.RemoteAddr, RequestID: at.RequestID},
	})
	if errors.Is(err, twofactor.ErrInvalidCode) || errors.Is(err, twofactor.ErrNotEnabled) {
		return nil, ErrInvalidCode
	}
	if err != nil {
		return nil, fmt.Errorf("verify second factor of %q: %w", user.ID, err)
	}
	return res.AMR, nil
}

// authConfigOfClient resolves the AuthConfig for the client named clientID
// ("" or an unknown client: the one that applies with no client).
func authConfigOfClient(ctx context.Context, st store.Store, clientID string) (resource.AuthConfig, error) {
	c, _, err := loadClient(ctx, st, clientID)
	if err != nil {
		return resource.AuthConfig{}, err
	}
	ac, err := resource.ResolveAuthConfig(ctx, st, c)
	if err != nil {
		return resource.AuthConfig{}, fmt.Errorf("resolve auth config: %w", err)
	}
	return ac, nil
}
