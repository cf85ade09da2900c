package web

import (
	"net/http"
	"net/url"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// logout ends the browser session (record and cookie). It redirects to
// post_logout_redirect_uri only when that URI is registered on the client
// named by client_id or id_token_hint (and both agree when both are given);
// otherwise it shows the signed-out page.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, err := h.loadBrowserSession(r)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	userID := sess.UserID()
	if p := sess.PendingSecondFactor(); userID == "" && p != nil {
		userID = p.UserID
	}
	if err := h.Sessions.Destroy(ctx, w, sess); err != nil {
		h.unavailable(w, r, err)
		return
	}

	q := r.URL.Query()
	clientID := q.Get("client_id")
	if hint := q.Get("id_token_hint"); hint != "" {
		hinted, _, err := h.OAuth.ClientIDFromIDTokenHint(ctx, hint)
		switch {
		case err != nil:
			h.log().InfoContext(ctx, "logout: id_token_hint rejected", "err", err, "request_id", audit.RequestID(ctx))
			clientID = ""
		case clientID != "" && clientID != hinted:
			clientID = ""
		default:
			clientID = hinted
		}
	}
	if userID != "" {
		h.recordAudit(ctx, store.AuditEvent{Type: audit.Logout, UserID: userID, ClientID: clientID})
	}

	if uri := q.Get("post_logout_redirect_uri"); uri != "" && clientID != "" && h.OAuth.PostLogoutRedirectAllowed(ctx, clientID, uri) {
		if u, err := url.Parse(uri); err == nil {
			if state := q.Get("state"); state != "" {
				uq := u.Query()
				uq.Set("state", state)
				u.RawQuery = uq.Encode()
			}
			http.Redirect(w, r, u.String(), http.StatusFound)
			return
		}
	}

	var client *resource.Client
	if c, ok, err := h.loadClient(ctx, clientID); err != nil {
		h.log().WarnContext(ctx, "logout: client lookup failed", "err", err)
	} else if ok {
		client = &c
	}
	h.render(w, r, http.StatusOK, pageLogout, pageData{
		Heading: "Signed out",
		Theme:   h.themeFor(ctx, client),
	}, csp{})
}
