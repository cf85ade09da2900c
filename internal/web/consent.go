package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/store"
)

// scopeDescriptions explain the common scopes in words; others are shown
// by name.
var scopeDescriptions = map[string]string{
	"openid":         tr("Confirm who you are"),
	"profile":        tr("See your basic profile"),
	"email":          tr("See your email address"),
	"phone":          tr("See your phone number"),
	"address":        tr("See your address"),
	"offline_access": tr("Stay signed in to the app when you are not using it"),
	"offline":        tr("Stay signed in to the app when you are not using it"),
}

func describeScopes(scopes []string) []scopeView {
	out := make([]scopeView, 0, len(scopes))
	for _, s := range scopes {
		d, ok := scopeDescriptions[s]
		if !ok {
			d = s
		}
		out = append(out, scopeView{Name: s, Description: d})
	}
	return out
}

// pendingScopes are the scopes of the parked request (validated by the
// authorization endpoint when it was parked).
func pendingScopes(p *session.PendingAuthorize) []string {
	q, err := url.ParseQuery(p.Query)
	if err != nil {
		return nil
	}
	return strings.Fields(q.Get("scope"))
}

// consentTarget returns the signed-in user and the parked request waiting
// for consent, or answers the request itself and returns ok=false. A
// session that is not signed in (also one waiting for its second factor)
// goes to the sign-in page.
func (h *Handler) consentTarget(w http.ResponseWriter, r *http.Request, sess *session.Session) (store.User, flow, bool) {
	user, signedIn, err := h.currentUser(r.Context(), w, sess, false)
	if err != nil {
		h.unavailable(w, r, err)
		return store.User{}, flow{}, false
	}
	f, err := h.flowOf(r, sess)
	if err != nil {
		h.unavailable(w, r, err)
		return store.User{}, flow{}, false
	}
	if !signedIn {
		http.Redirect(w, r, PathLogin, http.StatusSeeOther)
		return store.User{}, flow{}, false
	}
	if f.pending == nil || f.client == nil {
		h.renderErrorThemed(w, r, http.StatusBadRequest,
			tr("No application is waiting for your answer. Go back to the application and start again."),
			nil, nil, f.theme)
		return store.User{}, flow{}, false
	}
	return user, f, true
}

// consentPage shows the client and the scopes it asks for.
func (h *Handler) consentPage(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	user, f, ok := h.consentTarget(w, r, sess)
	if !ok {
		return
	}
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	h.render(w, r, http.StatusOK, pageConsent, pageData{
		Heading:  tr("Allow access?"),
		Theme:    f.theme,
		CSRF:     csrf,
		Username: displayName(user),
		Client:   f.clientView(),
		Scopes:   describeScopes(pendingScopes(f.pending)),
	}, f.policy)
}

// consentSubmit records the decision and resumes the request (303), where
// the authorization endpoint issues the code or sends access_denied.
func (h *Handler) consentSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseForm(w, r, sess.ValidCSRF) {
		return
	}
	user, f, ok := h.consentTarget(w, r, sess)
	if !ok {
		return
	}
	p := f.pending
	switch r.PostForm.Get("decision") {
	case session.ConsentAllowed:
		granted := pendingScopes(p)
		prev, err := h.Store.GetConsent(ctx, user.ID, p.ClientID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			h.unavailable(w, r, err)
			return
		}
		for _, s := range prev.Scopes {
			if !slices.Contains(granted, s) {
				granted = append(granted, s)
			}
		}
		if err := h.Store.PutConsent(ctx, store.Consent{UserID: user.ID, ClientID: p.ClientID, Scopes: granted, GrantedAt: h.now()}); err != nil {
			h.unavailable(w, r, err)
			return
		}
		p.Consent = session.ConsentAllowed
	case session.ConsentDenied:
		p.Consent = session.ConsentDenied
	default:
		h.renderErrorThemed(w, r, http.StatusBadRequest, tr("Choose Allow or Deny."), &link{Href: PathConsent, Text: tr("Back")}, nil, f.theme)
		return
	}
	sess.SetPendingAuthorize(p)
	if !h.saveSession(w, r, sess) {
		return
	}
	http.Redirect(w, r, PathAuthorize+"?"+p.Query, http.StatusSeeOther)
}
