package web

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
)

// authorize is the interactive side of GET /auth/authorize: it sends the
// browser to sign in or to consent when needed, parking the request in the
// session, and completes it (code and redirect) when the user is there.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := h.OAuth.ParseAuthorize(ctx, r)
	if err != nil {
		h.authorizeFailed(w, r, ar, err)
		return
	}
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	// The step-up rule decides from the user's factors: they come with the
	// user when it may apply.
	requested, ok := signin.RequestedLevel(ar.ACRValues, ar.ACRClaim, ar.ACREssential)
	user, signedIn, err := h.currentUser(ctx, w, sess, ok && signin.MayNeedStepUp(sess.AMR(), ar.Client, requested))
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	// The request comes back here after the consent, step-up or
	// recovery-code page; it is recognised by its parameters, and what was
	// decided for it counts.
	h.decideAuthorize(w, r, ar, sess, user, signedIn, h.resumable(sess.PendingAuthorize(), ar))
}

// resumable returns pending when ar is the request it parked and it is
// not too old to resume, else nil.
func (h *Handler) resumable(pending *session.PendingAuthorize, ar *oauth.AuthorizeRequest) *session.PendingAuthorize {
	if pending != nil && pending.Query == ar.Query.Encode() && pending.ClientID == ar.ClientID && !pending.Expired(h.now()) {
		return pending
	}
	return nil
}

// decideAuthorize answers the validated request ar for the session: to the
// login, consent or step-up page (parking ar), an error for the client, or
// the code. pending is ar's parked copy when ar resumes it (resumable).
func (h *Handler) decideAuthorize(w http.ResponseWriter, r *http.Request, ar *oauth.AuthorizeRequest, sess *session.Session, user store.User, signedIn bool, pending *session.PendingAuthorize) {
	now := h.now()
	resumed := pending != nil
	if resumed && pending.Consent == session.ConsentDenied {
		sess.SetPendingAuthorize(nil)
		if !h.saveSession(w, r, sess) {
			return
		}
		h.OAuth.WriteAuthorizeError(w, r, ar, oauth.ErrAccessDenied)
		return
	}

	prompt := func(p string) bool { return slices.Contains(ar.Prompt, p) }
	// A sign-in after the request was parked satisfies prompt=login and
	// max_age for it: asking again would loop forever.
	freshLogin := resumed && signedIn && !sess.AuthTime().Before(pending.CreatedAt)
	needLogin := !signedIn
	if signedIn && !freshLogin {
		if prompt("login") {
			needLogin = true
		}
		if ar.MaxAge >= 0 && now.Sub(sess.AuthTime()) > time.Duration(ar.MaxAge)*time.Second {
			needLogin = true
		}
	}
	if signedIn && !needLogin {
		// The session may be below what this client or request asks for
		// (acr_values, required_acr, a second factor required or owned):
		// the user proves the missing factor only (step-up), or sets one
		// up, and the request resumes here.
		switch h.stepUp(w, r, sess, user, ar, pending, now) {
		case stepUpLogin:
			needLogin = true
		case stepUpAnswered:
			return
		}
	}
	if needLogin {
		if prompt("none") {
			h.OAuth.WriteAuthorizeError(w, r, ar, oauth.ErrLoginRequired)
			return
		}
		h.park(sess, ar, now, nil)
		if !h.saveSession(w, r, sess) {
			return
		}
		http.Redirect(w, r, PathLogin, http.StatusFound)
		return
	}

	needConsent, err := h.needsConsent(r, ar, user, pending)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if needConsent {
		if prompt("none") {
			h.OAuth.WriteAuthorizeError(w, r, ar, oauth.ErrConsentRequired)
			return
		}
		h.park(sess, ar, now, pending)
		if !h.saveSession(w, r, sess) {
			return
		}
		http.Redirect(w, r, PathConsent, http.StatusFound)
		return
	}

	// One save for both: the parked request is done, and a client new to
	// this session is remembered for back-channel logout.
	if newClient := sess.AddClient(ar.ClientID); newClient || sess.PendingAuthorize() != nil {
		sess.SetPendingAuthorize(nil)
		if !h.saveSession(w, r, sess) {
			return
		}
	}
	amr := sess.AMR()
	grant := oauth.Grant{
		Subject:   user.ID,
		SessionID: sess.ID(),
		ACR:       signin.ACRFor(amr),
		AuthTime:  sess.AuthTime(),
		AMR:       amr,
		Scopes:    ar.Scopes,
		User:      &user, // currentUser read it just now
	}
	if freshLogin {
		grant.LoginRequestedAt = pending.CreatedAt
	}
	if err := h.OAuth.CompleteAuthorize(w, r, ar, grant); err != nil {
		h.unavailable(w, r, err)
		return
	}
}

// Outcomes of stepUp.
const (
	stepUpNone     = iota // the session is enough: go on
	stepUpLogin           // sign in again (an enrolment needs a fresh password)
	stepUpAnswered        // answered: the step-up page, the client's error, or an error page
)

// stepUp asks the engine whether the signed-in session is enough for ar.
// When it is not, it parks ar and sends the browser to the second-factor
// page for the missing factor (or the enrolment), or answers the client
// with unmet_authentication_requirements (prompt=none, or a level the user
// cannot reach).
func (h *Handler) stepUp(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, ar *oauth.AuthorizeRequest, pending *session.PendingAuthorize, now time.Time) int {
	amr := sess.AMR()
	requested, ok := signin.RequestedLevel(ar.ACRValues, ar.ACRClaim, ar.ACREssential)
	if !ok {
		h.OAuth.WriteAuthorizeError(w, r, ar, oauth.ErrUnmetAuthenticationRequirements)
		return stepUpAnswered
	}
	if !signin.MayNeedStepUp(amr, ar.Client, requested) {
		return stepUpNone
	}
	if h.SignIn == nil {
		h.unavailable(w, r, errors.New("no sign-in engine configured"))
		return stepUpAnswered
	}
	s, step, err := h.SignIn.StepUp(r.Context(), signin.StepUpInput{
		User: user, Client: ar.Client, AMR: amr, Factors: sess.Factors(), AuthTime: sess.AuthTime(), ACR: requested,
		Binding: sess.ID(), Meta: twoFactorMeta(r, ar.ClientID),
	})
	switch {
	case errors.Is(err, signin.ErrUnmetLevel):
		h.OAuth.WriteAuthorizeError(w, r, ar, oauth.ErrUnmetAuthenticationRequirements)
		return stepUpAnswered
	case err != nil:
		h.unavailable(w, r, err)
		return stepUpAnswered
	case step.Status == signin.StatusComplete:
		return stepUpNone
	case slices.Contains(ar.Prompt, "none"):
		h.OAuth.WriteAuthorizeError(w, r, ar, oauth.ErrUnmetAuthenticationRequirements)
		return stepUpAnswered
	case step.Status == signin.StatusNeedsEnrollment && now.Sub(sess.PasswordAt()) > ReauthWindow:
		// Setting up a factor needs a recent password, as on the
		// settings pages: a stolen session alone must not add one.
		return stepUpLogin
	}
	h.park(sess, ar, now, pending)
	sess.BeginStepUp(session.PendingStepUp{
		ClientID: ar.ClientID, ACR: s.RequiredACR, Enrolled: step.Status == signin.StatusNeedsStepUp, CreatedAt: now,
	})
	if !h.saveSession(w, r, sess) {
		return stepUpAnswered
	}
	http.Redirect(w, r, PathLoginTwoFactor, http.StatusFound)
	return stepUpAnswered
}

// park remembers ar in the session. A request that is already parked keeps
// its creation time, so a sign-in made for it stays recognised as fresh.
func (h *Handler) park(sess *session.Session, ar *oauth.AuthorizeRequest, now time.Time, resumed *session.PendingAuthorize) {
	p := &session.PendingAuthorize{
		Query:       ar.Query.Encode(),
		ClientID:    ar.ClientID,
		RedirectURI: ar.RedirectURI,
		CreatedAt:   now,
	}
	if resumed != nil {
		p.CreatedAt = resumed.CreatedAt
	}
	sess.SetPendingAuthorize(p)
}

// needsConsent decides whether the user must see the consent page: always
// for prompt=consent (until answered), else for clients that are not
// first-party when the stored consent does not cover the requested scopes.
func (h *Handler) needsConsent(r *http.Request, ar *oauth.AuthorizeRequest, user store.User, pending *session.PendingAuthorize) (bool, error) {
	if pending != nil && pending.Consent == session.ConsentAllowed {
		return false, nil
	}
	if slices.Contains(ar.Prompt, "consent") {
		return true, nil
	}
	if ar.Client.FirstParty {
		return false, nil
	}
	c, err := h.Store.GetConsent(r.Context(), user.ID, ar.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, s := range ar.Scopes {
		if !slices.Contains(c.Scopes, s) {
			return true, nil
		}
	}
	return false, nil
}

// authorizeFailed answers a request ParseAuthorize refused: back to the
// client when its redirect URI was validated, otherwise an HTML page and
// never a redirect (an unknown client or unregistered URI would make us an
// open redirector).
func (h *Handler) authorizeFailed(w http.ResponseWriter, r *http.Request, ar *oauth.AuthorizeRequest, err error) {
	var ae *oauth.AuthorizeError
	if !errors.As(err, &ae) {
		h.unavailable(w, r, err)
		return
	}
	if ae.Redirectable {
		// The error carries the validated request when ar is nil.
		h.OAuth.WriteAuthorizeError(w, r, ar, err)
		return
	}
	if ae.Code == "server_error" || ae.Code == "temporarily_unavailable" {
		h.unavailable(w, r, err)
		return
	}
	// The client, when it exists, still has its look, even though its
	// request is refused.
	var client *resource.Client
	if c, ok, lerr := h.loadClient(r.Context(), r.FormValue("client_id")); lerr == nil && ok {
		client = &c
	}
	theme := h.themeFor(r.Context(), client)
	if ae.Code == "invalid_client" || ae.Code == "unauthorized_client" || client == nil {
		h.renderErrorThemed(w, r, http.StatusBadRequest,
			tr("The application that sent you here is not registered with this sign-in service."), nil, err, theme)
		return
	}
	msg := tr("The sign-in link you followed is not valid. Go back to the application and try again.")
	if ae.Description != "" {
		// The protocol's own explanation, for the developer of the app,
		// stays in English.
		msg = tr("The sign-in link you followed is not valid. Go back to the application and try again. ({{.Code}}: {{.Description}})")
		addMessageArgs(r, map[string]any{"Code": ae.Code, "Description": ae.Description})
	}
	h.renderErrorThemed(w, r, http.StatusBadRequest, msg, nil, err, theme)
}
