package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/par"
	"github.com/ory/fosite/handler/pkce"
	"github.com/ory/fosite/token/jwt"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Provider is the authorization server: fosite composed on Gatehouse's store,
// clients and keys.
type Provider struct {
	cfg      Config
	fosite   *fosite.Fosite
	fcfg     *fosite.Config
	storage  *fositeStore
	strategy *tokenStrategy
	keys     *keyManager
	secrets  *secretHasher
	idSigner *joseSigner
	// pushedKey MACs the parameters of resumed pushed requests (par.go).
	pushedKey []byte
	// dpopKey MACs DPoP nonces (dpop.go).
	dpopKey []byte
	clients *clientCache
	sealer  *secret.Sealer // at-rest encryption: signing keys, the pairs kept for a refresh grace period
	// assertions verifies private_key_jwt client assertions (assertion.go).
	assertions *fosite.Fosite

	openIDConfig []byte // precomputed discovery documents
	oauthConfig  []byte
}

// Endpoint paths, relative to the issuer.
const (
	PathAuthorize  = "/auth/authorize"
	PathToken      = "/auth/token"
	PathIntrospect = "/auth/introspect"
	PathRevoke     = "/auth/revoke"
	PathUserinfo   = "/auth/userinfo"
	PathLogout     = "/auth/logout"
	PathJWKS       = "/.well-known/jwks.json"
	PathOpenIDConf = "/.well-known/openid-configuration"
	PathOAuthConf  = "/.well-known/oauth-authorization-server"
)

// New composes fosite and loads the signing keys from the database, creating
// the first one when there is none.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	sealer, err := secret.NewSealer(secret.Derive(cfg.MasterKey, secret.PurposeAtRest))
	if err != nil {
		return nil, fmt.Errorf("key sealer: %w", err)
	}
	p := &Provider{cfg: cfg, clients: newClientCache(cfg.Now), sealer: sealer}
	p.keys = &keyManager{
		store:     cfg.Store,
		sealer:    sealer,
		now:       cfg.Now,
		logger:    cfg.Logger,
		retention: p.keyRetention,

		publication: cfg.KeyPublicationPeriod,
	}
	if err := p.keys.ensure(ctx); err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	p.secrets = newSecretHasher(cfg.Hasher, secret.Derive(cfg.MasterKey, secret.PurposeSecretsCache), cfg.Now)
	p.idSigner = &joseSigner{keys: p.keys}
	p.pushedKey = secret.Derive(cfg.MasterKey, secret.PurposePushedMark)
	p.dpopKey = secret.Derive(cfg.MasterKey, secret.PurposeDPoPNonce)

	p.fcfg = &fosite.Config{
		AccessTokenLifespan:             cfg.AccessTokenLifespan,
		RefreshTokenLifespan:            cfg.RefreshTokenLifespan,
		AuthorizeCodeLifespan:           cfg.AuthCodeLifespan,
		IDTokenLifespan:                 cfg.IDTokenLifespan,
		IDTokenIssuer:                   cfg.Issuer,
		AccessTokenIssuer:               cfg.Issuer,
		TokenURL:                        cfg.Issuer + PathToken,
		GlobalSecret:                    secret.Derive(cfg.MasterKey, secret.PurposeFosite),
		SendDebugMessagesToClients:      false,
		ScopeStrategy:                   fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:        audienceStrategy,
		EnforcePKCE:                     false, // per client: see pkceGuard
		EnforcePKCEForPublicClients:     true,
		EnablePKCEPlainChallengeMethod:  false,
		AllowedPromptValues:             []string{"login", "none", "consent", "select_account"},
		RefreshTokenScopes:              []string{scopeOffline, scopeOfflineAccess},
		JWTScopeClaimKey:                jwt.JWTScopeFieldString,
		ClientAuthenticationStrategy:    p.authenticateClient,
		ClientSecretsHasher:             p.secrets,
		MinParameterEntropy:             fositeEntropy(cfg.MinParameterLength),
		FormPostHTMLTemplate:            formPostTemplate,
		ResponseModeHandlerExtension:    &issResponseModes{issuer: cfg.Issuer},
		PushedAuthorizeRequestURIPrefix: requestURIPrefix,
		PushedAuthorizeContextLifespan:  PushedRequestLifespan,
	}
	p.storage = &fositeStore{p: p}
	p.strategy = &tokenStrategy{
		hmac:   compose.NewOAuth2HMACStrategy(p.fcfg),
		keys:   p.keys,
		issuer: cfg.Issuer,
		now:    cfg.Now,
		cfg:    p.fcfg,
	}
	p.fosite = p.compose()
	hc := cfg.HTTPClient
	if hc == nil {
		hc = notify.NewClient(cfg.AllowPrivate)
	}
	p.assertions = p.newAssertionVerifier(hc)
	if err := p.buildDiscovery(); err != nil {
		return nil, err
	}
	return p, nil
}

func (c *Config) defaults() error {
	switch {
	case c.Store == nil:
		return errors.New("oauth: Config.Store is required")
	case c.Hasher == nil:
		return errors.New("oauth: Config.Hasher is required")
	case c.Accounts == nil:
		return errors.New("oauth: Config.Accounts is required")
	case len(c.MasterKey) != secret.MasterKeyLen:
		return fmt.Errorf("oauth: master key must be %d bytes", secret.MasterKeyLen)
	case c.Issuer == "":
		return errors.New("oauth: Config.Issuer is required")
	}
	c.Issuer = strings.TrimRight(c.Issuer, "/")
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SignIn == nil {
		c.SignIn = &signin.Engine{Store: c.Store, TwoFactor: c.TwoFactor, Policy: &policy.Resolver{Store: c.Store},
			Logger: c.Logger, Now: c.Now}
	}
	if c.AuthCodeLifespan <= 0 {
		c.AuthCodeLifespan = 10 * time.Minute
	}
	if c.AccessTokenLifespan <= 0 {
		c.AccessTokenLifespan = time.Hour
	}
	if c.RefreshTokenLifespan <= 0 {
		c.RefreshTokenLifespan = 30 * 24 * time.Hour
	}
	if c.IDTokenLifespan <= 0 {
		c.IDTokenLifespan = time.Hour
	}
	if c.MinParameterLength < 0 {
		return errors.New("oauth: MinParameterLength must not be negative")
	}
	if c.KeyPublicationPeriod == 0 {
		c.KeyPublicationPeriod = DefaultKeyPublicationPeriod
	}
	if c.KeyPublicationPeriod < MinKeyPublicationPeriod {
		return fmt.Errorf("oauth: the key publication period must be at least %s (the JWKS cache lifetime plus the key refresh interval)", MinKeyPublicationPeriod)
	}
	return nil
}

// fositeEntropy is fosite's MinParameterEntropy for a minimum length: fosite
// reads 0 as its default of 8, so "no minimum" is -1.
func fositeEntropy(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// compose builds fosite from exactly the handlers Gatehouse uses (never
// ComposeAllEnabled: factories type-assert the storage and would panic on a
// method we do not implement). Order matters: the PKCE and OpenID handlers
// need the code the explicit handler issues, and the ID token's at_hash
// needs the access token.
func (p *Provider) compose() *fosite.Fosite {
	cfg, st := p.fcfg, p.storage
	strat := p.strategy
	explicit := &oauth2.AuthorizeExplicitGrantHandler{
		AccessTokenStrategy:    strat,
		RefreshTokenStrategy:   strat,
		AuthorizeCodeStrategy:  strat,
		CoreStorage:            st,
		TokenRevocationStorage: st,
		Config:                 cfg,
	}
	pk := &pkceGuard{
		Handler: &pkce.Handler{AuthorizeCodeStrategy: strat, Storage: st, Config: cfg},
		p:       p,
	}
	oidcValidator := openid.NewOpenIDConnectRequestValidator(p.idSigner, cfg)
	idTokens := &openid.IDTokenHandleHelper{IDTokenStrategy: idTokenStrategy{openid.DefaultStrategy{Signer: p.idSigner, Config: cfg}}}
	oidcExplicit := &openid.OpenIDConnectExplicitHandler{
		OpenIDConnectRequestStorage:   st,
		OpenIDConnectRequestValidator: oidcValidator,
		Config:                        cfg,
		IDTokenHandleHelper:           idTokens,
	}
	oidcRefresh := &openid.OpenIDConnectRefreshHandler{IDTokenHandleHelper: idTokens, Config: cfg}
	refresh := &refreshGrant{RefreshTokenGrantHandler: &oauth2.RefreshTokenGrantHandler{
		AccessTokenStrategy:    strat,
		RefreshTokenStrategy:   strat,
		TokenRevocationStorage: st,
		Config:                 cfg,
	}, p: p}
	clientCredentials := &oauth2.ClientCredentialsGrantHandler{
		HandleHelper: &oauth2.HandleHelper{AccessTokenStrategy: strat, AccessTokenStorage: st, Config: cfg},
		Config:       cfg,
	}
	// The password grant is deprecated upstream (OAuth 2.1 drops it); Aidbox
	// clients use it, and DESIGN.md §5 keeps it.
	//lint:ignore SA1019 the password grant is part of Gatehouse's contract
	password := &oauth2.ResourceOwnerPasswordCredentialsGrantHandler{
		ResourceOwnerPasswordCredentialsGrantStorage: st,
		HandleHelper:         &oauth2.HandleHelper{AccessTokenStrategy: strat, AccessTokenStorage: st, Config: cfg},
		RefreshTokenStrategy: strat,
		Config:               cfg,
	}
	mfaOTP := &mfaOTPGrant{
		p:                    p,
		HandleHelper:         &oauth2.HandleHelper{AccessTokenStrategy: strat, AccessTokenStorage: st, Config: cfg},
		RefreshTokenStrategy: strat,
	}
	userIDs := &userIDTokens{p: p, helper: idTokens, grantOf: []string{grantPassword, grantMFAOTP}}
	introspect := &oauth2.CoreValidator{CoreStrategy: strat, CoreStorage: st, Config: cfg}
	revoke := &oauth2.TokenRevocationHandler{TokenRevocationStorage: st, AccessTokenStrategy: strat, RefreshTokenStrategy: strat}

	cfg.AuthorizeEndpointHandlers.Append(explicit)
	cfg.AuthorizeEndpointHandlers.Append(pk)
	cfg.AuthorizeEndpointHandlers.Append(oidcExplicit)
	// userIDs after password and mfaOTP: its ID token hashes their access token.
	for _, h := range []fosite.TokenEndpointHandler{codeAudience{explicit}, pk, refresh, clientCredentials, password, mfaOTP, oidcExplicit, oidcRefresh, userIDs} {
		cfg.TokenEndpointHandlers.Append(h)
	}
	cfg.PushedAuthorizeEndpointHandlers.Append(&par.PushedAuthorizeHandler{Storage: st, Config: cfg})
	cfg.TokenIntrospectionHandlers.Append(introspect)
	cfg.RevocationHandlers.Append(revoke)
	return fosite.NewOAuth2Provider(st, cfg)
}

// Register mounts the protocol endpoints on mux.
func (p *Provider) Register(mux *http.ServeMux) {
	mux.Handle("POST "+PathToken, limitBody(p.requestClientCORS(p.handleToken)))
	mux.Handle("POST "+PathPAR, limitBody(p.requestClientCORS(p.handlePAR)))
	mux.Handle("POST "+PathIntrospect, limitBody(p.requestClientCORS(p.handleIntrospect)))
	mux.Handle("POST "+PathRevoke, limitBody(p.requestClientCORS(p.handleRevoke)))
	mux.Handle("GET "+PathUserinfo, limitBody(p.handleUserinfo))
	mux.Handle("POST "+PathUserinfo, limitBody(p.handleUserinfo))
	for path, methods := range corsEndpoints {
		mux.HandleFunc(http.MethodOptions+" "+path, p.preflight(methods))
	}
	mux.HandleFunc("GET "+PathOpenIDConf, p.handleDiscovery(&p.openIDConfig))
	mux.HandleFunc("GET "+PathOAuthConf, p.handleDiscovery(&p.oauthConfig))
	mux.HandleFunc("GET "+PathJWKS, p.handleJWKS)
}

// maxFormBytes bounds protocol request bodies: they are small forms.
const maxFormBytes = 64 << 10

// limitBody bounds the body and gives the request its memos: of the
// clients it reads (resource.WithRequestMemo; these endpoints never write
// clients) and of the token records fosite reads more than once
// (withRecordMemo).
func limitBody(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		h(w, r.WithContext(withRecordMemo(resource.WithRequestMemo(r.Context()))))
	})
}

// getClient loads client id in the view of grant ("" for the authorization
// endpoint). Missing is fosite.ErrNotFound.
func (p *Provider) getClient(ctx context.Context, id, grant string) (*client, error) {
	if id == "" {
		return nil, fosite.ErrNotFound
	}
	sc, err := p.storedClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if errors.Is(err, resource.ErrUndecodable) {
		return nil, err
	}
	if err != nil {
		return nil, storeErr("get client", err)
	}
	return viewOf(sc, grant), nil
}

// storedClient is client id from the client cache, else the store (the
// request memo, when the handler installed one, also keeps a missing
// client from being read again within the request).
func (p *Provider) storedClient(ctx context.Context, id string) (resource.StoredClient, error) {
	sc, hit, gen := p.clients.get(id)
	if hit {
		return sc, nil
	}
	sc, err := resource.FetchClient(ctx, p.cfg.Store, id)
	if err != nil {
		return resource.StoredClient{}, err
	}
	p.clients.put(id, sc, gen)
	return sc, nil
}

// Client is client id as the token endpoint sees it, through the same
// cache, for the hosted pages (theme, policy); ok is false when there is
// none.
func (p *Provider) Client(ctx context.Context, id string) (resource.Client, bool, error) {
	if id == "" {
		return resource.Client{}, false, nil
	}
	sc, err := p.storedClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return resource.Client{}, false, nil
	}
	if err != nil {
		return resource.Client{}, false, err
	}
	return sc.Client, true, nil
}

// ForgetClient drops client id from the client cache: the admin API calls it
// after changing or deleting the client, so the change applies to the next
// request.
func (p *Provider) ForgetClient(id string) { p.clients.forget(id) }

// ForgetClientsAndKeep drops every cached client and keeps the clients read from
// now on for ttl (ClientCacheTTL by default): a process that hears every
// other process's client writes can keep them longer.
func (p *Provider) ForgetClientsAndKeep(ttl time.Duration) { p.clients.forgetAll(ttl) }

// keyRetention is how long a retired key stays in the JWKS: until every
// token it may have signed has expired. Per-client access token lifespans can
// exceed the defaults, so they count too.
func (p *Provider) keyRetention(ctx context.Context) time.Duration {
	longest := max(p.cfg.AccessTokenLifespan, p.cfg.IDTokenLifespan)
	for page := 1; ; page++ {
		cs, total, err := p.cfg.Store.ListClients(ctx, store.Page{Count: 100, Page: page})
		if err != nil {
			p.cfg.Logger.WarnContext(ctx, "list clients for key retention", "err", err)
			longest = max(longest, 24*time.Hour)
			break
		}
		for _, sc := range cs {
			c, err := newClient(sc, "")
			if err != nil {
				continue
			}
			for _, g := range []string{grantAuthorizationCode, grantPassword, grantClientCredentials} {
				longest = max(longest, c.lifespan(g, fosite.AccessToken, 0))
			}
		}
		if len(cs) == 0 || page*100 >= total {
			break
		}
	}
	return longest + keyRefreshEvery + time.Minute
}

// SigningAlgorithms are the algorithms the server keeps signing keys for.
func SigningAlgorithms() []string { return slices.Clone(signingAlgs) }

// RotateKey publishes a new key for alg (one of SigningAlgorithms) and
// returns its kid and when it starts signing: after the key publication
// period, so that relying parties that cache the JWKS have seen it. The
// previous key of alg signs until then and stays in the JWKS until every
// token it signed has expired.
func (p *Provider) RotateKey(ctx context.Context, alg string) (kid string, signsFrom time.Time, err error) {
	if !slices.Contains(signingAlgs, alg) {
		return "", time.Time{}, fmt.Errorf("unsupported signing algorithm %q (want one of %s)", alg, strings.Join(signingAlgs, ", "))
	}
	return p.keys.rotate(ctx, alg)
}

func (p *Provider) now() time.Time { return p.cfg.Now().UTC() }

func (p *Provider) audit(ctx context.Context, e store.AuditEvent) {
	if p.cfg.Audit == nil {
		return
	}
	if r, ok := ctx.Value(fosite.RequestContextKey).(*http.Request); ok {
		e.RemoteAddr = remoteIP(r)
		e.RequestID = requestID(ctx, r)
	}
	_ = p.cfg.Audit.Record(ctx, e) // Record logs its own failure
}

// requestID is the request id the server's middleware validated (or
// assigned), never the caller's raw X-Request-Id header.
func requestID(ctx context.Context, r *http.Request) string {
	if id := audit.RequestID(ctx); id != "" {
		return id
	}
	return audit.RequestID(r.Context())
}

// remoteIP is the client address without the port.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
