package web

import (
	"net/http"
	"net/url"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/store"
)

// logout is GET and POST /auth/logout (OpenID RP-Initiated Logout). It
// ends the browser session (record and cookie) when the request cannot be
// forged: a GET or an RP's POST with a valid id_token_hint, our
// confirmation form's POST carrying the session's CSRF token, or a browser
// with nobody signed in. Any other request shows a page asking to confirm,
// whose form POSTs the same parameters. It
// redirects to post_logout_redirect_uri only when that URI is registered
// on the client named by client_id or id_token_hint (and both agree when
// both are given); otherwise it shows the signed-out page.
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
	q := r.URL.Query()
	confirmed := false
	if r.Method == http.MethodPost {
		// An RP may POST its logout request (RP-Initiated Logout §2):
		// that POST has no CSRF token, and is judged like a GET. Only our
		// own confirmation form carries one.
		if !h.parseForm(w, r, func(string) bool { return true }) {
			return
		}
		q = r.PostForm
		confirmed = sess.ValidCSRF(q.Get("_csrf"))
	}
	clientID := q.Get("client_id")
	hintOK := false
	if hint := q.Get("id_token_hint"); hint != "" {
		hinted, _, err := h.OAuth.ClientIDFromIDTokenHint(ctx, hint)
		switch {
		case err != nil:
			h.log().InfoContext(ctx, "logout: id_token_hint rejected", "err", err, "request_id", audit.RequestID(ctx))
			clientID = ""
		case clientID != "" && clientID != hinted:
			clientID = ""
		default:
			clientID, hintOK = hinted, true
		}
	}
	if userID != "" && !hintOK && !confirmed {
		h.confirmLogout(w, r, sess, q)
		return
	}
	sid, clients := sess.ID(), sess.Clients()
	if err := h.Sessions.Destroy(ctx, w, sess); err != nil {
		h.unavailable(w, r, err)
		return
	}
	if userID != "" && len(clients) > 0 {
		h.OAuth.BackchannelLogout(ctx, userID, sid, clients)
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
		Heading: tr("Signed out"),
		Theme:   h.themeFor(ctx, client),
	}, csp{})
}

// confirmLogout asks the signed-in user whether to sign out; the form
// carries the CSRF token and the request's logout parameters.
func (h *Handler) confirmLogout(w http.ResponseWriter, r *http.Request, sess *session.Session, q url.Values) {
	if !h.saveSession(w, r, sess) {
		return
	}
	var client *resource.Client
	if c, ok, err := h.loadClient(r.Context(), q.Get("client_id")); err != nil {
		h.log().WarnContext(r.Context(), "logout: client lookup failed", "err", err)
	} else if ok {
		client = &c
	}
	h.render(w, r, http.StatusOK, pageLogout, pageData{
		Heading: tr("Sign out?"),
		Theme:   h.themeFor(r.Context(), client),
		CSRF:    sess.CSRFToken(),
		Logout: &logoutView{
			ClientID:              q.Get("client_id"),
			IDTokenHint:           q.Get("id_token_hint"),
			PostLogoutRedirectURI: q.Get("post_logout_redirect_uri"),
			State:                 q.Get("state"),
		},
	}, csp{})
}

// logoutView is the confirmation form of a logout request.
type logoutView struct {
	ClientID, IDTokenHint, PostLogoutRedirectURI, State string
}
