package resource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// offline resolves nothing, like this machine without network: save-time
// checks must then accept the host and leave the check to dial time.
func offline(context.Context, string) ([]net.IP, error) {
	return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
}

// fixedDNS resolves every host to the given addresses.
func fixedDNS(ips ...string) LookupIPFunc {
	return func(context.Context, string) ([]net.IP, error) {
		out := make([]net.IP, len(ips))
		for i, s := range ips {
			out[i] = net.ParseIP(s)
		}
		return out, nil
	}
}

func TestValidateRedirectURI(t *testing.T) {
	tests := []struct {
		name string
		uri  string
		dev  bool
		ok   bool
	}{
		{"https on any host is fine", "https://app.example.com/callback?x=1", false, true},
		{"http on localhost is fine", "http://localhost:3001", false, true},
		{"http on 127.0.0.1 is fine", "http://127.0.0.1:8080/cb", false, true},
		{"http on [::1] is fine", "http://[::1]:8080/cb", false, true},
		{"a reverse-domain private-use scheme is fine", "com.example.app:/oauth2redirect", false, true},
		{"http on a public host is refused", "http://app.example.com/cb", false, false},
		{"http on a public host is fine in dev mode", "http://app.example.com/cb", true, true},
		{"a fragment is refused", "https://app.example.com/cb#frag", false, false},
		{"an empty fragment is refused", "https://app.example.com/cb#", false, false},
		{"a wildcard host is refused", "https://*.example.com/cb", false, false},
		{"a wildcard path is refused", "https://app.example.com/*", false, false},
		{"javascript: is refused", "javascript:alert(1)", false, false},
		{"JavaScript: in capitals is refused", "JavaScript:alert(1)", false, false},
		{"data: is refused", "data:text/html,<script>alert(1)</script>", false, false},
		{"a scheme without a dot is refused", "myapp:/cb", false, false},
		{"userinfo is refused", "https://user:pw@app.example.com/cb", false, false},
		{"a relative URI is refused", "/callback", false, false},
		{"a scheme-relative URI is refused", "//app.example.com/cb", false, false},
		{"https without a host is refused", "https:///cb", false, false},
		{"spaces are refused", "https://app.example.com/a b", false, false},
		{"an empty URI is refused", "", false, false},
		{"a very long URI is refused", "https://app.example.com/" + strings.Repeat("a", 3000), false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateRedirectURI(tc.uri, Options{Dev: tc.dev})
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateRedirectURI(%q) = %v, want ok=%v", tc.uri, err, tc.ok)
			}
		})
	}
}

func TestValidateUser(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		user     User
		wantPath string // "" means valid
	}{
		{"the Aidbox user is valid", User{ID: "my-user", Password: "password"}, ""},
		{"a full user is valid", User{ID: "alice", Email: "alice@example.com", PhoneNumber: "+14155550123", Name: &HumanName{GivenName: "Alice"}}, ""},
		{"an id with a slash is refused", User{ID: "a/b"}, "id"},
		{"an id of 65 characters is refused", User{ID: strings.Repeat("a", 65)}, "id"},
		{"an id of dots is refused", User{ID: ".."}, "id"},
		{"a missing id is refused", User{}, "id"},
		{"an e-mail without @ is refused", User{ID: "a", Email: "alice.example.com"}, "email"},
		{"an e-mail with a display name is refused", User{ID: "a", Email: "Alice <alice@example.com>"}, "email"},
		{"an e-mail without a domain dot is refused", User{ID: "a", Email: "alice@localhost"}, "email"},
		{"an e-mail with a double dot is refused", User{ID: "a", Email: "al..ice@example.com"}, "email"},
		{"a phone without + is refused", User{ID: "a", PhoneNumber: "14155550123"}, "phoneNumber"},
		{"a phone with spaces is refused", User{ID: "a", PhoneNumber: "+1 415 555 0123"}, "phoneNumber"},
		{"a phone of 16 digits is refused", User{ID: "a", PhoneNumber: "+1234567890123456"}, "phoneNumber"},
		{"an unknown 2FA method is refused", User{ID: "a", TwoFactor: &UserTwoFactor{Method: "carrier-pigeon"}}, "twoFactor.method"},
		{"a wrong resourceType is refused", User{ID: "a", ResourceType: "Client"}, "resourceType"},
		{"a name with a control character is refused", User{ID: "a", Name: &HumanName{FamilyName: "x\x00y"}}, "name.familyName"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertProblem(t, tc.user.Validate(ctx, Options{}), tc.wantPath)
		})
	}
}

func TestValidateClient(t *testing.T) {
	ctx := context.Background()
	f := false
	tests := []struct {
		name     string
		client   Client
		opts     Options
		wantPath string
	}{
		{"a code client with a redirect URI is valid", Client{ID: "c", GrantTypes: []string{"code"},
			Auth: &ClientAuth{AuthorizationCode: &GrantSettings{RedirectURI: StringList{"https://a.example/cb"}}}}, Options{}, ""},
		{"a code client without a redirect URI is refused", Client{ID: "c", GrantTypes: []string{"authorization_code"}},
			Options{}, "auth.authorization_code.redirect_uri"},
		{"an unknown grant type is refused", Client{ID: "c", GrantTypes: []string{"password", "implicit"}}, Options{}, "grant_types[1]"},
		{"a fragment in one of two redirect URIs is named by index", Client{ID: "c", GrantTypes: []string{"code"},
			Auth: &ClientAuth{AuthorizationCode: &GrantSettings{RedirectURI: StringList{"https://a.example/cb", "https://a.example/cb#x"}}}},
			Options{}, "auth.authorization_code.redirect_uri[1]"},
		{"a single javascript: redirect URI is named without index", Client{ID: "c",
			Auth: &ClientAuth{AuthorizationCode: &GrantSettings{RedirectURI: StringList{"javascript:alert(1)"}}}},
			Options{}, "auth.authorization_code.redirect_uri"},
		{"a negative access token expiration is refused", Client{ID: "c",
			Auth: &ClientAuth{Password: &GrantSettings{AccessTokenExpiration: -1}}}, Options{}, "auth.password.access_token_expiration"},
		{"a refresh expiration over a year is refused", Client{ID: "c",
			Auth: &ClientAuth{Password: &GrantSettings{RefreshTokenExpiration: MaxRefreshTokenExpiration + 1}}}, Options{}, "auth.password.refresh_token_expiration"},
		{"an unknown token format is refused", Client{ID: "c",
			Auth: &ClientAuth{ClientCredentials: &GrantSettings{TokenFormat: "saml"}}}, Options{}, "auth.client_credentials.token_format"},
		{"an ID token algorithm other than RS256 or ES256 is refused", Client{ID: "c", IDTokenSignedResponseAlg: "HS256"}, Options{}, "id_token_signed_response_alg"},
		{"a scope with a space is refused", Client{ID: "c", Scope: []string{"openid profile"}}, Options{}, "scope[0]"},
		{"a bad authConfig reference is refused", Client{ID: "c", AuthConfig: &Reference{ID: "a/b"}}, Options{}, "authConfig.id"},
		{"a wildcard origin is refused", Client{ID: "c", AllowedOrigins: []string{"*"}}, Options{}, "allowed_origins[0]"},
		{"an origin with a path is refused", Client{ID: "c", AllowedOrigins: []string{"https://a.example/app"}}, Options{}, "allowed_origins[0]"},
		{"a public SPA client is valid", Client{ID: "spa", GrantTypes: []string{"code"},
			Auth: &ClientAuth{AuthorizationCode: &GrantSettings{RedirectURI: StringList{"https://spa.example/cb"}, SecretRequired: &f, PKCE: true}}}, Options{}, ""},
		{"a refresh token grace of 0 (strict rotation) is valid", Client{ID: "c", RefreshTokenGraceSeconds: ptr(0)}, Options{}, ""},
		{"a refresh token grace of a minute is valid", Client{ID: "c", RefreshTokenGraceSeconds: ptr(MaxRefreshTokenGrace)}, Options{}, ""},
		{"a negative refresh token grace is refused", Client{ID: "c", RefreshTokenGraceSeconds: ptr(-1)}, Options{}, "refresh_token_grace_seconds"},
		{"a refresh token grace over a minute is refused", Client{ID: "c", RefreshTokenGraceSeconds: ptr(MaxRefreshTokenGrace + 1)}, Options{}, "refresh_token_grace_seconds"},
		{"a post-logout URI with a fragment is refused", Client{ID: "c", PostLogoutRedirectURIs: StringList{"https://a.example/#x"}},
			Options{}, "post_logout_redirect_uri"},
		{"a known required_acr is valid", Client{ID: "c",
			Auth: &ClientAuth{AuthorizationCode: &GrantSettings{RequiredACR: "urn:gatehouse:acr:phr"}}}, Options{}, ""},
		{"an unknown required_acr is refused", Client{ID: "c",
			Auth: &ClientAuth{AuthorizationCode: &GrantSettings{RequiredACR: "urn:gatehouse:acr:gold"}}}, Options{}, "auth.authorization_code.required_acr"},
		{"required_acr on the password grant is refused", Client{ID: "c",
			Auth: &ClientAuth{Password: &GrantSettings{RequiredACR: "urn:gatehouse:acr:mfa"}}}, Options{}, "auth.password.required_acr"},
		{"two-factor methods of the built-in factors and passkey are valid", Client{ID: "c",
			TwoFactor: &ClientTwoFactor{Required: &f, Methods: []string{"totp", "passkey", "backup_code"}}}, Options{}, ""},
		{"an unknown two-factor method is refused", Client{ID: "c", TwoFactor: &ClientTwoFactor{Methods: []string{"totp", "fax"}}},
			Options{}, "twoFactor.methods[1]"},
		{"a factor of the deployment's own is a valid method", Client{ID: "c", TwoFactor: &ClientTwoFactor{Methods: []string{"face"}}},
			Options{Strategies: []string{"face"}}, ""},
		{"a method listed twice is refused", Client{ID: "c", TwoFactor: &ClientTwoFactor{Methods: []string{"totp", "totp"}}},
			Options{}, "twoFactor.methods[1]"},
		{"a private_key_jwt client with a public key set is valid", Client{ID: "c", TokenEndpointAuthMethod: "private_key_jwt",
			TokenEndpointAuthSigningAlg: "ES256", JWKS: json.RawMessage(publicJWKS)}, Options{}, ""},
		{"a private_key_jwt client with an https jwks_uri is valid", Client{ID: "c", TokenEndpointAuthMethod: "private_key_jwt",
			JWKSURI: "https://8.8.8.8/jwks.json"}, Options{}, ""},
		{"a private_key_jwt client without keys is refused", Client{ID: "c", TokenEndpointAuthMethod: "private_key_jwt"}, Options{}, "jwks"},
		{"jwks and jwks_uri together are refused", Client{ID: "c", TokenEndpointAuthMethod: "private_key_jwt",
			JWKS: json.RawMessage(publicJWKS), JWKSURI: "https://8.8.8.8/jwks.json"}, Options{}, "jwks"},
		{"a private key in jwks is refused", Client{ID: "c", TokenEndpointAuthMethod: "private_key_jwt", JWKS: json.RawMessage(privateJWKS)}, Options{}, "jwks"},
		{"a symmetric key in jwks is refused", Client{ID: "c", TokenEndpointAuthMethod: "private_key_jwt",
			JWKS: json.RawMessage(`{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}`)}, Options{}, "jwks"},
		{"an encryption key in jwks is refused", Client{ID: "c", TokenEndpointAuthMethod: "private_key_jwt",
			JWKS: json.RawMessage(strings.Replace(publicJWKS, `"use":"sig"`, `"use":"enc"`, 1))}, Options{}, "jwks"},
		{"jwks that is not a key set is refused", Client{ID: "c", TokenEndpointAuthMethod: "private_key_jwt", JWKS: json.RawMessage(`{"keys":"no"}`)}, Options{}, "jwks"},
		{"a jwks_uri on a loopback address is refused", Client{ID: "c", TokenEndpointAuthMethod: "private_key_jwt",
			JWKSURI: "https://127.0.0.1/jwks.json"}, Options{}, "jwks_uri"},
		{"a plain-http jwks_uri is refused", Client{ID: "c", TokenEndpointAuthMethod: "private_key_jwt",
			JWKSURI: "http://8.8.8.8/jwks.json"}, Options{}, "jwks_uri"},
		{"an HMAC assertion algorithm is refused", Client{ID: "c", TokenEndpointAuthMethod: "private_key_jwt",
			TokenEndpointAuthSigningAlg: "HS256", JWKS: json.RawMessage(publicJWKS)}, Options{}, "token_endpoint_auth_signing_alg"},
		{"client_secret_jwt is refused", Client{ID: "c", TokenEndpointAuthMethod: "client_secret_jwt"}, Options{}, "token_endpoint_auth_method"},
		{"an https back-channel logout URI is valid", Client{ID: "c", BackchannelLogoutURI: "https://8.8.8.8/logout"}, Options{}, ""},
		{"a back-channel logout URI on a private address is refused", Client{ID: "c", BackchannelLogoutURI: "https://10.0.0.1/logout"}, Options{}, "backchannel_logout_uri"},
		{"a back-channel logout URI on loopback is valid with AllowPrivate", Client{ID: "c", BackchannelLogoutURI: "http://127.0.0.1:9/logout"}, Options{AllowPrivate: true}, ""},
		{"keys without private_key_jwt are refused", Client{ID: "c", JWKS: json.RawMessage(publicJWKS)}, Options{}, "token_endpoint_auth_method"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertProblem(t, tc.client.Validate(ctx, tc.opts), tc.wantPath)
		})
	}
}

func TestValidateAuthConfig(t *testing.T) {
	ctx := context.Background()
	n := func(i int) *int { return &i }
	hook := func(endpoint string, timeout int, set bool) *AuthConfigTwoFactor {
		return &AuthConfigTwoFactor{Webhook: &Webhook{Endpoint: endpoint, Timeout: timeout, timeoutSet: set}}
	}
	tests := []struct {
		name     string
		cfg      AuthConfig
		opts     Options
		wantPath string
	}{
		{"the Aidbox config is valid offline", AuthConfig{ID: "myconfig", TwoFactor: &AuthConfigTwoFactor{IssuerName: "my-app",
			ValidPastTokensCount: n(3), Webhook: &Webhook{Endpoint: "https://my-app.com", Timeout: 500, timeoutSet: true}}},
			Options{LookupIP: offline}, ""},
		{"a host resolving to a public address is fine", AuthConfig{ID: "a", TwoFactor: hook("https://hooks.example.com/x", 0, false)},
			Options{LookupIP: fixedDNS("93.184.216.34")}, ""},
		{"a host resolving to a private address is refused", AuthConfig{ID: "a", TwoFactor: hook("https://intranet.example.com/x", 0, false)},
			Options{LookupIP: fixedDNS("93.184.216.34", "10.0.0.5")}, "twoFactor.webhook.endpoint"},
		{"a host resolving to a private address is fine when private is allowed", AuthConfig{ID: "a", TwoFactor: hook("https://intranet.example.com/x", 0, false)},
			Options{AllowPrivate: true, LookupIP: fixedDNS("10.0.0.5")}, ""},
		{"a literal loopback address is refused", AuthConfig{ID: "a", TwoFactor: hook("https://127.0.0.1/x", 0, false)}, Options{LookupIP: offline}, "twoFactor.webhook.endpoint"},
		{"a literal metadata address is refused", AuthConfig{ID: "a", TwoFactor: hook("https://169.254.169.254/latest", 0, false)}, Options{LookupIP: offline}, "twoFactor.webhook.endpoint"},
		{"an IPv4-mapped IPv6 loopback is refused", AuthConfig{ID: "a", TwoFactor: hook("https://[::ffff:127.0.0.1]/x", 0, false)}, Options{LookupIP: offline}, "twoFactor.webhook.endpoint"},
		{"localhost is refused", AuthConfig{ID: "a", TwoFactor: hook("https://localhost:9000/x", 0, false)}, Options{LookupIP: offline}, "twoFactor.webhook.endpoint"},
		{"a shortened numeric address is refused", AuthConfig{ID: "a", TwoFactor: hook("https://127.1/x", 0, false)}, Options{LookupIP: offline}, "twoFactor.webhook.endpoint"},
		{"a decimal address is refused", AuthConfig{ID: "a", TwoFactor: hook("https://2130706433/x", 0, false)}, Options{LookupIP: offline}, "twoFactor.webhook.endpoint"},
		{"plain http is refused", AuthConfig{ID: "a", TwoFactor: hook("http://hooks.example.com/x", 0, false)}, Options{LookupIP: offline}, "twoFactor.webhook.endpoint"},
		{"plain http to localhost is fine in dev mode", AuthConfig{ID: "a", TwoFactor: hook("http://localhost:9000/x", 0, false)}, Options{Dev: true}, ""},
		{"a webhook without an endpoint is refused", AuthConfig{ID: "a", TwoFactor: hook("", 0, false)}, Options{}, "twoFactor.webhook.endpoint"},
		{"a supported defaultLocale is fine", AuthConfig{ID: "a", DefaultLocale: "pt-BR"}, Options{}, ""},
		{"an unsupported defaultLocale is refused", AuthConfig{ID: "a", DefaultLocale: "tlh"}, Options{}, "defaultLocale"},
		{"messages for an unsupported language are refused", AuthConfig{ID: "a", Messages: map[string]map[string]string{"xx": {"Sign in": "x"}}}, Options{}, "messages.xx"},
		{"a message the pages do not have is refused", AuthConfig{ID: "a", Messages: map[string]map[string]string{"de": {"Sing in": "x"}}}, Options{Messages: pageMessages{"Sign in"}}, `messages.de["Sing in"]`},
		{"a known message is fine", AuthConfig{ID: "a", Messages: map[string]map[string]string{"de": {"Sign in": "Los"}}}, Options{Messages: pageMessages{"Sign in"}}, ""},
		{"a message with control characters is refused", AuthConfig{ID: "a", Messages: map[string]map[string]string{"de": {"Sign in": "a\x00b"}}}, Options{}, `messages.de["Sign in"]`},
		{"an explicit timeout of 0 is refused", AuthConfig{ID: "a", TwoFactor: hook("https://x.example.com", 0, true)}, Options{LookupIP: offline}, "twoFactor.webhook.timeout"},
		{"a timeout of -1 is refused", AuthConfig{ID: "a", TwoFactor: hook("https://x.example.com", -1, true)}, Options{LookupIP: offline}, "twoFactor.webhook.timeout"},
		{"a timeout over 30 s is refused", AuthConfig{ID: "a", TwoFactor: hook("https://x.example.com", 30001, true)}, Options{LookupIP: offline}, "twoFactor.webhook.timeout"},
		{"a forbidden header is refused", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{Webhook: &Webhook{Endpoint: "https://x.example.com",
			Headers: map[string]string{"host": "evil"}}}}, Options{LookupIP: offline}, "twoFactor.webhook.headers.host"},
		{"a header value with a line break is refused", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{Webhook: &Webhook{Endpoint: "https://x.example.com",
			Headers: map[string]string{"X-Key": "a\r\nX-Evil: 1"}}}}, Options{LookupIP: offline}, "twoFactor.webhook.headers.X-Key"},
		{"validPastTokensCount 11 is refused", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{ValidPastTokensCount: n(11)}}, Options{}, "twoFactor.validPastTokensCount"},
		{"validPastTokensCount -1 is refused", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{ValidPastTokensCount: n(-1)}}, Options{}, "twoFactor.validPastTokensCount"},
		{"validPastTokensCount 0 is fine", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{ValidPastTokensCount: n(0)}}, Options{}, ""},
		{"an issuer with a colon is refused", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{IssuerName: "a:b"}}, Options{}, "twoFactor.issuerName"},
		{"an unknown default method is refused", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{DefaultMethod: "fax"}}, Options{}, "twoFactor.defaultMethod"},
		{"an unknown two-factor method is refused", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{Methods: []string{"fax"}}}, Options{}, "twoFactor.methods[0]"},
		{"a javascript: style URL is refused", AuthConfig{ID: "a", Theme: &Theme{StyleURL: "javascript:alert(1)"}}, Options{}, "theme.styleUrl"},
		{"a local style path is fine", AuthConfig{ID: "a", Theme: &Theme{StyleURL: "/static/brand.css"}}, Options{}, ""},
		{"rememberDevice without days is fine (the default)", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{RememberDevice: &RememberDevice{Enabled: true}}}, Options{}, ""},
		{"rememberDevice for 365 days is fine", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{RememberDevice: &RememberDevice{Enabled: true, Days: 365}}}, Options{}, ""},
		{"rememberDevice for 366 days is refused", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{RememberDevice: &RememberDevice{Enabled: true, Days: 366}}}, Options{}, "twoFactor.rememberDevice.days"},
		{"rememberDevice for -1 days is refused", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{RememberDevice: &RememberDevice{Enabled: true, Days: -1}}}, Options{}, "twoFactor.rememberDevice.days"},
		{"a password minLength of 8 is fine", AuthConfig{ID: "a", Password: &PasswordPolicy{MinLength: 8}}, Options{}, ""},
		{"a password minLength of 128 is fine", AuthConfig{ID: "a", Password: &PasswordPolicy{MinLength: 128}}, Options{}, ""},
		{"a password minLength of 7 is refused", AuthConfig{ID: "a", Password: &PasswordPolicy{MinLength: 7}}, Options{}, "password.minLength"},
		{"a password minLength of 129 is refused", AuthConfig{ID: "a", Password: &PasswordPolicy{MinLength: 129}}, Options{}, "password.minLength"},
		{"a grace period of 7 days is fine", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{Required: true, GracePeriod: &GracePeriod{Days: 7}}}, Options{}, ""},
		{"a grace period of 0 days is refused", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{GracePeriod: &GracePeriod{}}}, Options{}, "twoFactor.gracePeriod.days"},
		{"a grace period of 366 days is refused", AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{GracePeriod: &GracePeriod{Days: 366}}}, Options{}, "twoFactor.gracePeriod.days"},
		{"a passkey relying party on a domain with its origins is fine", AuthConfig{ID: "a", WebAuthn: &WebAuthn{RPID: "example.com", RPName: "Example",
			Origins: []string{"https://example.com", "https://login.example.com:8443"}, UserVerification: "required", Attestation: "direct"}}, Options{}, ""},
		{"a passkey relying party on localhost over plain http is fine", AuthConfig{ID: "a", WebAuthn: &WebAuthn{RPID: "localhost", Origins: []string{"http://localhost:8080"}}}, Options{}, ""},
		{"an IP address as rpId is refused", AuthConfig{ID: "a", WebAuthn: &WebAuthn{RPID: "127.0.0.1"}}, Options{}, "webauthn.rpId"},
		{"an rpId with a scheme is refused", AuthConfig{ID: "a", WebAuthn: &WebAuthn{RPID: "https://example.com"}}, Options{}, "webauthn.rpId"},
		{"an origin outside the rpId is refused", AuthConfig{ID: "a", WebAuthn: &WebAuthn{RPID: "example.com", Origins: []string{"https://evil-example.com"}}}, Options{}, "webauthn.origins[0]"},
		{"an origin with a path is refused", AuthConfig{ID: "a", WebAuthn: &WebAuthn{Origins: []string{"https://example.com/login"}}}, Options{}, "webauthn.origins[0]"},
		{"a plain http origin off loopback is refused", AuthConfig{ID: "a", WebAuthn: &WebAuthn{Origins: []string{"http://example.com"}}}, Options{}, "webauthn.origins[0]"},
		{"an unknown user verification is refused", AuthConfig{ID: "a", WebAuthn: &WebAuthn{UserVerification: "always"}}, Options{}, "webauthn.userVerification"},
		{"an unknown attestation is refused", AuthConfig{ID: "a", WebAuthn: &WebAuthn{Attestation: "enterprise"}}, Options{}, "webauthn.attestation"},
		{"an SMTP server on a public host is fine", AuthConfig{ID: "a", Email: smtpOn("smtp.example.com", "Acme <no-reply@example.com>")}, Options{LookupIP: fixedDNS("93.184.216.34")}, ""},
		{"an SMTP server resolving to a private address is refused", AuthConfig{ID: "a", Email: smtpOn("relay.example.com", "a@example.com")}, Options{LookupIP: fixedDNS("10.0.0.5")}, "email.smtp.host"},
		{"an SMTP server on loopback is refused", AuthConfig{ID: "a", Email: smtpOn("127.0.0.1", "a@example.com")}, Options{LookupIP: offline}, "email.smtp.host"},
		{"an SMTP server on loopback is fine when private is allowed", AuthConfig{ID: "a", Email: smtpOn("127.0.0.1", "a@example.com")}, Options{AllowPrivate: true}, ""},
		{"an SMTP server needs a sender", AuthConfig{ID: "a", Email: smtpOn("smtp.example.com", "")}, Options{LookupIP: offline}, "email.from"},
		{"a sender with CR LF is refused", AuthConfig{ID: "a", Email: smtpOn("smtp.example.com", "a@example.com\r\nBcc: eve@example.com")}, Options{LookupIP: offline}, "email.from"},
		{"a sender that is not an address is refused", AuthConfig{ID: "a", Email: smtpOn("smtp.example.com", "nobody")}, Options{LookupIP: offline}, "email.from"},
		{"an unknown TLS mode is refused", AuthConfig{ID: "a", Email: &Email{From: "a@example.com", SMTP: &SMTPServer{Host: "smtp.example.com", TLS: "ssl3"}}}, Options{LookupIP: offline}, "email.smtp.tls"},
		{"an SMTP username with a line break is refused", AuthConfig{ID: "a", Email: &Email{From: "a@example.com", SMTP: &SMTPServer{Host: "smtp.example.com", Username: "u\r\nRCPT TO:<x@y>"}}}, Options{LookupIP: offline}, "email.smtp.username"},
		{"an SMTP server without a host is refused", AuthConfig{ID: "a", Email: &Email{From: "a@example.com", SMTP: &SMTPServer{}}}, Options{}, "email.smtp.host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertProblem(t, tc.cfg.Validate(ctx, tc.opts), tc.wantPath)
		})
	}
}

func TestWebhookTimeoutPresenceSurvivesDecoding(t *testing.T) {
	ctx := context.Background()
	opts := Options{LookupIP: offline}
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"an omitted timeout means the default", "twoFactor: {webhook: {endpoint: https://x.example.com}}", true},
		{"timeout 0 is refused", "twoFactor: {webhook: {endpoint: https://x.example.com, timeout: 0}}", false},
		{"timeout -1 is refused", "twoFactor: {webhook: {endpoint: https://x.example.com, timeout: -1}}", false},
		{"timeout null means the default", "twoFactor: {webhook: {endpoint: https://x.example.com, timeout: null}}", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := DecodeAuthConfig([]byte(tc.body), FormatYAML)
			if err != nil {
				t.Fatal(err)
			}
			a.ID = "a"
			err = a.Validate(ctx, opts)
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && a.Webhook().TimeoutDuration() != DefaultWebhookTimeout {
				t.Fatalf("timeout = %v", a.Webhook().TimeoutDuration())
			}
		})
	}
}

func TestValidationErrorBecomesAnOperationOutcome(t *testing.T) {
	err := AuthConfig{ID: "a", TwoFactor: &AuthConfigTwoFactor{ValidPastTokensCount: new(int), IssuerName: "x:y", DefaultMethod: "fax"}}.
		Validate(context.Background(), Options{})
	o, ok := OutcomeFromError(err)
	if !ok || o.ResourceType != "OperationOutcome" || len(o.Issue) != 2 {
		t.Fatalf("outcome = %+v, %v", o, ok)
	}
	for _, is := range o.Issue {
		if is.Severity != "error" || len(is.Expression) != 1 || is.Diagnostics == "" {
			t.Fatalf("issue = %+v", is)
		}
	}
	if _, ok := OutcomeFromError(errors.New("database on fire")); ok {
		t.Fatal("an internal error must not become a client-facing outcome")
	}
}

func assertProblem(t *testing.T, err error, wantPath string) {
	t.Helper()
	if wantPath == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want a ValidationError naming %q", err, wantPath)
	}
	if !hasPath(ve, wantPath) {
		t.Fatalf("problems %+v do not name %q", ve.Problems, wantPath)
	}
}

func TestVerificationCodeFieldsOfAUser(t *testing.T) {
	tests := []struct {
		name string
		user User
		path string // the field a refusal names; "" for valid
	}{
		{"a phone code with its number is valid", User{ID: "u", PhoneNumber: "+14155550123", PhoneVerificationCode: "123456"}, ""},
		{"an e-mail code with its address is valid", User{ID: "u", Email: "u@example.com", EmailVerificationCode: "123456"}, ""},
		{"a phone code without a number is refused", User{ID: "u", Email: "u@example.com", PhoneVerificationCode: "123456"}, "phoneVerificationCode"},
		{"an e-mail code without an address is refused", User{ID: "u", PhoneNumber: "+14155550123", EmailVerificationCode: "123456"}, "emailVerificationCode"},
		{"an overlong code is refused", User{ID: "u", PhoneNumber: "+14155550123", PhoneVerificationCode: strings.Repeat("1", 65)}, "phoneVerificationCode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.user.Validate(context.Background(), Options{})
			if tc.path == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Path != tc.path {
				t.Fatalf("got %v, want one problem at %s", err, tc.path)
			}
			if strings.Contains(err.Error(), tc.user.PhoneVerificationCode+tc.user.EmailVerificationCode) {
				t.Fatalf("the refusal repeats the code: %v", err)
			}
		})
	}

	t.Run("the codes are never stored or shown", func(t *testing.T) {
		u := User{ID: "u", PhoneNumber: "+14155550123", PhoneVerificationCode: "123456", Email: "u@example.com", EmailVerificationCode: "654321"}
		rec, err := ToStoreUser(u, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(rec.Doc), "123456") || strings.Contains(string(rec.Doc), "654321") {
			t.Fatalf("stored document %s", rec.Doc)
		}
		back, err := UserFromStore(rec)
		if err != nil {
			t.Fatal(err)
		}
		if pub := u.Public(); back.PhoneVerificationCode != "" || back.EmailVerificationCode != "" ||
			pub.PhoneVerificationCode != "" || pub.EmailVerificationCode != "" {
			t.Fatalf("read back %+v, public %+v", back, pub)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func TestClientRefreshTokenGrace(t *testing.T) {
	tests := []struct {
		name    string
		seconds *int
		want    time.Duration
	}{
		{"a client that leaves it out gets the default grace", nil, DefaultRefreshTokenGrace * time.Second},
		{"a grace of 0 is strict rotation", ptr(0), 0},
		{"a grace of 30 is thirty seconds", ptr(30), 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Client{RefreshTokenGraceSeconds: tc.seconds}).RefreshTokenGrace(); got != tc.want {
				t.Fatalf("RefreshTokenGrace() = %s, want %s", got, tc.want)
			}
		})
	}
}

func smtpOn(host, from string) *Email {
	return &Email{From: from, SMTP: &SMTPServer{Host: host, Port: 587, TLS: "starttls"}}
}

// A P-256 key pair as JWK Sets (from RFC 7517 appendix A).
const (
	publicJWKS  = `{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"sig","kid":"1"}]}`
	privateJWKS = `{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","d":"870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE","use":"sig","kid":"1"}]}`
)

// pageMessages is a MessageChecker that knows the given ids.
type pageMessages []string

func (m pageMessages) CheckOverride(id, _ string) error {
	if !slices.Contains(m, id) {
		return fmt.Errorf("%q is not a message", id)
	}
	return nil
}
