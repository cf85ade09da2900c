package web

// The second step of a sign-in: a password was accepted for a user who
// needs a second factor. The session holds session.PendingSecondFactor and
// is not signed in: authorize, consent and the settings pages treat it as
// anonymous until the code is checked here. A user who must have a second
// factor (the client or its AuthConfig requires one) and has none sets one
// up on this same page, then sees the recovery codes, then continues.

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
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
	// BindingID names this login attempt (the browser session): an SMS or
	// e-mail code sent for it is only accepted for it.
	BindingID string
}

// ErrInvalidCode is the one answer to a code that is not accepted.
var ErrInvalidCode = errors.New("invalid code")

const (
	msgInvalidCode      = "Invalid code"
	msgEnrolmentExpired = "This setup expired. Scan the new QR code and enter the code it shows."
)

// secondFactorStep gathers what both sides of the code step need: the
// pending second factor and its user, the flow (client) it belongs to and
// that client's AuthConfig. It has answered the request when ok is false.
func (h *Handler) secondFactorStep(w http.ResponseWriter, r *http.Request, sess *session.Session) (p *session.PendingSecondFactor, user store.User, f flow, ac resource.AuthConfig, ok bool) {
	p, user, ok = h.pendingSecondFactor(w, r, sess)
	if !ok {
		return
	}
	var err error
	if f, err = h.flowOf(r, sess); err != nil {
		h.unavailable(w, r, err)
		return p, user, f, ac, false
	}
	if !h.secondFactorUsable(w, r, p, f) {
		return p, user, f, ac, false
	}
	if ac, err = h.authConfig(r.Context(), f.client); err != nil {
		h.unavailable(w, r, err)
		return p, user, f, ac, false
	}
	return p, user, f, ac, true
}

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

// twoFactorPage asks for the code, sending it through the AuthConfig's
// webhook first when one is configured; or, for a user who must enrol,
// shows the enrolment.
func (h *Handler) twoFactorPage(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	p, user, f, ac, ok := h.secondFactorStep(w, r, sess)
	if !ok {
		return
	}
	if !p.Enrolled {
		h.renderFlowEnrolment(w, r, sess, user, f, ac, "")
		return
	}
	notice := h.sendLoginCode(r, sess, user, p.ClientID, ac)
	h.renderTwoFactorNotice(w, r, sess, user, f, ac, "", notice)
}

// secondFactorUsable stops a login whose second factor cannot be checked
// or set up because the service is not configured. It fails closed.
func (h *Handler) secondFactorUsable(w http.ResponseWriter, r *http.Request, p *session.PendingSecondFactor, f flow) bool {
	if (p.Enrolled && h.SecondFactor == nil) || (!p.Enrolled && h.TwoFactor == nil) {
		h.renderErrorThemed(w, r, http.StatusServiceUnavailable,
			"Two-step verification is not available right now. Please try again later.",
			nil, errors.New("no second-factor service configured"), f.theme)
		return false
	}
	return true
}

// Notices of the code prompt when no new code went out.
const (
	noticeTooManySends = "Too many codes were sent. Use the last one you received or a recovery code, or try again later."
	noticeNotSent      = "We could not send a new code just now. Use the last one you received or a recovery code, or send again in a moment."
)

// sendLoginCode pushes the code of the prompt through the webhook (Aidbox
// sends the current TOTP code so the app can deliver it by SMS; sms and
// e-mail factors get a fresh one-time code). The first attempt is bounded
// by the webhook's timeout and a failure only gets logged: the user can
// still type a code from the app or a recovery code, or ask again. It
// returns a notice for the page when an sms/e-mail user got no new code
// ("" otherwise: a TOTP user reads the app anyway).
func (h *Handler) sendLoginCode(r *http.Request, sess *session.Session, user store.User, clientID string, ac resource.AuthConfig) string {
	hook := ac.Webhook()
	if h.TwoFactor == nil || hook == nil || hook.Endpoint == "" {
		return ""
	}
	ctx := r.Context()
	sent, err := h.TwoFactor.SendLoginCode(ctx, twofactor.LoginCodeInput{
		User:      user,
		BindingID: sess.ID(),
		PastSteps: ac.PastTokens(),
		Webhook:   notifyWebhook(*hook),
		Meta:      twofactor.Meta{ClientID: clientID, RemoteAddr: clientIP(r), RequestID: audit.RequestID(ctx)},
	})
	switch {
	case err == nil && !sent.Delivered:
		h.log().InfoContext(ctx, "second-factor code not delivered at once; retried in the background",
			"user", user.ID, "event_id", sent.ID, "request_id", audit.RequestID(ctx))
	case errors.Is(err, twofactor.ErrTooManySends):
		h.log().InfoContext(ctx, "second-factor code not sent: send limit reached", "user", user.ID, "request_id", audit.RequestID(ctx))
	case errors.Is(err, twofactor.ErrNothingToSend):
		h.log().InfoContext(ctx, "no TOTP code pushed: the next usable step has not begun", "user", user.ID, "request_id", audit.RequestID(ctx))
	case err != nil:
		h.log().WarnContext(ctx, "second-factor code not sent", "user", user.ID, "err", err, "request_id", audit.RequestID(ctx))
	}
	if err == nil || errors.Is(err, twofactor.ErrNothingToSend) || errors.Is(err, twofactor.ErrNotEnabled) {
		return ""
	}
	if st, serr := h.TwoFactor.Method(ctx, user.ID); serr != nil || st.Method == twofactor.MethodTOTP {
		return ""
	}
	if errors.Is(err, twofactor.ErrTooManySends) {
		return noticeTooManySends
	}
	return noticeNotSent
}

// notifyWebhook is the AuthConfig's webhook as the notifier takes it.
func notifyWebhook(w resource.Webhook) notify.Webhook {
	return notify.Webhook{
		Endpoint:  w.Endpoint,
		TimeoutMS: int(w.TimeoutDuration() / time.Millisecond),
		Headers:   w.Headers,
		Secret:    w.Secret,
	}
}

func (h *Handler) renderTwoFactor(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, f flow, ac resource.AuthConfig, errMsg string) {
	h.renderTwoFactorNotice(w, r, sess, user, f, ac, errMsg, "")
}

func (h *Handler) renderTwoFactorNotice(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, f flow, ac resource.AuthConfig, errMsg, notice string) {
	lead, resend := h.promptText(r.Context(), user, ac)
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
		Lead:    lead,
		Notice:  notice,
		Resend:  resend,
	}, f.policy)
}

// promptText says where the code comes from, and whether reloading the
// prompt sends a new one.
func (h *Handler) promptText(ctx context.Context, user store.User, ac resource.AuthConfig) (string, bool) {
	hook := ac.Webhook()
	webhook := h.TwoFactor != nil && hook != nil && hook.Endpoint != ""
	lead := "Enter the 6-digit code from your authenticator app."
	if webhook {
		lead = "Enter the 6-digit code from your authenticator app, or the one we sent you."
	}
	if h.TwoFactor == nil {
		return lead, false
	}
	st, err := h.TwoFactor.Method(ctx, user.ID)
	if err != nil {
		h.log().WarnContext(ctx, "second-factor status unavailable for the prompt", "user", user.ID, "err", err)
		return lead, webhook
	}
	switch st.Method {
	case twofactor.MethodSMS:
		lead = "Enter the 6-digit code we sent by text message to " + twofactor.MaskDestination(st.Destination) + "."
	case twofactor.MethodEmail:
		lead = "Enter the 6-digit code we sent by e-mail to " + twofactor.MaskDestination(st.Destination) + "."
	}
	return lead, webhook
}

// twoFactorSubmit checks the code and, when it is accepted, finishes the
// sign-in like a password-only one (with otp and mfa in amr); for a user
// who is enrolling, it confirms the new factor.
func (h *Handler) twoFactorSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseFormLimit(w, r, sess.ValidCSRF, maxCodeFormBytes) {
		return
	}
	p, user, f, ac, ok := h.secondFactorStep(w, r, sess)
	if !ok {
		return
	}
	if !p.Enrolled {
		h.confirmFlowEnrolment(w, r, sess, p, user, f, ac)
		return
	}
	methods, err := h.SecondFactor.VerifyLoginCode(ctx, user, r.PostForm.Get("code"), LoginAttempt{
		ClientID:   p.ClientID,
		RemoteAddr: clientIP(r),
		RequestID:  audit.RequestID(ctx),
		BindingID:  sess.ID(),
	})
	if errors.Is(err, ErrInvalidCode) {
		h.renderTwoFactor(w, r, sess, user, f, ac, msgInvalidCode)
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	h.finishLogin(w, r, sess, user.ID, mfaAMR(methods), p.PasswordAt)
}

// mfaAMR is the amr of a sign-in with a password and a second factor that
// added methods: pwd, the methods, mfa.
func mfaAMR(methods []string) []string {
	amr := []string{AMRPassword}
	for _, m := range methods {
		if m != AMRPassword && m != AMRMFA {
			amr = append(amr, m)
		}
	}
	return append(amr, AMRMFA)
}

// renderFlowEnrolment shows the TOTP enrolment of a user whose login
// requires a second factor they do not have yet.
func (h *Handler) renderFlowEnrolment(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, f flow, ac resource.AuthConfig, errMsg string) {
	en, err := h.enrolment(sess, user, ac.Issuer())
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	lead := "Two-step verification is required for your account. Set it up to continue."
	if f.client != nil {
		// The app's rule, when it has one; else the account's own (a TOTP
		// enrolment due since it was created).
		required, err := h.twoFactorRequired(r.Context(), f.client)
		if err != nil {
			h.unavailable(w, r, err)
			return
		}
		if required {
			lead = f.clientView().Name + " requires two-step verification. Set it up to continue."
		}
	}
	h.renderEnrolment(w, r, sess, en, pageData{
		Heading: "Set up two-step verification",
		Theme:   f.theme,
		Client:  f.clientView(),
		Lead:    lead,
		Error:   errMsg,
	}, PathLoginTwoFactor, &link{Href: PathLogin, Text: "Start over"}, f.policy)
}

// confirmFlowEnrolment enables the factor set up inside a login, signs the
// user in with it (pwd, otp, mfa) and shows the recovery codes, whose
// Continue link resumes the authorization.
func (h *Handler) confirmFlowEnrolment(w http.ResponseWriter, r *http.Request, sess *session.Session, p *session.PendingSecondFactor, user store.User, f flow, ac resource.AuthConfig) {
	ctx := r.Context()
	codes, err := h.confirmEnrolment(r, sess, user, ac, p.ClientID)
	switch {
	case errors.Is(err, twofactor.ErrAlreadyEnabled):
		// Enrolled meanwhile (another tab): this login now needs a code.
		p.Enrolled = true
		sess.BeginSecondFactor(user.ID, *p)
		if !h.saveSession(w, r, sess) {
			return
		}
		http.Redirect(w, r, PathLoginTwoFactor, http.StatusSeeOther)
		return
	case errors.Is(err, twofactor.ErrPendingExpired):
		h.renderFlowEnrolment(w, r, sess, user, f, ac, msgEnrolmentExpired)
		return
	case errors.Is(err, twofactor.ErrInvalidCode):
		h.renderFlowEnrolment(w, r, sess, user, f, ac, msgInvalidCode)
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	next, ok := h.completeLogin(w, r, sess, user.ID, mfaAMR([]string{AMROTP}), p.PasswordAt)
	if !ok {
		return
	}
	h.log().InfoContext(ctx, "second factor enrolled during sign-in", "user", user.ID, "client", p.ClientID, "request_id", audit.RequestID(ctx))
	h.renderRecoveryCodes(w, r, codes, f.theme, &link{Href: next, Text: "Continue"}, f.policy)
}
