package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// adminEndpoint is endpoint for the admin equivalents, which answer
// errors as the admin API does: an OperationOutcome.
func (h *Handler) adminEndpoint(fn func(*call) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		c := &call{h: h, w: w, r: r}
		p, perr := parseParams(w, r)
		if perr != nil {
			c.writeOutcome(perr)
			return
		}
		c.p = p
		if err := fn(c); err != nil {
			c.writeOutcome(err)
		}
	})
}

func (c *call) writeOutcome(err error) {
	ae := c.asAPIError(err, "admin api request failed")
	code := resource.CodeInvalid
	switch ae.Status {
	case http.StatusNotFound:
		code = resource.CodeNotFound
	case http.StatusConflict:
		code = resource.CodeConflict
	case http.StatusTooManyRequests:
		code = resource.CodeTooCostly
		c.w.Header().Set("Retry-After", fmt.Sprint(int(ae.RetryAfter.Seconds())))
	case http.StatusRequestEntityTooLarge:
		code = resource.CodeTooCostly
	case http.StatusServiceUnavailable:
		code = resource.CodeTransient
		c.w.Header().Set("Retry-After", fmt.Sprint(int(ae.RetryAfter.Seconds())))
	case http.StatusInternalServerError:
		code = resource.CodeException
	case http.StatusUnsupportedMediaType:
		code = resource.CodeNotSupported
	}
	if ae.Status == http.StatusBadRequest {
		code = resource.CodeValue
	}
	writeJSON(c.w, ae.Status, resource.NewOutcome(code, ae.Desc))
}

var errNoUser = fail(http.StatusNotFound, "not_found", "No such user.")

// adminUser loads the user named in the path.
func (c *call) adminUser() (store.User, error) {
	id := c.r.PathValue("id")
	u, err := c.h.Store.GetUser(c.r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, errNoUser
	}
	if err != nil {
		return store.User{}, fmt.Errorf("get user %q: %w", id, err)
	}
	return u, nil
}

// adminAuthConfig is the AuthConfig of ?client_id= (or the body's), else
// the one that applies without a client.
func (c *call) adminAuthConfig() (resource.AuthConfig, string, error) {
	ctx := c.r.Context()
	id := strings.TrimSpace(c.p.get("client_id"))
	var cl resource.Client
	if id != "" {
		var err error
		cl, err = c.h.loadClient(ctx, id)
		if errors.Is(err, errNoClient) {
			return resource.AuthConfig{}, "", fail(http.StatusUnprocessableEntity, "invalid_request", "No such client.")
		}
		if err != nil {
			return resource.AuthConfig{}, "", err
		}
	}
	ac, err := c.h.authConfig(ctx, cl)
	return ac, id, err
}

// adminListAuthenticators is GET /User/{id}/$authenticators.
func (h *Handler) adminListAuthenticators(c *call) error {
	u, err := c.adminUser()
	if err != nil {
		return err
	}
	body, err := h.authenticators(c, u.ID)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, body)
}

// adminResetAuthenticator is DELETE /User/{id}/$authenticators/{type}: the
// administrator's reset, no code asked, every session of the user ended.
func (h *Handler) adminResetAuthenticator(c *call) error {
	ctx := c.r.Context()
	u, err := c.adminUser()
	if err != nil {
		return err
	}
	tf, err := h.SignIn.TwoFactorOf(ctx, u.ID)
	if err != nil {
		return err
	}
	typ := c.r.PathValue("type")
	due := resource.TOTPEnrolmentDue(tf) && typ == twofactor.MethodTOTP
	if !(tf.Enabled && tf.Method == typ) && !due {
		return fail(http.StatusNotFound, "not_found", "The user has no such authenticator.")
	}
	m := metaOf(c.r)
	if err := h.TwoFactor.Reset(ctx, u.ID, m); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// adminSendVerificationCode is POST /User/{id}/$verification-codes:
// {channel, destination?, client_id?}. For an id no user has yet, with a
// destination, the code is for the user a PUT /User/{id} with
// phoneVerificationCode or emailVerificationCode is about to create
// (Freshcom's createCustomer): it is bound to that id like any other.
func (h *Handler) adminSendVerificationCode(c *call) error {
	u, err := c.adminUser()
	if errors.Is(err, errNoUser) {
		u, err = futureUser(c.r.PathValue("id"), c.p)
	}
	if err != nil {
		return err
	}
	channel, dest, err := channelDestination(c.p, u)
	if err != nil {
		return err
	}
	ac, clientID, err := c.adminAuthConfig()
	if err != nil {
		return err
	}
	m := metaOf(c.r)
	m.ClientID = clientID
	body, err := h.sendVerification(c.r.Context(), u, channel, dest, ac, m)
	if err != nil {
		return err
	}
	return c.json(http.StatusAccepted, body)
}

// adminVerifyDestination is POST /User/{id}/$verify-destination: {channel,
// destination?, code}, the code the user received.
func (h *Handler) adminVerifyDestination(c *call) error {
	ctx := c.r.Context()
	u, err := c.adminUser()
	if err != nil {
		return err
	}
	channel, dest, err := channelDestination(c.p, u)
	if err != nil {
		return err
	}
	rec, err := h.verifyAndSet(ctx, u.ID, channel, dest, c.p.get("code"), metaOf(c.r))
	if err != nil {
		return err
	}
	view, err := h.userView(ctx, rec)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, view)
}

// futureUser stands for the user id will name once created: no
// destination of its own, so the request must give one (it is also what
// the webhook payload shows as the user's).
func futureUser(id string, p params) (store.User, error) {
	if resource.ValidateID(id) != nil {
		return store.User{}, errNoUser
	}
	u := store.User{ID: id}
	channel, dest, err := channelDestination(p, u)
	if err != nil {
		return store.User{}, err
	}
	if channel == twofactor.MethodSMS {
		u.PhoneNumber = dest
	} else {
		u.Email = dest
	}
	return u, nil
}
