package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

var errNoClient = errors.New("no such client")

func (h *Handler) loadClient(ctx context.Context, id string) (resource.Client, error) {
	if id == "" {
		return resource.Client{}, errNoClient
	}
	rec, err := h.Store.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return resource.Client{}, errNoClient
	}
	if err != nil {
		return resource.Client{}, fmt.Errorf("get client %q: %w", id, err)
	}
	return resource.ClientFromStore(rec)
}

var errInvalidClient = &apiError{Status: http.StatusUnauthorized, Code: "invalid_client",
	Desc: "Client authentication failed."}

// authClient authenticates the client of a sign-in step (sign-in, prepare,
// attempt, enrolment, sign-up). The API signs users in with their password,
// so the client must allow the password grant. A client whose password
// grant needs a secret sends it (client_secret, or HTTP Basic as at the
// token endpoint); one without a secret is accepted only when it lists
// allowed_origins: such a client is a single-page app, and the origin rule
// of useClient then applies to browsers.
func (c *call) authClient() (resource.Client, error) {
	ctx := c.r.Context()
	id, sec, err := c.clientCredentials()
	if err != nil {
		return resource.Client{}, err
	}
	if id == "" {
		return resource.Client{}, missing("client_id")
	}
	cl, err := c.h.loadClient(ctx, id)
	if errors.Is(err, errNoClient) {
		c.burnHash(sec)
		return resource.Client{}, errInvalidClient
	}
	if err != nil {
		return resource.Client{}, err
	}
	if err := c.useClient(cl); err != nil {
		return resource.Client{}, err
	}
	g := cl.Grant(resource.GrantPassword)
	needSecret := cl.HasSecret() && g.SecretRequired != nil && *g.SecretRequired
	switch {
	case needSecret:
		// Reserve the check per client and address before the hash, as
		// the token endpoint does; a failure keeps it and is audited.
		res, err := account.Reserve(ctx, c.h.Store, account.ClientSecretThrottle.Window, c.h.now(), account.ClientSecretLimits(cl.ID, remoteAddr(c.r))...)
		if errors.Is(err, account.ErrThrottled) {
			c.h.record(ctx, c.clientEvent(audit.LoginThrottled, cl.ID, "throttled"))
			return resource.Client{}, &apiError{Status: http.StatusTooManyRequests, Code: "invalid_client",
				Desc: "Too many failed client authentications. Try again later.", RetryAfter: time.Duration(account.RetryAfterOf(err)) * time.Second}
		}
		if err != nil {
			return resource.Client{}, err
		}
		ok, err := c.h.Hasher.Verify(ctx, cl.SecretHash, sec)
		if err != nil && !errors.Is(err, secret.ErrMalformedHash) {
			return resource.Client{}, fmt.Errorf("verify client secret: %w", err)
		}
		if !ok {
			c.h.record(ctx, c.clientEvent(audit.LoginFailure, cl.ID, "wrong_secret"))
			return resource.Client{}, errInvalidClient
		}
		if err := res.Release(ctx); err != nil {
			return resource.Client{}, err
		}
	case sec != "" && !cl.HasSecret():
		c.burnHash(sec)
		return resource.Client{}, errInvalidClient
	case len(cl.AllowedOrigins) == 0:
		return resource.Client{}, &apiError{Status: http.StatusUnauthorized, Code: "invalid_client",
			Desc: "A client without a secret must list allowed_origins to use the sign-in API."}
	}
	if !cl.HasGrant(resource.GrantPassword) {
		return resource.Client{}, fail(http.StatusForbidden, "unauthorized_client",
			"This client may not sign users in through the API: add the password grant to its grant_types.")
	}
	return cl, nil
}

// burnHash spends one password verification on a hopeless secret, so an
// unknown client costs what a wrong secret does.
func (c *call) burnHash(sec string) {
	if sec != "" {
		_, _ = c.h.Hasher.Verify(c.r.Context(), "", sec)
	}
}

// clientCredentials reads client_id/client_secret from HTTP Basic
// (form-urlencoded inside, RFC 6749 §2.3.1) or the parameters.
func (c *call) clientCredentials() (id, sec string, err error) {
	if u, pw, ok := c.r.BasicAuth(); ok {
		if c.p.get("client_secret") != "" {
			return "", "", badRequest("Use one client authentication method, not both Basic and client_secret.")
		}
		id, err1 := url.QueryUnescape(u)
		sec, err2 := url.QueryUnescape(pw)
		if err1 != nil || err2 != nil {
			return "", "", errInvalidClient
		}
		if f := c.p.get("client_id"); f != "" && f != id {
			return "", "", badRequest("The client_id differs from the one in the Authorization header.")
		}
		return id, sec, nil
	}
	return c.p.get("client_id"), c.p.get("client_secret"), nil
}

// authConfig is the AuthConfig that applies to a client.
func (h *Handler) authConfig(ctx context.Context, cl resource.Client) (resource.AuthConfig, error) {
	return h.SignIn.Policy.AuthConfig(ctx, cl)
}

// webhookOf is the delivery target of an AuthConfig's codes; its zero
// value (no endpoint) makes the second-factor service refuse to send.
func webhookOf(ac resource.AuthConfig) notify.Webhook {
	return policy.Policy{AuthConfig: ac}.Webhook()
}

// clientEvent is the audit event of a refused client secret.
func (c *call) clientEvent(kind, clientID, reason string) store.AuditEvent {
	return store.AuditEvent{Type: kind, ClientID: clientID, RemoteAddr: remoteAddr(c.r), RequestID: audit.RequestID(c.r.Context()),
		Detail: map[string]string{"surface": "client", "reason": reason}}
}
