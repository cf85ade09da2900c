package resource

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Defaults applied when a resource leaves a setting out.
const (
	DefaultAccessTokenExpiration  = 3600           // seconds
	DefaultRefreshTokenExpiration = 30 * 24 * 3600 // seconds
	DefaultTokenFormat            = TokenFormatOpaque
	DefaultValidPastTokensCount   = 1
	DefaultIssuerName             = "Gatehouse"
	DefaultWebhookTimeout         = 5 * time.Second
	DefaultAuthConfigID           = "default"
	// DefaultRefreshTokenGrace is a Client's refresh_token_grace_seconds
	// when the resource leaves it out.
	DefaultRefreshTokenGrace = 5 // seconds
)

// HashWriteOnly hashes a write-only value (a password or a client secret)
// with argon2id; "" stays "" (nothing to store). Callers hash before opening
// a transaction, so the slow hash never holds database locks.
//
// Client secrets use the same argon2id hasher as passwords: a stolen database
// then yields no usable secret even when an operator chose a weak one, and
// the oauth package keeps a short-lived in-process cache of verified secrets
// so the token endpoint does not pay a hash per request.
func HashWriteOnly(ctx context.Context, h *secret.PasswordHasher, value string) (string, error) {
	if value == "" {
		return "", nil
	}
	if h == nil {
		return "", errors.New("hash write-only value: no hasher configured")
	}
	phc, err := h.Hash(ctx, value)
	if err != nil {
		return "", fmt.Errorf("hash write-only value: %w", err)
	}
	return phc, nil
}

// ToStoreUser converts a validated User to its record. passwordHash is the
// PHC of a password given in this write (hashed from `password`, or the
// checked `passwordHash` as given); when it is "" the existing hash is
// kept, so a replace without `password` leaves the password as it was (the
// admin cannot read it back, so a GET-edit-PUT round trip must not erase it).
// The stored document carries neither the password nor the two-factor status
// (that lives in the second-factor record) nor meta.
func ToStoreUser(u User, passwordHash string, existing *store.User) (store.User, error) {
	u.Normalize()
	doc := u
	doc.ResourceType = TypeUser
	doc.Password = ""
	doc.PasswordHash = ""
	doc.PhoneVerificationCode = ""
	doc.EmailVerificationCode = ""
	doc.TwoFactor = nil
	doc.Meta = nil
	b, err := json.Marshal(doc)
	if err != nil {
		return store.User{}, fmt.Errorf("encode user %q: %w", u.ID, err)
	}
	rec := store.User{
		ID:            u.ID,
		Email:         u.Email,
		PhoneNumber:   u.PhoneNumber,
		EmailVerified: u.EmailVerified,
		PhoneVerified: u.PhoneVerified,
		PasswordHash:  passwordHash,
		Inactive:      u.Inactive,
		Doc:           b,
	}
	if rec.PasswordHash == "" && existing != nil {
		rec.PasswordHash = existing.PasswordHash
	}
	return rec, nil
}

// UserFromStore rebuilds the resource from a record. The record's columns
// win over the document; twoFactor is left empty (see TwoFactorStatus).
func UserFromStore(rec store.User) (User, error) {
	var u User
	if len(rec.Doc) > 0 {
		if err := json.Unmarshal(rec.Doc, &u); err != nil {
			return User{}, fmt.Errorf("decode stored user %q: %w", rec.ID, err)
		}
	}
	u.ResourceType = TypeUser
	u.ID = rec.ID
	u.Email = rec.Email
	u.PhoneNumber = rec.PhoneNumber
	u.EmailVerified = rec.EmailVerified
	u.PhoneVerified = rec.PhoneVerified
	u.Inactive = rec.Inactive
	u.Password = ""
	u.PasswordHash = ""
	u.PhoneVerificationCode = ""
	u.EmailVerificationCode = ""
	u.TwoFactor = nil
	u.Meta = metaOf(rec.Version, rec.UpdatedAt)
	return u, nil
}

// ToStoreClient converts a validated Client to its record. secretHash is the
// PHC of a secret given in this write; "" keeps the existing one. It also
// checks the rules that depend on whether the client ends up with a secret.
// grant_types are stored as written (`code` stays `code`).
func ToStoreClient(c Client, secretHash string, existing *store.Client) (store.Client, error) {
	rec := store.Client{ID: c.ID, SecretHash: secretHash}
	// An omitted secret keeps the stored one, unless the client now
	// authenticates with private_key_jwt: then the old secret is dropped.
	if rec.SecretHash == "" && existing != nil && c.TokenEndpointAuthMethod != AuthMethodPrivateKeyJWT {
		rec.SecretHash = existing.SecretHash
	}
	c.SecretHash = rec.SecretHash
	if err := checkClientSecret(c); err != nil {
		return store.Client{}, err
	}
	doc := c
	doc.ResourceType = TypeClient
	doc.Secret = ""
	doc.Meta = nil
	b, err := json.Marshal(doc)
	if err != nil {
		return store.Client{}, fmt.Errorf("encode client %q: %w", c.ID, err)
	}
	rec.Doc = b
	return rec, nil
}

func checkClientSecret(c Client) error {
	var p problems
	if c.TokenEndpointAuthMethod == AuthMethodPrivateKeyJWT {
		// Its keys authenticate it for every grant; a secret would be a
		// second, weaker credential.
		if c.hasSecret() {
			p.add("secret", CodeInvalid, "a private_key_jwt client authenticates with its keys and has no secret")
		}
		return p.err()
	}
	if !c.hasSecret() {
		if a := c.Auth; a != nil {
			for _, g := range []struct {
				path string
				s    *GrantSettings
			}{{"auth.authorization_code", a.AuthorizationCode}, {"auth.password", a.Password}, {"auth.client_credentials", a.ClientCredentials}} {
				if g.s != nil && g.s.SecretRequired != nil && *g.s.SecretRequired {
					p.add(g.path+".secret_required", CodeInvalid, "secret_required is true but the client has no secret")
				}
			}
		}
	}
	if c.HasGrant(GrantClientCredentials) && (!c.hasSecret() || !c.Grant(GrantClientCredentials).secretRequired()) {
		p.add("grant_types", CodeInvalid, "client_credentials needs a confidential client: a secret, with secret_required not false")
	}
	return p.err()
}

// ClientFromStore rebuilds the resource from a record for the server's own
// use: grant types normalised (`code` → authorization_code), SecretHash set
// (never serialised), Secret empty.
func ClientFromStore(rec store.Client) (Client, error) {
	c, err := PublicClientFromStore(rec)
	if err != nil {
		return Client{}, err
	}
	c.Normalize()
	c.SecretHash = rec.SecretHash
	return c, nil
}

// PublicClientFromStore is the client as the API shows it: as written
// (grant_types spelled as given), without secret material.
func PublicClientFromStore(rec store.Client) (Client, error) {
	var c Client
	if len(rec.Doc) > 0 {
		if err := json.Unmarshal(rec.Doc, &c); err != nil {
			return Client{}, fmt.Errorf("decode stored client %q: %w", rec.ID, err)
		}
	}
	c.ResourceType = TypeClient
	c.ID = rec.ID
	c.Secret = ""
	c.SecretHash = ""
	c.Meta = metaOf(rec.Version, rec.UpdatedAt)
	return c, nil
}

// ToStoreAuthConfig converts a validated AuthConfig to its record. The
// webhook secret stays in the document because the server signs with it;
// API responses strip it (Public). A replace that leaves webhook.secret out
// keeps the stored one, as for passwords: it cannot be read back.
func ToStoreAuthConfig(a AuthConfig, existing *store.AuthConfig) (store.AuthConfig, error) {
	doc := a.clone()
	doc.ResourceType = TypeAuthConfig
	doc.Meta = nil
	if existing != nil && doc.TwoFactor != nil && doc.TwoFactor.Webhook != nil {
		old, err := AuthConfigFromStore(*existing)
		if err != nil {
			return store.AuthConfig{}, err
		}
		if w := old.webhook(); w != nil {
			nw := doc.TwoFactor.Webhook
			if nw.Secret == "" {
				nw.Secret = w.Secret
			}
			// Header values are write-only too: a replace without
			// headers keeps them, and a value sent back as shown
			// (RedactedValue) keeps the stored one. headers: {} clears them.
			if nw.Headers == nil {
				nw.Headers = w.Headers
			}
			for k, v := range nw.Headers {
				if v == RedactedValue {
					if stored, ok := w.Headers[k]; ok {
						nw.Headers[k] = stored
					} else {
						delete(nw.Headers, k)
					}
				}
			}
		}
	}
	if sm := doc.smtp(); sm != nil && (sm.Password == "" || sm.Password == RedactedValue) {
		sm.Password = ""
		if existing != nil {
			old, err := AuthConfigFromStore(*existing)
			if err != nil {
				return store.AuthConfig{}, err
			}
			if o := old.smtp(); o != nil {
				sm.Password = o.Password
			}
		}
	}
	if w := doc.webhook(); w != nil {
		for k, v := range w.Headers {
			if v == RedactedValue {
				delete(w.Headers, k) // nothing stored to keep
			}
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return store.AuthConfig{}, fmt.Errorf("encode auth config %q: %w", a.ID, err)
	}
	return store.AuthConfig{ID: a.ID, Doc: b}, nil
}

// AuthConfigFromStore rebuilds the resource from a record, webhook secret
// included (the server needs it); use Public before showing it to anyone.
func AuthConfigFromStore(rec store.AuthConfig) (AuthConfig, error) {
	var a AuthConfig
	if len(rec.Doc) > 0 {
		if err := json.Unmarshal(rec.Doc, &a); err != nil {
			return AuthConfig{}, fmt.Errorf("decode stored auth config %q: %w", rec.ID, err)
		}
	}
	a.ResourceType = TypeAuthConfig
	a.ID = rec.ID
	a.Meta = metaOf(rec.Version, rec.UpdatedAt)
	return a, nil
}

func metaOf(version int64, updated time.Time) *Meta {
	return &Meta{VersionID: strconv.FormatInt(version, 10), LastUpdated: updated.UTC()}
}

// Public returns u as an API response may show it: without the password,
// its hash or a verification code.
func (u User) Public() User {
	u.Password = ""
	u.PasswordHash = ""
	u.PhoneVerificationCode = ""
	u.EmailVerificationCode = ""
	return u
}

// Public returns c without its secret or secret hash.
func (c Client) Public() Client {
	c.Secret = ""
	c.SecretHash = ""
	return c
}

// RedactedValue stands for a write-only value in API responses (webhook
// header values); written back, it keeps the stored value.
const RedactedValue = "***"

// Public returns a copy of a without the webhook secret and with every
// webhook header value shown as RedactedValue (they are provider API keys).
func (a AuthConfig) Public() AuthConfig {
	out := a.clone()
	if sm := out.smtp(); sm != nil && sm.Password != "" {
		sm.Password = RedactedValue
	}
	if w := out.webhook(); w != nil {
		w.Secret = ""
		for k := range w.Headers {
			w.Headers[k] = RedactedValue
		}
	}
	return out
}

// sealedPrefix marks a write-only AuthConfig secret (the webhook secret, the
// SMTP password) sealed at rest.
const sealedPrefix = "sealed:v1:"

// The associated data binds each sealed value to its field, so one cannot
// be moved into the other.
var (
	webhookSecretAD = []byte("gatehouse webhook secret")
	smtpPasswordAD  = []byte("gatehouse smtp password")
)

// SealSecrets returns a with its webhook secret and SMTP password (those in
// clear) sealed under s, as TOTP secrets are: the stored document then holds
// no usable key.
func (a AuthConfig) SealSecrets(s *secret.Sealer) AuthConfig {
	out := a.clone()
	if w := out.webhook(); w != nil {
		w.Secret = seal(s, w.Secret, webhookSecretAD)
	}
	if sm := out.smtp(); sm != nil {
		sm.Password = seal(s, sm.Password, smtpPasswordAD)
	}
	return out
}

func seal(s *secret.Sealer, v string, ad []byte) string {
	if v == "" || s == nil || strings.HasPrefix(v, sealedPrefix) {
		return v
	}
	return sealedPrefix + base64.RawURLEncoding.EncodeToString(s.Seal([]byte(v), ad))
}

// OpenWebhookSecret returns the usable secret of a stored webhook secret:
// sealed ones are opened, older ones stored in clear pass as they are.
func OpenWebhookSecret(s *secret.Sealer, stored string) (string, error) {
	v, err := open(s, stored, webhookSecretAD)
	if err != nil {
		return "", fmt.Errorf("open webhook secret: %w", err)
	}
	return v, nil
}

// OpenSMTPPassword returns the usable password of a stored SMTP password.
func OpenSMTPPassword(s *secret.Sealer, stored string) (string, error) {
	v, err := open(s, stored, smtpPasswordAD)
	if err != nil {
		return "", fmt.Errorf("open smtp password: %w", err)
	}
	return v, nil
}

func open(s *secret.Sealer, stored string, ad []byte) (string, error) {
	rest, ok := strings.CutPrefix(stored, sealedPrefix)
	if !ok {
		return stored, nil
	}
	if s == nil {
		return "", errors.New("no sealer")
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return "", err
	}
	b, err := s.Open(raw, ad)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func (a AuthConfig) smtp() *SMTPServer {
	if a.Email == nil {
		return nil
	}
	return a.Email.SMTP
}

// clone copies a deeply enough that changing the copy's two-factor or
// webhook settings leaves a alone.
// Clone is a deep copy: callers may change it without touching a cached one.
func (a AuthConfig) Clone() AuthConfig { return a.clone() }

func (a AuthConfig) clone() AuthConfig {
	if a.TwoFactor != nil {
		tf := *a.TwoFactor
		if tf.Webhook != nil {
			w := *tf.Webhook
			if w.Headers != nil {
				w.Headers = make(map[string]string, len(tf.Webhook.Headers))
				for k, v := range tf.Webhook.Headers {
					w.Headers[k] = v
				}
			}
			tf.Webhook = &w
		}
		tf.Methods = slices.Clone(tf.Methods)
		if tf.RememberDevice != nil {
			rd := *tf.RememberDevice
			tf.RememberDevice = &rd
		}
		if tf.GracePeriod != nil {
			g := *tf.GracePeriod
			tf.GracePeriod = &g
		}
		a.TwoFactor = &tf
	}
	if a.Email != nil {
		e := *a.Email
		if e.SMTP != nil {
			sm := *e.SMTP
			e.SMTP = &sm
		}
		a.Email = &e
	}
	if a.Theme != nil {
		th := *a.Theme
		a.Theme = &th
	}
	if a.Password != nil {
		pp := *a.Password
		a.Password = &pp
	}
	if a.SignUp != nil {
		su := *a.SignUp
		if su.VerifyEmail != nil {
			v := *su.VerifyEmail
			su.VerifyEmail = &v
		}
		a.SignUp = &su
	}
	if a.WebAuthn != nil {
		wa := *a.WebAuthn
		wa.Origins = slices.Clone(wa.Origins)
		a.WebAuthn = &wa
	}
	return a
}

func (a AuthConfig) webhook() *Webhook {
	if a.TwoFactor == nil {
		return nil
	}
	return a.TwoFactor.Webhook
}

// TwoFactorStatus is the read-only twoFactor block of a User response, from
// the user's second-factor record. The TOTP secret never leaves the store.
func TwoFactorStatus(ctx context.Context, st store.Store, userID string) (*UserTwoFactor, error) {
	tf, err := st.GetTwoFactor(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return &UserTwoFactor{Enabled: false}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get two-factor of %q: %w", userID, err)
	}
	if !tf.Enabled {
		return &UserTwoFactor{Enabled: false}, nil
	}
	n, err := st.CountRecoveryCodes(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("count recovery codes of %q: %w", userID, err)
	}
	out := &UserTwoFactor{Enabled: true, Method: tf.Method, RecoveryCodesRemaining: &n}
	if !tf.EnrolledAt.IsZero() {
		at := tf.EnrolledAt.UTC()
		out.EnrolledAt = &at
	}
	return out, nil
}

// DefaultAuthConfig is what applies when no AuthConfig is stored.
func DefaultAuthConfig() AuthConfig {
	n := DefaultValidPastTokensCount
	return AuthConfig{
		ResourceType: TypeAuthConfig,
		TwoFactor:    &AuthConfigTwoFactor{IssuerName: DefaultIssuerName, ValidPastTokensCount: &n},
	}
}

// ResolveAuthConfig picks the AuthConfig that applies to c: the one c refers
// to; else the one with id "default"; else the only one, when exactly one
// exists; else DefaultAuthConfig. A reference to a missing AuthConfig is an
// error (wrapping store.ErrNotFound) rather than a silent fallback, because
// falling back could drop a `twoFactor.required` the operator asked for.
func ResolveAuthConfig(ctx context.Context, st store.Store, c Client) (AuthConfig, error) {
	ref := ""
	if c.AuthConfig != nil {
		ref = c.AuthConfig.ID
	}
	m := memoOf(ctx)
	if a, ok := m.authConfig(ref); ok {
		return a, nil
	}
	a, err := resolveAuthConfig(ctx, st, c, ref)
	if err != nil {
		return AuthConfig{}, err
	}
	m.rememberAuthConfig(ref, a)
	return a, nil
}

func resolveAuthConfig(ctx context.Context, st store.Store, c Client, ref string) (AuthConfig, error) {
	if ref != "" {
		rec, err := st.GetAuthConfig(ctx, ref)
		if err != nil {
			return AuthConfig{}, fmt.Errorf("auth config %q of client %q: %w", ref, c.ID, err)
		}
		return AuthConfigFromStore(rec)
	}
	// One statement: `default` if it exists, else the only one.
	rec, err := st.FindAuthConfig(ctx, DefaultAuthConfigID)
	if errors.Is(err, store.ErrNotFound) {
		return DefaultAuthConfig(), nil
	}
	if err != nil {
		return AuthConfig{}, fmt.Errorf("find the default auth config: %w", err)
	}
	return AuthConfigFromStore(rec)
}

// PastTokens is how many past 30-second TOTP steps are accepted (default 1).
func (a AuthConfig) PastTokens() int {
	if a.TwoFactor == nil || a.TwoFactor.ValidPastTokensCount == nil {
		return DefaultValidPastTokensCount
	}
	return *a.TwoFactor.ValidPastTokensCount
}

// Issuer is the issuer name shown in authenticator apps (default "Gatehouse").
func (a AuthConfig) Issuer() string {
	if a.TwoFactor == nil || a.TwoFactor.IssuerName == "" {
		return DefaultIssuerName
	}
	return a.TwoFactor.IssuerName
}

// TwoFactorRequired reports whether users must have a second factor.
func (a AuthConfig) TwoFactorRequired() bool {
	return a.TwoFactor != nil && a.TwoFactor.Required
}

// Password rules: the bounds of AuthConfig password.minLength, and the
// longest password any rule accepts (the hasher's input stays bounded).
const (
	DefaultPasswordMinLength = 8
	MaxPasswordMinLength     = 128
	MaxPasswordBytes         = 1024
)

// PasswordRuleError is a new password that breaks the AuthConfig's rules;
// its message says which, for the user.
type PasswordRuleError struct {
	MinLength, MaxBytes int
	TooLong             bool
}

func (e *PasswordRuleError) Error() string {
	if e.TooLong {
		return fmt.Sprintf("password must have at most %d bytes", e.MaxBytes)
	}
	return fmt.Sprintf("password must have at least %d characters", e.MinLength)
}

// PasswordMinLength is the fewest characters a new password may have.
func (a AuthConfig) PasswordMinLength() int {
	if a.Password == nil || a.Password.MinLength == 0 {
		return DefaultPasswordMinLength
	}
	return a.Password.MinLength
}

// CheckNewPassword checks pw against the AuthConfig's password rules
// (sign-up, reset and change alike); a refusal is a *PasswordRuleError.
func (a AuthConfig) CheckNewPassword(pw string) error {
	minLen := a.PasswordMinLength()
	switch {
	case len(pw) > MaxPasswordBytes:
		return &PasswordRuleError{MinLength: minLen, MaxBytes: MaxPasswordBytes, TooLong: true}
	case utf8.RuneCountInString(pw) < minLen:
		return &PasswordRuleError{MinLength: minLen, MaxBytes: MaxPasswordBytes}
	}
	return nil
}

// RememberDeviceFor is how long a browser may skip the second factor after
// the user asked to remember it; 0 when the AuthConfig does not allow it.
func (a AuthConfig) RememberDeviceFor() time.Duration {
	if a.TwoFactor == nil || a.TwoFactor.RememberDevice == nil || !a.TwoFactor.RememberDevice.Enabled {
		return 0
	}
	days := a.TwoFactor.RememberDevice.Days
	if days <= 0 {
		days = DefaultRememberDeviceDays
	}
	return time.Duration(days) * 24 * time.Hour
}

// EnrolmentGrace is how long after a second factor first became required
// for a user its enrolment may be skipped; 0 for no grace.
func (a AuthConfig) EnrolmentGrace() time.Duration {
	if a.TwoFactor == nil || a.TwoFactor.GracePeriod == nil || a.TwoFactor.GracePeriod.Days <= 0 {
		return 0
	}
	return time.Duration(a.TwoFactor.GracePeriod.Days) * 24 * time.Hour
}

// DefaultMethod is the method offered first when enrolling (default totp).
func (a AuthConfig) DefaultMethod() string {
	if a.TwoFactor == nil || a.TwoFactor.DefaultMethod == "" {
		return MethodTOTP
	}
	return a.TwoFactor.DefaultMethod
}

// Webhook returns the configured webhook, or nil.
func (a AuthConfig) Webhook() *Webhook { return a.webhook() }

// SMTP is the AuthConfig's mail server (nil when it has none); its
// password is as stored (sealed: see OpenSMTPPassword).
func (a AuthConfig) SMTP() *SMTPServer { return a.smtp() }

// ThemeOrEmpty returns the theme, or an empty one.
func (a AuthConfig) ThemeOrEmpty() Theme {
	if a.Theme == nil {
		return Theme{}
	}
	return *a.Theme
}

// TimeoutDuration is the delivery timeout (DefaultWebhookTimeout when unset).
func (w Webhook) TimeoutDuration() time.Duration {
	if w.Timeout <= 0 {
		return DefaultWebhookTimeout
	}
	return time.Duration(w.Timeout) * time.Millisecond
}

func (c Client) hasSecret() bool { return c.Secret != "" || c.SecretHash != "" }

// HasSecret reports whether the client has a secret (given now or stored).
func (c Client) HasSecret() bool { return c.hasSecret() }

// RedirectURIs are the registered redirect URIs of the authorization_code grant.
func (c Client) RedirectURIs() []string {
	if c.Auth == nil || c.Auth.AuthorizationCode == nil {
		return nil
	}
	return slices.Clone([]string(c.Auth.AuthorizationCode.RedirectURI))
}

// EffectiveGrantTypes are the grant types the client may use: grant_types
// (normalised) plus refresh_token when any grant has `refresh_token: true`
// (Aidbox enables refresh through the per-grant flag).
func (c Client) EffectiveGrantTypes() []string {
	out := make([]string, 0, len(c.GrantTypes)+1)
	for _, g := range c.GrantTypes {
		if g == "code" {
			g = GrantAuthorizationCode
		}
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	if !slices.Contains(out, GrantRefreshToken) && c.Auth != nil {
		for _, g := range []*GrantSettings{c.Auth.AuthorizationCode, c.Auth.Password} {
			if g != nil && g.RefreshToken {
				out = append(out, GrantRefreshToken)
				break
			}
		}
	}
	return out
}

// HasGrant reports whether the client may use grant (`code` is read as
// authorization_code); see EffectiveGrantTypes.
func (c Client) HasGrant(grant string) bool {
	if grant == "code" {
		grant = GrantAuthorizationCode
	}
	return slices.Contains(c.EffectiveGrantTypes(), grant)
}

// Grant returns the settings of a grant with defaults filled in: expirations
// 3600 s (access) and 30 days (refresh), token_format opaque, and
// secret_required true exactly when the client has a secret. For
// refresh_token it returns the settings of the grant that issued refresh
// tokens (authorization_code, else password).
func (c Client) Grant(grant string) GrantSettings {
	var g *GrantSettings
	if c.Auth != nil {
		switch grant {
		case "code", GrantAuthorizationCode:
			g = c.Auth.AuthorizationCode
		case GrantPassword:
			g = c.Auth.Password
		case GrantClientCredentials:
			g = c.Auth.ClientCredentials
		case GrantRefreshToken:
			g = c.Auth.AuthorizationCode
			if g == nil {
				g = c.Auth.Password
			}
		}
	}
	var out GrantSettings
	if g != nil {
		out = *g
		out.RedirectURI = slices.Clone(g.RedirectURI)
	}
	if out.AccessTokenExpiration == 0 {
		out.AccessTokenExpiration = DefaultAccessTokenExpiration
	}
	if out.RefreshTokenExpiration == 0 {
		out.RefreshTokenExpiration = DefaultRefreshTokenExpiration
	}
	if out.TokenFormat == "" {
		out.TokenFormat = DefaultTokenFormat
	}
	if out.SecretRequired == nil {
		req := c.hasSecret()
		out.SecretRequired = &req
	} else {
		req := *out.SecretRequired
		out.SecretRequired = &req
	}
	return out
}

func (g GrantSettings) secretRequired() bool { return g.SecretRequired != nil && *g.SecretRequired }

// IsPublic reports whether the client authenticates without a secret: it
// has none, or every interactive grant it uses (authorization_code,
// password) says `secret_required: false`. A public client must use PKCE.
func (c Client) IsPublic() bool {
	if !c.hasSecret() {
		return true
	}
	interactive := 0
	for _, g := range []string{GrantAuthorizationCode, GrantPassword} {
		if !slices.Contains(c.EffectiveGrantTypes(), g) {
			continue
		}
		interactive++
		if c.Grant(g).secretRequired() {
			return false
		}
	}
	return interactive > 0
}

// RefreshTokenGrace is how long a rotated refresh token of c still returns
// the pair its rotation issued: refresh_token_grace_seconds, or
// DefaultRefreshTokenGrace when unset; 0 is strict rotation.
func (c Client) RefreshTokenGrace() time.Duration {
	n := DefaultRefreshTokenGrace
	if c.RefreshTokenGraceSeconds != nil {
		n = *c.RefreshTokenGraceSeconds
	}
	return time.Duration(n) * time.Second
}

// TwoFactorRequired is the client's own requirement of a second factor:
// set reports whether the client says anything (else its AuthConfig
// decides), required what it says.
func (c Client) TwoFactorRequired() (required, set bool) {
	if c.TwoFactor == nil || c.TwoFactor.Required == nil {
		return false, false
	}
	return *c.TwoFactor.Required, true
}

// TwoFactorMethods are the factor strategies the client allows (nil: its
// AuthConfig decides).
func (c Client) TwoFactorMethods() []string {
	if c.TwoFactor == nil {
		return nil
	}
	return c.TwoFactor.Methods
}

// TwoFactorMethods are the factor strategies the AuthConfig allows (nil:
// every registered factor).
func (a AuthConfig) TwoFactorMethods() []string {
	if a.TwoFactor == nil {
		return nil
	}
	return a.TwoFactor.Methods
}

// UserLocale is the locale of a stored user document ("" when none).
func UserLocale(u store.User) string {
	var doc struct {
		Locale string `json:"locale"`
	}
	if len(u.Doc) == 0 || json.Unmarshal(u.Doc, &doc) != nil {
		return ""
	}
	return doc.Locale
}
