package resource

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v3"
	"golang.org/x/text/language"

	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/secret"
)

// Options are the deployment switches validation depends on.
type Options struct {
	// Dev relaxes transport rules for local development: plain-http
	// redirect URIs, origins and webhook endpoints on any host, and webhook
	// endpoints on private addresses.
	Dev bool
	// AllowPrivate lets webhook endpoints use http and private, loopback or
	// link-local addresses (GATEHOUSE_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivate bool
	// LookupIP resolves webhook hosts at save time; nil uses the system resolver.
	LookupIP LookupIPFunc
	// Strategies are the deployment's own second-factor strategies, which
	// twoFactor.methods may name beside the built-in ones.
	Strategies []string
	// Messages checks an AuthConfig's message override (nil: only its
	// shape is checked).
	Messages MessageChecker
}

// MessageChecker knows the hosted pages' messages (i18n.Catalog).
type MessageChecker interface {
	CheckOverride(id, text string) error
}

// Languages the hosted pages are written in (i18n.Languages).
var PageLanguages = []string{"en", "de", "fr", "es", "pt-BR", "ru", "zh-Hans"}

// Bounds of AuthConfig.messages.
const (
	MaxMessageOverrides = 500
	maxMessageLen       = 2000
)

// Second-factor strategies twoFactor.methods may name without a factor of
// the deployment's own (passkey is the hardware-key factor).
var BuiltInStrategies = []string{"totp", "phone_code", "email_code", "backup_code", "passkey"}

// ACR values a Client's required_acr may name, weakest first.
var ACRValues = []string{"urn:gatehouse:acr:pwd", "urn:gatehouse:acr:mfa", "urn:gatehouse:acr:phr"}

// Limits.
const (
	MaxIDLen                  = 64
	MaxAccessTokenExpiration  = 30 * 24 * 3600  // seconds
	MaxRefreshTokenExpiration = 365 * 24 * 3600 // seconds
	MaxWebhookTimeout         = 30000           // milliseconds
	MaxValidPastTokensCount   = 10
	// MaxRefreshTokenGrace bounds refresh_token_grace_seconds: the grace
	// covers requests in flight, not a second life for a rotated token.
	MaxRefreshTokenGrace = 60 // seconds
	maxSecretLen         = 1024
	// MinSecretLen is the shortest client secret accepted: a secret is
	// guessed online against a throttle, so it must be long enough to be
	// out of reach whatever the throttle allows.
	MinSecretLen      = 16
	maxURILen         = 2048
	maxTextLen        = 200
	maxWebhookHeaders = 20
	maxListLen        = 100
)

// Grant type names.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantPassword          = "password"
	GrantClientCredentials = "client_credentials"
)

// Second-factor methods.
const (
	MethodTOTP  = "totp"
	MethodSMS   = "sms"
	MethodEmail = "email"
)

var (
	idPattern    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	phonePattern = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	emailPattern = regexp.MustCompile(`^[A-Za-z0-9.!#$%&'*+/=?^_` + "`" + `{|}~-]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$`)
)

// ValidateID checks a resource id: 1 to 64 of A-Z a-z 0-9 . _ - (URL-safe
// without escaping), and not "." or "..".
func ValidateID(id string) error {
	if id == "" {
		return Invalid("id", CodeRequired, "id is required")
	}
	if !idPattern.MatchString(id) || id == "." || id == ".." {
		return Invalid("id", CodeInvalid, "id must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'")
	}
	return nil
}

// ValidEmail reports whether s is a plain addr-spec e-mail address (no
// display name, no quoted local part, ASCII or punycode domain with a dot).
func ValidEmail(s string) bool {
	return len(s) <= 254 && emailPattern.MatchString(s) && !strings.Contains(s, "..") &&
		!strings.HasPrefix(s, ".") && !strings.Contains(s, ".@")
}

// ValidPhone reports whether s is an E.164 number (+ and 7 to 15 digits).
func ValidPhone(s string) bool { return phonePattern.MatchString(s) }

// Normalize lower-cases the e-mail address.
func (u *User) Normalize() {
	u.Email = strings.ToLower(u.Email)
}

// Validate checks every field of u and reports all problems at once.
func (u User) Validate(ctx context.Context, opts Options) error {
	var p problems
	checkID(&p, u.ID)
	checkResourceType(&p, u.ResourceType, TypeUser)
	if u.Email != "" && !ValidEmail(u.Email) {
		p.add("email", CodeInvalid, "not a valid e-mail address")
	}
	if u.PhoneNumber != "" && !ValidPhone(u.PhoneNumber) {
		p.add("phoneNumber", CodeInvalid, "not an E.164 phone number such as +14155550123")
	}
	if len(u.Password) > maxSecretLen {
		p.add("password", CodeTooLong, fmt.Sprintf("at most %d bytes", maxSecretLen))
	}
	switch {
	case u.PasswordHash == "":
	case u.Password != "":
		p.add("passwordHash", CodeInvalid, "give either password or passwordHash, not both")
	case len(u.PasswordHash) > maxSecretLen:
		p.add("passwordHash", CodeTooLong, fmt.Sprintf("at most %d bytes", maxSecretLen))
	case !secret.IsPHC(u.PasswordHash):
		p.add("passwordHash", CodeInvalid, "not an argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash)")
	}
	checkVerificationCode(&p, "phoneVerificationCode", u.PhoneVerificationCode, "phoneNumber", u.PhoneNumber)
	checkVerificationCode(&p, "emailVerificationCode", u.EmailVerificationCode, "email", u.Email)
	if u.Locale != "" {
		if _, err := language.Parse(u.Locale); err != nil || len(u.Locale) > 35 {
			p.add("locale", CodeInvalid, "not a BCP 47 language tag such as de or pt-BR")
		}
	}
	if u.Name != nil {
		checkText(&p, "name.givenName", u.Name.GivenName)
		checkText(&p, "name.familyName", u.Name.FamilyName)
	}
	if tf := u.TwoFactor; tf != nil {
		checkMethod(&p, "twoFactor.method", tf.Method)
		checkText(&p, "twoFactor.transport", tf.Transport)
	}
	return p.err()
}

// maxCodeLen bounds a verification code field; the codes are 6 digits.
const maxCodeLen = 64

// checkVerificationCode checks that a verification code comes with the
// destination it was sent to. Whether it is the right code is for the
// write to find out (it counts the try and spends the code).
func checkVerificationCode(p *problems, path, code, destPath, dest string) {
	switch {
	case code == "":
	case len(code) > maxCodeLen:
		p.add(path, CodeTooLong, fmt.Sprintf("at most %d bytes", maxCodeLen))
	case dest == "":
		p.add(path, CodeRequired, "give "+destPath+" too: the code proves the destination it was sent to")
	}
}

// Normalize rewrites grant type `code` to `authorization_code` and drops
// duplicate grant types, keeping the first occurrence.
func (c *Client) Normalize() {
	if len(c.GrantTypes) == 0 {
		return
	}
	out := make([]string, 0, len(c.GrantTypes))
	for _, g := range c.GrantTypes {
		if g == "code" {
			g = GrantAuthorizationCode
		}
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	c.GrantTypes = out
}

// Validate checks every field of c that does not depend on stored state.
// Whether a secret exists (secret_required, client_credentials) is checked
// by ToStoreClient, which knows the stored hash.
func (c Client) Validate(ctx context.Context, opts Options) error {
	var p problems
	checkID(&p, c.ID)
	checkResourceType(&p, c.ResourceType, TypeClient)
	if len(c.Secret) > maxSecretLen {
		p.add("secret", CodeTooLong, fmt.Sprintf("at most %d bytes", maxSecretLen))
	} else if c.Secret != "" && utf8.RuneCountInString(c.Secret) < MinSecretLen {
		p.add("secret", CodeValue, fmt.Sprintf("at least %d characters", MinSecretLen))
	}
	checkText(&p, "name", c.Name)
	if len(c.GrantTypes) > maxListLen {
		p.add("grant_types", CodeTooLong, "too many values")
	}
	for i, g := range c.GrantTypes {
		switch g {
		case "code", GrantAuthorizationCode, GrantRefreshToken, GrantPassword, GrantClientCredentials:
		default:
			p.add(fmt.Sprintf("grant_types[%d]", i), CodeValue,
				fmt.Sprintf("unknown grant type %q (want authorization_code, code, refresh_token, password or client_credentials)", g))
		}
	}
	if len(c.Scope) > maxListLen {
		p.add("scope", CodeTooLong, "too many values")
	}
	for i, s := range c.Scope {
		if !validScopeToken(s) {
			p.add(fmt.Sprintf("scope[%d]", i), CodeInvalid, "not a scope token (printable ASCII without spaces, quotes or backslashes)")
		}
	}
	if a := c.Auth; a != nil {
		checkGrant(&p, "auth.authorization_code", a.AuthorizationCode, opts)
		checkGrant(&p, "auth.password", a.Password, opts)
		checkGrant(&p, "auth.client_credentials", a.ClientCredentials, opts)
		if g := a.AuthorizationCode; g != nil && g.RequiredACR != "" && !slices.Contains(ACRValues, g.RequiredACR) {
			p.add("auth.authorization_code.required_acr", CodeValue,
				fmt.Sprintf("unknown acr value %q (want %s)", g.RequiredACR, strings.Join(ACRValues, ", ")))
		}
		for path, g := range map[string]*GrantSettings{"auth.password": a.Password, "auth.client_credentials": a.ClientCredentials} {
			if g != nil && g.RequiredACR != "" {
				p.add(path+".required_acr", CodeValue, "required_acr applies to auth.authorization_code only")
			}
		}
	}
	if tf := c.TwoFactor; tf != nil {
		checkStrategies(&p, "twoFactor.methods", tf.Methods, opts)
	}
	if c.HasGrant(GrantAuthorizationCode) && len(c.RedirectURIs()) == 0 {
		p.add("auth.authorization_code.redirect_uri", CodeRequired, "a client with the authorization_code grant needs a redirect_uri")
	}
	if ref := c.AuthConfig; ref != nil {
		if err := ValidateID(ref.ID); err != nil {
			p.add("authConfig.id", CodeInvalid, "not a valid AuthConfig id")
		}
		if ref.ResourceType != "" && ref.ResourceType != TypeAuthConfig {
			p.add("authConfig.resourceType", CodeValue, "must be AuthConfig")
		}
	}
	if g := c.RefreshTokenGraceSeconds; g != nil && (*g < 0 || *g > MaxRefreshTokenGrace) {
		p.add("refresh_token_grace_seconds", CodeInvalid,
			fmt.Sprintf("must be a whole number of seconds between 0 (strict rotation) and %d", MaxRefreshTokenGrace))
	}
	checkURIList(&p, "post_logout_redirect_uri", c.PostLogoutRedirectURIs, opts)
	if len(c.AllowedOrigins) > maxListLen {
		p.add("allowed_origins", CodeTooLong, "too many values")
	}
	for i, o := range c.AllowedOrigins {
		if err := validateOrigin(o, opts); err != nil {
			p.add(fmt.Sprintf("allowed_origins[%d]", i), CodeInvalid, err.Error())
		}
	}
	checkAudience(&p, c.Audience)
	switch c.IDTokenSignedResponseAlg {
	case "", "RS256", "ES256":
	default:
		p.add("id_token_signed_response_alg", CodeValue, "must be RS256 or ES256")
	}
	checkClientKeys(ctx, &p, c, opts)
	if c.BackchannelLogoutURI != "" {
		checkEndpoint(ctx, &p, "backchannel_logout_uri", c.BackchannelLogoutURI, opts)
	}
	return p.err()
}

// AuthMethodPrivateKeyJWT is the one token_endpoint_auth_method a Client
// names; without it a client uses its secret (or none).
const AuthMethodPrivateKeyJWT = "private_key_jwt"

// AssertionAlgs are the algorithms a client's assertions may use: the
// asymmetric ones, so the server never holds a key that could sign one.
var AssertionAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

const (
	maxClientKeys     = 20
	maxClientJWKSSize = 64 << 10
)

// checkClientKeys checks private_key_jwt and the keys behind it: jwks (a
// set of public signing keys) or jwks_uri (reached like a webhook), one
// of them, and only for such a client.
func checkClientKeys(ctx context.Context, p *problems, c Client, opts Options) {
	switch c.TokenEndpointAuthMethod {
	case "":
		if c.TokenEndpointAuthSigningAlg != "" {
			p.add("token_endpoint_auth_signing_alg", CodeValue, "applies to token_endpoint_auth_method private_key_jwt only")
		}
		if len(c.JWKS) > 0 || c.JWKSURI != "" {
			p.add("token_endpoint_auth_method", CodeRequired, "a client with jwks or jwks_uri must set token_endpoint_auth_method to private_key_jwt")
		}
		return
	case AuthMethodPrivateKeyJWT:
	default:
		p.add("token_endpoint_auth_method", CodeValue, "must be private_key_jwt; leave it out for client_secret_basic, client_secret_post or none")
		return
	}
	if a := c.TokenEndpointAuthSigningAlg; a != "" && !slices.Contains(AssertionAlgs, a) {
		p.add("token_endpoint_auth_signing_alg", CodeValue, "must be one of "+strings.Join(AssertionAlgs, ", "))
	}
	switch {
	case len(c.JWKS) > 0 && c.JWKSURI != "":
		p.add("jwks", CodeInvalid, "give jwks or jwks_uri, not both")
	case len(c.JWKS) > 0:
		if _, err := ParseClientJWKS(c.JWKS); err != nil {
			p.add("jwks", CodeInvalid, err.Error())
		}
	case c.JWKSURI != "":
		checkEndpoint(ctx, p, "jwks_uri", c.JWKSURI, opts)
	default:
		p.add("jwks", CodeRequired, "a private_key_jwt client needs jwks or jwks_uri")
	}
}

// ParseClientJWKS reads a client's JWK Set: public signing keys only (a
// key without "use" is taken as a signing key).
func ParseClientJWKS(raw []byte) (*jose.JSONWebKeySet, error) {
	if len(raw) > maxClientJWKSSize {
		return nil, fmt.Errorf("at most %d bytes", maxClientJWKSSize)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set ({\"keys\": [...]}) of valid keys: %v", err)
	}
	if len(set.Keys) == 0 || len(set.Keys) > maxClientKeys {
		return nil, fmt.Errorf("must hold between 1 and %d keys", maxClientKeys)
	}
	for i, k := range set.Keys {
		switch {
		case !k.Valid():
			return nil, fmt.Errorf("key %d is not a valid key", i)
		case !k.IsPublic():
			return nil, fmt.Errorf("key %d is a private or symmetric key; register the public key only", i)
		case k.Use != "" && k.Use != "sig":
			return nil, fmt.Errorf("key %d is not a signing key (use %q)", i, k.Use)
		}
		set.Keys[i].Use = "sig"
	}
	return &set, nil
}

func checkGrant(p *problems, path string, g *GrantSettings, opts Options) {
	if g == nil {
		return
	}
	checkURIList(p, path+".redirect_uri", g.RedirectURI, opts)
	if g.AccessTokenExpiration < 0 || g.AccessTokenExpiration > MaxAccessTokenExpiration {
		p.add(path+".access_token_expiration", CodeInvalid,
			fmt.Sprintf("must be between 0 (default) and %d seconds", MaxAccessTokenExpiration))
	}
	if g.RefreshTokenExpiration < 0 || g.RefreshTokenExpiration > MaxRefreshTokenExpiration {
		p.add(path+".refresh_token_expiration", CodeInvalid,
			fmt.Sprintf("must be between 0 (default) and %d seconds", MaxRefreshTokenExpiration))
	}
	switch g.TokenFormat {
	case "", TokenFormatJWT, TokenFormatOpaque:
	default:
		p.add(path+".token_format", CodeValue, "must be jwt or opaque")
	}
}

// checkAudience checks the resource servers a client may name (RFC 8707
// §2: an absolute URI without a fragment; spaces would split fosite's
// audience parameter).
func checkAudience(p *problems, aud []string) {
	if len(aud) > maxListLen {
		p.add("audience", CodeTooLong, "too many values")
		return
	}
	for i, a := range aud {
		u, err := url.Parse(a)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.ContainsAny(a, " #") || len(a) > 2048 {
			p.add(fmt.Sprintf("audience[%d]", i), CodeInvalid, "must be an absolute URI without a fragment")
		}
	}
}

func checkURIList(p *problems, path string, uris StringList, opts Options) {
	if len(uris) > maxListLen {
		p.add(path, CodeTooLong, "too many values")
		return
	}
	for i, u := range uris {
		where := path
		if len(uris) > 1 {
			where = fmt.Sprintf("%s[%d]", path, i)
		}
		if err := ValidateRedirectURI(u, opts); err != nil {
			p.add(where, CodeInvalid, err.Error())
		}
	}
}

// Validate checks every field of a; a webhook host that resolves is checked
// against private address ranges (unless opts allow them).
func (a AuthConfig) Validate(ctx context.Context, opts Options) error {
	var p problems
	checkID(&p, a.ID)
	checkResourceType(&p, a.ResourceType, TypeAuthConfig)
	if tf := a.TwoFactor; tf != nil {
		checkText(&p, "twoFactor.issuerName", tf.IssuerName)
		if strings.Contains(tf.IssuerName, ":") {
			p.add("twoFactor.issuerName", CodeInvalid, "must not contain ':' (it separates issuer and account in the otpauth label)")
		}
		if n := tf.ValidPastTokensCount; n != nil && (*n < 0 || *n > MaxValidPastTokensCount) {
			p.add("twoFactor.validPastTokensCount", CodeInvalid, fmt.Sprintf("must be between 0 and %d", MaxValidPastTokensCount))
		}
		checkMethod(&p, "twoFactor.defaultMethod", tf.DefaultMethod)
		checkStrategies(&p, "twoFactor.methods", tf.Methods, opts)
		if rd := tf.RememberDevice; rd != nil && (rd.Days < 0 || rd.Days > MaxRememberDeviceDays) {
			p.add("twoFactor.rememberDevice.days", CodeInvalid, fmt.Sprintf("must be between 1 and %d", MaxRememberDeviceDays))
		}
		if g := tf.GracePeriod; g != nil && (g.Days < 1 || g.Days > MaxGracePeriodDays) {
			p.add("twoFactor.gracePeriod.days", CodeInvalid, fmt.Sprintf("must be between 1 and %d", MaxGracePeriodDays))
		}
		if w := tf.Webhook; w != nil {
			checkWebhook(ctx, &p, "twoFactor.webhook", w, opts)
		}
	}
	if e := a.Email; e != nil {
		checkEmail(ctx, &p, e, opts)
	}
	if wa := a.WebAuthn; wa != nil {
		checkWebAuthn(&p, wa, opts)
	}
	if pp := a.Password; pp != nil && pp.MinLength != 0 && (pp.MinLength < DefaultPasswordMinLength || pp.MinLength > MaxPasswordMinLength) {
		p.add("password.minLength", CodeInvalid, fmt.Sprintf("must be between %d and %d", DefaultPasswordMinLength, MaxPasswordMinLength))
	}
	if a.DefaultLocale != "" && !slices.Contains(PageLanguages, a.DefaultLocale) {
		p.add("defaultLocale", CodeInvalid, "must be one of "+strings.Join(PageLanguages, ", "))
	}
	checkMessages(&p, a.Messages, opts)
	if th := a.Theme; th != nil {
		checkText(&p, "theme.title", th.Title)
		checkText(&p, "theme.brand", th.Brand)
		if th.StyleURL != "" {
			if err := validateStyleURL(th.StyleURL, opts); err != nil {
				p.add("theme.styleUrl", CodeInvalid, err.Error())
			}
		}
	}
	return p.err()
}

// checkMessages checks AuthConfig.messages: known languages and ids,
// bounded plain text.
func checkMessages(p *problems, msgs map[string]map[string]string, opts Options) {
	n := 0
	for _, lang := range slices.Sorted(maps.Keys(msgs)) {
		if !slices.Contains(PageLanguages, lang) {
			p.add("messages."+lang, CodeInvalid, "must be one of "+strings.Join(PageLanguages, ", "))
			continue
		}
		for _, id := range slices.Sorted(maps.Keys(msgs[lang])) {
			n++
			text := msgs[lang][id]
			path := "messages." + lang + "[" + strconv.Quote(truncate(id, 64)) + "]"
			if !utf8.ValidString(text) || strings.ContainsFunc(text, unicode.IsControl) {
				p.add(path, CodeInvalid, "must not contain control characters")
				continue
			}
			if utf8.RuneCountInString(text) > maxMessageLen {
				p.add(path, CodeTooLong, fmt.Sprintf("at most %d characters", maxMessageLen))
				continue
			}
			if opts.Messages != nil {
				if err := opts.Messages.CheckOverride(id, text); err != nil {
					p.add(path, CodeInvalid, err.Error())
				}
			}
		}
	}
	if n > MaxMessageOverrides {
		p.add("messages", CodeTooLong, fmt.Sprintf("at most %d messages", MaxMessageOverrides))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Token formats.
const (
	TokenFormatJWT    = "jwt"
	TokenFormatOpaque = "opaque"
)

// forbiddenHeaders are set by the sender itself or would change how the
// request travels; an AuthConfig may not override them.
var forbiddenHeaders = []string{
	"Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection", "Keep-Alive",
	"Upgrade", "Te", "Trailer", "Proxy-Authorization", "Proxy-Connection", "Gatehouse-Signature",
}

// checkEndpoint checks a URL Gatehouse calls out to (a webhook, a client's
// jwks_uri or back-channel logout URI) under the webhook's rules.
func checkEndpoint(ctx context.Context, p *problems, path, raw string, opts Options) {
	if err := validateWebhookEndpoint(ctx, raw, opts); err != nil {
		code := CodeInvalid
		if ve, ok := err.(*endpointError); ok {
			code = ve.code
		}
		p.add(path, code, err.Error())
	}
}

func checkWebhook(ctx context.Context, p *problems, path string, w *Webhook, opts Options) {
	checkEndpoint(ctx, p, path+".endpoint", w.Endpoint, opts)
	if (w.timeoutSet && w.Timeout <= 0) || w.Timeout < 0 {
		p.add(path+".timeout", CodeInvalid, fmt.Sprintf("must be between 1 and %d milliseconds", MaxWebhookTimeout))
	} else if w.Timeout > MaxWebhookTimeout {
		p.add(path+".timeout", CodeInvalid, fmt.Sprintf("must be between 1 and %d milliseconds", MaxWebhookTimeout))
	}
	if len(w.Secret) > maxSecretLen {
		p.add(path+".secret", CodeTooLong, fmt.Sprintf("at most %d bytes", maxSecretLen))
	}
	if len(w.Headers) > maxWebhookHeaders {
		p.add(path+".headers", CodeTooLong, fmt.Sprintf("at most %d headers", maxWebhookHeaders))
	}
	for _, name := range sortedStringKeys(w.Headers) {
		hp := path + ".headers." + name
		if !validHeaderName(name) {
			p.add(hp, CodeInvalid, "not a valid HTTP header name")
			continue
		}
		if slices.Contains(forbiddenHeaders, textproto.CanonicalMIMEHeaderKey(name)) {
			p.add(hp, CodeValue, "this header is set by Gatehouse and cannot be configured")
		}
		v := w.Headers[name]
		if len(v) > 4096 || strings.ContainsAny(v, "\r\n\x00") {
			p.add(hp, CodeInvalid, "header values are at most 4096 bytes without line breaks or NUL")
		}
	}
}

type endpointError struct {
	code string
	msg  string
}

func (e *endpointError) Error() string { return e.msg }

func validateWebhookEndpoint(ctx context.Context, raw string, opts Options) error {
	if raw == "" {
		return &endpointError{CodeRequired, "a webhook needs an endpoint"}
	}
	u, err := parseAbsolute(raw)
	if err != nil {
		return &endpointError{CodeInvalid, err.Error()}
	}
	relaxed := opts.Dev || opts.AllowPrivate
	switch u.Scheme {
	case "https":
	case "http":
		if !relaxed {
			return &endpointError{CodeSecurity, "the endpoint must use https"}
		}
	default:
		return &endpointError{CodeInvalid, "the endpoint must be an https URL"}
	}
	if u.Host == "" || u.Hostname() == "" {
		return &endpointError{CodeInvalid, "the endpoint needs a host"}
	}
	if u.User != nil {
		return &endpointError{CodeInvalid, "credentials in the URL are not allowed; use headers"}
	}
	if relaxed {
		return nil
	}
	if err := checkPublicHost(ctx, u.Hostname(), opts.LookupIP); err != nil {
		return &endpointError{CodeSecurity, "the endpoint must be on a public address: " + err.Error()}
	}
	return nil
}

// parseAbsolute parses an absolute URL without fragment, wildcard, spaces or
// control characters.
func parseAbsolute(raw string) (*url.URL, error) {
	if len(raw) > maxURILen {
		return nil, fmt.Errorf("longer than %d characters", maxURILen)
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f || r > unicode.MaxASCII }) {
		return nil, fmt.Errorf("contains spaces, control or non-ASCII characters (percent-encode them)")
	}
	if strings.Contains(raw, "#") {
		return nil, fmt.Errorf("must not contain a fragment (#)")
	}
	if strings.Contains(raw, "*") {
		return nil, fmt.Errorf("wildcards (*) are not allowed")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a valid URL")
	}
	if !u.IsAbs() {
		return nil, fmt.Errorf("must be an absolute URL with a scheme")
	}
	return u, nil
}

// forbiddenSchemes never make sense as an OAuth redirect and are the usual
// script-injection vectors.
var forbiddenSchemes = []string{"javascript", "data", "vbscript", "file", "blob", "about", "filesystem", "view-source", "mailto", "ftp", "ws", "wss"}

// ValidateRedirectURI checks an OAuth redirect URI: absolute, no fragment,
// wildcard or userinfo; https, http on a loopback host (any host with
// opts.Dev), or a private-use scheme in reverse-domain form such as
// com.example.app:/cb (RFC 8252 §7.1).
func ValidateRedirectURI(raw string, opts Options) error {
	if raw == "" {
		return fmt.Errorf("must not be empty")
	}
	u, err := parseAbsolute(raw)
	if err != nil {
		return err
	}
	if u.User != nil {
		return fmt.Errorf("must not contain user information (user@)")
	}
	switch u.Scheme {
	case "https":
		if u.Hostname() == "" {
			return fmt.Errorf("needs a host")
		}
	case "http":
		if u.Hostname() == "" {
			return fmt.Errorf("needs a host")
		}
		if !opts.Dev && !IsLoopbackHost(u.Hostname()) {
			return fmt.Errorf("plain http is only allowed for loopback hosts (localhost, 127.0.0.1, [::1]); use https")
		}
	default:
		if slices.Contains(forbiddenSchemes, u.Scheme) {
			return fmt.Errorf("the %s: scheme is not allowed", u.Scheme)
		}
		if !strings.Contains(u.Scheme, ".") {
			return fmt.Errorf("a private-use scheme must be a reverse domain name such as com.example.app (RFC 8252)")
		}
	}
	return nil
}

// IsLoopbackHost reports whether host (without port or brackets) is
// localhost or a loopback IP address.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

func validateOrigin(raw string, opts Options) error {
	if raw == "*" {
		return fmt.Errorf("a wildcard origin is not allowed; list the origins")
	}
	u, err := parseAbsolute(raw)
	if err != nil {
		return err
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Opaque != "" {
		return fmt.Errorf("an origin is scheme://host[:port] without path or query")
	}
	return checkWebURL(u, opts, "an origin must use http or https")
}

func validateStyleURL(raw string, opts Options) error {
	if strings.HasPrefix(raw, "/") && !strings.HasPrefix(raw, "//") {
		if len(raw) > maxURILen || strings.ContainsAny(raw, " \t\r\n\"'<>\\#") {
			return fmt.Errorf("not a valid path")
		}
		return nil
	}
	u, err := parseAbsolute(raw)
	if err != nil {
		return err
	}
	if u.User != nil {
		return fmt.Errorf("must not contain user information")
	}
	return checkWebURL(u, opts, "must be an https URL or a path starting with /")
}

// checkWebURL accepts https, and http only for a loopback host (or in dev
// mode); badScheme is the message for any other scheme.
func checkWebURL(u *url.URL, opts Options, badScheme string) error {
	switch u.Scheme {
	case "https":
	case "http":
		if !opts.Dev && !IsLoopbackHost(u.Hostname()) {
			return fmt.Errorf("plain http is only allowed for loopback hosts")
		}
	default:
		return fmt.Errorf("%s", badScheme)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("needs a host")
	}
	return nil
}

func checkID(p *problems, id string) {
	if err := ValidateID(id); err != nil {
		for _, pr := range err.(*ValidationError).Problems {
			p.add(pr.Path, pr.Code, pr.Message)
		}
	}
}

func checkResourceType(p *problems, got, want string) {
	if got != "" && got != want {
		p.add("resourceType", CodeValue, fmt.Sprintf("must be %s", want))
	}
}

func checkMethod(p *problems, path, m string) {
	switch m {
	case "", MethodTOTP, MethodSMS, MethodEmail:
	default:
		p.add(path, CodeValue, "must be totp, sms or email")
	}
}

// checkStrategies checks a twoFactor.methods list: known strategies, each
// once.
func checkStrategies(p *problems, path string, methods []string, opts Options) {
	if len(methods) > maxListLen {
		p.add(path, CodeTooLong, "too many values")
		return
	}
	for i, m := range methods {
		switch {
		case !slices.Contains(BuiltInStrategies, m) && !slices.Contains(opts.Strategies, m):
			known := strings.Join(slices.Concat(BuiltInStrategies, opts.Strategies), ", ")
			p.add(fmt.Sprintf("%s[%d]", path, i), CodeValue, fmt.Sprintf("unknown second-factor strategy %q (want one of %s)", m, known))
		case slices.Index(methods, m) < i:
			p.add(fmt.Sprintf("%s[%d]", path, i), CodeValue, fmt.Sprintf("%q is listed twice", m))
		}
	}
}

// checkText limits free text to maxTextLen characters of valid UTF-8 without
// control characters, so it renders safely and fits its columns.
func checkText(p *problems, path, s string) {
	if s == "" {
		return
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		p.add(path, CodeInvalid, "must not contain control characters")
		return
	}
	if utf8.RuneCountInString(s) > maxTextLen {
		p.add(path, CodeTooLong, fmt.Sprintf("at most %d characters", maxTextLen))
	}
}

func validScopeToken(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

func sortedStringKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Passkey settings.
const (
	UserVerificationRequired    = "required"
	UserVerificationPreferred   = "preferred"
	UserVerificationDiscouraged = "discouraged"
	AttestationNone             = "none"
	AttestationDirect           = "direct"
)

// checkWebAuthn checks a relying party: rpId a host name (no scheme, port
// or path; browsers refuse IP addresses), each origin http(s) on a host
// that is rpId or under it.
func checkWebAuthn(p *problems, wa *WebAuthn, opts Options) {
	checkText(p, "webauthn.rpName", wa.RPName)
	if wa.RPID != "" {
		if err := ValidateRPID(wa.RPID); err != nil {
			p.add("webauthn.rpId", CodeInvalid, err.Error())
		}
	}
	if len(wa.Origins) > maxListLen {
		p.add("webauthn.origins", CodeTooLong, fmt.Sprintf("at most %d origins", maxListLen))
	}
	for i, o := range wa.Origins {
		where := fmt.Sprintf("webauthn.origins[%d]", i)
		if err := validateOrigin(o, opts); err != nil {
			p.add(where, CodeInvalid, err.Error())
			continue
		}
		if wa.RPID != "" && !OriginUnderRPID(o, wa.RPID) {
			p.add(where, CodeInvalid, fmt.Sprintf("the host must be %s or a subdomain of it (the rpId)", wa.RPID))
		}
	}
	switch wa.UserVerification {
	case "", UserVerificationRequired, UserVerificationPreferred, UserVerificationDiscouraged:
	default:
		p.add("webauthn.userVerification", CodeValue, "must be required, preferred or discouraged")
	}
	switch wa.Attestation {
	case "", AttestationNone, AttestationDirect:
	default:
		p.add("webauthn.attestation", CodeValue, "must be none or direct")
	}
}

var rpIDLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateRPID checks a WebAuthn relying party id: a lower-case DNS name
// such as example.com or localhost, without scheme, port or path.
func ValidateRPID(id string) error {
	if len(id) > 253 {
		return fmt.Errorf("at most 253 characters")
	}
	if _, err := netip.ParseAddr(strings.Trim(id, "[]")); err == nil {
		return fmt.Errorf("must be a domain name: browsers refuse IP addresses as passkey relying party ids (use localhost)")
	}
	for _, label := range strings.Split(id, ".") {
		if !rpIDLabel.MatchString(label) {
			return fmt.Errorf("must be a lower-case domain name such as example.com, without scheme, port or path")
		}
	}
	return nil
}

// OriginUnderRPID reports whether origin's host is rpID or a subdomain of
// it, as WebAuthn requires of the origins a relying party serves.
func OriginUnderRPID(origin, rpID string) bool {
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	return host == rpID || strings.HasSuffix(host, "."+rpID)
}

// checkEmail validates email: {smtp, from}. The host follows the webhook's
// address rules (public unless --dev or allow-private); notify checks the
// address again when it dials.
func checkEmail(ctx context.Context, p *problems, e *Email, opts Options) {
	if e.From != "" {
		if err := notify.CheckAddress(e.From); err != nil {
			p.add("email.from", CodeInvalid, "must be one e-mail address (\"Name <addr>\" or addr) without line breaks")
		}
	}
	sm := e.SMTP
	if sm == nil {
		return
	}
	if e.From == "" {
		p.add("email.from", CodeRequired, "an SMTP server needs a sender address")
	}
	switch {
	case sm.Host == "":
		p.add("email.smtp.host", CodeRequired, "an SMTP server needs a host")
	case strings.ContainsAny(sm.Host, "\r\n\x00/:@ ") && !isBracketedOrIP(sm.Host):
		p.add("email.smtp.host", CodeInvalid, "must be a host name or IP address")
	case !(opts.Dev || opts.AllowPrivate):
		if err := checkPublicHost(ctx, sm.Host, opts.LookupIP); err != nil {
			p.add("email.smtp.host", CodeSecurity, "the SMTP server must be on a public address: "+err.Error())
		}
	}
	if sm.Timeout < 0 || sm.Timeout > MaxWebhookTimeout {
		p.add("email.smtp.timeout", CodeInvalid, fmt.Sprintf("must be between 1 and %d milliseconds", MaxWebhookTimeout))
	}
	if sm.Port < 0 || sm.Port > 65535 {
		p.add("email.smtp.port", CodeInvalid, "must be between 1 and 65535")
	}
	switch sm.TLS {
	case "", notify.SMTPStartTLS, notify.SMTPTLS, notify.SMTPNoTLS:
	default:
		p.add("email.smtp.tls", CodeInvalid, "must be starttls, tls or none")
	}
	if strings.ContainsAny(sm.Username, "\r\n\x00") || len(sm.Username) > 256 {
		p.add("email.smtp.username", CodeInvalid, "at most 256 bytes without line breaks")
	}
	if strings.ContainsAny(sm.Password, "\r\n\x00") || len(sm.Password) > maxSecretLen {
		p.add("email.smtp.password", CodeInvalid, fmt.Sprintf("at most %d bytes without line breaks", maxSecretLen))
	}
}

func isBracketedOrIP(h string) bool {
	_, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil
}
