package web

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Paths of the sign-up pages. The page is GET /auth/sign-up; its forms
// post elsewhere, as POST /auth/sign-up is the JSON API's.
const (
	PathSignUp        = "/auth/sign-up"
	PathSignUpEmail   = "/auth/sign-up/email"
	PathSignUpConfirm = "/auth/sign-up/confirm"
)

const (
	pageSignUp     = "sign_up"
	pageSignUpCode = "sign_up_code"
)

var (
	msgSignUpUnavailable = tr("Sign-up is not available here.")
	msgInvalidEmail      = tr("Enter a valid e-mail address.")
	msgSignUpExpired     = tr("This sign-up has expired. Start again.")
	msgSignUpThrottled   = tr("Too many codes were asked for. Try again later.")
	msgAccountExists     = tr("An account with this address already exists. Sign in, or reset your password if you forgot it.")
	noticeSignUpCode     = tr("We sent a code to {{.To}}. It is valid for {{.Minutes}} minutes.")
)

func (h *Handler) registerSignUpRoutes(mux *http.ServeMux) {
	mux.Handle("GET "+PathSignUp, h.wrap(h.signUpPage))
	mux.Handle("POST "+PathSignUpEmail, h.wrap(h.signUpSubmit))
	mux.Handle("POST "+PathSignUpConfirm, h.wrap(h.signUpConfirm))
}

// signUpOffered reports whether people may sign up on the hosted page
// under af: the AuthConfig enables it, its new accounts need no phone
// number (SMS codes: the JSON API only), and the address can be sent its
// code when it must be proven.
func (h *Handler) signUpOffered(af appFlow) bool {
	ac := af.pol.AuthConfig
	if h.SignUps == nil || h.Hasher == nil || !ac.SignUpEnabled() {
		return false
	}
	if ac.TwoFactor != nil && ac.TwoFactor.DefaultMethod == twofactor.MethodSMS {
		return false
	}
	return !ac.SignUpVerifiesEmail() || af.pol.CanDeliver(twofactor.MethodEmail)
}

// signUpUsable is the app flow of a sign-up page, or false once the page
// has answered that sign-up is not offered here.
func (h *Handler) signUpUsable(w http.ResponseWriter, r *http.Request, sess *session.Session, clientID string) (appFlow, bool) {
	af, err := h.appFlowOf(r, sess, clientID)
	if err != nil {
		h.unavailable(w, r, err)
		return af, false
	}
	if !h.signUpOffered(af) {
		h.renderErrorThemed(w, r, http.StatusNotFound, msgSignUpUnavailable,
			&link{Href: PathLogin, Text: tr("Back to sign-in")}, nil, af.theme)
		return af, false
	}
	return af, true
}

// signUpPage asks for the new account's address and password.
func (h *Handler) signUpPage(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	af, ok := h.signUpUsable(w, r, sess, r.URL.Query().Get("client_id"))
	if !ok {
		return
	}
	h.renderSignUp(w, r, sess, af, http.StatusOK, "", "", "")
}

func (h *Handler) renderSignUp(w http.ResponseWriter, r *http.Request, sess *session.Session, af appFlow, status int, email, errMsg, field string) {
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	h.render(w, r, status, pageSignUp, pageData{
		Heading:  tr("Create your account"),
		Theme:    af.theme,
		CSRF:     csrf,
		Error:    errMsg,
		Field:    field,
		Username: email,
		Client:   af.clientView(),
		Password: &passwordView{ClientID: af.clientID(), MinLength: af.pol.AuthConfig.PasswordMinLength()},
	}, af.flow.policy)
}

// signUpSubmit checks the address and password. When the address must be
// proven it sends it a code and asks for it; the account exists only
// once the code is right. Else it creates the account at once.
func (h *Handler) signUpSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseForm(w, r, sess.ValidCSRF) {
		return
	}
	af, ok := h.signUpUsable(w, r, sess, r.PostForm.Get("client_id"))
	if !ok {
		return
	}
	email, valid := normalizeDestination(twofactor.MethodEmail, r.PostForm.Get("email"))
	if !valid || len(email) > maxUsernameLen {
		h.renderSignUp(w, r, sess, af, http.StatusOK, "", msgInvalidEmail, "email")
		return
	}
	pw, errMsg, field := newPassword(r, af.pol.AuthConfig)
	if errMsg != "" {
		h.renderSignUp(w, r, sess, af, http.StatusOK, email, errMsg, field)
		return
	}
	verify := af.pol.AuthConfig.SignUpVerifiesEmail()
	if verify {
		// Before the hash: a flood of sign-ups costs no hashing.
		if err := h.SignUps.SpendCodeSend(ctx, clientIP(r)); errors.Is(err, account.ErrThrottled) {
			w.Header().Set("Retry-After", strconv.Itoa(account.RetryAfterOf(err)))
			h.renderSignUp(w, r, sess, af, http.StatusTooManyRequests, email, msgSignUpThrottled, "")
			return
		} else if err != nil {
			h.unavailable(w, r, err)
			return
		}
	}
	hash, err := resource.HashWriteOnly(ctx, h.Hasher, pw)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if !verify {
		h.createAccount(w, r, sess, af, email, hash, false)
		return
	}
	token, err := h.SignUps.SealPending(account.PendingSignUp{
		Email: email, PasswordHash: hash, ExpiresAt: h.now().Add(twofactor.CodeTTL).Unix(),
	})
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	// No user yet: the code is bound to the address alone, as the JSON
	// API's sign-up codes are.
	_, err = h.TwoFactor.SendCode(h.mailContext(r), twofactor.SendInput{
		User: store.User{Email: email}, Purpose: twofactor.PurposeVerify, Channel: twofactor.MethodEmail,
		Destination: email, BindingID: resource.SignUpBinding(twofactor.MethodEmail, email),
		Webhook: af.pol.Webhook(), Meta: twoFactorMeta(r, af.clientID()),
	})
	switch {
	case errors.Is(err, twofactor.ErrTooManySends):
		h.renderSignUp(w, r, sess, af, http.StatusTooManyRequests, email, msgSignUpThrottled, "")
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	h.renderSignUpCode(w, r, sess, af, email, token, "")
}

func (h *Handler) renderSignUpCode(w http.ResponseWriter, r *http.Request, sess *session.Session, af appFlow, email, token, errMsg string) {
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	h.render(w, r, http.StatusOK, pageSignUpCode, pageData{
		Heading:  tr("Create your account"),
		Theme:    af.theme,
		CSRF:     csrf,
		Error:    errMsg,
		Notice:   noticeSignUpCode,
		Args:     map[string]any{"To": email, "Minutes": int(twofactor.CodeTTL / time.Minute)},
		Client:   af.clientView(),
		Password: &passwordView{ClientID: af.clientID(), SignUp: token},
	}, af.flow.policy)
}

// signUpConfirm checks the code sent to the address and creates the
// account, then signs the browser in.
func (h *Handler) signUpConfirm(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseFormLimit(w, r, sess.ValidCSRF, maxCodeFormBytes) {
		return
	}
	af, ok := h.signUpUsable(w, r, sess, r.PostForm.Get("client_id"))
	if !ok {
		return
	}
	token := r.PostForm.Get("signup")
	p, err := h.SignUps.OpenPending(token)
	if err != nil {
		h.renderSignUp(w, r, sess, af, http.StatusOK, "", msgSignUpExpired, "")
		return
	}
	_, err = h.TwoFactor.VerifyCode(r.Context(), twofactor.VerifyCodeInput{
		BindingID: resource.SignUpBinding(twofactor.MethodEmail, p.Email), Code: r.PostForm.Get("code"),
		Meta: twoFactorMeta(r, af.clientID()),
	})
	switch {
	case errors.Is(err, twofactor.ErrInvalidCode):
		h.renderSignUpCode(w, r, sess, af, p.Email, token, msgInvalidCode)
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	h.createAccount(w, r, sess, af, p.Email, p.PasswordHash, true)
}

// createAccount creates the account of a sign-up and signs the browser
// in, as a right password would: a second factor the AuthConfig makes due
// is asked for (or enrolled) next. With e-mail codes turned on at once,
// the sign-up's code proved that factor: the recovery codes are shown,
// then the sign-in goes on.
func (h *Handler) createAccount(w http.ResponseWriter, r *http.Request, sess *session.Session, af appFlow, email, hash string, verified bool) {
	ctx := r.Context()
	ac := af.pol.AuthConfig
	method := ""
	if ac.TwoFactor != nil {
		method = ac.TwoFactor.DefaultMethod
	}
	u := resource.User{ResourceType: resource.TypeUser, ID: "u-" + secret.RandomToken(12), Email: email, EmailVerified: verified}
	created, codes, err := h.SignUps.Create(ctx, account.NewAccount{
		User: u, PasswordHash: hash, Channel: twofactor.MethodEmail, Destination: email,
		Method: method, Webhook: af.pol.Webhook(), Meta: twoFactorMeta(r, af.clientID()),
	})
	switch {
	case errors.Is(err, account.ErrDestinationTaken):
		h.renderSignUp(w, r, sess, af, http.StatusOK, email, msgAccountExists, "email")
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	now := h.now()
	if codes == nil {
		h.passwordAccepted(w, r, sess, af.flow, created, now)
		return
	}
	next, ok := h.completeLogin(w, r, sess, created.ID, signin.MFAMethods([]string{AMROTP}), signin.StrategyEmailCode, now)
	if !ok {
		return
	}
	h.renderRecoveryCodes(w, r, codes, af.theme, &link{Href: next, Text: tr("Continue")}, af.flow.policy)
}
