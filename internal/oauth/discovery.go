package oauth

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/i18n"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/signin"
)

// Cache lifetimes of the public documents. A new signing key is published
// for longer than the JWKS lifetime before it signs (KeyPublicationPeriod).
var (
	discoveryCacheControl = "public, max-age=300"
	jwksCacheControl      = fmt.Sprintf("public, max-age=%d", int(JWKSMaxAge.Seconds()))
)

// buildDiscovery precomputes the OpenID (and RFC 8414) metadata: the same
// bytes for every request.
func (p *Provider) buildDiscovery() error {
	iss := p.cfg.Issuer
	grants := []string{grantAuthorizationCode, grantRefreshToken, grantClientCredentials, grantPassword}
	if p.cfg.TwoFactor != nil {
		grants = append(grants, GrantMFAOTP)
	}
	doc := map[string]any{
		"issuer":                                        iss,
		"authorization_endpoint":                        iss + PathAuthorize,
		"token_endpoint":                                iss + PathToken,
		"introspection_endpoint":                        iss + PathIntrospect,
		"revocation_endpoint":                           iss + PathRevoke,
		"userinfo_endpoint":                             iss + PathUserinfo,
		"end_session_endpoint":                          iss + PathLogout,
		"jwks_uri":                                      iss + PathJWKS,
		"response_types_supported":                      []string{"code"},
		"response_modes_supported":                      []string{"query", "form_post"},
		"grant_types_supported":                         grants,
		"code_challenge_methods_supported":              []string{"S256"},
		"token_endpoint_auth_methods_supported":         []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"revocation_endpoint_auth_methods_supported":    []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
		// private_key_jwt assertions: the Client's token_endpoint_auth_signing_alg.
		"token_endpoint_auth_signing_alg_values_supported":         resource.AssertionAlgs,
		"introspection_endpoint_auth_signing_alg_values_supported": resource.AssertionAlgs,
		"revocation_endpoint_auth_signing_alg_values_supported":    resource.AssertionAlgs,
		"dpop_signing_alg_values_supported":                        resource.AssertionAlgs,
		"id_token_signing_alg_values_supported":                    signingAlgs,
		"subject_types_supported":                                  []string{"public"},
		"scopes_supported":                                         []string{scopeOpenID, scopeProfile, scopeEmail, scopePhone, scopeOfflineAccess, ScopeAdmin},
		"claims_supported": []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "at_hash",
			"email", "email_verified", "phone_number", "phone_number_verified", "name", "given_name", "family_name"},
		"prompt_values_supported":                        []string{"login", "none", "consent"},
		"acr_values_supported":                           signin.ACRValues,
		"claims_parameter_supported":                     true, // for acr (essential or not); other claims follow the scopes
		"request_parameter_supported":                    false,
		"request_uri_parameter_supported":                false,
		"frontchannel_logout_supported":                  false,
		"backchannel_logout_supported":                   true,
		"ui_locales_supported":                           i18n.Languages,
		"backchannel_logout_session_supported":           true,
		"authorization_response_iss_parameter_supported": true,
		"pushed_authorization_request_endpoint":          iss + PathPAR,
		// Per client (require_pushed_authorization_requests on the Client).
		"require_pushed_authorization_requests": false,
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("marshal discovery: %w", err)
	}
	p.openIDConfig = b
	// RFC 8414 carries the same members; OpenID-only ones are harmless there.
	p.oauthConfig = b
	return nil
}

func (p *Provider) handleDiscovery(doc *[]byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", discoveryCacheControl)
		// Public metadata: browser-based clients fetch it cross-origin.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(*doc)
	}
}

func (p *Provider) handleJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", jwksCacheControl)
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(p.keys.jwks(r.Context()))
}
