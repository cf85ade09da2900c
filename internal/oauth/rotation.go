package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/x/errorsx"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Refresh token rotation, reuse and the grace period.
//
// fosite rotates a refresh token by flipping its record inactive
// (RotateRefreshToken, one conditional UPDATE: of concurrent refreshes one
// wins) and storing the new pair, in one transaction. A reuse reaches us in
// one of two ways:
//
//   - read after the rotation committed: GetRefreshTokenSession finds the
//     record inactive and fosite revokes the family (handleRefreshTokenReuse);
//   - racing the rotation: the token read as active, and the conditional
//     UPDATE then finds it inactive (the winner committed meanwhile). fosite
//     only rolls back; PopulateTokenEndpointResponse below then decides.
//
// Either way the decision is the same. Within the client's grace period
// (refresh_token_grace_seconds) the rotation stored, under the old token's
// signature and in the same transaction, a KindRefreshGrace record with the
// pair it issued, sealed with the at-rest key; as long as that record is
// live and the pair's refresh token is still active (not itself rotated,
// not revoked), the old token answers with that same pair. Otherwise the
// reuse revokes every access and refresh token of the family (the grant's
// request id) and is answered invalid_grant. Because the winner's record
// and its grace record commit together, a loser never sees one without the
// other, on any number of processes.

// refreshGrantKey marks the context of fosite's refresh grant handling, in
// which GetRefreshTokenSession lets a rotated token within its grace period
// through to fosite's validation.
type refreshGrantKey struct{}

func withRefreshGrant(ctx context.Context) context.Context {
	return context.WithValue(ctx, refreshGrantKey{}, true)
}

func inRefreshGrant(ctx context.Context) bool {
	v, _ := ctx.Value(refreshGrantKey{}).(bool)
	return v
}

// rotation is what the commit of a rotation needs to keep the new pair for
// the grace period: fosite has put the pair in the responder by then.
type rotation struct {
	signature string // of the refresh token being rotated
	grace     time.Duration
	requester fosite.Requester
	responder fosite.AccessResponder
}

type rotationKey struct{}

func withRotation(ctx context.Context, r *rotation) context.Context {
	return context.WithValue(ctx, rotationKey{}, r)
}

func rotationOf(ctx context.Context) *rotation {
	r, _ := ctx.Value(rotationKey{}).(*rotation)
	return r
}

// issuedPair is the sealed content of a KindRefreshGrace record.
type issuedPair struct {
	AccessToken      string    `json:"access_token"`
	RefreshToken     string    `json:"refresh_token"`
	RefreshSignature string    `json:"refresh_signature"`
	AccessExpiresAt  time.Time `json:"access_expires_at"`
	Scopes           []string  `json:"scope"`
}

// graceAD binds a sealed pair to the signature it is stored under.
func graceAD(signature string) []byte { return []byte("refresh_grace\x00" + signature) }

// PopulateTokenEndpointResponse rotates through fosite; when the rotation
// finds the token already rotated (a race), settle answers.
func (h *refreshGrant) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return errorsx.WithStack(fosite.ErrUnknownRequest)
	}
	sig := h.RefreshTokenStrategy.RefreshTokenSignature(ctx, r.GetRequestForm().Get("refresh_token"))
	rotCtx := ctx
	if c, ok := r.GetClient().(*client); ok {
		if grace := c.res.RefreshTokenGrace(); grace > 0 {
			rotCtx = withRotation(ctx, &rotation{signature: sig, grace: grace, requester: r, responder: resp})
		}
	}
	err := h.RefreshTokenGrantHandler.PopulateTokenEndpointResponse(rotCtx, r, resp)
	if err == nil || !errors.Is(err, errLostRace) {
		return err
	}
	return h.settle(ctx, sig, r, resp)
}

// settle answers a refresh whose token turned out to be rotated already
// (fosite rolled its transaction back): the pair that rotation issued while
// its grace period lasts, else the family is revoked.
func (h *refreshGrant) settle(ctx context.Context, sig string, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	st := h.p.storage
	pair, err := st.gracePair(ctx, sig, r.GetID(), r.GetClient())
	if err != nil {
		return errorsx.WithStack(fosite.ErrServerError.WithWrap(err).WithDebug(err.Error()))
	}
	if pair != nil {
		resp.SetAccessToken(pair.AccessToken)
		resp.SetTokenType("bearer")
		resp.SetExpiresIn(max(pair.AccessExpiresAt.Sub(h.p.now()), 0))
		resp.SetScopes(pair.Scopes)
		resp.SetExtra("refresh_token", pair.RefreshToken)
		h.p.cfg.Logger.InfoContext(ctx, "rotated refresh token presented within its grace period; answered with the pair its rotation issued",
			"client", r.GetClient().GetID())
		return nil
	}
	if err := st.revokeFamily(ctx, r.GetID()); err != nil {
		return errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(err).WithDebug(err.Error()))
	}
	h.p.audit(ctx, store.AuditEvent{Type: audit.TokenReuse, UserID: sessionOf(r).UserID, ClientID: r.GetClient().GetID(),
		// at_rotation: found by the rotation (a race, or a grace pair no
		// longer valid), not by fosite's read.
		Detail: map[string]string{"token": "refresh_token", "detected": "at_rotation"}})
	return errorsx.WithStack(fosite.ErrInvalidGrant.WithHint("The refresh token was already used.").
		WithDebug("Refresh token reuse found at its rotation; all related tokens have been revoked."))
}

// graceLive reports whether the refresh token under signature, of c, was
// rotated less than its grace period ago, with the pair still kept.
func (s *fositeStore) graceLive(ctx context.Context, signature string, c fosite.Client) (bool, error) {
	rec, err := s.read(ctx, store.KindRefreshGrace, signature)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, storeErr("get refresh grace record", err)
	}
	return s.graceLasts(rec, c), nil
}

// graceLasts: the grace period of rec lasts until the end set at the
// rotation, or sooner when the client's grace was shortened since (an
// operator who sets 0 wants strict rotation now).
func (s *fositeStore) graceLasts(rec store.OAuthRequest, c fosite.Client) bool {
	cc, ok := c.(*client)
	if !ok || !rec.Active || rec.ClientID != cc.GetID() {
		return false
	}
	now := s.p.now()
	return now.Before(rec.ExpiresAt) && now.Before(rec.RequestedAt.Add(cc.res.RefreshTokenGrace()))
}

// graceRecord seals the pair a rotation issued, for the grace period.
func (s *fositeStore) graceRecord(ctx context.Context, rot *rotation) (store.OAuthRequest, error) {
	at := rot.responder.GetAccessToken()
	rt, _ := rot.responder.GetExtra("refresh_token").(string)
	if at == "" || rt == "" {
		return store.OAuthRequest{}, errors.New("keep the rotated pair: the response holds no new pair")
	}
	plain, err := json.Marshal(issuedPair{
		AccessToken:      at,
		RefreshToken:     rt,
		RefreshSignature: s.p.strategy.RefreshTokenSignature(ctx, rt),
		AccessExpiresAt:  rot.requester.GetSession().GetExpiresAt(fosite.AccessToken).UTC(),
		Scopes:           rot.requester.GetGrantedScopes(),
	})
	if err != nil {
		return store.OAuthRequest{}, fmt.Errorf("keep the rotated pair: %w", err)
	}
	now := s.p.now()
	return store.OAuthRequest{
		Kind:        store.KindRefreshGrace,
		Signature:   rot.signature,
		RequestID:   rot.requester.GetID(),
		ClientID:    rot.requester.GetClient().GetID(),
		Subject:     sessionOf(rot.requester).UserID, // ended with the user's tokens
		RequestedAt: now,
		ExpiresAt:   now.Add(rot.grace),
		Active:      true,
		Session:     s.p.sealer.Seal(plain, graceAD(rot.signature)),
	}, nil
}

// gracePair is the pair kept under signature for family requestID of
// client c, when its grace period lasts and its refresh token is active;
// nil otherwise.
func (s *fositeStore) gracePair(ctx context.Context, signature, requestID string, c fosite.Client) (*issuedPair, error) {
	rec, err := s.read(ctx, store.KindRefreshGrace, signature)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr("get refresh grace record", err)
	}
	if rec.RequestID != requestID || !s.graceLasts(rec, c) {
		return nil, nil
	}
	plain, err := s.p.sealer.Open(rec.Session, graceAD(signature))
	if err != nil {
		return nil, fmt.Errorf("open the pair kept for a refresh grace period: %w", err)
	}
	var pair issuedPair
	if err := json.Unmarshal(plain, &pair); err != nil {
		return nil, fmt.Errorf("decode the pair kept for a refresh grace period: %w", err)
	}
	next, err := s.read(ctx, store.KindRefreshToken, pair.RefreshSignature)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr("get the rotated pair's refresh token", err)
	}
	if !next.Active {
		return nil, nil // rotated on, or revoked: the old token is no longer the just-rotated one
	}
	return &pair, nil
}

// revokeFamily deactivates every access and refresh token of the grant
// requestID, and the pairs kept for its grace periods, together.
func (s *fositeStore) revokeFamily(ctx context.Context, requestID string) error {
	if err := s.flushQueued(ctx); err != nil {
		return err
	}
	recordMemoOf(ctx).forgetAll()
	err := s.st().InTx(ctx, func(ctx context.Context) error {
		for _, k := range []store.OAuthKind{store.KindRefreshToken, store.KindAccessToken, store.KindRefreshGrace} {
			if err := s.st().DeactivateOAuthRequestsByRequestID(ctx, k, requestID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return storeErr("revoke the refresh token family", err)
	}
	return nil
}
