package oauth

import (
	"context"
	"slices"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
)

// refreshGrant is fosite's refresh grant with two additions.
//
// Scope: RFC 6749 §6 `scope` (v0.49 ignores it). The new access token
// carries the requested scopes, which must all have been granted (else
// invalid_scope), while the new refresh token keeps the original grant
// ("identical to that of the refresh token included by the client"), so a
// later refresh may widen back to it.
//
// Rotation with grace (rotation.go): a reuse of a rotated refresh token
// revokes its family however it arrives, read after the rotation or racing
// it; within the client's grace period the just-rotated token answers with
// the pair its rotation issued instead.
type refreshGrant struct {
	*oauth2.RefreshTokenGrantHandler
	p *Provider
}

func (h *refreshGrant) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	// In this call a rotated token within its grace period reads as
	// active, so that fosite validates it as it validates any other.
	if err := h.RefreshTokenGrantHandler.HandleTokenEndpointRequest(withRefreshGrant(ctx), r); err != nil {
		return err
	}
	raw, sent := r.GetRequestForm()["scope"]
	sess, _ := r.GetSession().(*session)
	if sess != nil {
		sess.RefreshScopes = nil // a clone of the presented token's session
	}
	requested := fosite.RemoveEmpty(strings.Split(strings.Join(raw, " "), " "))
	if !sent || len(requested) == 0 {
		return nil // an empty scope is an absent one: the granted scope
	}
	granted := r.GetGrantedScopes()
	for _, s := range requested {
		if !granted.Has(s) {
			return fosite.ErrInvalidScope.WithHintf("The scope %q was not granted to this refresh token.", s)
		}
	}
	ar, ok := r.(*fosite.AccessRequest)
	if !ok || sess == nil {
		return fosite.ErrServerError.WithDebug("unexpected request or session type for a refresh")
	}
	// The refresh token itself keeps offline access whatever the new
	// access token's scope.
	sess.RefreshScopes = slices.Clone([]string(granted))
	narrowed := fosite.Arguments{}
	for _, s := range granted {
		if slices.Contains(requested, s) {
			narrowed = append(narrowed, s)
		}
	}
	ar.GrantedScope = narrowed
	ar.SetRequestedScopes(narrowed)
	return nil
}

// refreshRecord is what CreateRefreshTokenSession stores for r: r itself,
// or, after a narrowing refresh, r with the original grant.
func refreshRecord(r fosite.Requester) fosite.Requester {
	sess, _ := r.GetSession().(*session)
	req, ok := r.(*fosite.Request)
	if sess == nil || !ok || sess.RefreshScopes == nil {
		return r
	}
	cp := *req
	cp.GrantedScope = slices.Clone(sess.RefreshScopes)
	cp.RequestedScope = slices.Clone(sess.RefreshScopes)
	return &cp
}
