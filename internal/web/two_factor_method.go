package web

// Choosing the second factor on the settings pages: turning on codes by
// text message or e-mail, switching between them and an authenticator app,
// or moving them to a new phone number, address or app. A code method needs
// a destination verified by a code sent there; every change needs a
// password typed within ReauthWindow and, when a factor is on, a current
// code of it (or a recovery code), like turning it off.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Audit event types of the settings pages. EventDestinationVerified is the
// type the JSON API records for the same act.
const (
	EventMethodChanged       = "two_factor.method_changed"
	EventDestinationVerified = "user.destination_verified"
)

// Messages of the method pages.
var (
	msgNoDelivery     = tr("Codes by text message or e-mail cannot be sent: no delivery is configured. Use an authenticator app instead.")
	msgBadPhone       = tr("Enter the phone number in international format, such as +14155550123.")
	msgBadEmail       = tr("Enter a valid e-mail address.")
	msgTaken          = tr("This phone number or e-mail address belongs to another account.")
	msgTooManySends   = tr("Too many codes were sent to this destination. Try again later.")
	msgTooManyLookups = tr("Too many phone numbers or e-mail addresses were tried in the last hour. Try again later.")
	msgUnverified     = tr("Verify the phone number or e-mail address first.")
	msgSwitchExpired  = tr("Something changed meanwhile. Start again.")
	// A confirmation that lost the race to another window's: the secret
	// its app holds was never stored.
	msgEnabledMeanwhile = tr("Two-step verification was turned on meanwhile in another window, with another key. Remove the entry you just added from your authenticator app.")
)

// methodTarget reads the method a switch is about; ok false for anything
// but totp, sms and email.
func methodTarget(v string) (string, bool) {
	switch v {
	case twofactor.MethodTOTP, twofactor.MethodSMS, twofactor.MethodEmail:
		return v, true
	}
	return "", false
}

// methodPath is the page that turns method on or switches to it.
func methodPath(method string) string {
	return PathTwoFactorMethod + "?" + url.Values{"method": {method}}.Encode()
}

// hasDelivery reports whether ac can deliver codes by text or e-mail.
func hasDelivery(ac resource.AuthConfig) bool {
	w := ac.Webhook()
	return w != nil && w.Endpoint != ""
}

// switches are the links of the settings page to the other methods: an
// authenticator app always, codes only where a webhook delivers them.
func switches(st twofactor.Status, delivery bool) []switchLink {
	var out []switchLink
	if st.Enabled {
		text := tr("Use an authenticator app")
		if st.Method == twofactor.MethodTOTP {
			text = tr("Move to a new authenticator app")
		}
		out = append(out, switchLink{ID: "switch-totp", Href: methodPath(twofactor.MethodTOTP), Text: text})
	}
	if !delivery {
		return out
	}
	sms, email := tr("Use text messages"), tr("Use e-mail")
	if !st.Enabled {
		sms, email = tr("Turn on with text messages"), tr("Turn on with e-mail")
	}
	switch {
	case st.Enabled && st.Method == twofactor.MethodSMS:
		sms = tr("Use another phone number")
	case st.Enabled && st.Method == twofactor.MethodEmail:
		email = tr("Use another e-mail address")
	}
	return append(out,
		switchLink{ID: "switch-sms", Href: methodPath(twofactor.MethodSMS), Text: sms},
		switchLink{ID: "switch-email", Href: methodPath(twofactor.MethodEmail), Text: email})
}

// normalizeDestination tidies what a person types: spaces, dashes, dots
// and brackets in a phone number, case in an address. ok is false when the
// result is not an E.164 number or an e-mail address.
func normalizeDestination(method, v string) (string, bool) {
	v = strings.TrimSpace(v)
	if method == twofactor.MethodSMS {
		v = strings.Map(func(r rune) rune {
			switch r {
			case ' ', '-', '.', '(', ')', '\u00a0':
				return -1
			}
			return r
		}, v)
		return v, resource.ValidPhone(v)
	}
	v = strings.ToLower(v)
	return v, resource.ValidEmail(v)
}

// verifiedOn reports whether dest is the user's verified destination of
// method.
func verifiedOn(u store.User, method, dest string) bool {
	if method == twofactor.MethodSMS {
		return u.PhoneVerified && u.PhoneNumber == dest
	}
	return u.EmailVerified && u.Email == dest
}

// currentLabel names the code that proves the factor that is on.
func currentLabel(st twofactor.Status) string {
	if !st.Enabled {
		return ""
	}
	switch st.Method {
	case twofactor.MethodSMS:
		return tr("Code we sent by text message to {{.To}} (or a recovery code)")
	case twofactor.MethodEmail:
		return tr("Code we sent by e-mail to {{.To}} (or a recovery code)")
	}
	return tr("Current code from your authenticator app (or a recovery code)")
}

// destinationArgs fill the {{.To}} of the messages that name where the
// factor that is on sends its codes.
func destinationArgs(destination string) map[string]any {
	if destination == "" {
		return nil
	}
	return map[string]any{"To": twofactor.MaskDestination(destination)}
}

func methodHeading(method string) string {
	switch method {
	case twofactor.MethodSMS:
		return tr("Codes by text message")
	case twofactor.MethodEmail:
		return tr("Codes by e-mail")
	}
	return tr("Set up an authenticator app")
}

// methodSession is the signed-in user of a method page with a fresh
// password, the status of their factor and the AuthConfig of the settings
// pages; ok false when the page has answered.
func (h *Handler) methodSession(w http.ResponseWriter, r *http.Request, sess *session.Session, returnTo string) (store.User, twofactor.Status, resource.AuthConfig, bool) {
	user, ok := h.freshSettingsUser(w, r, sess, returnTo)
	if !ok {
		return store.User{}, twofactor.Status{}, resource.AuthConfig{}, false
	}
	st, err := h.TwoFactor.Status(r.Context(), user.ID)
	if err != nil {
		h.unavailable(w, r, err)
		return store.User{}, twofactor.Status{}, resource.AuthConfig{}, false
	}
	ac, err := h.settingsAuthConfig(r)
	if err != nil {
		h.unavailable(w, r, err)
		return store.User{}, twofactor.Status{}, resource.AuthConfig{}, false
	}
	return user, st, ac, true
}

// methodPage starts turning a method on or switching to it: for sms and
// e-mail it asks for the destination; for an app it shows a new secret
// (a user without a factor uses the enable page).
func (h *Handler) methodPage(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	method, ok := methodTarget(r.URL.Query().Get("method"))
	if !ok {
		http.Redirect(w, r, PathTwoFactor, http.StatusSeeOther)
		return
	}
	user, st, ac, ok := h.methodSession(w, r, sess, methodPath(method))
	if !ok {
		return
	}
	if method == twofactor.MethodTOTP {
		if !st.Enabled {
			http.Redirect(w, r, PathTwoFactorEnable, http.StatusSeeOther)
			return
		}
		notice := h.sendCurrentCode(r, sess, user, st, ac)
		h.renderMethodTOTP(w, r, sess, user, st, ac, "", notice)
		return
	}
	if !hasDelivery(ac) {
		h.renderSettingsNotice(w, r, sess, user, msgNoDelivery, "")
		return
	}
	dest := user.PhoneNumber
	if method == twofactor.MethodEmail {
		dest = user.Email
	}
	h.renderMethodDestination(w, r, sess, method, dest, "")
}

// sendCurrentCode sends the code of the factor that is on when nothing
// else shows it (sms/e-mail), bound to this session like the disable page's.
func (h *Handler) sendCurrentCode(r *http.Request, sess *session.Session, user store.User, st twofactor.Status, ac resource.AuthConfig) string {
	if !st.Enabled || (st.Method != twofactor.MethodSMS && st.Method != twofactor.MethodEmail) {
		return ""
	}
	s, err := h.settingsSignIn(r, sess, user)
	if err != nil {
		h.log().WarnContext(r.Context(), "second-factor code not sent", "user", user.ID, "err", err)
		return noticeNotSent
	}
	return h.prepareSecondFactor(r, s, codePrompt{})
}

func (h *Handler) renderMethodDestination(w http.ResponseWriter, r *http.Request, sess *session.Session, method, dest, errMsg string) {
	v := &methodView{Method: method, Destination: dest}
	if method == twofactor.MethodSMS {
		v.InputType, v.Autocomplete = "tel", "tel"
		v.Label = tr("Mobile phone number, in international format (+14155550123)")
	} else {
		v.InputType, v.Autocomplete = "email", "email"
		v.Label = tr("E-mail address (it also becomes the address you sign in with)")
	}
	h.renderMethod(w, r, sess, method, v, twofactor.Status{}, errMsg, "")
}

func (h *Handler) renderMethodConfirm(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, st twofactor.Status, method, dest, errMsg, notice string) {
	v := &methodView{
		Method: method, Confirm: true, Destination: dest, Masked: twofactor.MaskDestination(dest),
		Verified: verifiedOn(user, method, dest), Submit: tr("Turn on"),
	}
	if st.Enabled {
		v.Submit = tr("Switch")
	}
	v.Other = tr("Use another phone number")
	if method == twofactor.MethodEmail {
		v.Other = tr("Use another e-mail address")
	}
	h.renderMethod(w, r, sess, method, v, st, errMsg, notice)
}

func (h *Handler) renderMethod(w http.ResponseWriter, r *http.Request, sess *session.Session, method string, v *methodView, st twofactor.Status, errMsg, notice string) {
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	h.render(w, r, http.StatusOK, pageMethod, pageData{
		Heading: methodHeading(method),
		Theme:   h.themeFor(r.Context(), nil),
		CSRF:    csrf,
		Error:   errMsg,
		Notice:  notice,
		Method:  v,
		Current: currentLabel(st),
		Args:    destinationArgs(st.Destination),
	}, csp{})
}

// renderMethodTOTP shows the secret of a new app that is to replace the
// factor that is on.
func (h *Handler) renderMethodTOTP(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, st twofactor.Status, ac resource.AuthConfig, errMsg, notice string) {
	en, err := h.enrolment(sess, user, ac.Issuer())
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	lead := tr("Set up the new app: the old one stops working.")
	switch st.Method {
	case twofactor.MethodSMS:
		lead = tr("Set up the new app: it replaces codes by text message.")
	case twofactor.MethodEmail:
		lead = tr("Set up the new app: it replaces codes by e-mail.")
	}
	h.renderEnrolmentWith(w, r, sess, en, pageData{
		Heading: methodHeading(twofactor.MethodTOTP),
		Theme:   h.themeFor(r.Context(), nil),
		Lead:    lead,
		Error:   errMsg,
		Notice:  notice,
		Args:    destinationArgs(st.Destination),
	}, PathTwoFactorMethod, &link{Href: PathTwoFactor, Text: tr("Cancel")}, csp{}, func(v *enrolView) {
		v.Hidden = []hiddenField{{Name: "method", Value: twofactor.MethodTOTP}, {Name: "step", Value: "confirm"}}
		v.Current = currentLabel(st)
		v.Submit = tr("Switch")
		if st.Method == twofactor.MethodSMS || st.Method == twofactor.MethodEmail {
			v.Resend = methodPath(twofactor.MethodTOTP)
		}
	})
}

// methodSubmit sends the code that verifies a destination (step send) or
// makes the switch (step confirm).
func (h *Handler) methodSubmit(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseFormLimit(w, r, sess.ValidCSRF, maxCodeFormBytes) {
		return
	}
	method, ok := methodTarget(r.PostForm.Get("method"))
	if !ok {
		http.Redirect(w, r, PathTwoFactor, http.StatusSeeOther)
		return
	}
	user, st, ac, ok := h.methodSession(w, r, sess, methodPath(method))
	if !ok {
		return
	}
	if method == twofactor.MethodTOTP {
		h.switchToTOTP(w, r, sess, user, st, ac)
		return
	}
	if !hasDelivery(ac) {
		h.renderSettingsNotice(w, r, sess, user, msgNoDelivery, "")
		return
	}
	dest, valid := normalizeDestination(method, r.PostForm.Get("destination"))
	if !valid {
		msg := msgBadPhone
		if method == twofactor.MethodEmail {
			msg = msgBadEmail
		}
		h.renderMethodDestination(w, r, sess, method, strings.TrimSpace(r.PostForm.Get("destination")), msg)
		return
	}
	if r.PostForm.Get("step") == "confirm" {
		h.switchToCodes(w, r, sess, user, st, ac, method, dest)
		return
	}
	h.sendVerification(w, r, sess, user, st, ac, method, dest)
}

// sendVerification sends a code to dest (unless it is verified on the
// account already) and, when a factor with sent codes is on, that factor's
// code too; then it asks for them.
func (h *Handler) sendVerification(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, st twofactor.Status, ac resource.AuthConfig, method, dest string) {
	ctx := r.Context()
	if err := resource.SpendDestinationLookup(ctx, h.Store, user.ID, h.now()); errors.Is(err, resource.ErrTooManyLookups) {
		h.renderMethodDestination(w, r, sess, method, dest, msgTooManyLookups)
		return
	} else if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if taken, err := resource.DestinationTakenByOther(ctx, h.Store, method, dest, user.ID); err != nil {
		h.unavailable(w, r, err)
		return
	} else if taken {
		h.renderMethodDestination(w, r, sess, method, dest, msgTaken)
		return
	}
	if !verifiedOn(user, method, dest) {
		_, err := h.TwoFactor.SendCode(h.mailContext(r), twofactor.SendInput{
			User: user, Purpose: twofactor.PurposeVerify, Channel: method, Destination: dest,
			BindingID: resource.VerificationBinding(user.ID, method, dest),
			Webhook:   webhookOf(ac), Meta: twoFactorMeta(r, ""),
		})
		switch {
		case errors.Is(err, twofactor.ErrTooManySends):
			h.renderMethodDestination(w, r, sess, method, dest, msgTooManySends)
			return
		case errors.Is(err, twofactor.ErrNoWebhook):
			h.renderMethodDestination(w, r, sess, method, dest, msgNoDelivery)
			return
		case err != nil:
			h.unavailable(w, r, err)
			return
		}
	}
	notice := h.sendCurrentCode(r, sess, user, st, ac)
	h.renderMethodConfirm(w, r, sess, user, st, method, dest, "", notice)
}

// switchToCodes checks the code sent to dest and marks dest verified on
// the account, checks the code of the factor that is on, and makes codes
// to dest the second factor. The destination is checked first: once
// verified it stays so, and a wrong code of the old factor only asks for
// that code again.
func (h *Handler) switchToCodes(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, st twofactor.Status, ac resource.AuthConfig, method, dest string) {
	ctx := r.Context()
	if !verifiedOn(user, method, dest) {
		_, err := h.TwoFactor.VerifyCode(ctx, twofactor.VerifyCodeInput{
			UserID: user.ID, BindingID: resource.VerificationBinding(user.ID, method, dest),
			Code: r.PostForm.Get("code"), Meta: twoFactorMeta(r, ""),
		})
		if errors.Is(err, twofactor.ErrInvalidCode) {
			h.renderMethodConfirm(w, r, sess, user, st, method, dest, msgInvalidCode, "")
			return
		}
		if err != nil {
			h.unavailable(w, r, err)
			return
		}
		rec, err := resource.SetVerifiedDestination(ctx, h.Store, user.ID, method, dest)
		if errors.Is(err, resource.ErrDestinationTaken) {
			h.renderMethodDestination(w, r, sess, method, dest, msgTaken)
			return
		}
		if err != nil {
			h.unavailable(w, r, err)
			return
		}
		user = rec
		h.recordAudit(ctx, store.AuditEvent{Type: EventDestinationVerified, UserID: user.ID,
			Detail: map[string]string{"channel": method, "destination": twofactor.MaskDestination(dest)}})
	}
	if !h.proveCurrent(w, r, sess, user, st, ac, func(errMsg string) {
		h.renderMethodConfirm(w, r, sess, user, st, method, dest, errMsg, "")
	}) {
		return
	}
	var codes []string
	err := h.Store.InTx(ctx, func(ctx context.Context) error {
		if err := h.Store.DeleteTwoFactor(ctx, user.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var err error
		codes, err = h.TwoFactor.EnableCodeMethod(ctx, twofactor.EnableCodeInput{
			UserID: user.ID, Method: method, Webhook: webhookOf(ac),
			CurrentSessionID: sess.ID(), Meta: twoFactorMeta(r, ""),
		})
		return err
	})
	switch {
	case errors.Is(err, twofactor.ErrUnverified):
		// The account's destination changed after it was verified here.
		h.renderMethodDestination(w, r, sess, method, dest, msgUnverified)
		return
	case errors.Is(err, twofactor.ErrNoWebhook):
		h.renderMethodDestination(w, r, sess, method, dest, msgNoDelivery)
		return
	case errors.Is(err, twofactor.ErrAlreadyEnabled):
		h.renderSettingsNotice(w, r, sess, user, msgSwitchExpired, "")
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	h.switched(r, user, st, method, dest)
	h.renderRecoveryCodes(w, r, codes, h.themeFor(ctx, nil), &link{Href: PathTwoFactor, Text: tr("Continue")}, csp{})
}

// switchToTOTP confirms a new app in place of the factor that is on: the
// old factor's code first, then the new secret with the app's code, the
// replacement in one transaction.
func (h *Handler) switchToTOTP(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, st twofactor.Status, ac resource.AuthConfig) {
	ctx := r.Context()
	if !st.Enabled {
		http.Redirect(w, r, PathTwoFactorEnable, http.StatusSeeOther)
		return
	}
	if _, err := h.Sessions.PendingEnrolment(sess, user.ID); err != nil {
		// Nothing pending (expired, or another browser): a new secret.
		h.renderMethodTOTP(w, r, sess, user, st, ac, msgEnrolmentExpired, "")
		return
	}
	if !h.proveCurrent(w, r, sess, user, st, ac, func(errMsg string) {
		h.renderMethodTOTP(w, r, sess, user, st, ac, errMsg, "")
	}) {
		return
	}
	var codes []string
	err := h.Store.InTx(ctx, func(ctx context.Context) error {
		if err := h.Store.DeleteTwoFactor(ctx, user.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var err error
		codes, err = h.confirmEnrolment(r.WithContext(ctx), sess, user, ac, "")
		return err
	})
	switch {
	case errors.Is(err, twofactor.ErrPendingExpired):
		h.renderMethodTOTP(w, r, sess, user, st, ac, msgEnrolmentExpired, "")
		return
	case errors.Is(err, twofactor.ErrInvalidCode):
		// The old factor's code is spent: both are asked for again.
		h.renderMethodTOTP(w, r, sess, user, st, ac, msgInvalidCode, "")
		return
	case errors.Is(err, twofactor.ErrAlreadyEnabled):
		h.renderSettingsNotice(w, r, sess, user, msgSwitchExpired, "")
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	if !h.saveSession(w, r, sess) {
		return
	}
	h.switched(r, user, st, twofactor.MethodTOTP, "")
	h.renderRecoveryCodes(w, r, codes, h.themeFor(ctx, nil), &link{Href: PathTwoFactor, Text: tr("Continue")}, csp{})
}

// proveCurrent checks the code of the factor that is on (field
// current_code; a recovery code too), with the factor's lockout. With no
// factor on there is nothing to prove. On refusal it calls again with the
// message and returns false; on a failure of the service it renders the
// error page.
func (h *Handler) proveCurrent(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, st twofactor.Status, ac resource.AuthConfig, again func(errMsg string)) bool {
	if !st.Enabled {
		return true
	}
	_, err := h.TwoFactor.Verify(r.Context(), twofactor.VerifyInput{
		UserID:        user.ID,
		Code:          r.PostForm.Get("current_code"),
		PastSteps:     ac.PastTokens(),
		AllowRecovery: true,
		BindingID:     sess.ID(),
		Meta:          twoFactorMeta(r, ""),
	})
	switch {
	case err == nil, errors.Is(err, twofactor.ErrNotEnabled):
		// Not enabled: switched off in another tab meanwhile; turning the
		// new method on needs no proof then.
		return true
	case errors.Is(err, twofactor.ErrInvalidCode):
		again(msgInvalidCode)
		return false
	}
	h.unavailable(w, r, err)
	return false
}

// switched records a change of method (turning one on is recorded by
// twofactor as two_factor.enabled).
func (h *Handler) switched(r *http.Request, user store.User, before twofactor.Status, method, dest string) {
	if !before.Enabled {
		return
	}
	detail := map[string]string{"from": before.Method, "to": method}
	if before.Destination != "" {
		detail["from_destination"] = twofactor.MaskDestination(before.Destination)
	}
	if dest != "" {
		detail["to_destination"] = twofactor.MaskDestination(dest)
	}
	h.recordAudit(r.Context(), store.AuditEvent{Type: EventMethodChanged, UserID: user.ID, Detail: detail})
}
