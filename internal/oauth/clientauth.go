package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/x/errorsx"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

const (
	secretCacheTTL = 5 * time.Minute
	secretCacheMax = 10000
)

// secretHasher checks client secrets (argon2id PHC strings at rest) and
// remembers successful checks for a few minutes, so a busy client does not
// pay argon2 on every token request. The cache key is an HMAC over the
// client id, its version, its stored hash and the presented secret: a
// changed client or secret misses, and the cache holds nothing that helps
// an attacker who reads process memory find a secret. Failures are never
// cached, so every wrong guess costs a full argon2 verification. Checks of
// the same key that arrive while one runs wait for its answer: a client
// opening 32 connections at once costs one hash, not 32 queued ones (which
// took the first token requests of a load test to ~0.5 s).
type secretHasher struct {
	hasher *secret.PasswordHasher
	key    []byte
	now    func() time.Time

	mu       sync.Mutex
	cache    map[string]time.Time // key → expiry
	inflight map[string]*secretCheck
	// verifyHash is the argon2 verification (hasher.VerifyAdmitted; tests
	// stub it): admit, when not nil, runs once a hashing slot is held.
	verifyHash func(ctx context.Context, phc, presented string, admit func() error) (bool, error)
}

// secretCheck is one running verification; err is set before done closes.
type secretCheck struct {
	done    chan struct{}
	err     error
	waiters int // requests waiting for it, under secretHasher.mu
}

var _ fosite.Hasher = (*secretHasher)(nil)

func newSecretHasher(h *secret.PasswordHasher, key []byte, now func() time.Time) *secretHasher {
	return &secretHasher{hasher: h, key: key, now: now, cache: map[string]time.Time{}, inflight: map[string]*secretCheck{}, verifyHash: h.VerifyAdmitted}
}

// Hash is not used by Gatehouse (the resource package hashes secrets) but
// completes fosite.Hasher.
func (h *secretHasher) Hash(ctx context.Context, data []byte) ([]byte, error) {
	phc, err := h.hasher.Hash(ctx, string(data))
	return []byte(phc), err
}

// Compare is fosite's entry point; it knows no client, so the id and
// version parts of the key are empty (the stored hash still tells secrets apart).
func (h *secretHasher) Compare(ctx context.Context, hash, data []byte) error {
	return h.verify(ctx, "", 0, string(hash), string(data), nil)
}

var errWrongSecret = errors.New("client secret does not match")

// remembered reports whether this exact secret was verified for this client
// version within secretCacheTTL.
func (h *secretHasher) remembered(clientID string, version int64, phc, presented string) bool {
	k := secret.MAC(h.key, clientID, strconv.FormatInt(version, 10), phc, presented)
	h.mu.Lock()
	defer h.mu.Unlock()
	exp, ok := h.cache[k]
	return ok && h.now().Before(exp)
}

// verify checks secret against phc; phc "" (unknown client, no secret)
// verifies a dummy hash so the answer takes as long and is always "no".
// Requests presenting the same secret at once share one check; only that
// check calls admit (the throttle's reservation), once it holds a hashing
// slot, and its error (a throttled one too) is everyone's answer.
func (h *secretHasher) verify(ctx context.Context, clientID string, version int64, phc, presented string, admit func() error) error {
	k := secret.MAC(h.key, clientID, strconv.FormatInt(version, 10), phc, presented)
	for {
		h.mu.Lock()
		exp, ok := h.cache[k]
		if ok && h.now().Before(exp) {
			h.mu.Unlock()
			return nil
		}
		running := h.inflight[k]
		if running == nil {
			c := &secretCheck{done: make(chan struct{})}
			h.inflight[k] = c
			h.mu.Unlock()
			c.err = h.check(ctx, k, phc, presented, admit)
			h.mu.Lock()
			delete(h.inflight, k)
			h.mu.Unlock()
			close(c.done)
			return c.err
		}
		running.waiters++
		h.mu.Unlock()
		select {
		case <-running.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		// The same key means the same secret against the same hash, so
		// that answer is this one too, unless it was the other request
		// giving up: then check again.
		if err := running.err; err == nil || !isContextErr(err) {
			return err
		}
	}
}

// check runs the argon2 verification and caches a success under k.
func (h *secretHasher) check(ctx context.Context, k, phc, presented string, admit func() error) error {
	ok, err := h.verifyHash(ctx, phc, presented, admit)
	if err != nil && !errors.Is(err, secret.ErrMalformedHash) {
		return err
	}
	if !ok {
		return errWrongSecret
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.cache) >= secretCacheMax {
		for ck, ce := range h.cache {
			if !now.Before(ce) {
				delete(h.cache, ck)
			}
		}
		if len(h.cache) >= secretCacheMax {
			h.cache = map[string]time.Time{}
		}
	}
	h.cache[k] = now.Add(secretCacheTTL)
	return nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// credentials reads client_id/client_secret from HTTP Basic (RFC 6749
// §2.3.1: form-urlencoded inside Basic) or the body. Using both is refused.
func credentials(r *http.Request, form url.Values) (id, sec string, basic bool, err error) {
	if u, p, ok := r.BasicAuth(); ok {
		if form.Get("client_secret") != "" {
			return "", "", true, errorsx.WithStack(fosite.ErrInvalidRequest.WithHint("Use one client authentication method, not both Basic and client_secret."))
		}
		if id, err = url.QueryUnescape(u); err != nil {
			return "", "", true, errorsx.WithStack(fosite.ErrInvalidClient.WithHint("The client id in the Authorization header is not form-urlencoded."))
		}
		if sec, err = url.QueryUnescape(p); err != nil {
			return "", "", true, errorsx.WithStack(fosite.ErrInvalidClient.WithHint("The client secret in the Authorization header is not form-urlencoded."))
		}
		if f := form.Get("client_id"); f != "" && f != id {
			return "", "", true, errorsx.WithStack(fosite.ErrInvalidRequest.WithHint("The client_id in the body differs from the one in the Authorization header."))
		}
		return id, sec, true, nil
	}
	return form.Get("client_id"), form.Get("client_secret"), false, nil
}

// authenticateClient is fosite's ClientAuthenticationStrategy for the token,
// PAR and revocation endpoints: client_secret_basic, client_secret_post,
// private_key_jwt (assertion.go), or none when the grant in use does not
// require a secret. Unknown client and wrong secret are the same
// invalid_client and cost the same argon2 verification.
func (p *Provider) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	view := grantAuthorizationCode
	if gt := form.Get("grant_type"); gt == grantMFAOTP {
		// The mfa-otp grant finishes a password grant: same secret rules.
		view = grantPassword
	} else if gt != "" {
		view = gt
	}
	return p.authenticate(ctx, r, form, view, false)
}

// authenticate checks the client of a request by assertion or secret and
// returns it in the view of grant; confidential refuses a client that
// presents neither (introspection).
func (p *Provider) authenticate(ctx context.Context, r *http.Request, form url.Values, view string, confidential bool) (*client, error) {
	if usesAssertion(form) {
		return p.assertedClient(ctx, r, form, view)
	}
	id, sec, _, err := credentials(r, form)
	if err != nil {
		return nil, err
	}
	if id == "" {
		return nil, errorsx.WithStack(fosite.ErrInvalidClient.WithHint("Client credentials are missing."))
	}
	return p.checkClient(ctx, id, sec, view, confidential)
}

// checkClient loads client id in the given view and checks the secret.
// confidential demands a secret even where the grant would not (introspection).
// A secret that is not a remembered success is checked only after an
// attempt is reserved per client and per address (clientThrottle); a
// failure keeps the reservation and is audited.
func (p *Provider) checkClient(ctx context.Context, id, sec, view string, confidential bool) (*client, error) {
	c, err := p.getClient(ctx, id, view)
	if errors.Is(err, fosite.ErrNotFound) {
		return nil, p.refuseSecret(ctx, id, sec, "unknown_client")
	}
	if err != nil {
		return nil, errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(err))
	}
	if c.usesAssertions() {
		// Its keys authenticate it, not a secret (nor nothing).
		if sec != "" {
			_ = p.secrets.verify(ctx, "", 0, "", sec, nil)
			p.auditClientFailure(ctx, id, "wrong_method")
		}
		return nil, errorsx.WithStack(fosite.ErrInvalidClient.WithHint("This client authenticates with private_key_jwt: send a client_assertion."))
	}
	if !confidential && c.IsPublic() && (sec == "" || c.secretHash == "") {
		if sec != "" {
			// A secret for a client that has none: someone is confused or guessing.
			return nil, p.refuseSecret(ctx, id, sec, "no_secret")
		}
		return c, nil
	}
	if p.secrets.remembered(c.GetID(), c.version, c.secretHash, sec) {
		return c, nil
	}
	// The check is reserved once it holds a hashing slot: the requests
	// queued for one (a cold start under load) are not failures yet. A
	// request that shared another's check reserved nothing: its zero
	// Reservation releases nothing.
	var res account.Reservation
	err = p.secrets.verify(ctx, c.GetID(), c.version, c.secretHash, sec, func() (err error) {
		res, err = p.reserveSecretCheck(ctx, c.GetID())
		return err
	})
	var fe *fosite.RFC6749Error
	switch {
	case errors.As(err, &fe):
		return nil, err // the reservation's answer: throttled or unavailable
	case errors.Is(err, errWrongSecret):
		p.auditClientFailure(ctx, id, "wrong_secret")
		return nil, errorsx.WithStack(fosite.ErrInvalidClient)
	case err != nil:
		return nil, errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(err))
	}
	if err := res.Release(ctx); err != nil {
		return nil, errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(err))
	}
	return c, nil
}

func (p *Provider) clientAddr(ctx context.Context) string {
	if a := audit.RemoteAddr(ctx); a != "" {
		return a
	}
	if r, ok := ctx.Value(fosite.RequestContextKey).(*http.Request); ok {
		return remoteIP(r)
	}
	return ""
}

// reserveSecretCheck reserves one secret check for client id ("" for none)
// and the caller's address; a full window answers a throttled invalid_client.
func (p *Provider) reserveSecretCheck(ctx context.Context, id string) (account.Reservation, error) {
	res, err := account.Reserve(ctx, p.cfg.Store, account.ClientSecretThrottle.Window, p.now(), account.ClientSecretLimits(id, p.clientAddr(ctx))...)
	var te *account.ThrottledError
	if errors.As(err, &te) {
		p.audit(ctx, store.AuditEvent{Type: audit.LoginThrottled, ClientID: id, Detail: map[string]string{"surface": "client", "reason": "throttled"}})
		return account.Reservation{}, errorsx.WithStack(fosite.ErrInvalidClient.WithHint("Too many failed client authentications; try again later.").WithWrap(&clientThrottled{te}))
	}
	if err != nil {
		return account.Reservation{}, errorsx.WithStack(fosite.ErrTemporarilyUnavailable.WithWrap(storeErr("reserve client check", err)))
	}
	return res, nil
}

// clientThrottled marks an invalid_client that the token endpoint answers
// with 429 and Retry-After.
type clientThrottled struct{ *account.ThrottledError }

func (e *clientThrottled) Unwrap() error { return e.ThrottledError }

// refuseSecret answers a secret for an unknown client or one without a
// secret: the same dummy hash as a real check, counted on the address.
func (p *Provider) refuseSecret(ctx context.Context, id, sec, reason string) error {
	var admit func() error
	if sec != "" {
		admit = func() error {
			_, err := p.reserveSecretCheck(ctx, "")
			return err
		}
	}
	var fe *fosite.RFC6749Error
	if err := p.secrets.verify(ctx, "", 0, "", sec, admit); errors.As(err, &fe) {
		return err // throttled, or the reservation could not be made
	}
	if sec != "" {
		p.auditClientFailure(ctx, id, reason)
	}
	return errorsx.WithStack(fosite.ErrInvalidClient)
}

func (p *Provider) auditClientFailure(ctx context.Context, id, reason string) {
	// An unknown id is not stored as a client id: it is whatever the caller typed.
	e := store.AuditEvent{Type: audit.LoginFailure, Detail: map[string]string{"surface": "client", "reason": reason}}
	if reason != "unknown_client" {
		e.ClientID = id
	}
	p.audit(ctx, e)
}
