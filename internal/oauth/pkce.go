package oauth

import (
	"context"
	"errors"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/pkce"
	"github.com/ory/x/errorsx"

	"github.com/gatehouse/gatehouse/internal/store"
)

// pkceGuard wraps fosite's PKCE handler with Gatehouse's rules:
//   - PKCE (S256 only; fosite refuses plain) is required for public clients
//     and for clients whose authorization_code settings say pkce: true;
//   - a failed verifier check burns the code, so neither a retry without a
//     verifier (fosite PR #883) nor guessing can redeem it afterwards. The
//     PKCE record also stays until the code is redeemed
//     (fositeStore.DeletePKCERequestSession).
type pkceGuard struct {
	*pkce.Handler
	p *Provider
}

func (h *pkceGuard) HandleAuthorizeEndpointRequest(ctx context.Context, ar fosite.AuthorizeRequester, resp fosite.AuthorizeResponder) error {
	if ar.GetResponseTypes().Has("code") && ar.GetRequestForm().Get("code_challenge") == "" {
		if c, ok := ar.GetClient().(*client); ok && c.requiresPKCE() {
			return errorsx.WithStack(fosite.ErrInvalidRequest.WithHint("This client must use PKCE: send code_challenge with code_challenge_method=S256."))
		}
	}
	return h.Handler.HandleAuthorizeEndpointRequest(ctx, ar, resp)
}

func (h *pkceGuard) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return errorsx.WithStack(fosite.ErrUnknownRequest)
	}
	code := r.GetRequestForm().Get("code")
	sig := h.p.strategy.AuthorizeCodeSignature(ctx, code)
	if c, ok := r.GetClient().(*client); ok && c.requiresPKCE() {
		if _, err := h.p.storage.GetPKCERequestSession(ctx, sig, newSession()); errors.Is(err, fosite.ErrNotFound) {
			h.burn(ctx, sig)
			return errorsx.WithStack(fosite.ErrInvalidGrant.WithHint("This client must use PKCE, but the authorization request had no code_challenge."))
		} else if err != nil {
			return errorsx.WithStack(fosite.ErrServerError.WithWrap(err))
		}
	}
	err := h.Handler.HandleTokenEndpointRequest(ctx, r)
	if err != nil && errors.Is(err, fosite.ErrInvalidGrant) {
		h.burn(ctx, sig)
	}
	return err
}

// burn invalidates the code after a failed PKCE check. Its errors are
// logged only: the request fails anyway.
func (h *pkceGuard) burn(ctx context.Context, sig string) {
	err := h.p.cfg.Store.DeactivateOAuthRequest(ctx, store.KindAuthorizeCode, sig)
	recordMemoOf(ctx).deactivated(store.KindAuthorizeCode, sig)
	if err != nil && !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
		h.p.cfg.Logger.WarnContext(ctx, "invalidate code after failed PKCE check", "err", err)
	}
}
