package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/x/errorsx"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// private_key_jwt client authentication (RFC 7523 §2.2, OIDC Core §9): a
// client whose token_endpoint_auth_method is private_key_jwt sends a JWT
// signed with one of the keys of its jwks or jwks_uri as client_assertion.
// fosite's DefaultClientAuthenticationStrategy checks it (signature, iss =
// sub = client_id, exp, the algorithm the client registered, aud, jti); this
// file gives it what it asks: the audiences that name this server, a key
// fetcher that cannot be pointed inward, and the store of used jtis.

const (
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// maxAssertionLifetime bounds an assertion's exp: its jti is kept until
	// then, so an assertion valid for a year would be a year-long row.
	maxAssertionLifetime = time.Hour

	clientKeysTTL      = 5 * time.Minute  // a fetched jwks_uri is used this long
	clientKeysMinAge   = 30 * time.Second // an unknown kid refetches no sooner
	clientKeysTimeout  = 5 * time.Second
	clientKeysMaxSets  = 1000
	clientKeysMaxBytes = 64 << 10
)

// assertionConfig is fosite's configuration with the audiences an
// assertion may name and the key fetcher.
type assertionConfig struct {
	*fosite.Config
	audiences []string
	keys      fosite.JWKSFetcherStrategy
}

func (c *assertionConfig) GetTokenURLs(context.Context) []string { return c.audiences }

func (c *assertionConfig) GetJWKSFetcherStrategy(context.Context) fosite.JWKSFetcherStrategy {
	return c.keys
}

// newAssertionVerifier is a fosite instance used only for its client
// authentication: an assertion may name the issuer or any endpoint that
// authenticates clients (RFC 7523 §3, RFC 9126 §2).
func (p *Provider) newAssertionVerifier(httpClient *http.Client) *fosite.Fosite {
	iss := p.cfg.Issuer
	return &fosite.Fosite{
		Store: p.storage,
		Config: &assertionConfig{
			Config:    p.fcfg,
			audiences: []string{iss + PathToken, iss, iss + PathPAR, iss + PathIntrospect, iss + PathRevoke},
			keys: &clientKeyFetcher{
				client:       httpClient,
				allowPrivate: p.cfg.AllowPrivate,
				now:          p.now,
				logger:       p.cfg.Logger,
				sets:         map[string]fetchedKeys{},
			},
		},
	}
}

// usesAssertion reports whether the request authenticates with a client
// assertion.
func usesAssertion(form url.Values) bool {
	return form.Get("client_assertion_type") != "" || form.Get("client_assertion") != ""
}

// assertedClient authenticates a request that carries client_assertion and
// returns the client in the view of grant.
func (p *Provider) assertedClient(ctx context.Context, r *http.Request, form url.Values, view string) (*client, error) {
	if _, _, ok := r.BasicAuth(); ok || form.Get("client_secret") != "" {
		return nil, errorsx.WithStack(fosite.ErrInvalidRequest.WithHint("Use one client authentication method, not a client assertion and a secret."))
	}
	if t := form.Get("client_assertion_type"); t != clientAssertionType {
		return nil, errorsx.WithStack(fosite.ErrInvalidRequest.WithHintf("client_assertion_type must be %s.", clientAssertionType))
	}
	fc, err := p.assertions.DefaultClientAuthenticationStrategy(ctx, r, form)
	if err != nil {
		return nil, p.assertionRefused(ctx, err)
	}
	c, err := p.getClient(ctx, fc.GetID(), view)
	if err != nil {
		return nil, errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(err))
	}
	return c, nil
}

// assertionRefused turns fosite's verdict into invalid_client (RFC 7523
// §3.2), keeping its hint, and audits it; a store failure stays
// temporarily_unavailable.
func (p *Provider) assertionRefused(ctx context.Context, err error) error {
	if unavailable(err) || errors.Is(err, fosite.ErrTemporarilyUnavailable) {
		return errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(err))
	}
	hint := "The client assertion is not valid."
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		switch {
		case errors.Is(err, fosite.ErrJTIKnown):
			hint = "The client assertion was used before: each needs a new jti."
		case rfc.HintField != "":
			hint = rfc.HintField
		}
	}
	p.audit(ctx, store.AuditEvent{Type: audit.LoginFailure, Detail: map[string]string{"surface": "client", "reason": "bad_assertion"}})
	return errorsx.WithStack(fosite.ErrInvalidClient.WithHint(hint).WithWrap(err))
}

// assertionSignature keys a used jti: its SHA-256, so the store holds no
// value a client chose.
func assertionSignature(jti string) string {
	sum := sha256.Sum256([]byte(jti))
	return hex.EncodeToString(sum[:])
}

// ClientAssertionJWTValid answers fosite's "was this jti used?" with "not
// yet": fosite asks just before SetClientAssertionJWT, whose insert
// decides atomically, so a read here would only cost a query.
func (s *fositeStore) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT records jti as used until exp. Two requests with
// the same jti race on the insert: one wins, the other is a replay.
func (s *fositeStore) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	now := s.p.now()
	if exp.After(now.Add(maxAssertionLifetime)) {
		return errorsx.WithStack(fosite.ErrInvalidClient.WithHintf("The client assertion expires more than %s from now; use a shorter exp.", maxAssertionLifetime))
	}
	rec := store.OAuthRequest{
		Kind:        store.KindClientAssertion,
		Signature:   assertionSignature(jti),
		RequestedAt: now,
		ExpiresAt:   exp,
		Active:      true,
		Session:     []byte("{}"),
	}
	err := s.st().CreateOAuthRequest(ctx, rec)
	if errors.Is(err, store.ErrConflict) {
		// An expired record the cleanup has not purged yet frees its jti.
		if old, gerr := s.st().GetOAuthRequest(ctx, rec.Kind, rec.Signature); gerr == nil && !now.Before(old.ExpiresAt) {
			if derr := s.st().DeleteOAuthRequest(ctx, rec.Kind, rec.Signature); derr == nil {
				err = s.st().CreateOAuthRequest(ctx, rec)
			}
		}
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		return errorsx.WithStack(fosite.ErrJTIKnown)
	case err != nil:
		return storeErr("record client assertion jti", err)
	}
	return nil
}

// clientKeyFetcher reads clients' jwks_uri for fosite: through the
// webhook client (no proxy, no redirects, non-public addresses refused at
// dial time unless allowPrivate), within clientKeysTimeout, at most
// clientKeysMaxBytes, keeping each set clientKeysTTL. An assertion with an
// unknown kid makes fosite ask again past the cache; that refetch happens
// at most every clientKeysMinAge per location, so a stream of bad
// assertions cannot turn the server into a load generator.
type clientKeyFetcher struct {
	client       *http.Client
	allowPrivate bool
	now          func() time.Time
	logger       *slog.Logger

	mu   sync.Mutex
	sets map[string]fetchedKeys // by location
}

type fetchedKeys struct {
	set     *jose.JSONWebKeySet
	fetched time.Time
}

var _ fosite.JWKSFetcherStrategy = (*clientKeyFetcher)(nil)

func (f *clientKeyFetcher) Resolve(ctx context.Context, location string, ignoreCache bool) (*jose.JSONWebKeySet, error) {
	now := f.now()
	f.mu.Lock()
	e, ok := f.sets[location]
	f.mu.Unlock()
	if ok {
		age := now.Sub(e.fetched)
		if age < clientKeysMinAge || (!ignoreCache && age < clientKeysTTL) {
			return e.set, nil
		}
	}
	set, err := f.fetch(ctx, location)
	if err != nil {
		f.logger.WarnContext(ctx, "client jwks_uri unreadable", "host", hostOf(location), "err", err)
		return nil, errorsx.WithStack(fosite.ErrInvalidClient.WithHint("The client's jwks_uri could not be read.").WithWrap(err))
	}
	f.mu.Lock()
	if len(f.sets) >= clientKeysMaxSets {
		for loc, old := range f.sets {
			if now.Sub(old.fetched) >= clientKeysTTL {
				delete(f.sets, loc)
			}
		}
		if len(f.sets) >= clientKeysMaxSets {
			f.sets = map[string]fetchedKeys{}
		}
	}
	f.sets[location] = fetchedKeys{set: set, fetched: now}
	f.mu.Unlock()
	return set, nil
}

func (f *clientKeyFetcher) fetch(ctx context.Context, location string) (*jose.JSONWebKeySet, error) {
	if err := notify.ValidateEndpoint(ctx, location, f.allowPrivate, nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, clientKeysTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, notify.StripURL(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answered %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, clientKeysMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(body) > clientKeysMaxBytes {
		return nil, fmt.Errorf("larger than %d bytes", clientKeysMaxBytes)
	}
	return resource.ParseClientJWKS(body)
}

// hostOf names a URL's host for logs (its path and query may carry more
// than an operator wants in them).
func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}
