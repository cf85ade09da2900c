package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/admin"
	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/i18n"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/passkey"
	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/static"
	"github.com/gatehouse/gatehouse/templates"
)

// App is a fully wired Gatehouse: every component built from one Config
// and one Store. cmd/gatehouse runs it; the end-to-end tests start it on a
// loopback listener.
type App struct {
	Config   config.Config
	Store    store.Store
	Logger   *slog.Logger
	Now      func() time.Time
	Hasher   *secret.PasswordHasher
	Audit    *audit.Recorder
	Accounts *account.Authenticator
	// Passwords resets and changes passwords (pages, JSON API, admin).
	Passwords *account.Passwords
	// SignUps creates self-service accounts (hosted page, JSON API).
	SignUps  *account.SignUps
	OAuth    *oauth.Provider
	Sessions *session.Manager
	// Notifier delivers second-factor codes to AuthConfig webhooks; Serve
	// closes it (waiting for background retries) on shutdown.
	Notifier *notify.Notifier
	// Mailer sends e-mail over SMTP; Serve closes it like the Notifier.
	Mailer    *notify.Mailer
	TwoFactor *twofactor.Service
	// SignIn is the sign-in engine behind the hosted pages, the JSON API
	// and the password grant.
	SignIn *signin.Engine
	// Passkeys runs the WebAuthn ceremonies; its factor is in SignIn.
	Passkeys *passkey.Service
	Admin    *admin.Handler
	Web      *web.Handler
	// API is the JSON API for apps that draw their own screens.
	API     *api.Handler
	Handler http.Handler
	// changesHeard is true while WatchChanges hears every process's writes.
	changesHeard atomic.Bool
}

// Deps are what Build needs beyond the configuration.
type Deps struct {
	Store     store.Store
	Logger    *slog.Logger
	MasterKey []byte
	// AdminPasswordHash is the argon2id PHC of the bootstrap admin password.
	AdminPasswordHash string
	// Hasher is the password hasher (nil: one from the configuration). It
	// holds the hashing work areas, so a process wants exactly one.
	Hasher *secret.PasswordHasher
	Now    func() time.Time
	// Factors are second factors of the embedding program's own, offered
	// on every surface after the built-in ones (see signin.Factor).
	Factors []signin.Factor
}

// Build wires every component. It creates the first signing key when the
// database has none.
func Build(ctx context.Context, cfg config.Config, d Deps) (*App, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	a := &App{Config: cfg, Store: d.Store, Logger: d.Logger, Now: d.Now}
	a.Hasher = d.Hasher
	if a.Hasher == nil {
		a.Hasher = NewPasswordHasher(cfg)
	}
	a.Audit = &audit.Recorder{Store: d.Store, Logger: d.Logger, Now: d.Now}
	a.Accounts = &account.Authenticator{Store: d.Store, Hasher: a.Hasher, Audit: a.Audit, Throttle: account.DefaultThrottle, Now: d.Now}

	a.Notifier = &notify.Notifier{
		Logger:       d.Logger,
		Audit:        a.Audit,
		Now:          d.Now,
		AllowPrivate: cfg.Dev || cfg.Webhook.AllowPrivate,
	}
	a.Mailer = &notify.Mailer{
		Logger:       d.Logger,
		Audit:        a.Audit,
		AllowPrivate: cfg.Dev || cfg.Webhook.AllowPrivate,
	}
	serverSMTP := notify.SMTP{
		Host: cfg.SMTP.Host, Port: cfg.SMTP.Port, Username: cfg.SMTP.Username, Password: cfg.SMTP.Password,
		TLS: cfg.SMTP.TLS, From: cfg.SMTP.From, TimeoutMS: int(cfg.SMTP.Timeout / time.Millisecond), Trusted: true,
	}
	atRest, err := secret.NewSealer(secret.Derive(d.MasterKey, secret.PurposeAtRest))
	if err != nil {
		return nil, fmt.Errorf("two-factor sealer: %w", err)
	}
	a.TwoFactor = &twofactor.Service{
		Store:    d.Store,
		Sealer:   atRest,
		CodeKey:  secret.Derive(d.MasterKey, secret.PurposeCodeMAC),
		Audit:    a.Audit,
		Notifier: a.Notifier,
		Mailer:   a.Mailer,
		SMTP:     serverSMTP,
		Mail:     &notify.MailTemplates{FS: templates.MailFS},
		Logger:   d.Logger,
		Now:      d.Now,
	}
	a.Passkeys = &passkey.Service{
		Store:     d.Store,
		Issuer:    cfg.Issuer,
		HandleKey: secret.Derive(d.MasterKey, passkey.HandleKeyPurpose),
		Audit:     a.Audit,
		Logger:    d.Logger,
		Now:       d.Now,
	}
	a.SignIn = &signin.Engine{
		Store:     d.Store,
		TwoFactor: a.TwoFactor,
		// Like the OAuth client cache: a change through this process's
		// admin API applies at once (PolicyChanged), one made by another
		// process within the second, or at once while the change feed is
		// heard (WatchChanges).
		Policy: &policy.Resolver{Store: d.Store, SMTP: serverSMTP, TTL: oauth.ClientCacheTTL, Now: d.Now},
		// The passkey factor comes after the deployment's own factors, so
		// that a user whose only factor is a code keeps that as the default.
		Factors: append(slices.Clone(d.Factors), passkey.Factor{Passkeys: a.Passkeys}),
		Logger:  d.Logger,
		Now:     d.Now,
	}
	if err := a.SignIn.Validate(); err != nil {
		return nil, fmt.Errorf("sign-in factors: %w", err)
	}
	a.Accounts.Paused = a.tellOwnerSignInPaused
	a.OAuth, err = oauth.New(ctx, oauth.Config{
		TwoFactor:            a.TwoFactor,
		SignIn:               a.SignIn,
		Issuer:               cfg.Issuer,
		MasterKey:            d.MasterKey,
		Store:                d.Store,
		Hasher:               a.Hasher,
		Accounts:             a.Accounts,
		Audit:                a.Audit,
		Logger:               d.Logger,
		Now:                  d.Now,
		AuthCodeLifespan:     cfg.Tokens.AuthCodeLifespan,
		AccessTokenLifespan:  cfg.Tokens.AccessTokenLifespan,
		RefreshTokenLifespan: cfg.Tokens.RefreshTokenLifespan,
		IDTokenLifespan:      cfg.Tokens.IDTokenLifespan,
		MinParameterLength:   cfg.OAuth.MinParameterLength,
		KeyPublicationPeriod: cfg.OAuth.KeyPublicationPeriod,
		AllowPrivate:         cfg.Dev || cfg.Webhook.AllowPrivate,
		Notifier:             a.Notifier,
	})
	if err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	a.Sessions, err = session.NewManager(session.Config{
		Store:           d.Store,
		MasterKey:       d.MasterKey,
		Issuer:          cfg.Issuer,
		IdleTimeout:     cfg.Session.IdleTimeout,
		AbsoluteTimeout: cfg.Session.AbsoluteTimeout,
		Now:             d.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	catalog, err := i18n.Load(templates.FS)
	if err != nil {
		return nil, fmt.Errorf("page catalogs: %w", err)
	}
	backchannel := func(ctx context.Context, userID string, ended []store.BrowserSession) {
		for _, s := range ended {
			a.OAuth.BackchannelLogout(ctx, userID, s.ID, session.ClientsOf(s))
		}
	}
	a.Passwords = &account.Passwords{
		Store: d.Store, Hasher: a.Hasher, Audit: a.Audit, TwoFactor: a.TwoFactor, Logger: d.Logger, Now: d.Now,
		ResetPage: cfg.Issuer + web.PathResetPassword, SessionsEnded: backchannel,
	}
	a.SignUps = &account.SignUps{Store: d.Store, TwoFactor: a.TwoFactor, Audit: a.Audit, Sealer: atRest, Now: d.Now}
	a.Admin = &admin.Handler{
		Store:             d.Store,
		Hasher:            a.Hasher,
		Sealer:            atRest,
		Audit:             a.Audit,
		Logger:            d.Logger,
		Now:               d.Now,
		TwoFactor:         a.TwoFactor,
		ServerSMTP:        serverSMTP,
		AdminUser:         cfg.Admin.User,
		AdminPasswordHash: d.AdminPasswordHash,
		VerifyBearer:      a.OAuth.VerifyAdminToken,
		ClientChanged:     a.OAuth.ForgetClient,
		SessionsEnded:     backchannel,
		PolicyChanged:     a.SignIn.Policy.Forget,
		Options:           resource.Options{Dev: cfg.Dev, AllowPrivate: cfg.Dev || cfg.Webhook.AllowPrivate, Strategies: a.SignIn.Strategies(), Messages: catalog},
	}
	a.Web = &web.Handler{
		Catalog:   catalog,
		Store:     d.Store,
		Sessions:  a.Sessions,
		OAuth:     a.OAuth,
		Accounts:  a.Accounts,
		Passwords: a.Passwords,
		SignUps:   a.SignUps,
		Hasher:    a.Hasher,
		Audit:     a.Audit,
		Logger:    d.Logger,
		Now:       d.Now,
		Issuer:    cfg.Issuer,
		TwoFactor: a.TwoFactor,
		SignIn:    a.SignIn,
		Passkeys:  a.Passkeys,
	}
	a.API = &api.Handler{
		Store:     d.Store,
		OAuth:     a.OAuth,
		TwoFactor: a.TwoFactor,
		Accounts:  a.Accounts,
		Passwords: a.Passwords,
		SignUps:   a.SignUps,
		Hasher:    a.Hasher,
		Audit:     a.Audit,
		Logger:    d.Logger,
		Now:       d.Now,
		Admin:     a.Admin.RequireAdmin,
		SignIn:    a.SignIn,
		Passkeys:  a.Passkeys,
	}
	a.Web.PasskeyAPI = a.API.PasskeyList()

	var proxies []*net.IPNet
	for _, p := range cfg.TrustedProxies {
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", p, err)
		}
		proxies = append(proxies, n)
	}
	metrics := NewMetrics()
	metrics.AddMailer(a.Mailer)
	metrics.AddChangeFeed(a.changesHeard.Load)
	a.Audit.Observe = metrics.ObserveAudit
	if db, ok := d.Store.(interface{ SQLDB() (*sql.DB, error) }); ok {
		if sqlDB, err := db.SQLDB(); err == nil {
			metrics.AddDB(sqlDB)
		}
	}
	srv := &Server{
		Logger:         d.Logger,
		Store:          d.Store,
		Routes:         []Registrar{a.OAuth, a.Web, a.Admin, a.API},
		HSTS:           strings.HasPrefix(cfg.Issuer, "https://"),
		Static:         static.FS,
		TrustedProxies: proxies,
		ClientIPHeader: cfg.ClientIPHeader,
		AdminOnly:      a.Admin.RequireAdmin,
		Pprof:          cfg.Pprof,
		Metrics:        metrics,
		RequestTimeout: cfg.Server.RequestTimeout,
		MaxInFlight:    cfg.Server.MaxInFlight,
	}
	a.Handler = srv.Handler()
	return a, nil
}

// NewPasswordHasher builds the argon2id hasher the configuration asks for.
func NewPasswordHasher(cfg config.Config) *secret.PasswordHasher {
	p := secret.DefaultArgon2
	p.MemoryKiB, p.Iterations, p.Parallelism = cfg.Password.MemoryKiB, cfg.Password.Iterations, cfg.Password.Parallelism
	return secret.NewPasswordHasher(p, cfg.Password.MaxConcurrent)
}

// Serve runs the HTTP server on ln until ctx ends, then shuts down
// gracefully (in-flight requests get up to grace to finish).
func (a *App) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	srv := &http.Server{
		Handler:           a.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	go a.purgeExpired(ctx)
	go a.WatchChanges(ctx)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.Logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	// The background sends first (each bounded by its delivery's timeout),
	// so that their retries still reach the queues the Closes then drain.
	a.Passwords.WaitForSends()
	a.Accounts.WaitForNotices()
	if err := a.Notifier.Close(sctx); err != nil {
		a.Logger.Warn("webhook retries cut short by shutdown", "err", err)
	}
	if err := a.Mailer.Close(sctx); err != nil {
		a.Logger.Warn("mail retries cut short by shutdown", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// heardCacheTTL is how long cached clients and policies live while the
// store's change feed hears every write of every process: the feed, not the
// lifetime, keeps them current, and its loss shortens them again at once.
const heardCacheTTL = 5 * time.Minute

// WatchChanges keeps this process's caches of clients and policies in step
// with the writes of every process sharing the database, until ctx ends. On
// a store without a change feed (SQLite) it returns at once, and the caches
// keep their one-second lifetime.
func (a *App) WatchChanges(ctx context.Context) {
	feed, ok := a.Store.(store.ChangeFeed)
	if !ok {
		return
	}
	// Each start and stop of the feed empties the caches: writes before a
	// start were not heard, and entries kept long must not outlive a stop.
	live := func(heard bool) {
		ttl := oauth.ClientCacheTTL
		if heard {
			ttl = heardCacheTTL
		}
		a.OAuth.ForgetClientsAndKeep(ttl)
		a.SignIn.Policy.ForgetAndKeep(ttl)
		a.changesHeard.Store(heard)
		a.Logger.Info("change feed", "heard", heard, "cache_ttl", ttl)
	}
	changed := func(c store.Change) {
		if c.Kind == store.ChangeClient {
			a.OAuth.ForgetClient(c.ID)
		}
		// As the admin API does for a Client too: the policy cache is keyed
		// by AuthConfig, but a client's write may change which one it names.
		a.SignIn.Policy.Forget()
	}
	if err := feed.WatchChanges(ctx, live, changed); err != nil && !errors.Is(err, store.ErrNoChangeFeed) {
		a.Logger.Warn("change feed stopped", "err", err)
	}
}

// purgeExpired deletes what has expired every few minutes: browser
// sessions, OAuth rows, one-time codes, throttling counters and passkey
// challenges.
func (a *App) purgeExpired(ctx context.Context) {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := a.Now().UTC()
		for _, p := range []struct {
			what  string
			purge func() (int64, error)
		}{
			{"browser sessions", func() (int64, error) { return a.Store.DeleteExpiredBrowserSessions(ctx, now) }},
			{"tokens", func() (int64, error) { return a.Store.DeleteExpiredOAuthRequests(ctx, now) }},
			{"remembered devices", func() (int64, error) { return a.Store.DeleteExpiredRememberedDevices(ctx, now) }},
			// Sends are throttled by counting the codes created within
			// twofactor.SendWindow, so only older codes may go.
			{"one-time codes", func() (int64, error) {
				return a.Store.DeleteExpiredOneTimeCodes(ctx, now.Add(-twofactor.SendWindow))
			}},
			// The longest-lived reader of a counter (a spent mfa_token's
			// marker) looks back 5 minutes; an hour leaves room.
			{"counters", func() (int64, error) { return a.Store.DeleteStaleCounters(ctx, now.Add(-time.Hour)) }},
			{"passkey challenges", func() (int64, error) { return a.Store.DeleteExpiredWebAuthnChallenges(ctx, now) }},
		} {
			if n, err := p.purge(); err != nil {
				a.Logger.Warn("purge expired "+p.what, "err", err)
			} else if n > 0 {
				a.Logger.Debug("purged expired "+p.what, "count", n)
			}
		}
	}
}

// tellOwnerSignInPaused mails the owner of an account whose sign-in from
// one address was just paused by wrong passwords, through the delivery of
// the AuthConfig that applies to the attempt's client (the default one when
// the client is unknown).
func (a *App) tellOwnerSignInPaused(ctx context.Context, u store.User, at account.Attempt, failures int, until time.Time) {
	var client resource.Client
	if at.ClientID != "" {
		if rec, err := a.Store.GetClient(ctx, at.ClientID); err == nil {
			if c, err := resource.ClientFromStore(rec); err == nil {
				client = c
			}
		}
	}
	pol, err := a.SignIn.Policy.For(ctx, client)
	if err != nil {
		a.Logger.WarnContext(ctx, "sign-in paused: owner not told, no policy", "user", u.ID, "err", err)
		return
	}
	m := twofactor.Meta{ClientID: at.ClientID, RemoteAddr: at.RemoteAddr, RequestID: at.RequestID}
	if !a.TwoFactor.NotifySignInPaused(ctx, u, pol.Webhook(), at.RemoteAddr, failures, until, m) {
		a.Logger.InfoContext(ctx, "sign-in paused: owner not told (no e-mail address, no delivery configured, or it failed)", "user", u.ID, "request_id", at.RequestID)
	}
}
