package oauth

import (
	"context"
	"net/url"

	"github.com/gatehouse/gatehouse/internal/secret"
)

// OpenID Connect Back-Channel Logout 1.0: when a browser session ends, each
// client it signed in to that registered a backchannel_logout_uri gets a
// logout token POSTed to it, signed like its ID tokens: iss, aud, iat, exp,
// jti, sub, the session's sid and the back-channel logout event, never a
// nonce (§2.4). Delivery goes through the webhook notifier: the same
// address guard, timeout, retries with backoff and bounded queue, in the
// background, so a hung receiver never holds the logout page.

const (
	backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"
	typLogoutToken         = "logout+jwt"
	// logoutTokenLifespan is short: the token is used at once (§2.4
	// recommends at most two minutes).
	logoutTokenLifespan = 2 * 60
)

// BackchannelLogout tells clients that user's session sid ended. Clients
// without a backchannel_logout_uri, or gone, are skipped; failures are
// logged and never returned: the session is over either way.
func (p *Provider) BackchannelLogout(ctx context.Context, userID, sid string, clientIDs []string) {
	if p.cfg.Notifier == nil {
		return
	}
	for _, id := range clientIDs {
		c, err := p.getClient(ctx, id, "")
		if err != nil || c.res.BackchannelLogoutURI == "" {
			continue
		}
		tok, err := p.logoutToken(ctx, c, userID, sid)
		if err != nil {
			p.cfg.Logger.ErrorContext(ctx, "back-channel logout token not signed", "client", id, "err", err)
			continue
		}
		p.cfg.Notifier.PostForm(ctx, c.res.BackchannelLogoutURI, url.Values{"logout_token": {tok}}, "back-channel logout")
	}
}

func (p *Provider) logoutToken(ctx context.Context, c *client, userID, sid string) (string, error) {
	now := p.now().Unix()
	claims := map[string]any{
		"iss":    p.cfg.Issuer,
		"aud":    c.GetID(),
		"sub":    userID,
		"sid":    sid,
		"iat":    now,
		"exp":    now + logoutTokenLifespan,
		"jti":    secret.RandomToken(16),
		"events": map[string]any{backchannelLogoutEvent: map[string]any{}},
	}
	return p.keys.sign(ctx, c.idTokenAlg(), claims, typLogoutToken, nil)
}
