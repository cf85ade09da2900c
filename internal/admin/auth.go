package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// AdminScope is the scope a Bearer token needs for the admin API.
const AdminScope = "gatehouse:admin"

// Credential cache and failure throttle. A verified Basic credential is
// remembered for a minute under an HMAC of user, password and stored hash
// (keyed per process, so the map holds nothing a dump could use), so that a
// script issuing many requests does not pay argon2 on each. Only successes
// are cached; a changed password or hash misses the cache.
const (
	credCacheTTL  = time.Minute
	credCacheMax  = 64
	failWindow    = 15 * time.Minute
	failPerIP     = 20
	authChallenge = `Basic realm="gatehouse", Bearer`
)

func failKey(ip string) string { return "adminfail:ip:" + ip }

// RequireAdmin guards an operator endpoint outside the resource API (pprof)
// with the same authentication.
func (h *Handler) RequireAdmin(next http.Handler) http.Handler { return h.authenticated(next) }

// authenticated runs next only for an authenticated admin and puts the actor
// in the request context.
func (h *Handler) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, status, msg := h.authenticate(w, r)
		if status != 0 {
			switch status {
			case http.StatusUnauthorized:
				w.Header().Set("WWW-Authenticate", authChallenge)
				h.outcome(w, r, status, resource.CodeLogin, msg)
			case http.StatusForbidden:
				w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+AdminScope+`"`)
				h.outcome(w, r, status, resource.CodeForbidden, msg)
			case http.StatusTooManyRequests:
				w.Header().Set("Retry-After", "900")
				h.outcome(w, r, status, resource.CodeTooCostly, msg)
			case http.StatusServiceUnavailable:
				h.unavailable(w, r)
			default:
				h.outcome(w, r, status, resource.CodeException, msg)
			}
			return
		}
		who.remote = remoteHost(r)
		who.requestID = h.requestID(w, r)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, who)))
	})
}

func (h *Handler) requestID(w http.ResponseWriter, r *http.Request) string {
	if h.RequestID != nil {
		return h.RequestID(r)
	}
	if id := audit.RequestID(r.Context()); id != "" {
		return id
	}
	return w.Header().Get("X-Request-Id")
}

// failureStatus is 503 for a failure a retry may not meet (storage
// unavailable, the deadline passed), 500 otherwise.
func failureStatus(err error) int {
	if store.Unavailable(err) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// authenticate returns the actor, or a status (401, 403, 429, 500, 503) and a
// message that says nothing about which part of a credential was wrong.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (actor, int, string) {
	ctx := r.Context()
	authz := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(authz, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer") && token != "":
		if h.VerifyBearer == nil {
			return actor{}, http.StatusUnauthorized, "Bearer tokens are not accepted here; use Basic authentication"
		}
		clientID, scopes, err := h.VerifyBearer(ctx, strings.TrimSpace(token))
		if store.Unavailable(err) {
			h.Logger.WarnContext(ctx, "admin bearer token: storage unavailable", "err", err)
			return actor{}, http.StatusServiceUnavailable, ""
		}
		if err != nil {
			h.Logger.InfoContext(ctx, "admin bearer token refused", "err", err, "remote", remoteHost(r))
			return actor{}, http.StatusUnauthorized, "invalid or expired token"
		}
		if !slices.Contains(scopes, AdminScope) {
			return actor{}, http.StatusForbidden, "the token lacks the " + AdminScope + " scope"
		}
		return actor{name: "client:" + clientID}, 0, ""
	case strings.EqualFold(scheme, "Basic"):
		user, pass, ok := r.BasicAuth()
		if !ok {
			return actor{}, http.StatusUnauthorized, "authentication required"
		}
		return h.checkBasic(r, h.requestID(w, r), user, pass)
	}
	return actor{}, http.StatusUnauthorized, "authentication required"
}

func (h *Handler) checkBasic(r *http.Request, requestID, user, pass string) (actor, int, string) {
	ctx := r.Context()
	now := h.now()
	key := h.credKey(user, pass)
	if h.cached(key, now) {
		return actor{name: "basic:" + user}, 0, ""
	}
	ip := remoteHost(r)
	// Hash both names so the comparison takes the same time whatever their
	// lengths; always verify the password so a wrong user costs the same.
	a, b := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(h.AdminUser))
	userOK := subtle.ConstantTimeCompare(a[:], b[:]) == 1 && h.AdminUser != ""
	// The attempt is reserved (account.Reserve: one atomic statement) once
	// it holds a hashing slot, before the hash: a burst gets at most
	// failPerIP checks per window, and a script's parallel requests queued
	// for a slot do not count as failures.
	var res account.Reservation
	passOK, err := h.Hasher.VerifyAdmitted(ctx, h.AdminPasswordHash, pass, func() (err error) {
		res, err = account.Reserve(ctx, h.Store, failWindow, now, account.Limit{Key: failKey(ip), Max: failPerIP})
		return err
	})
	if errors.Is(err, account.ErrThrottled) {
		h.Logger.WarnContext(ctx, "admin authentication throttled", "remote", ip)
		if h.Audit != nil {
			_ = h.Audit.Record(ctx, store.AuditEvent{Type: audit.LoginThrottled, RemoteAddr: ip, RequestID: requestID,
				Detail: map[string]string{"surface": "admin-api", "reason": "throttled"}})
		}
		return actor{}, http.StatusTooManyRequests, "too many failed attempts; try again later"
	}
	if err != nil && !errors.Is(err, secret.ErrMalformedHash) {
		h.Logger.ErrorContext(ctx, "verify admin password", "err", err)
		return actor{}, failureStatus(err), "internal error"
	}
	if errors.Is(err, secret.ErrMalformedHash) {
		h.Logger.ErrorContext(ctx, "the configured admin password hash is not an argon2id PHC string")
	}
	if userOK && passOK {
		if err := res.Release(ctx); err != nil {
			h.Logger.ErrorContext(ctx, "release admin auth attempt", "err", err)
		}
		h.remember(key, now)
		return actor{name: "basic:" + user}, 0, ""
	}
	if h.Audit != nil {
		_ = h.Audit.Record(ctx, store.AuditEvent{Type: audit.LoginFailure, RemoteAddr: ip, RequestID: requestID,
			Detail: map[string]string{"surface": "admin-api", "reason": "bad_credentials"}})
	}
	return actor{}, http.StatusUnauthorized, "invalid credentials"
}

func (h *Handler) credKey(user, pass string) string {
	h.authOnce.Do(func() { h.authKey = secret.RandomBytes(32) })
	return secret.MAC(h.authKey, user, pass, h.AdminUser, h.AdminPasswordHash)
}

func (h *Handler) cached(key string, now time.Time) bool {
	h.authMu.Lock()
	defer h.authMu.Unlock()
	exp, ok := h.authCache[key]
	if ok && now.Before(exp) {
		return true
	}
	if ok {
		delete(h.authCache, key)
	}
	return false
}

func (h *Handler) remember(key string, now time.Time) {
	h.authMu.Lock()
	defer h.authMu.Unlock()
	if h.authCache == nil {
		h.authCache = map[string]time.Time{}
	}
	if len(h.authCache) >= credCacheMax {
		for k, exp := range h.authCache {
			if !now.Before(exp) {
				delete(h.authCache, k)
			}
		}
		if len(h.authCache) >= credCacheMax {
			clear(h.authCache)
		}
	}
	h.authCache[key] = now.Add(credCacheTTL)
}
