package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/i18n"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/passkey"
	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Paths of the hosted pages.
const (
	PathAuthorize      = "/auth/authorize"
	PathLogin          = "/auth/login"
	PathLoginTwoFactor = "/auth/login/two-factor"
	PathConsent        = "/auth/consent"
	PathLogout         = "/auth/logout"

	PathTwoFactor              = "/auth/two-factor"
	PathTwoFactorEnable        = "/auth/two-factor/enable"
	PathTwoFactorDisable       = "/auth/two-factor/disable"
	PathTwoFactorRecoveryCodes = "/auth/two-factor/recovery-codes"
	PathTwoFactorMethod        = "/auth/two-factor/method"
)

// Authentication methods (RFC 8176) and the acr values derived from them.
const (
	AMRPassword = signin.AMRPassword
	AMROTP      = signin.AMROTP
	AMRMFA      = signin.AMRMFA

	ACRPassword          = signin.ACRPassword
	ACRMFA               = signin.ACRMFA
	ACRPhishingResistant = signin.ACRPhishingResistant
)

// maxFormBytes bounds a hosted page's form body: a username, a password, a
// code and a token fit many times over.
const maxFormBytes = 64 << 10

// maxCodeFormBytes bounds a form that carries a second-factor code. It is
// larger so that an absurd code (a megabyte of digits) still reaches the
// code check, is counted as a failure and gets the one "Invalid code"
// answer, like every other wrong code.
const maxCodeFormBytes = 2 << 20

// ReauthWindow is how recent a password must be to turn two-step
// verification on or off or to get new recovery codes.
const ReauthWindow = 10 * time.Minute

// Handler serves the hosted pages. Set the fields, then call Register.
type Handler struct {
	Store    store.Store
	Sessions *session.Manager
	OAuth    *oauth.Provider
	Accounts *account.Authenticator
	Audit    *audit.Recorder
	Logger   *slog.Logger
	Now      func() time.Time
	// Issuer is the public base URL. The pages link and redirect with
	// relative paths, so they do not need it; it is kept so the server
	// wires every component with the same settings.
	Issuer string
	// SignIn is the sign-in engine the API and the token endpoint share:
	// it decides what a password leads to, offers, prepares and checks the
	// second factors. Nil means no second factor can be checked: logins
	// that need one stop at an error page instead of completing without it.
	SignIn *signin.Engine
	// Policy resolves the AuthConfig of a client for the pages' themes
	// (nil: SignIn's, else one over Store without a cache).
	Policy *policy.Resolver
	// TwoFactor enrols, disables and reports second factors (the settings
	// pages and enrolment inside a login) and sends the code of the login
	// prompt through the AuthConfig's webhook. Nil: those pages answer
	// "unavailable" and a login that needs an enrolment fails closed.
	TwoFactor *twofactor.Service
	// Passkeys runs passkey ceremonies: passwordless sign-in on the login
	// page and the /auth/passkeys settings page (nil: neither is offered;
	// the passkey second factor is the engine's either way).
	Passkeys *passkey.Service
	// PasskeyAPI serves GET /auth/passkeys to requests with an
	// Authorization header (the JSON API shares the path).
	PasskeyAPI http.Handler
	// Passwords resets forgotten passwords by e-mail and changes them
	// (nil: neither page is offered).
	Passwords *account.Passwords
	// SignUps creates the accounts of the hosted sign-up page, hashing
	// their passwords with Hasher (nil: no sign-up page).
	SignUps *account.SignUps
	Hasher  *secret.PasswordHasher

	// Catalog holds the pages' messages (nil: the embedded catalogs).
	Catalog *i18n.Catalog
	// OnMissingMessage, if set, is told of every page message id that the
	// catalogs lack (tests fail on it).
	OnMissingMessage func(id string)

	pages   map[string]*template.Template
	catalog *i18n.Catalog
}

// Register mounts the hosted pages on mux and parses the templates.
func (h *Handler) Register(mux *http.ServeMux) {
	h.pages = mustParsePages()
	h.catalog = h.Catalog
	if h.catalog == nil {
		h.catalog = mustLoadCatalog()
	}
	mux.Handle("GET "+PathAuthorize, h.wrap(h.authorize))
	mux.Handle("POST "+PathAuthorize, h.wrap(h.authorize))
	mux.Handle("GET "+PathLogin, h.wrap(h.loginPage))
	mux.Handle("POST "+PathLogin, h.wrap(h.loginSubmit))
	mux.Handle("GET "+PathLoginTwoFactor, h.wrap(h.twoFactorPage))
	mux.Handle("POST "+PathLoginTwoFactor, h.wrap(h.twoFactorSubmit))
	mux.Handle("GET "+PathConsent, h.wrap(h.consentPage))
	mux.Handle("POST "+PathConsent, h.wrap(h.consentSubmit))
	mux.Handle("GET "+PathLogout, h.wrap(h.logout))
	mux.Handle("POST "+PathLogout, h.wrap(h.logout))
	mux.Handle("GET "+PathTwoFactor, h.wrap(h.settingsPage))
	mux.Handle("GET "+PathTwoFactorEnable, h.wrap(h.enablePage))
	mux.Handle("POST "+PathTwoFactorEnable, h.wrap(h.enableSubmit))
	mux.Handle("GET "+PathTwoFactorDisable, h.wrap(h.disablePage))
	mux.Handle("POST "+PathTwoFactorDisable, h.wrap(h.disableSubmit))
	mux.Handle("GET "+PathTwoFactorRecoveryCodes, h.wrap(h.regeneratePage))
	mux.Handle("POST "+PathTwoFactorRecoveryCodes, h.wrap(h.regenerateSubmit))
	mux.Handle("GET "+PathTwoFactorMethod, h.wrap(h.methodPage))
	mux.Handle("POST "+PathTwoFactorMethod, h.wrap(h.methodSubmit))
	mux.Handle("POST "+PathTwoFactorDevices, h.wrap(h.devicesSubmit))
	mux.Handle("POST "+PathLoginTwoFactorSkip, h.wrap(h.skipEnrolmentSubmit))
	h.registerPasskeyRoutes(mux)
	h.registerPasswordRoutes(mux)
	h.registerSignUpRoutes(mux)
}

// wrap gives every response of the hosted pages the strict headers, also
// redirects and errors written by other packages (oauth's redirects), and
// a request memo: a page reads its client and resolves its AuthConfig once
// however many helpers (theme, two-factor rules, the code check) need them.
// The pages never write Clients or AuthConfigs.
//
// When the page has loaded the browser session, wrap settles it at the end:
// the sliding of its idle expiry, when due and not written by the page's own
// Save or Rotate, is written then (one read and at most one write per
// request). It changes no cookie, so it may follow the response.
func (h *Handler) wrap(fn http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w, csp{})
		slot := &sessionSlot{}
		ctx := context.WithValue(resource.WithRequestMemo(r.Context()), sessionSlotKey{}, slot)
		fn(w, r.WithContext(ctx))
		if slot.sess == nil {
			return
		}
		// The client may be gone; the slide is still owed.
		ctx = context.WithoutCancel(ctx)
		if err := h.Sessions.Settle(ctx, slot.sess); err != nil && !errors.Is(err, session.ErrGone) {
			h.log().WarnContext(ctx, "slide browser session expiry", "err", err, "request_id", audit.RequestID(ctx))
		}
	})
}

// sessionSlot holds the session a page loaded, for wrap to settle, and
// what the page learnt that decides its language: the signed-in user and
// the AuthConfig of its theme.
type sessionSlot struct {
	sess       *session.Session
	user       *store.User
	authConfig *resource.AuthConfig
	// args fill placeholders of a message that a helper chose for the
	// page before it renders (addMessageArgs).
	args map[string]any
}

type sessionSlotKey struct{}

// loadBrowserSession is Sessions.Load for a page: wrap settles what it
// returns when the page is done.
func (h *Handler) loadBrowserSession(r *http.Request) (*session.Session, error) {
	sess, err := h.Sessions.Load(r)
	if err != nil {
		return nil, err
	}
	if slot, ok := r.Context().Value(sessionSlotKey{}).(*sessionSlot); ok {
		slot.sess = sess
	}
	if v := r.URL.Query().Get("ui_locales"); v != "" {
		sess.SetUILocales(v)
	}
	return sess, nil
}

// now is the handler's clock, in UTC and at microsecond precision: times
// go through the database, which keeps no more, and are compared after.
func (h *Handler) now() time.Time { return h.Now().UTC().Truncate(time.Microsecond) }

func (h *Handler) log() *slog.Logger {
	if h.Logger == nil {
		return slog.Default()
	}
	return h.Logger
}

// clientIP is the address the server's middleware resolved (trusting
// X-Forwarded-For only from configured proxies), else the peer.
func clientIP(r *http.Request) string {
	if ip := audit.RemoteAddr(r.Context()); ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// loadSession loads the browser session; on a storage failure it renders
// the error page and returns nil.
func (h *Handler) loadSession(w http.ResponseWriter, r *http.Request) *session.Session {
	sess, err := h.loadBrowserSession(r)
	if err != nil {
		h.unavailable(w, r, err)
		return nil
	}
	return sess
}

// saveSession writes sess; on failure it renders the error page and
// returns false.
func (h *Handler) saveSession(w http.ResponseWriter, r *http.Request, sess *session.Session) bool {
	err := h.Sessions.Save(r.Context(), w, sess)
	if errors.Is(err, session.ErrGone) {
		h.renderError(w, r, http.StatusBadRequest, tr("Your session has ended. Please sign in again."), &link{Href: PathLogin, Text: tr("Sign in")}, nil)
		return false
	}
	if err != nil {
		h.unavailable(w, r, err)
		return false
	}
	return true
}

// formToken saves the session, so that its CSRF token holds on the next
// POST, and returns the token.
func (h *Handler) formToken(w http.ResponseWriter, r *http.Request, sess *session.Session) (string, bool) {
	sess.CSRFToken()
	if !h.saveSession(w, r, sess) {
		return "", false
	}
	// Saving a new session replaces its token with the stored one.
	return sess.CSRFToken(), true
}

// currentUser returns the signed-in user; withFactors reads, in the same
// statement, the factors the sign-in engine decides from (for a request
// that will ask it). A session whose user was deleted or disabled is
// destroyed: it must not outlive the account.
func (h *Handler) currentUser(ctx context.Context, w http.ResponseWriter, sess *session.Session, withFactors bool) (store.User, bool, error) {
	if !sess.Authenticated() {
		return store.User{}, false, nil
	}
	read := h.Store.GetUser
	if withFactors {
		read = h.Store.GetUserWithFactors
	}
	u, err := read(ctx, sess.UserID())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, false, fmt.Errorf("get session user: %w", err)
	}
	if err != nil || u.Inactive {
		if err := h.Sessions.Destroy(ctx, w, sess); err != nil {
			return store.User{}, false, err
		}
		return store.User{}, false, nil
	}
	h.noteUser(ctx, &u)
	return u, true, nil
}

// noteUser keeps the request's signed-in user for the page's language.
func (h *Handler) noteUser(ctx context.Context, u *store.User) {
	if slot, ok := ctx.Value(sessionSlotKey{}).(*sessionSlot); ok {
		slot.user = u
	}
}

// policy is the resolver of the pages' AuthConfigs.
func (h *Handler) policy() *policy.Resolver {
	switch {
	case h.Policy != nil:
		return h.Policy
	case h.SignIn != nil && h.SignIn.Policy != nil:
		return h.SignIn.Policy
	}
	return &policy.Resolver{Store: h.Store}
}

// displayName is how a page names the signed-in user.
func displayName(u store.User) string {
	if u.Email != "" {
		return u.Email
	}
	return u.ID
}

func (h *Handler) recordAudit(ctx context.Context, e store.AuditEvent) {
	if h.Audit == nil {
		return
	}
	if e.RemoteAddr == "" {
		e.RemoteAddr = audit.RemoteAddr(ctx)
	}
	if e.RequestID == "" {
		e.RequestID = audit.RequestID(ctx)
	}
	_ = h.Audit.Record(ctx, e) // Record logs its own failures; a page does not fail on audit.
}
