package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Paths of the password pages.
const (
	PathForgotPassword = "/auth/forgot-password"
	PathResetPassword  = "/auth/reset-password"
	PathChangePassword = "/auth/change-password"
)

const (
	pageForgotPassword  = "forgot_password"
	pageResetPassword   = "reset_password"
	pageChangePassword  = "change_password"
	pagePasswordChanged = "password_changed"
)

// Longest reset id and code a page takes back from a link or a form.
const maxResetField = 64

var (
	msgPasswordMismatch = tr("The passwords do not match.")
	msgPasswordShort    = tr("The password must have at least {{.Min}} characters.")
	msgPasswordLong     = tr("The password is too long.")
	msgResetInvalid     = tr("The code is wrong or has expired. Ask for a new e-mail.")
	msgResetThrottled   = tr("Too many reset e-mails were asked for. Try again later.")
	msgResetUnavailable = tr("Password reset by e-mail is not available here.")
	msgEnterEmail       = tr("Enter the e-mail address of your account.")
	msgWrongCurrent     = tr("The current password is wrong.")
	noticeResetSent     = tr("If an account has this address, we sent it an e-mail with a code. It is valid for {{.Minutes}} minutes.")
)

// passwordView is the state of a password page's form.
type passwordView struct {
	ResetID string
	// Code is the reset code from the e-mail's link, posted back hidden
	// (CodeFromLink); else the page asks for it.
	Code         string
	CodeFromLink bool
	ClientID     string
	MinLength    int
	Minutes      int // how long a reset code lives
	// NeedsCode: changing the password asks for a code of the user's
	// second factor, labelled CodeLabel.
	NeedsCode bool
	CodeLabel string
	// SignUp is a pending sign-up, sealed (account.SignUps.SealPending).
	SignUp string
}

func (h *Handler) registerPasswordRoutes(mux *http.ServeMux) {
	mux.Handle("GET "+PathForgotPassword, h.wrap(h.forgotPage))
	mux.Handle("POST "+PathForgotPassword, h.wrap(h.forgotSubmit))
	mux.Handle("GET "+PathResetPassword, h.wrap(h.resetPage))
	mux.Handle("POST "+PathResetPassword, h.wrap(h.resetSubmit))
	mux.Handle("GET "+PathChangePassword, h.wrap(h.changePage))
	mux.Handle("POST "+PathChangePassword, h.wrap(h.changeSubmit))
}

// appFlow is what a reset or sign-up page works in: the app whose theme
// it wears (a client_id from the link or form, else the session's
// sign-in) and that app's policy, whose password rules and delivery apply.
type appFlow struct {
	flow
	pol policy.Policy
}

func (af appFlow) clientID() string { return af.pol.Client.ID }

func (h *Handler) appFlowOf(r *http.Request, sess *session.Session, clientID string) (appFlow, error) {
	ctx := r.Context()
	f, err := h.flowOf(r, sess)
	if err != nil {
		return appFlow{}, err
	}
	if clientID != "" && len(clientID) <= maxResetField {
		c, ok, err := h.loadClient(ctx, clientID)
		if err != nil {
			return appFlow{}, err
		}
		if ok {
			f.client = &c
			f.theme = h.themeFor(ctx, f.client)
		}
	}
	var cl resource.Client
	if f.client != nil {
		cl = *f.client
	}
	pol, err := h.policy().For(ctx, cl)
	if err != nil {
		return appFlow{}, err
	}
	return appFlow{flow: f, pol: pol}, nil
}

// loginLinks says which pages the login page of f links to: the
// forgotten-password page (when its e-mail can be sent) and sign-up.
func (h *Handler) loginLinks(r *http.Request, f flow) (forgot, signUp bool) {
	var cl resource.Client
	if f.client != nil {
		cl = *f.client
	}
	pol, err := h.policy().For(r.Context(), cl)
	if err != nil {
		// The login page works without the links; the error shows on
		// the pages themselves.
		return false, false
	}
	return h.Passwords != nil && pol.CanDeliver(twofactor.MethodEmail), h.signUpOffered(appFlow{flow: f, pol: pol})
}

// resetUsable is the reset flow of a page, or false once the page has
// answered (resets cannot be e-mailed here, or storage failed).
func (h *Handler) resetUsable(w http.ResponseWriter, r *http.Request, sess *session.Session, clientID string) (appFlow, bool) {
	rf, err := h.appFlowOf(r, sess, clientID)
	if err != nil {
		h.unavailable(w, r, err)
		return rf, false
	}
	if h.Passwords == nil || !rf.pol.CanDeliver(twofactor.MethodEmail) {
		h.renderErrorThemed(w, r, http.StatusNotFound, msgResetUnavailable,
			&link{Href: PathLogin, Text: tr("Back to sign-in")}, nil, rf.theme)
		return rf, false
	}
	return rf, true
}

// forgotPage asks for the e-mail address of the account.
func (h *Handler) forgotPage(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	rf, ok := h.resetUsable(w, r, sess, r.URL.Query().Get("client_id"))
	if !ok {
		return
	}
	h.renderForgot(w, r, sess, rf, http.StatusOK, "", "")
}

func (h *Handler) renderForgot(w http.ResponseWriter, r *http.Request, sess *session.Session, rf appFlow, status int, email, errMsg string) {
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	h.render(w, r, status, pageForgotPassword, pageData{
		Heading:  tr("Reset your password"),
		Theme:    rf.theme,
		CSRF:     csrf,
		Error:    errMsg,
		Username: email,
		Client:   rf.clientView(),
	}, csp{})
}

// forgotSubmit sends the reset e-mail, if the address is anyone's who may
// sign in, and shows the code form. The answer is the same either way.
func (h *Handler) forgotSubmit(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseForm(w, r, sess.ValidCSRF) {
		return
	}
	rf, ok := h.resetUsable(w, r, sess, r.PostForm.Get("client_id"))
	if !ok {
		return
	}
	email := strings.TrimSpace(r.PostForm.Get("email"))
	started, err := h.Passwords.RequestReset(h.mailContext(r), account.ResetRequest{
		Login: email, Webhook: rf.pol.Webhook(), Meta: twoFactorMeta(r, rf.clientID()),
	})
	switch {
	case errors.Is(err, account.ErrThrottled):
		w.Header().Set("Retry-After", strconv.Itoa(account.RetryAfterOf(err)))
		h.renderForgot(w, r, sess, rf, http.StatusTooManyRequests, email, msgResetThrottled)
		return
	case errors.Is(err, account.ErrInvalidCredentials):
		h.renderForgot(w, r, sess, rf, http.StatusOK, "", msgEnterEmail)
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	h.renderReset(w, r, sess, rf, http.StatusOK, &passwordView{ResetID: started.ID}, noticeResetSent, "", "")
}

// resetPage is where the e-mail's link leads: the new password form, with
// the link's code posted back hidden. Opening the link spends nothing, so
// a mail scanner that fetches it leaves the code usable.
func (h *Handler) resetPage(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	q := r.URL.Query()
	rf, ok := h.resetUsable(w, r, sess, q.Get("client_id"))
	if !ok {
		return
	}
	id, code := q.Get("reset"), strings.TrimSpace(q.Get("code"))
	if id == "" || len(id) > maxResetField {
		http.Redirect(w, r, PathForgotPassword, http.StatusSeeOther)
		return
	}
	v := &passwordView{ResetID: id}
	if code != "" && len(code) <= maxResetField {
		v.Code, v.CodeFromLink = code, true
	}
	h.renderReset(w, r, sess, rf, http.StatusOK, v, "", "", "")
}

func (h *Handler) renderReset(w http.ResponseWriter, r *http.Request, sess *session.Session, rf appFlow, status int, v *passwordView, notice, errMsg, field string) {
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	v.ClientID = rf.clientID()
	v.MinLength = rf.pol.AuthConfig.PasswordMinLength()
	v.Minutes = int(twofactor.ResetTTL / time.Minute)
	h.render(w, r, status, pageResetPassword, pageData{
		Heading:  tr("Reset your password"),
		Theme:    rf.theme,
		CSRF:     csrf,
		Error:    errMsg,
		Field:    field,
		Notice:   notice,
		Client:   rf.clientView(),
		Password: v,
	}, csp{})
}

// newPassword reads the form's new password and its repeat, and checks
// them against ac's rules; on a refusal it returns the message and the
// field in error.
func newPassword(r *http.Request, ac resource.AuthConfig) (pw, errMsg, field string) {
	pw = r.PostForm.Get("new_password")
	if err := ac.CheckNewPassword(pw); err != nil {
		return "", passwordRuleMessage(r, err), "new_password"
	}
	if r.PostForm.Get("new_password_repeat") != pw {
		return "", msgPasswordMismatch, "new_password_repeat"
	}
	return pw, "", ""
}

// passwordRuleMessage says which of the password rules err broke.
func passwordRuleMessage(r *http.Request, err error) string {
	var re *resource.PasswordRuleError
	if !errors.As(err, &re) {
		return msgPasswordShort
	}
	if re.TooLong {
		return msgPasswordLong
	}
	addMessageArgs(r, map[string]any{"Min": re.MinLength})
	return msgPasswordShort
}

// resetSubmit spends the reset code and sets the new password; every
// session, token and remembered browser of the user ends, this one too.
func (h *Handler) resetSubmit(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseFormLimit(w, r, sess.ValidCSRF, maxCodeFormBytes) {
		return
	}
	rf, ok := h.resetUsable(w, r, sess, r.PostForm.Get("client_id"))
	if !ok {
		return
	}
	id, code := r.PostForm.Get("reset"), r.PostForm.Get("code")
	if id == "" || len(id) > maxResetField {
		http.Redirect(w, r, PathForgotPassword, http.StatusSeeOther)
		return
	}
	// A code from the link stays hidden while the user retypes passwords.
	v := &passwordView{ResetID: id}
	if r.PostForm.Get("code_from_link") != "" && len(code) <= maxResetField {
		v.Code, v.CodeFromLink = code, true
	}
	pw, errMsg, field := newPassword(r, rf.pol.AuthConfig)
	if errMsg != "" {
		h.renderReset(w, r, sess, rf, http.StatusOK, v, "", errMsg, field)
		return
	}
	_, err := h.Passwords.ConfirmReset(r.Context(), id, code, pw, rf.pol.AuthConfig, twoFactorMeta(r, rf.clientID()))
	switch {
	case errors.Is(err, account.ErrInvalidResetCode):
		h.renderReset(w, r, sess, rf, http.StatusOK, &passwordView{ResetID: id}, "", msgResetInvalid, "code")
		return
	case err != nil:
		var re *resource.PasswordRuleError
		if errors.As(err, &re) {
			h.renderReset(w, r, sess, rf, http.StatusOK, v, "", passwordRuleMessage(r, err), "new_password")
			return
		}
		h.unavailable(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, pagePasswordChanged, pageData{
		Heading: tr("Password changed"),
		Theme:   rf.theme,
		Lead:    tr("Your password was changed and you were signed out everywhere. Sign in with the new password."),
		Link:    &link{Href: PathLogin, Text: tr("Sign in")},
	}, csp{})
}

// changeForm is the state of the change-password page for user.
type changeForm struct {
	user   store.User
	status twofactor.Status
	ac     resource.AuthConfig
}

// changeSession is the signed-in user of the change-password page, the
// status of their second factor and the settings pages' AuthConfig; ok
// false when the page has answered.
func (h *Handler) changeSession(w http.ResponseWriter, r *http.Request, sess *session.Session) (changeForm, bool) {
	user, ok := h.settingsUser(w, r, sess, PathChangePassword)
	if !ok || h.Passwords == nil {
		if ok {
			h.renderError(w, r, http.StatusNotFound, tr("Something went wrong"), nil, errors.New("no password service configured"))
		}
		return changeForm{}, false
	}
	st, err := h.TwoFactor.Status(r.Context(), user.ID)
	if err != nil {
		h.unavailable(w, r, err)
		return changeForm{}, false
	}
	ac, err := h.settingsAuthConfig(r)
	if err != nil {
		h.unavailable(w, r, err)
		return changeForm{}, false
	}
	return changeForm{user: user, status: st, ac: ac}, true
}

// changePage asks for the current password, the new one and, when the
// user has a second factor, its code (sent now for sms/e-mail factors).
func (h *Handler) changePage(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	cf, ok := h.changeSession(w, r, sess)
	if !ok {
		return
	}
	notice := h.sendCurrentCode(r, sess, cf.user, cf.status, cf.ac)
	h.renderChange(w, r, sess, cf, http.StatusOK, notice, "", "")
}

func (h *Handler) renderChange(w http.ResponseWriter, r *http.Request, sess *session.Session, cf changeForm, status int, notice, errMsg, field string) {
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	codeMethod := cf.status.Method == twofactor.MethodSMS || cf.status.Method == twofactor.MethodEmail
	h.render(w, r, status, pageChangePassword, pageData{
		Heading:  tr("Change password"),
		Theme:    h.themeFor(r.Context(), nil),
		CSRF:     csrf,
		Error:    errMsg,
		Field:    field,
		Notice:   notice,
		Username: loginName(cf.user),
		Args:     destinationArgs(cf.status.Destination),
		Resend:   cf.status.Enabled && codeMethod,
		Password: &passwordView{
			MinLength: cf.ac.PasswordMinLength(),
			NeedsCode: cf.status.Enabled,
			CodeLabel: currentLabel(cf.status),
		},
	}, csp{})
}

// changeSubmit checks the current password and second factor and sets
// the new password. The user's other sessions, every token and the
// remembered browsers end; this browser stays signed in.
func (h *Handler) changeSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseFormLimit(w, r, sess.ValidCSRF, maxCodeFormBytes) {
		return
	}
	cf, ok := h.changeSession(w, r, sess)
	if !ok {
		return
	}
	m := twoFactorMeta(r, "")
	current := r.PostForm.Get("current_password")
	if current == "" || len(current) > maxPasswordLen {
		h.renderChange(w, r, sess, cf, http.StatusOK, "", msgWrongCurrent, "current_password")
		return
	}
	pw, errMsg, field := newPassword(r, cf.ac)
	if errMsg != "" {
		h.renderChange(w, r, sess, cf, http.StatusOK, "", errMsg, field)
		return
	}
	_, err := h.Accounts.CheckPassword(ctx, account.Attempt{
		Login: cf.user.ID, Password: current, RemoteAddr: m.RemoteAddr, RequestID: m.RequestID,
	})
	switch {
	case errors.Is(err, account.ErrThrottled):
		w.Header().Set("Retry-After", strconv.Itoa(account.RetryAfterOf(err)))
		h.renderChange(w, r, sess, cf, http.StatusTooManyRequests, "", throttledMessage(r, err), "current_password")
		return
	case errors.Is(err, account.ErrInvalidCredentials):
		h.renderChange(w, r, sess, cf, http.StatusOK, "", msgWrongCurrent, "current_password")
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	if cf.status.Enabled {
		_, err := h.TwoFactor.Verify(ctx, twofactor.VerifyInput{
			UserID: cf.user.ID, Code: r.PostForm.Get("code"), PastSteps: cf.ac.PastTokens(),
			AllowRecovery: true, BindingID: sess.ID(), Meta: m,
		})
		switch {
		case errors.Is(err, twofactor.ErrNotEnabled):
			// Turned off meanwhile: the password alone proves the change.
		case errors.Is(err, twofactor.ErrInvalidCode):
			h.renderChange(w, r, sess, cf, http.StatusOK, "", msgInvalidCode, "code")
			return
		case err != nil:
			h.unavailable(w, r, err)
			return
		}
	}
	if err := h.Passwords.Set(ctx, cf.user.ID, pw, cf.ac, account.Keep{SessionID: sess.ID()}, "change", m); err != nil {
		h.unavailable(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, pagePasswordChanged, pageData{
		Heading: tr("Password changed"),
		Theme:   h.themeFor(ctx, nil),
		Lead:    tr("Your password was changed. You were signed out on every other browser."),
		Link:    &link{Href: PathTwoFactor, Text: tr("Continue")},
	}, csp{})
}
