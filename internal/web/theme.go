package web

import (
	"context"
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/store"
)

func defaultTheme() themeView {
	return themeView{Title: "Gatehouse", Brand: "Gatehouse"}
}

// loadClient reads a client, through the OAuth provider's client cache
// when there is one (a change made on another process shows within its
// TTL, as at the token endpoint); ok is false when it does not exist.
func (h *Handler) loadClient(ctx context.Context, id string) (resource.Client, bool, error) {
	if h.OAuth != nil {
		return h.OAuth.Client(ctx, id)
	}
	return loadClient(ctx, h.Store, id)
}

func loadClient(ctx context.Context, st store.Store, id string) (resource.Client, bool, error) {
	if id == "" {
		return resource.Client{}, false, nil
	}
	sc, err := resource.FetchClient(ctx, st, id)
	if errors.Is(err, store.ErrNotFound) {
		return resource.Client{}, false, nil
	}
	if err != nil {
		return resource.Client{}, false, err
	}
	return sc.Client, true, nil
}

// authConfig resolves the AuthConfig that applies to client (nil: none known).
func (h *Handler) authConfig(ctx context.Context, client *resource.Client) (resource.AuthConfig, error) {
	var c resource.Client
	if client != nil {
		c = *client
	}
	return h.policy().AuthConfig(ctx, c)
}

// themeFor is the look of the pages shown for client (nil: none known). A
// theme that cannot be read falls back to the built-in one: a styling
// problem must not stop anyone signing in.
func (h *Handler) themeFor(ctx context.Context, client *resource.Client) themeView {
	t := defaultTheme()
	ac, err := h.authConfig(ctx, client)
	if err != nil {
		h.log().WarnContext(ctx, "theme unavailable, using the default", "err", err)
		return t
	}
	if slot, ok := ctx.Value(sessionSlotKey{}).(*sessionSlot); ok {
		slot.authConfig = &ac
	}
	th := ac.ThemeOrEmpty()
	if th.Title != "" {
		t.Title = th.Title
	}
	if th.Brand != "" {
		t.Brand = th.Brand
	}
	// The resource validates styleUrl on write; a value that could not go
	// into the CSP is dropped rather than loaded against the policy.
	if th.StyleURL != "" && (styleSource(th.StyleURL) != "" || session.LocalPath(th.StyleURL)) {
		t.StyleURL = th.StyleURL
	}
	return t
}

func viewOfClient(c resource.Client) *clientView {
	name := c.Name
	if name == "" {
		name = c.ID
	}
	return &clientView{ID: c.ID, Name: name}
}

// flow is what the pages of a login in progress know about the
// authorization request waiting for it.
type flow struct {
	pending *session.PendingAuthorize // nil: a sign-in of its own
	client  *resource.Client
	theme   themeView
	policy  csp
}

// clientView is the client as the page names it, or nil.
func (f flow) clientView() *clientView {
	if f.client == nil {
		return nil
	}
	return viewOfClient(*f.client)
}

// flowOf looks up the client of the session's parked authorization request
// (expired ones are dropped) for the page's theme and form-action.
func (h *Handler) flowOf(r *http.Request, sess *session.Session) (flow, error) {
	ctx := r.Context()
	var f flow
	if p := sess.PendingAuthorize(); p != nil {
		if p.Expired(h.now()) {
			sess.SetPendingAuthorize(nil)
		} else {
			f.pending = p
		}
	}
	clientID := ""
	if f.pending != nil {
		clientID = f.pending.ClientID
		if src := cspSource(f.pending.RedirectURI); src != "" {
			f.policy.formAction = append(f.policy.formAction, src)
		}
	} else if p := sess.PendingSecondFactor(); p != nil {
		clientID = p.ClientID
	}
	c, ok, err := h.loadClient(ctx, clientID)
	if err != nil {
		return f, err
	}
	if ok {
		f.client = &c
	}
	f.theme = h.themeFor(ctx, f.client)
	return f, nil
}

// webhookOf is where ac delivers codes (the zero Webhook: nowhere).
func webhookOf(ac resource.AuthConfig) notify.Webhook {
	return policy.Policy{AuthConfig: ac}.Webhook()
}
