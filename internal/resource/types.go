package resource

import (
	"encoding/json"
	"time"
)

// Resource type names as they appear in URLs and in resourceType.
const (
	TypeUser       = "User"
	TypeClient     = "Client"
	TypeAuthConfig = "AuthConfig"
)

// Meta is the server-maintained part of every resource.
type Meta struct {
	VersionID   string    `json:"versionId" yaml:"versionId"`
	LastUpdated time.Time `json:"lastUpdated" yaml:"lastUpdated"`
}

// User is the Aidbox-shaped User resource. Password is write-only: it is read
// from requests, hashed, and never serialised back. PasswordHash is the
// other way to set a password: an existing argon2id PHC string, for
// migrations from systems that already hold hashes (and for seeding many
// users without a server-side hash each). It is write-only too, and a
// write may give one of the two, not both.
//
// PhoneVerificationCode and EmailVerificationCode (Freshcom's names) are
// write-only too: the code that was sent to phoneNumber or email (see
// VerificationBinding). A write that carries one stores that destination
// verified, and spends the code, in one transaction; they are never stored
// or returned.
type User struct {
	ResourceType  string `json:"resourceType,omitempty" yaml:"resourceType,omitempty"`
	ID            string `json:"id,omitempty" yaml:"id,omitempty"`
	Email         string `json:"email,omitempty" yaml:"email,omitempty"`
	EmailVerified bool   `json:"emailVerified,omitempty" yaml:"emailVerified,omitempty"`
	PhoneNumber   string `json:"phoneNumber,omitempty" yaml:"phoneNumber,omitempty"`
	PhoneVerified bool   `json:"phoneVerified,omitempty" yaml:"phoneVerified,omitempty"`
	Password      string `json:"password,omitempty" yaml:"password,omitempty"`
	PasswordHash  string `json:"passwordHash,omitempty" yaml:"passwordHash,omitempty"`

	PhoneVerificationCode string `json:"phoneVerificationCode,omitempty" yaml:"phoneVerificationCode,omitempty"`
	EmailVerificationCode string `json:"emailVerificationCode,omitempty" yaml:"emailVerificationCode,omitempty"`

	Name *HumanName `json:"name,omitempty" yaml:"name,omitempty"`
	// Locale is the user's language (BCP 47), the OIDC locale claim; the
	// hosted pages use it after ui_locales.
	Locale    string         `json:"locale,omitempty" yaml:"locale,omitempty"`
	Inactive  bool           `json:"inactive,omitempty" yaml:"inactive,omitempty"`
	TwoFactor *UserTwoFactor `json:"twoFactor,omitempty" yaml:"twoFactor,omitempty"`
	Meta      *Meta          `json:"meta,omitempty" yaml:"meta,omitempty"`
}

// HumanName is the optional display name of a user.
type HumanName struct {
	GivenName  string `json:"givenName,omitempty" yaml:"givenName,omitempty"`
	FamilyName string `json:"familyName,omitempty" yaml:"familyName,omitempty"`
}

// UserTwoFactor is the user's second-factor status. On write only Enabled
// and Method are honoured (false resets the factor; true with method sms
// or email turns codes to the verified destination on; TOTP is enrolled by
// the user only); EnrolledAt and RecoveryCodesRemaining are read-only,
// filled from the store's TwoFactor.
type UserTwoFactor struct {
	Enabled                bool       `json:"enabled" yaml:"enabled"`
	Method                 string     `json:"method,omitempty" yaml:"method,omitempty"`
	Transport              string     `json:"transport,omitempty" yaml:"transport,omitempty"`
	EnrolledAt             *time.Time `json:"enrolledAt,omitempty" yaml:"enrolledAt,omitempty"`
	RecoveryCodesRemaining *int       `json:"recoveryCodesRemaining,omitempty" yaml:"recoveryCodesRemaining,omitempty"`
}

// Client is the Aidbox-shaped Client resource. Secret is write-only.
// SecretHash is never serialised: ClientFromStore fills it from the record so
// the token endpoint can verify a presented secret.
type Client struct {
	ResourceType           string           `json:"resourceType,omitempty" yaml:"resourceType,omitempty"`
	ID                     string           `json:"id,omitempty" yaml:"id,omitempty"`
	Secret                 string           `json:"secret,omitempty" yaml:"secret,omitempty"`
	SecretHash             string           `json:"-" yaml:"-"`
	FirstParty             bool             `json:"first_party,omitempty" yaml:"first_party,omitempty"`
	GrantTypes             []string         `json:"grant_types,omitempty" yaml:"grant_types,omitempty"` // normalised: "code" → "authorization_code"
	Scope                  []string         `json:"scope,omitempty" yaml:"scope,omitempty"`             // allowed scopes
	Auth                   *ClientAuth      `json:"auth,omitempty" yaml:"auth,omitempty"`
	AuthConfig             *Reference       `json:"authConfig,omitempty" yaml:"authConfig,omitempty"`
	TwoFactor              *ClientTwoFactor `json:"twoFactor,omitempty" yaml:"twoFactor,omitempty"`
	PostLogoutRedirectURIs StringList       `json:"post_logout_redirect_uri,omitempty" yaml:"post_logout_redirect_uri,omitempty"`
	AllowedOrigins         []string         `json:"allowed_origins,omitempty" yaml:"allowed_origins,omitempty"` // CORS for the JSON sign-in API and the token endpoints
	// Audience lists the resource servers (absolute URIs) this client may
	// name with `resource` (RFC 8707); their URI becomes the access
	// token's aud.
	Audience []string `json:"audience,omitempty" yaml:"audience,omitempty"`
	// IDTokenSignedResponseAlg is the algorithm of the client's ID tokens
	// (OIDC Dynamic Client Registration's name): RS256, the default every
	// relying party supports, or ES256.
	IDTokenSignedResponseAlg string `json:"id_token_signed_response_alg,omitempty" yaml:"id_token_signed_response_alg,omitempty"`
	// RequirePushedAuthorizationRequests refuses authorization requests
	// that were not pushed to the PAR endpoint first (RFC 9126 §6).
	RequirePushedAuthorizationRequests bool `json:"require_pushed_authorization_requests,omitempty" yaml:"require_pushed_authorization_requests,omitempty"`
	// RefreshTokenGraceSeconds is how long a just-rotated refresh token
	// still answers with the pair its rotation issued (parallel tabs, a
	// lost response); absent means DefaultRefreshTokenGrace, 0 strict
	// rotation (every reuse revokes the family).
	RefreshTokenGraceSeconds *int `json:"refresh_token_grace_seconds,omitempty" yaml:"refresh_token_grace_seconds,omitempty"`
	// TokenEndpointAuthMethod is private_key_jwt for a client that
	// authenticates with a signed assertion (RFC 7523 §2.2, OIDC Core §9)
	// instead of a secret; absent means client_secret_basic,
	// client_secret_post or none, as the client's secret and grants allow.
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty" yaml:"token_endpoint_auth_method,omitempty"`
	// TokenEndpointAuthSigningAlg is the algorithm its assertions are
	// signed with (default RS256).
	TokenEndpointAuthSigningAlg string `json:"token_endpoint_auth_signing_alg,omitempty" yaml:"token_endpoint_auth_signing_alg,omitempty"`
	// JWKS (a JWK Set of public keys) or JWKSURI (where the client
	// publishes one) holds the keys that verify its assertions.
	// BackchannelLogoutURI receives a logout token when a browser session
	// that signed in to this client ends (OpenID Connect Back-Channel
	// Logout 1.0); it is reached like a webhook. Gatehouse always puts the
	// sid in it, so BackchannelLogoutSessionRequired is always met.
	BackchannelLogoutURI             string `json:"backchannel_logout_uri,omitempty" yaml:"backchannel_logout_uri,omitempty"`
	BackchannelLogoutSessionRequired bool   `json:"backchannel_logout_session_required,omitempty" yaml:"backchannel_logout_session_required,omitempty"`
	// DPoPBoundAccessTokens refuses token requests without a DPoP proof
	// (RFC 9449 §5.2).
	DPoPBoundAccessTokens bool            `json:"dpop_bound_access_tokens,omitempty" yaml:"dpop_bound_access_tokens,omitempty"`
	JWKS                  json.RawMessage `json:"jwks,omitempty" yaml:"jwks,omitempty"`
	JWKSURI               string          `json:"jwks_uri,omitempty" yaml:"jwks_uri,omitempty"`
	Name                  string          `json:"name,omitempty" yaml:"name,omitempty"`
	Meta                  *Meta           `json:"meta,omitempty" yaml:"meta,omitempty"`
}

// ClientAuth holds per-grant settings.
type ClientAuth struct {
	AuthorizationCode *GrantSettings `json:"authorization_code,omitempty" yaml:"authorization_code,omitempty"`
	Password          *GrantSettings `json:"password,omitempty" yaml:"password,omitempty"`
	ClientCredentials *GrantSettings `json:"client_credentials,omitempty" yaml:"client_credentials,omitempty"`
}

// GrantSettings are the Aidbox per-grant options. Expirations are seconds.
type GrantSettings struct {
	RedirectURI            StringList `json:"redirect_uri,omitempty" yaml:"redirect_uri,omitempty"` // a string or a list
	AccessTokenExpiration  int        `json:"access_token_expiration,omitempty" yaml:"access_token_expiration,omitempty"`
	RefreshTokenExpiration int        `json:"refresh_token_expiration,omitempty" yaml:"refresh_token_expiration,omitempty"`
	TokenFormat            string     `json:"token_format,omitempty" yaml:"token_format,omitempty"` // jwt | opaque
	SecretRequired         *bool      `json:"secret_required,omitempty" yaml:"secret_required,omitempty"`
	RefreshToken           bool       `json:"refresh_token,omitempty" yaml:"refresh_token,omitempty"`
	PKCE                   bool       `json:"pkce,omitempty" yaml:"pkce,omitempty"`
	// RequiredACR is the weakest sign-in level this grant accepts
	// (urn:gatehouse:acr:pwd|mfa|phr); authorization_code only. A browser
	// session below it steps up.
	RequiredACR string `json:"required_acr,omitempty" yaml:"required_acr,omitempty"`
}

// ClientTwoFactor is the client's own two-factor policy, which overrides
// its AuthConfig's for sign-ins to this client: Required, when given, says
// whether every user must pass a second factor (true forces one, false
// lifts the AuthConfig's requirement); Methods, when given, are the factor
// strategies that may prove it (totp, phone_code, email_code, backup_code,
// passkey, or a factor of the deployment's own).
type ClientTwoFactor struct {
	Required *bool    `json:"required,omitempty" yaml:"required,omitempty"`
	Methods  []string `json:"methods,omitempty" yaml:"methods,omitempty"`
}

// Reference points at another resource by id.
type Reference struct {
	ID           string `json:"id" yaml:"id"`
	ResourceType string `json:"resourceType,omitempty" yaml:"resourceType,omitempty"`
}

// AuthConfig is the Aidbox-shaped AuthConfig resource.
type AuthConfig struct {
	ResourceType string               `json:"resourceType,omitempty" yaml:"resourceType,omitempty"`
	ID           string               `json:"id,omitempty" yaml:"id,omitempty"`
	TwoFactor    *AuthConfigTwoFactor `json:"twoFactor,omitempty" yaml:"twoFactor,omitempty"`
	Theme        *Theme               `json:"theme,omitempty" yaml:"theme,omitempty"`
	SignUp       *SignUp              `json:"signUp,omitempty" yaml:"signUp,omitempty"`
	Password     *PasswordPolicy      `json:"password,omitempty" yaml:"password,omitempty"`
	Email        *Email               `json:"email,omitempty" yaml:"email,omitempty"`
	WebAuthn     *WebAuthn            `json:"webauthn,omitempty" yaml:"webauthn,omitempty"`
	// DefaultLocale is the pages' language when neither ui_locales, the
	// user's locale nor Accept-Language names a supported one.
	DefaultLocale string `json:"defaultLocale,omitempty" yaml:"defaultLocale,omitempty"`
	// Messages rewords page messages per language: language → message id
	// (the English text, as in templates/locales/pages.en.toml) → text.
	Messages map[string]map[string]string `json:"messages,omitempty" yaml:"messages,omitempty"`
	Meta     *Meta                        `json:"meta,omitempty" yaml:"meta,omitempty"`
}

// WebAuthn is the passkey relying party of the clients that use the
// AuthConfig. Every field defaults from the server's public URL (see
// package passkey): rpId its host, origins its origin, rpName the theme's
// brand.
type WebAuthn struct {
	RPID             string   `json:"rpId,omitempty" yaml:"rpId,omitempty"`
	RPName           string   `json:"rpName,omitempty" yaml:"rpName,omitempty"`
	Origins          []string `json:"origins,omitempty" yaml:"origins,omitempty"`
	UserVerification string   `json:"userVerification,omitempty" yaml:"userVerification,omitempty"` // required | preferred | discouraged
	Attestation      string   `json:"attestation,omitempty" yaml:"attestation,omitempty"`           // none | direct
}

// AuthConfigTwoFactor configures second factors for the clients that use it.
type AuthConfigTwoFactor struct {
	IssuerName           string   `json:"issuerName,omitempty" yaml:"issuerName,omitempty"`
	ValidPastTokensCount *int     `json:"validPastTokensCount,omitempty" yaml:"validPastTokensCount,omitempty"` // default 1
	Webhook              *Webhook `json:"webhook,omitempty" yaml:"webhook,omitempty"`
	Required             bool     `json:"required,omitempty" yaml:"required,omitempty"`
	DefaultMethod        string   `json:"defaultMethod,omitempty" yaml:"defaultMethod,omitempty"` // totp | sms | email
	// Methods are the factor strategies that may prove a second factor
	// (as ClientTwoFactor.Methods); empty allows every registered factor.
	Methods []string `json:"methods,omitempty" yaml:"methods,omitempty"`
	// RememberDevice lets a user, after a second factor, skip it on the
	// same browser for Days days (see the README's remembered devices).
	RememberDevice *RememberDevice `json:"rememberDevice,omitempty" yaml:"rememberDevice,omitempty"`
	// GracePeriod lets a user whom Required (or a Client's required)
	// asks for a second factor skip its enrolment for Days days from the
	// first sign-in where it applied.
	GracePeriod *GracePeriod `json:"gracePeriod,omitempty" yaml:"gracePeriod,omitempty"`
}

// GracePeriod is how long enrolment of a required second factor may wait.
type GracePeriod struct {
	Days int `json:"days" yaml:"days"`
}

// MaxGracePeriodDays bounds twoFactor.gracePeriod.days (1 to this).
const MaxGracePeriodDays = 365

// RememberDevice is the AuthConfig's "remember this browser" setting.
// Days 0 means not set (DefaultRememberDeviceDays).
type RememberDevice struct {
	Enabled bool `json:"enabled" yaml:"enabled"`
	Days    int  `json:"days,omitempty" yaml:"days,omitempty"`
}

// Bounds of twoFactor.rememberDevice.days.
const (
	DefaultRememberDeviceDays = 30
	MaxRememberDeviceDays     = 365
)

// Webhook is where codes are delivered. Secret is the HMAC key for the
// Gatehouse-Signature header: accepted on write and kept in the stored
// document (the server signs with it), stripped from every API response.
// Timeout 0 means "not set" (DefaultWebhookTimeout); an explicit timeout of 0
// or less in a request is refused, which is what timeoutSet remembers.
type Webhook struct {
	Endpoint string            `json:"endpoint" yaml:"endpoint"`
	Timeout  int               `json:"timeout,omitempty" yaml:"timeout,omitempty"` // milliseconds
	Headers  map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	Secret   string            `json:"secret,omitempty" yaml:"secret,omitempty"`

	timeoutSet bool
}

// Theme styles the hosted pages.
type Theme struct {
	StyleURL string `json:"styleUrl,omitempty" yaml:"styleUrl,omitempty"`
	Title    string `json:"title,omitempty" yaml:"title,omitempty"`
	Brand    string `json:"brand,omitempty" yaml:"brand,omitempty"`
}

// Email is how the clients of the AuthConfig send e-mail (codes by e-mail
// go over SMTP instead of the webhook when it is set).
type Email struct {
	SMTP *SMTPServer `json:"smtp,omitempty" yaml:"smtp,omitempty"`
	From string      `json:"from,omitempty" yaml:"from,omitempty"`
}

// SMTPServer is an outgoing mail server. Password is write-only: sealed
// at rest, shown as RedactedValue, and a replace that leaves it out or
// sends RedactedValue back keeps the stored one.
type SMTPServer struct {
	Host     string `json:"host" yaml:"host"`
	Port     int    `json:"port,omitempty" yaml:"port,omitempty"`
	Username string `json:"username,omitempty" yaml:"username,omitempty"`
	Password string `json:"password,omitempty" yaml:"password,omitempty"`
	TLS      string `json:"tls,omitempty" yaml:"tls,omitempty"`         // starttls (default) | tls | none
	Timeout  int    `json:"timeout,omitempty" yaml:"timeout,omitempty"` // milliseconds per attempt; 0: 5000
}

// SignUp allows self-registration: the hosted /auth/sign-up page and the
// JSON POST /auth/sign-up.
type SignUp struct {
	Enabled bool `json:"enabled" yaml:"enabled"`
	// VerifyEmail (default true) makes an e-mail sign-up prove the address
	// with a code before the account exists; false creates it at once, with
	// the address unverified. Phone numbers are always proven.
	VerifyEmail *bool `json:"verifyEmail,omitempty" yaml:"verifyEmail,omitempty"`
}

// SignUpEnabled reports whether people may sign themselves up.
func (a AuthConfig) SignUpEnabled() bool { return a.SignUp != nil && a.SignUp.Enabled }

// SignUpVerifiesEmail reports whether an e-mail sign-up must prove the
// address first (the default).
func (a AuthConfig) SignUpVerifiesEmail() bool {
	if a.TwoFactor != nil && a.TwoFactor.DefaultMethod == MethodEmail {
		return true // e-mail codes go only to a proven address
	}
	return a.SignUp == nil || a.SignUp.VerifyEmail == nil || *a.SignUp.VerifyEmail
}

// PasswordPolicy is what a new password must be: at least MinLength
// characters (Unicode code points; default DefaultPasswordMinLength), at
// most MaxPasswordBytes bytes. It applies to sign-up, a reset and a change.
type PasswordPolicy struct {
	MinLength int `json:"minLength,omitempty" yaml:"minLength,omitempty"`
}

// StringList accepts a JSON/YAML string or a list of strings.
type StringList []string
