package oauth

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ory/fosite/token/jwt"
)

// PostLogoutRedirectAllowed reports whether uri is registered, exactly, in
// the client's post_logout_redirect_uri list.
func (p *Provider) PostLogoutRedirectAllowed(ctx context.Context, clientID, uri string) bool {
	if uri == "" {
		return false
	}
	c, err := p.getClient(ctx, clientID, "")
	if err != nil {
		return false
	}
	return slices.Contains([]string(c.res.PostLogoutRedirectURIs), uri)
}

// ClientIDFromIDTokenHint verifies an ID token we signed (an expired one is
// fine: logout hints are often old) and returns its audience and subject.
func (p *Provider) ClientIDFromIDTokenHint(ctx context.Context, idTokenHint string) (string, string, error) {
	tok, err := p.idSigner.Decode(ctx, idTokenHint)
	if err != nil {
		var ve *jwt.ValidationError
		if !errors.As(err, &ve) || ve.Errors != jwt.ValidationErrorExpired || tok == nil {
			return "", "", fmt.Errorf("id_token_hint: %w", err)
		}
	}
	claims := tok.Claims
	if iss, _ := claims["iss"].(string); iss != p.cfg.Issuer {
		return "", "", errors.New("id_token_hint: issued by someone else")
	}
	sub, _ := claims["sub"].(string)
	var clientID string
	switch aud := claims["aud"].(type) {
	case string:
		clientID = aud
	case []any:
		if len(aud) > 0 {
			clientID, _ = aud[0].(string)
		}
	}
	if azp, _ := claims["azp"].(string); azp != "" {
		clientID = azp
	}
	if clientID == "" || sub == "" {
		return "", "", errors.New("id_token_hint: no audience or subject")
	}
	return clientID, sub, nil
}
