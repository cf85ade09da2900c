package web

// The second step of a sign-in: a password was accepted for a user who
// needs a second factor. The session holds session.PendingSecondFactor and
// is not signed in: authorize, consent and the settings pages treat it as
// anonymous until the code is checked here.

import (
	"context"
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/store"
)

// SecondFactorVerifier checks the code typed at /auth/login/two-factor.
type SecondFactorVerifier interface {
	// VerifyLoginCode checks code (a TOTP code or a recovery code) for
	// user. It returns the methods to add to the sign-in's amr besides
	// "pwd" (e.g. "otp"). ErrInvalidCode covers every refusal the user may
	// see (wrong, reused, malformed, locked); other errors are failures of
	// the service.
	VerifyLoginCode(ctx context.Context, user store.User, code string, at LoginAttempt) ([]string, error)
}

// LoginAttempt describes where a code comes from, for throttling and audit.
type LoginAttempt struct {
	ClientID   string
	RemoteAddr string
	RequestID  string
}

// ErrInvalidCode is the one answer to a code that is not accepted.
var ErrInvalidCode = errors.New("invalid code")

const msgInvalidCode = "Invalid code"

// pendingSecondFactor returns the session's unexpired second-factor step
// and its user, or sends the browser back to the password form.
func (h *Handler) pendingSecondFactor(w http.ResponseWriter, r *http.Request, sess *session.Session) (*session.PendingSecondFactor, store.User, bool) {
	ctx := r.Context()
	p := sess.PendingSecondFactor()
	if p != nil && p.Expired(h.now()) {
		sess.ClearSecondFactor()
		if !h.saveSession(w, r, sess) {
			return nil, store.User{}, false
		}
		p = nil
	}
	if p == nil {
		http.Redirect(w, r, PathLogin, http.StatusSeeOther)
		return nil, store.User{}, false
	}
	user, err := h.Store.GetUser(ctx, p.UserID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.unavailable(w, r, err)
		return nil, store.User{}, false
	}
	if err != nil || user.Inactive {
		if err := h.Sessions.Destroy(ctx, w, sess); err != nil {
			h.unavailable(w, r, err)
			return nil, store.User{}, false
		}
		http.Redirect(w, r, PathLogin, http.StatusSeeOther)
		return nil, store.User{}, false
	}
	return p, user, true
}

// twoFactorPage asks for the code.
func (h *Handler) twoFactorPage(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	p, _, ok := h.pendingSecondFactor(w, r, sess)
	if !ok {
		return
	}
	f, err := h.flowOf(r, sess)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if !h.secondFactorUsable(w, r, p, f) {
		return
	}
	h.renderTwoFactor(w, r, sess, f, "")
}

// secondFactorUsable stops a login whose second factor cannot be checked:
// the user has none although one is required, or no verifier is configured.
// Either way the login fails closed.
func (h *Handler) secondFactorUsable(w http.ResponseWriter, r *http.Request, p *session.PendingSecondFactor, f flow) bool {
	if !p.Enrolled {
		h.renderErrorThemed(w, r, http.StatusForbidden,
			"This application requires two-step verification, and it is not set up for your account. Ask your administrator to set it up.",
			&link{Href: PathLogin, Text: "Back to sign-in"}, nil, f.theme)
		return false
	}
	if h.SecondFactor == nil {
		h.renderErrorThemed(w, r, http.StatusServiceUnavailable,
			"Two-step verification is not available right now. Please try again later.",
			nil, errors.New("no second-factor verifier configured"), f.theme)
		return false
	}
	return true
}

func (h *Handler) renderTwoFactor(w http.ResponseWriter, r *http.Request, sess *session.Session, f flow, errMsg string) {
	csrf := sess.CSRFToken()
	if !h.saveSession(w, r, sess) {
		return
	}
	csrf = sess.CSRFToken()
	h.render(w, r, http.StatusOK, pageTwoFactorCode, pageData{
		Heading: "Two-step verification",
		Theme:   f.theme,
		CSRF:    csrf,
		Error:   errMsg,
		Client:  f.clientView(),
	}, f.policy)
}

// twoFactorSubmit checks the code and, when it is accepted, finishes the
// sign-in like a password-only one (with otp and mfa in amr).
func (h *Handler) twoFactorSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseForm(w, r, sess.ValidCSRF) {
		return
	}
	p, user, ok := h.pendingSecondFactor(w, r, sess)
	if !ok {
		return
	}
	f, err := h.flowOf(r, sess)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if !h.secondFactorUsable(w, r, p, f) {
		return
	}
	methods, err := h.SecondFactor.VerifyLoginCode(ctx, user, r.PostForm.Get("code"), LoginAttempt{
		ClientID:   p.ClientID,
		RemoteAddr: clientIP(r),
		RequestID:  audit.RequestID(ctx),
	})
	if errors.Is(err, ErrInvalidCode) {
		h.renderTwoFactor(w, r, sess, f, msgInvalidCode)
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	amr := []string{AMRPassword}
	for _, m := range methods {
		if m != AMRPassword && m != AMRMFA {
			amr = append(amr, m)
		}
	}
	amr = append(amr, AMRMFA)
	h.finishLogin(w, r, sess, user.ID, amr, p.PasswordAt)
}
