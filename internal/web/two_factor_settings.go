package web

// The two-step verification settings of the signed-in user: status, TOTP
// enrolment, disabling, new recovery codes (switching methods is in
// two_factor_method.go). Changing the factor needs a
// password typed within ReauthWindow (else the user confirms it on the
// login page and comes back) and, except for enabling, a current code.

import (
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// settingsUser returns the signed-in user of a settings page. An anonymous
// browser, a session still waiting for its second factor included, is sent
// to sign in and come back to returnTo.
func (h *Handler) settingsUser(w http.ResponseWriter, r *http.Request, sess *session.Session, returnTo string) (store.User, bool) {
	user, signedIn, err := h.currentUser(r.Context(), w, sess, false)
	if err != nil {
		h.unavailable(w, r, err)
		return store.User{}, false
	}
	if !signedIn {
		h.sendToLogin(w, r, sess, returnTo)
		return store.User{}, false
	}
	if h.TwoFactor == nil {
		h.renderError(w, r, http.StatusServiceUnavailable,
			tr("Two-step verification settings are not available right now. Please try again later."),
			nil, errors.New("no second-factor service configured"))
		return store.User{}, false
	}
	return user, true
}

// freshSettingsUser is settingsUser for the pages that change a factor: the
// password must also have been entered within the last few minutes, else
// the browser is sent to confirm it and come back to returnTo.
func (h *Handler) freshSettingsUser(w http.ResponseWriter, r *http.Request, sess *session.Session, returnTo string) (store.User, bool) {
	user, ok := h.settingsUser(w, r, sess, returnTo)
	if !ok {
		return store.User{}, false
	}
	if !h.passwordFresh(sess) {
		h.sendToLogin(w, r, sess, returnTo)
		return store.User{}, false
	}
	return user, true
}

// sendToLogin parks returnTo and sends the browser to the login page: to
// sign in, or, when signed in, to confirm the password.
func (h *Handler) sendToLogin(w http.ResponseWriter, r *http.Request, sess *session.Session, returnTo string) {
	sess.SetReturnTo(returnTo)
	if !h.saveSession(w, r, sess) {
		return
	}
	http.Redirect(w, r, PathLogin, http.StatusSeeOther)
}

// passwordFresh reports whether the session's user typed the password
// within ReauthWindow.
func (h *Handler) passwordFresh(sess *session.Session) bool {
	at := sess.PasswordAt()
	return !at.IsZero() && !h.now().After(at.Add(ReauthWindow))
}

// settingsAuthConfig is the AuthConfig of the settings pages: they belong to
// no client, so the one that applies without a client.
func (h *Handler) settingsAuthConfig(r *http.Request) (resource.AuthConfig, error) {
	return h.authConfig(r.Context(), nil)
}

// twoFactorMeta describes the request for twofactor's audit events.
func twoFactorMeta(r *http.Request, clientID string) twofactor.Meta {
	return twofactor.Meta{ClientID: clientID, RemoteAddr: clientIP(r), RequestID: audit.RequestID(r.Context())}
}

// settingsPage shows the status of the user's second factor.
func (h *Handler) settingsPage(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	user, ok := h.settingsUser(w, r, sess, PathTwoFactor)
	if !ok {
		return
	}
	if sess.ReturnTo() != "" {
		sess.SetReturnTo("")
	}
	h.renderSettings(w, r, sess, user, "")
}

func (h *Handler) renderSettings(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, errMsg string) {
	h.renderSettingsNotice(w, r, sess, user, errMsg, "")
}

func (h *Handler) renderSettingsNotice(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, errMsg, notice string) {
	ctx := r.Context()
	st, err := h.TwoFactor.Status(ctx, user.ID)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	ac, err := h.settingsAuthConfig(r)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	view := &statusView{
		Enabled:       st.Enabled,
		Method:        methodName(st.Method),
		CodesLeft:     st.RecoveryCodesRemaining,
		PasswordFresh: h.passwordFresh(sess),
		CodeMethod:    st.Method == twofactor.MethodSMS || st.Method == twofactor.MethodEmail,
		Switches:      switches(st, hasDelivery(ac)),
	}
	if st.Destination != "" {
		view.Destination = twofactor.MaskDestination(st.Destination)
	}
	if !st.EnrolledAt.IsZero() {
		view.EnrolledAt = st.EnrolledAt.UTC().Format(dateLayout)
	}
	if !st.LockedUntil.IsZero() {
		view.LockedUntil = st.LockedUntil.UTC().Format("15:04 UTC")
	}
	devices, err := h.deviceViews(r, user.ID)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	h.render(w, r, http.StatusOK, pageTwoFactor, pageData{
		Heading:  tr("Two-step verification"),
		Theme:    h.themeFor(ctx, nil),
		CSRF:     csrf,
		Error:    errMsg,
		Notice:   notice,
		Username: displayName(user),
		Status:   view,
		Devices:  devices,
	}, csp{})
}

func methodName(m string) string {
	switch m {
	case twofactor.MethodTOTP:
		return tr("Authenticator app")
	case twofactor.MethodSMS:
		return tr("Text message")
	case twofactor.MethodEmail:
		return tr("E-mail")
	}
	return m
}

// enablePage shows a TOTP secret to set up: the one pending in the session
// when there is one (a reload keeps it), else a new one.
func (h *Handler) enablePage(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	user, st, ac, ok := h.methodSession(w, r, sess, PathTwoFactorEnable)
	if !ok {
		return
	}
	if st.Enabled {
		http.Redirect(w, r, PathTwoFactor, http.StatusSeeOther)
		return
	}
	h.renderSettingsEnrolment(w, r, sess, user, ac, "")
}

func (h *Handler) renderSettingsEnrolment(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, ac resource.AuthConfig, errMsg string) {
	en, err := h.enrolment(sess, user, ac.Issuer())
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	h.renderEnrolment(w, r, sess, en, pageData{
		Heading: tr("Turn on two-step verification"),
		Theme:   h.themeFor(r.Context(), nil),
		Error:   errMsg,
	}, PathTwoFactorEnable, &link{Href: PathTwoFactor, Text: tr("Cancel")}, csp{})
}

// enableSubmit confirms the pending secret with a code from the app and
// shows the recovery codes, once.
func (h *Handler) enableSubmit(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseFormLimit(w, r, sess.ValidCSRF, maxCodeFormBytes) {
		return
	}
	user, ok := h.freshSettingsUser(w, r, sess, PathTwoFactorEnable)
	if !ok {
		return
	}
	ac, err := h.settingsAuthConfig(r)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	codes, err := h.confirmEnrolment(r, sess, user, ac, "")
	switch {
	case errors.Is(err, twofactor.ErrAlreadyEnabled):
		h.renderSettings(w, r, sess, user, msgEnabledMeanwhile)
		return
	case errors.Is(err, twofactor.ErrPendingExpired):
		h.renderSettingsEnrolment(w, r, sess, user, ac, msgEnrolmentExpired)
		return
	case errors.Is(err, twofactor.ErrInvalidCode):
		h.renderSettingsEnrolment(w, r, sess, user, ac, msgInvalidCode)
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	if !h.saveSession(w, r, sess) {
		return
	}
	h.renderRecoveryCodes(w, r, codes, h.themeFor(r.Context(), nil), &link{Href: PathTwoFactor, Text: tr("Continue")}, csp{})
}

// disablePage asks for a current code (or a recovery code) to turn the
// second factor off.
func (h *Handler) disablePage(w http.ResponseWriter, r *http.Request) {
	h.factorCodePage(w, r, PathTwoFactorDisable, pageDisable, tr("Turn off two-step verification"))
}

// factorCodePage is the GET side of a settings action that needs a fresh
// password and a current code of an enabled factor (disable, new recovery
// codes): it sends the user to re-enter the password first when needed.
func (h *Handler) factorCodePage(w http.ResponseWriter, r *http.Request, path, page, heading string) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	user, ok := h.freshSettingsUser(w, r, sess, path)
	if !ok {
		return
	}
	st, err := h.TwoFactor.Status(r.Context(), user.ID)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if !st.Enabled {
		http.Redirect(w, r, PathTwoFactor, http.StatusSeeOther)
		return
	}
	h.renderCodePage(w, r, sess, user, st, page, heading, true)
}

// renderCodePage shows a settings page that asks for a current code
// (disable, new recovery codes). For sms/e-mail factors, whose codes no app
// holds, it sends one bound to this session when send is true, says where
// it went and offers to send again.
func (h *Handler) renderCodePage(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, st twofactor.Status, page, heading string, send bool) {
	h.renderCodePageError(w, r, sess, user, st, page, heading, send, "")
}

func (h *Handler) renderCodePageError(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, st twofactor.Status, page, heading string, send bool, errMsg string) {
	var lead, notice string
	resend := false
	if st.Method == twofactor.MethodSMS || st.Method == twofactor.MethodEmail {
		s, err := h.settingsSignIn(r, sess, user)
		if err != nil {
			h.unavailable(w, r, err)
			return
		}
		if send {
			notice = h.prepareSecondFactor(r, s, codePrompt{})
		}
		lead, resend = h.promptText(s)
	}
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	h.render(w, r, http.StatusOK, page, pageData{
		Heading: heading,
		Theme:   h.themeFor(r.Context(), nil),
		CSRF:    csrf,
		Error:   errMsg,
		Lead:    lead,
		Notice:  notice,
		Resend:  resend,
	}, csp{})
}

// settingsSignIn is the signed-in user proving their factor again on a
// settings page, as the engine sees it: no client, codes bound to this
// browser session (the settings POSTs check them under that binding).
func (h *Handler) settingsSignIn(r *http.Request, sess *session.Session, user store.User) (*signin.SignIn, error) {
	if h.SignIn == nil {
		return nil, errors.New("no sign-in engine configured")
	}
	return h.SignIn.Resume(r.Context(), signin.ResumeInput{User: user, Binding: sess.ID(), Meta: twoFactorMeta(r, "")})
}

// codeGatedSubmit is the common start of a settings POST that needs a
// fresh password and a current code (disable, new recovery codes): CSRF,
// a signed-in user, the password rule, and the code to check as a
// VerifyInput. returnTo is where the user comes back after re-entering the
// password. It has answered the request when ok is false.
func (h *Handler) codeGatedSubmit(w http.ResponseWriter, r *http.Request, returnTo string) (sess *session.Session, user store.User, in twofactor.VerifyInput, ok bool) {
	if sess = h.loadSession(w, r); sess == nil {
		return nil, user, in, false
	}
	if !h.parseFormLimit(w, r, sess.ValidCSRF, maxCodeFormBytes) {
		return nil, user, in, false
	}
	if user, ok = h.freshSettingsUser(w, r, sess, returnTo); !ok {
		return nil, user, in, false
	}
	ac, err := h.settingsAuthConfig(r)
	if err != nil {
		h.unavailable(w, r, err)
		return nil, user, in, false
	}
	return sess, user, twofactor.VerifyInput{
		UserID:    user.ID,
		Code:      r.PostForm.Get("code"),
		PastSteps: ac.PastTokens(),
		BindingID: sess.ID(),
		Meta:      twoFactorMeta(r, ""),
	}, true
}

// disableSubmit turns the factor off when the code is right: the secret
// and recovery codes are deleted and the user's other sessions end.
func (h *Handler) disableSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, user, in, ok := h.codeGatedSubmit(w, r, PathTwoFactorDisable)
	if !ok {
		return
	}
	err := h.TwoFactor.Disable(ctx, in, sess.ID())
	switch {
	case errors.Is(err, twofactor.ErrNotEnabled):
		http.Redirect(w, r, PathTwoFactor, http.StatusSeeOther)
		return
	case errors.Is(err, twofactor.ErrInvalidCode):
		st, serr := h.TwoFactor.Status(ctx, user.ID)
		if serr != nil {
			h.unavailable(w, r, serr)
			return
		}
		h.renderCodePageError(w, r, sess, user, st, pageDisable, tr("Turn off two-step verification"), false, msgInvalidCode)
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, PathTwoFactor, http.StatusSeeOther)
}

// regenerateSubmit replaces the recovery codes after checking a current
// code, and shows the new ones once.
func (h *Handler) regenerateSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// A POST cannot be resumed: after a password prompt, come back to the
	// settings page that makes it.
	sess, user, in, ok := h.codeGatedSubmit(w, r, PathTwoFactor)
	if !ok {
		return
	}
	codes, err := h.TwoFactor.RegenerateRecoveryCodes(ctx, in)
	switch {
	case errors.Is(err, twofactor.ErrNotEnabled):
		http.Redirect(w, r, PathTwoFactor, http.StatusSeeOther)
		return
	case errors.Is(err, twofactor.ErrInvalidCode):
		st, serr := h.TwoFactor.Status(ctx, user.ID)
		if serr != nil {
			h.unavailable(w, r, serr)
			return
		}
		if st.Method == twofactor.MethodSMS || st.Method == twofactor.MethodEmail {
			h.renderCodePageError(w, r, sess, user, st, pageRegenerate, tr("New recovery codes"), false, msgInvalidCode)
			return
		}
		h.renderSettings(w, r, sess, user, msgInvalidCode)
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	h.renderRecoveryCodes(w, r, codes, h.themeFor(ctx, nil), &link{Href: PathTwoFactor, Text: tr("Continue")}, csp{})
}

// regeneratePage asks for a current code to replace the recovery codes;
// the settings page links here for sms/e-mail factors, whose code must be
// sent first (a TOTP user types one into the settings page's own form).
func (h *Handler) regeneratePage(w http.ResponseWriter, r *http.Request) {
	h.factorCodePage(w, r, PathTwoFactorRecoveryCodes, pageRegenerate, tr("New recovery codes"))
}

// enrolment returns the TOTP enrolment pending in sess for user, or starts
// a new one and seals it into the session. The secret lives nowhere else
// until it is confirmed, and only this browser can confirm it.
func (h *Handler) enrolment(sess *session.Session, user store.User, issuer string) (twofactor.Enrollment, error) {
	if pending, err := h.Sessions.PendingEnrolment(sess, user.ID); err == nil {
		en, err := h.TwoFactor.ResumeTOTP(user, issuer, pending)
		if err == nil {
			return en, nil
		}
		if !errors.Is(err, twofactor.ErrPendingExpired) {
			return twofactor.Enrollment{}, err
		}
	}
	en, err := h.TwoFactor.BeginTOTP(user, issuer)
	if err != nil {
		return twofactor.Enrollment{}, err
	}
	h.Sessions.SetPendingEnrolment(sess, user.ID, en.Pending)
	return en, nil
}

// confirmEnrolment enables the secret pending in sess with the code of the
// submitted form. The enrolling session stays; the user's others end.
// ErrPendingExpired when nothing (unexpired) is pending; the caller saves
// sess on success.
func (h *Handler) confirmEnrolment(r *http.Request, sess *session.Session, user store.User, ac resource.AuthConfig, clientID string) ([]string, error) {
	pending, err := h.Sessions.PendingEnrolment(sess, user.ID)
	if err != nil {
		return nil, twofactor.ErrPendingExpired
	}
	secretValue, err := h.TwoFactor.OpenPending(user.ID, pending)
	if err != nil {
		return nil, err
	}
	codes, err := h.TwoFactor.ConfirmTOTP(r.Context(), twofactor.ConfirmInput{
		UserID:           user.ID,
		Secret:           secretValue,
		Code:             r.PostForm.Get("code"),
		PastSteps:        ac.PastTokens(),
		CurrentSessionID: sess.ID(),
		Meta:             twoFactorMeta(r, clientID),
	})
	if err != nil {
		return nil, err
	}
	sess.ClearPendingEnrolment()
	return codes, nil
}

// renderEnrolment shows the QR code, the secret as text, the otpauth URI
// and the form that confirms them with a first code. This page is the one
// place a secret is ever shown.
func (h *Handler) renderEnrolment(w http.ResponseWriter, r *http.Request, sess *session.Session, en twofactor.Enrollment, data pageData, action string, cancel *link, policy csp) {
	h.renderEnrolmentWith(w, r, sess, en, data, action, cancel, policy, nil)
}

// renderEnrolmentWith is renderEnrolment whose form tweak may extend (a
// method switch: hidden fields, the current factor's code).
func (h *Handler) renderEnrolmentWith(w http.ResponseWriter, r *http.Request, sess *session.Session, en twofactor.Enrollment, data pageData, action string, cancel *link, policy csp, tweak func(*enrolView)) {
	if !strings.HasPrefix(en.QR, "data:image/png;base64,") {
		h.unavailable(w, r, errors.New("enrolment QR code is not a PNG data URL"))
		return
	}
	data.CSRF = sess.CSRFToken()
	if !h.saveSession(w, r, sess) {
		return
	}
	data.CSRF = sess.CSRFToken()
	data.Enrol = &enrolView{
		QR:      template.URL(en.QR), // built by twofactor from its own PNG bytes
		Secret:  en.Secret,
		URI:     en.URI,
		Issuer:  en.Issuer,
		Account: en.Account,
		Action:  action,
		Cancel:  cancel,
	}
	if tweak != nil {
		tweak(data.Enrol)
	}
	h.render(w, r, http.StatusOK, pageEnable, data, policy)
}

// renderRecoveryCodes shows freshly made recovery codes; they are never
// shown again.
func (h *Handler) renderRecoveryCodes(w http.ResponseWriter, r *http.Request, codes []string, theme themeView, next *link, policy csp) {
	h.render(w, r, http.StatusOK, pageRecoveryCodes, pageData{
		Heading:       tr("Save your recovery codes"),
		Theme:         theme,
		RecoveryCodes: codes,
		Link:          next,
	}, policy)
}
