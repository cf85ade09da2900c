package oauth

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Grant type names as fosite and the Client resource spell them.
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantClientCredentials = "client_credentials"
	grantPassword          = "password"
)

// Scopes Gatehouse knows itself. The OpenID ones concern the signed-in
// user's own data, so every client with a user-facing grant may ask for them
// (third-party clients still go through consent); offline_access is what
// makes fosite issue a refresh token.
const (
	scopeOpenID        = "openid"
	scopeProfile       = "profile"
	scopeEmail         = "email"
	scopePhone         = "phone"
	scopeOfflineAccess = "offline_access"
	scopeOffline       = "offline"
	// ScopeAdmin lets a client_credentials token call the admin API.
	ScopeAdmin = "gatehouse:admin"
)

var identityScopes = []string{scopeOpenID, scopeProfile, scopeEmail, scopePhone}

// client adapts a resource.Client to fosite. One resource yields a view per
// grant: public-ness, scopes and lifespans depend on the grant in use (an
// Aidbox Client can require a secret for client_credentials but not for
// password, say). View "" is the authorization endpoint's view.
type client struct {
	res        resource.Client
	secretHash string
	version    int64
	view       string // grant type this view serves; "" = authorization_code at /auth/authorize
}

var (
	_ fosite.Client                         = (*client)(nil)
	_ fosite.ClientWithCustomTokenLifespans = (*client)(nil)
	_ fosite.ResponseModeClient             = (*client)(nil)
	_ fosite.OpenIDConnectClient            = (*client)(nil)
)

// decodeClient turns a stored client into its typed resource, without the
// secret hash (the adapter keeps that apart, and it must never reach pages).
func decodeClient(c store.Client) (resource.Client, error) {
	rc, err := resource.ClientFromStore(c)
	if err != nil {
		return resource.Client{}, fmt.Errorf("decode client %q: %w", c.ID, err)
	}
	rc.Secret, rc.SecretHash = "", ""
	return rc, nil
}

func newClient(c store.Client, view string) (*client, error) {
	rc, err := decodeClient(c)
	if err != nil {
		return nil, err
	}
	return &client{res: rc, secretHash: c.SecretHash, version: c.Version, view: view}, nil
}

// viewOf is newClient for a client the resource package already decoded.
func viewOf(sc resource.StoredClient, view string) *client {
	rc := sc.Client
	rc.Secret, rc.SecretHash = "", ""
	return &client{res: rc, secretHash: sc.Record.SecretHash, version: sc.Record.Version, view: view}
}

func (c *client) settings(grant string) *resource.GrantSettings {
	if c.res.Auth == nil {
		return nil
	}
	switch grant {
	case grantAuthorizationCode, "":
		return c.res.Auth.AuthorizationCode
	case grantPassword:
		return c.res.Auth.Password
	case grantClientCredentials:
		return c.res.Auth.ClientCredentials
	}
	return nil
}

// hasGrant reports whether the resource lists grant ("code" is Aidbox's
// spelling of authorization_code).
func (c *client) hasGrant(grant string) bool {
	for _, g := range c.res.GrantTypes {
		g = strings.TrimSpace(g)
		if g == "code" {
			g = grantAuthorizationCode
		}
		if g == grant {
			return true
		}
	}
	return false
}

// refreshFor reports whether tokens from grant come with refresh tokens: only
// when that grant's settings say refresh_token: true.
func (c *client) refreshFor(grant string) bool {
	s := c.settings(grant)
	return s != nil && s.RefreshToken && c.hasGrant(grant)
}

func (c *client) anyRefresh() bool {
	return c.refreshFor(grantAuthorizationCode) || c.refreshFor(grantPassword)
}

// secretOptional reports whether grant may be used without a secret.
// A private_key_jwt client always authenticates, with its assertion.
func (c *client) secretOptional(grant string) bool {
	if c.usesAssertions() {
		return false
	}
	if c.secretHash == "" {
		return true
	}
	if grant == grantClientCredentials {
		return false
	}
	if grant == grantRefreshToken {
		return c.secretOptional(grantAuthorizationCode) || c.secretOptional(grantPassword)
	}
	s := c.settings(grant)
	return s != nil && s.SecretRequired != nil && !*s.SecretRequired
}

// requiresPKCE: public clients always, others when the authorization_code
// settings say pkce: true.
func (c *client) requiresPKCE() bool {
	if c.secretOptional(grantAuthorizationCode) {
		return true
	}
	s := c.settings(grantAuthorizationCode)
	return s != nil && s.PKCE
}

// tokenFormat is "jwt" or "opaque" for tokens of grant.
func (c *client) tokenFormat(grant string) string {
	if s := c.settings(grant); s != nil && strings.EqualFold(s.TokenFormat, "jwt") {
		return "jwt"
	}
	return "opaque"
}

func (c *client) GetID() string { return c.res.ID }

func (c *client) GetHashedSecret() []byte { return []byte(c.secretHash) }

// GetRedirectURIs: only the authorization_code settings carry redirect URIs.
func (c *client) GetRedirectURIs() []string {
	s := c.settings(grantAuthorizationCode)
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.RedirectURI))
	for _, u := range s.RedirectURI {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func (c *client) GetGrantTypes() fosite.Arguments {
	var out fosite.Arguments
	for _, g := range []string{grantAuthorizationCode, grantPassword, grantClientCredentials} {
		if c.hasGrant(g) {
			out = append(out, g)
		}
	}
	if c.anyRefresh() {
		out = append(out, grantRefreshToken)
	}
	return out
}

func (c *client) GetResponseTypes() fosite.Arguments {
	if c.hasGrant(grantAuthorizationCode) {
		return fosite.Arguments{"code"}
	}
	return nil
}

func (c *client) GetResponseModes() []fosite.ResponseModeType {
	return []fosite.ResponseModeType{fosite.ResponseModeDefault, fosite.ResponseModeQuery, fosite.ResponseModeFormPost}
}

// GetScopes is what this view may grant. client_credentials gets exactly the
// resource's scope list (so gatehouse:admin only when listed there); user
// grants add the OpenID identity scopes and, when refresh tokens are on,
// offline_access.
func (c *client) GetScopes() fosite.Arguments {
	out := fosite.Arguments(slices.Clone(c.res.Scope))
	if c.view == grantClientCredentials {
		return out
	}
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, s := range identityScopes {
		add(s)
	}
	if c.anyRefresh() {
		add(scopeOfflineAccess)
		add(scopeOffline)
	}
	return out
}

// IsPublic depends on the view: a client may need its secret for one grant
// and not for another.
func (c *client) IsPublic() bool {
	if c.view == "" {
		return c.secretOptional(grantAuthorizationCode)
	}
	return c.secretOptional(c.view)
}

// usesAssertions: the client authenticates with private_key_jwt only.
func (c *client) usesAssertions() bool {
	return c.res.TokenEndpointAuthMethod == resource.AuthMethodPrivateKeyJWT
}

// The OpenID Connect client metadata fosite's assertion check reads
// (fosite.OpenIDConnectClient). Request objects stay unsupported: no
// request URIs and no request object algorithm.

func (c *client) GetTokenEndpointAuthMethod() string {
	switch {
	case c.usesAssertions():
		return resource.AuthMethodPrivateKeyJWT
	case c.secretHash == "":
		return "none"
	}
	return "client_secret_basic"
}

func (c *client) GetTokenEndpointAuthSigningAlgorithm() string {
	if a := c.res.TokenEndpointAuthSigningAlg; a != "" {
		return a
	}
	return algRS256
}

// GetJSONWebKeys parses the registered set on each call: only assertion
// checks ask, and the client cache keeps the bytes.
func (c *client) GetJSONWebKeys() *jose.JSONWebKeySet {
	if len(c.res.JWKS) == 0 {
		return nil
	}
	set, err := resource.ParseClientJWKS(c.res.JWKS)
	if err != nil {
		// Validated when saved; an empty set refuses every assertion.
		return &jose.JSONWebKeySet{}
	}
	return set
}

func (c *client) GetJSONWebKeysURI() string { return c.res.JWKSURI }

func (c *client) GetRequestObjectSigningAlgorithm() string { return "" }

func (c *client) GetRequestURIs() []string { return nil }

// idTokenAlg is the algorithm that signs the client's ID tokens.
func (c *client) idTokenAlg() string {
	if c.res.IDTokenSignedResponseAlg == algES256 {
		return algES256
	}
	return algRS256
}

// GetAudience is what the client's tokens may be for: itself (aud =
// client_id, the default) and the resource servers its `audience` lists
// (RFC 8707 resource indicators).
func (c *client) GetAudience() fosite.Arguments {
	return append(fosite.Arguments{c.res.ID}, c.res.Audience...)
}

// GetEffectiveLifespan maps the Aidbox per-grant expirations (seconds) onto
// fosite's lifespans. A refresh keeps the lifespans of the family's original
// grant; the token endpoint re-applies them once the family is known, so here
// refresh_token falls back to the authorization_code settings.
func (c *client) GetEffectiveLifespan(gt fosite.GrantType, tt fosite.TokenType, fallback time.Duration) time.Duration {
	grant := string(gt)
	if grant == grantRefreshToken {
		grant = grantAuthorizationCode
		if !c.refreshFor(grantAuthorizationCode) && c.refreshFor(grantPassword) {
			grant = grantPassword
		}
	}
	return c.lifespan(grant, tt, fallback)
}

func (c *client) lifespan(grant string, tt fosite.TokenType, fallback time.Duration) time.Duration {
	s := c.settings(grant)
	if s == nil {
		return fallback
	}
	switch tt {
	case fosite.AccessToken:
		if s.AccessTokenExpiration > 0 {
			return time.Duration(s.AccessTokenExpiration) * time.Second
		}
	case fosite.RefreshToken:
		if s.RefreshTokenExpiration > 0 {
			return time.Duration(s.RefreshTokenExpiration) * time.Second
		}
	}
	return fallback
}
