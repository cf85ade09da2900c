package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/passkey"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Paths of the API, relative to the issuer.
const (
	PathSignIn             = "/auth/sign-in"
	PathSignInPrepare      = "/auth/sign-in/prepare"
	PathSignInAttempt      = "/auth/sign-in/attempt"
	PathSignInEnroll       = "/auth/sign-in/enroll"
	PathSignInEnrollDone   = "/auth/sign-in/enroll/confirm"
	PathAuthenticators     = "/auth/mfa/authenticators"
	PathTOTP               = "/auth/mfa/totp"
	PathTOTPConfirm        = "/auth/mfa/totp/confirm"
	PathSMS                = "/auth/mfa/sms"
	PathEmail              = "/auth/mfa/email"
	PathChallenge          = "/auth/mfa/challenge"
	PathRecoveryCodes      = "/auth/mfa/recovery-codes"
	PathRecoveryVerify     = "/auth/mfa/recovery-codes/verify"
	PathBindable           = "/auth/mfa/bindable"
	PathVerificationCodes  = "/auth/verification-codes"
	PathVerifyDestination  = "/auth/verify-destination"
	PathSignUp             = "/auth/sign-up"
	PathSignUpCode         = "/auth/sign-up/verification-code"
	pathAuthenticator      = "/auth/mfa/{id}"
	pathAdminAuthenticator = "/User/{id}/$authenticators"
)

// Limits of the API.
const (
	// MaxBody bounds every request body.
	MaxBody = 64 << 10
	// FreshLogin is how recent the password behind a Bearer token must be
	// for enrolling, disabling or regenerating (DESIGN.md §6).
	FreshLogin = 10 * time.Minute
	// BindableLimit is how many look-ups a user may make per hour over
	// bindable and verification-codes: the answer tells whether someone
	// else holds a phone or address.
	BindableLimit = resource.DestinationLookups
	// SignUpSendsPerAddress is how many sign-up codes one client address
	// may ask for per hour, whatever the destinations, here and on the
	// hosted page together: sign-up is open to anyone, and every code is
	// an SMS or e-mail someone pays for.
	SignUpSendsPerAddress = account.SignUpCodesPerAddress
)

// Handler serves the JSON API. Store, OAuth, TwoFactor, Accounts,
// Passwords, Hasher and Audit are required; Admin enables the admin equivalents under
// /User/{id}/$…, guarded by that middleware (admin.Handler.RequireAdmin).
type Handler struct {
	Store     store.Store
	OAuth     *oauth.Provider
	TwoFactor *twofactor.Service
	Accounts  *account.Authenticator
	Hasher    *secret.PasswordHasher
	Audit     *audit.Recorder
	Logger    *slog.Logger
	Now       func() time.Time
	Admin     func(http.Handler) http.Handler
	// SignIn is the sign-in engine every surface shares; the deployment's
	// own factors are registered there (signin.Engine.Factors).
	SignIn *signin.Engine
	// Passwords resets and changes passwords.
	Passwords *account.Passwords
	// SignUps creates the accounts of POST /auth/sign-up.
	SignUps *account.SignUps
	// Passkeys manages passkeys (nil: the passkey endpoints answer 404).
	Passkeys *passkey.Service
}

// Register mounts the API on mux. Like ServeMux with clashing patterns, it
// panics when two factors claim one strategy: a wiring mistake to fix
// before the server starts.
func (h *Handler) Register(mux *http.ServeMux) {
	if err := h.SignIn.Validate(); err != nil {
		panic("api: " + err.Error())
	}
	public := []struct {
		method, path string
		fn           func(*call) error
	}{
		{http.MethodPost, PathSignIn, h.signIn},
		{http.MethodPost, PathSignInPrepare, h.prepare},
		{http.MethodPost, PathSignInAttempt, h.attempt},
		{http.MethodPost, PathSignInEnroll, h.enroll},
		{http.MethodPost, PathSignInEnrollDone, h.enrollConfirm},
		{http.MethodPost, PathSignInEnrollSkip, h.enrollSkip},
		{http.MethodPost, PathRecoveryVerify, h.recoveryVerify},
		{http.MethodPost, PathSignUpCode, h.signUpCode},
		{http.MethodPost, PathSignUp, h.signUp},
		{http.MethodPost, PathPasswordReset, h.passwordReset},
		{http.MethodPost, PathPasswordResetConfirm, h.passwordResetConfirm},
		{http.MethodPost, PathPassword, h.changePassword},
		{http.MethodGet, PathAuthenticators, h.listAuthenticators},
		{http.MethodPost, PathTOTP, h.startTOTP},
		{http.MethodPost, PathTOTPConfirm, h.confirmTOTP},
		{http.MethodPost, PathSMS, h.enableCodeMethod(twofactor.MethodSMS)},
		{http.MethodPost, PathEmail, h.enableCodeMethod(twofactor.MethodEmail)},
		{http.MethodPost, PathChallenge, h.challenge},
		{http.MethodDelete, pathAuthenticator, h.deleteAuthenticator},
		{http.MethodPost, PathRecoveryCodes, h.regenerateRecoveryCodes},
		{http.MethodGet, PathBindable, h.bindable},
		{http.MethodPost, PathVerificationCodes, h.sendVerificationCode},
		{http.MethodPost, PathVerifyDestination, h.verifyDestination},
		{http.MethodGet, PathDevices, h.listDevices},
		{http.MethodDelete, pathDevice, h.deleteDevice},
		{http.MethodPost, PathPasskeyRegistrationOption, h.passkeyRegistrationOptions},
		{http.MethodPost, PathPasskeys, h.registerPasskey},
		{http.MethodPatch, pathPasskey, h.renamePasskey},
		{http.MethodDelete, pathPasskey, h.deletePasskey},
	}
	for _, e := range public {
		mux.Handle(e.method+" "+e.path, h.endpoint(e.fn))
	}
	// Preflights: these patterns cover every path above and name a method
	// no other package routes on these paths, so they cannot clash.
	for _, p := range []string{PathSignIn, PathSignIn + "/", "/auth/mfa/", PathVerificationCodes, PathVerifyDestination, PathSignUp, PathSignUp + "/", PathPasskeys, PathPasskeys + "/", PathDevices, PathDevices + "/", PathPasswordReset, PathPasswordReset + "/", PathPassword} {
		mux.HandleFunc(http.MethodOptions+" "+p, h.preflight)
	}
	if h.Admin != nil {
		mux.Handle("GET "+pathAdminAuthenticator, h.Admin(h.adminEndpoint(h.adminListAuthenticators)))
		mux.Handle("DELETE "+pathAdminAuthenticator+"/{type}", h.Admin(h.adminEndpoint(h.adminResetAuthenticator)))
		mux.Handle("DELETE "+pathAdminPasskey, h.Admin(h.adminEndpoint(h.adminDeletePasskey)))
		mux.Handle("POST /User/{id}/$verification-codes", h.Admin(h.adminEndpoint(h.adminSendVerificationCode)))
		mux.Handle("POST /User/{id}/$verify-destination", h.Admin(h.adminEndpoint(h.adminVerifyDestination)))
		mux.Handle("POST "+pathAdminPasswordReset, h.Admin(h.adminEndpoint(h.adminSendPasswordReset)))
	}
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now().UTC()
	}
	return time.Now().UTC()
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// record stores an audit event of the API's own (sign-up, verified
// destination); the services record theirs.
func (h *Handler) record(ctx context.Context, e store.AuditEvent) {
	if h.Audit == nil {
		return
	}
	_ = h.Audit.Record(ctx, e) // Record logs its own failure
}

// Audit event types of this package.
const (
	EventSignUp              = account.EventSignUp
	EventDestinationVerified = audit.DestinationVerified
)

// remoteAddr is the client address the server's middleware resolved
// (trusting X-Forwarded-For only from configured proxies), else the peer.
func remoteAddr(r *http.Request) string {
	if a := audit.RemoteAddr(r.Context()); a != "" {
		return a
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// meta describes the request for the second-factor service's audit events.
func (c *call) meta(clientID string) twofactor.Meta {
	return twofactor.Meta{ClientID: clientID, RemoteAddr: remoteAddr(c.r), RequestID: audit.RequestID(c.r.Context())}
}

// isStoreMissing reports a record that does not exist.
func isStoreMissing(err error) bool { return errors.Is(err, store.ErrNotFound) }
