package oauth

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/ory/fosite"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Config for New.
type Config struct {
	Issuer    string // public base URL, e.g. http://127.0.0.1:8080; endpoints are Issuer+"/auth/token" etc.
	MasterKey []byte // 32 bytes; fosite's global secret and the key-sealing key are derived from it
	Store     store.Store
	Hasher    *secret.PasswordHasher // client secrets are argon2id PHC strings at rest
	Accounts  *account.Authenticator // password grant
	// TwoFactor lets the password grant finish with a second factor
	// (`otp`, mfa_token, grant urn:gatehouse:grant-type:mfa-otp). nil keeps
	// the grant closed to users with a second factor: 403 mfa_required
	// without an mfa_token, and the mfa-otp grant is refused.
	TwoFactor *twofactor.Service
	// SignIn is the sign-in engine the password and mfa-otp grants ask
	// (nil: one over Store and TwoFactor with the built-in factors only).
	SignIn *signin.Engine
	Audit  *audit.Recorder
	Logger *slog.Logger
	Now    func() time.Time

	AuthCodeLifespan     time.Duration // default 10m
	AccessTokenLifespan  time.Duration // default 1h
	RefreshTokenLifespan time.Duration // default 30d
	IDTokenLifespan      time.Duration // default 1h

	// MinParameterLength is the shortest state and nonce accepted; 0 (the
	// default) sets no minimum, as RFC 6749 and OIDC Core set none. 8 is
	// fosite's historical entropy check.
	MinParameterLength int
	// KeyPublicationPeriod is how long a new signing key is published in
	// the JWKS before it signs (default and minimum: see
	// DefaultKeyPublicationPeriod and MinKeyPublicationPeriod).
	KeyPublicationPeriod time.Duration

	// HTTPClient makes the outbound calls: clients' jwks_uri. nil: the
	// webhook client (notify.NewClient), which refuses non-public
	// addresses unless AllowPrivate.
	HTTPClient *http.Client
	// Notifier delivers back-channel logout tokens (nil: none are sent).
	Notifier *notify.Notifier
	// AllowPrivate lets those calls use http and reach private addresses
	// (--dev, GATEHOUSE_WEBHOOK_ALLOW_PRIVATE), like webhooks.
	AllowPrivate bool
}

// AuthorizeRequest is a validated authorization request, handed to the
// hosted pages so they can sign the user in and ask for consent.
type AuthorizeRequest struct {
	ClientID, RedirectURI, State, Nonce, ResponseType, LoginHint string
	Scopes                                                       []string
	Prompt                                                       []string // subset of login, none, consent (select_account reads as login)
	MaxAge                                                       int      // seconds; -1 when absent
	ACRValues                                                    []string // acr_values, in order of preference
	// ACRClaim are the acr values the claims parameter asks for
	// (id_token or userinfo acr: value or values); ACREssential says
	// whether that request is essential.
	ACRClaim     []string
	ACREssential bool
	Client       resource.Client
	Query        url.Values // the original parameters, to resume the request after login

	ar fosite.AuthorizeRequester
}

// AuthorizeError is a refused authorization request. When Redirectable is
// false the redirect URI could not be trusted (unknown client, unregistered
// URI): the caller renders an HTML page and must never redirect.
type AuthorizeError struct {
	Redirectable bool
	Code         string
	Description  string

	err error
	ar  fosite.AuthorizeRequester // set when Redirectable
}

func (e *AuthorizeError) Error() string {
	if e.Description == "" {
		return "authorize: " + e.Code
	}
	return "authorize: " + e.Code + ": " + e.Description
}

func (e *AuthorizeError) Unwrap() error { return e.err }

// Errors for WriteAuthorizeError: the OAuth error codes the hosted pages send
// back to the client.
var (
	ErrLoginRequired       = errors.New("login_required")
	ErrConsentRequired     = errors.New("consent_required")
	ErrAccessDenied        = errors.New("access_denied")
	ErrInteractionRequired = errors.New("interaction_required")
	// ErrUnmetAuthenticationRequirements: the session does not reach the
	// level the request or the client asks for, and the user cannot be
	// asked (prompt=none) or cannot reach it (OpenID Connect Core 1.0
	// errata, unmet_authentication_requirements).
	ErrUnmetAuthenticationRequirements = errors.New("unmet_authentication_requirements")
)

// Grant is what the hosted pages established about the user for one
// authorization request.
type Grant struct {
	Subject   string
	SessionID string
	ACR       string
	AuthTime  time.Time
	AMR       []string
	Scopes    []string // granted: a subset of the requested and allowed scopes
	// LoginRequestedAt is when the hosted pages sent the user to sign in for
	// this very request (zero when they did not). A sign-in at or after it
	// satisfies max_age, however many seconds the login itself took.
	LoginRequestedAt time.Time
	// User is the subject's record when the caller read it in this same
	// request (the hosted pages check the signed-in user first); nil makes
	// CompleteAuthorize read it.
	User *store.User
}
