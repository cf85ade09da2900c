package web

// The second step of a sign-in: a password was accepted for a user who
// needs a second factor. The session holds session.PendingSecondFactor and
// is not signed in: authorize, consent and the settings pages treat it as
// anonymous until the code is checked here. A user who must have a second
// factor (the client or its AuthConfig requires one) and has none sets one
// up on this same page, then sees the recovery codes, then continues.

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// ErrInvalidCode is the one answer to a code that is not accepted.
var ErrInvalidCode = signin.ErrInvalidCode

var (
	msgInvalidCode      = tr("Invalid code")
	msgEnrolmentExpired = tr("This setup expired. Scan the new QR code and enter the code it shows.")
)

// secondFactorStep gathers what both sides of the code step need: the
// pending second factor and its user, the flow (client) it belongs to, and
// the sign-in as the engine sees it. It has answered the request when ok
// is false.
func (h *Handler) secondFactorStep(w http.ResponseWriter, r *http.Request, sess *session.Session) (p *session.PendingSecondFactor, user store.User, f flow, s *signin.SignIn, ok bool) {
	p, user, ok = h.pendingSecondFactor(w, r, sess)
	if !ok {
		return
	}
	var err error
	if f, err = h.flowOf(r, sess); err != nil {
		h.unavailable(w, r, err)
		return p, user, f, nil, false
	}
	if !h.secondFactorUsable(w, r, p, f) {
		return p, user, f, nil, false
	}
	var client resource.Client
	if f.client != nil {
		client = *f.client
	}
	in := signin.ResumeInput{
		User: user, Client: client, FirstFactorAt: p.PasswordAt, Binding: sess.ID(), Meta: twoFactorMeta(r, p.ClientID),
	}
	if su := sess.PendingStepUp(); su != nil {
		// A step-up: the session's methods, and the level to reach.
		in.PriorAMR, in.RequiredACR = sess.AMR(), su.ACR
	}
	s, err = h.SignIn.Resume(r.Context(), in)
	if err != nil {
		h.unavailable(w, r, err)
		return p, user, f, nil, false
	}
	return p, user, f, s, true
}

// pendingSecondFactor returns the session's unexpired second-factor step
// and its user, or sends the browser back to the password form.
func (h *Handler) pendingSecondFactor(w http.ResponseWriter, r *http.Request, sess *session.Session) (*session.PendingSecondFactor, store.User, bool) {
	ctx := r.Context()
	if su := sess.PendingStepUp(); su != nil {
		return h.pendingStepUp(w, r, sess, su)
	}
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
	user, err := h.Store.GetUserWithFactors(ctx, p.UserID)
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

// pendingStepUp is the second-factor step of a signed-in session's
// step-up, seen as the step of a sign-in whose first factor was the
// session's (its auth time). An expired step-up (or an enrolment whose
// password is no longer recent) is dropped and the browser goes back to the
// parked request, which asks again.
func (h *Handler) pendingStepUp(w http.ResponseWriter, r *http.Request, sess *session.Session, su *session.PendingStepUp) (*session.PendingSecondFactor, store.User, bool) {
	// An enrolment needs a recent password until it is confirmed; once it
	// is older, the parked request asks for the password first.
	stale := !su.Enrolled && h.now().Sub(sess.PasswordAt()) > ReauthWindow
	if su.Expired(h.now()) || stale {
		sess.ClearStepUp()
		if !h.saveSession(w, r, sess) {
			return nil, store.User{}, false
		}
		next := PathLogin
		if pa := sess.PendingAuthorize(); pa != nil && !pa.Expired(h.now()) {
			next = PathAuthorize + "?" + pa.Query
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
		return nil, store.User{}, false
	}
	user, signedIn, err := h.currentUser(r.Context(), w, sess, true)
	if err != nil {
		h.unavailable(w, r, err)
		return nil, store.User{}, false
	}
	if !signedIn {
		http.Redirect(w, r, PathLogin, http.StatusSeeOther)
		return nil, store.User{}, false
	}
	return &session.PendingSecondFactor{UserID: user.ID, PasswordAt: sess.AuthTime(), ClientID: su.ClientID, Enrolled: su.Enrolled}, user, true
}

// twoFactorPage asks for the second factor the user picked (?strategy=,
// default: the factor of their own, whose box takes a recovery code too),
// preparing it first when it needs a send step (a code by SMS or e-mail,
// the current TOTP code through the AuthConfig's webhook, a custom factor
// that says so); or, for a user who must enrol, shows the enrolment.
func (h *Handler) twoFactorPage(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	p, user, f, s, ok := h.secondFactorStep(w, r, sess)
	if !ok {
		return
	}
	if !p.Enrolled {
		h.renderFlowEnrolment(w, r, sess, user, f, s, "")
		return
	}
	prompt, ok := h.codePrompt(w, r, s, r.URL.Query().Get("strategy"))
	if !ok {
		return
	}
	if prompt.send {
		prompt.notice, prompt.options = h.prepareSecondFactorOptions(r, s, prompt)
	}
	h.renderTwoFactor(w, r, sess, f, prompt, "")
}

// secondFactorUsable stops a login whose second factor cannot be checked
// or set up because the service is not configured. It fails closed.
func (h *Handler) secondFactorUsable(w http.ResponseWriter, r *http.Request, p *session.PendingSecondFactor, f flow) bool {
	if h.SignIn == nil || (!p.Enrolled && h.TwoFactor == nil) {
		h.renderErrorThemed(w, r, http.StatusServiceUnavailable,
			tr("Two-step verification is not available right now. Please try again later."),
			nil, errors.New("no second-factor service configured"), f.theme)
		return false
	}
	return true
}

// Notices of the code prompt when no new code went out.
var (
	noticeTooManySends = tr("Too many codes were sent. Use the last one you received or a recovery code, or try again later.")
	noticeNotSent      = tr("We could not send a new code just now. Use the last one you received or a recovery code, or send again in a moment.")
)

// codePrompt is the code page for one strategy of a sign-in.
type codePrompt struct {
	strategy     string // "" for the user's own built-in factor (recovery codes too)
	desc         signin.Description
	lead         string
	args         map[string]any // placeholders of lead
	send         bool           // the page prepares the strategy (and offers to send again)
	others       []link
	notice       string
	recovery     bool   // the box takes a recovery code too
	options      string // a passkey's request options, prepared for this page
	rememberDays int    // the box to remember this browser, for that many days (0: none)
}

// codePrompt resolves strategy for s (an unknown or unoffered one falls
// back to the default) and describes its page.
func (h *Handler) codePrompt(w http.ResponseWriter, r *http.Request, s *signin.SignIn, strategy string) (codePrompt, bool) {
	offers, err := h.SignIn.OffersBesideRecovery(r.Context(), s)
	if err != nil {
		h.unavailable(w, r, err)
		return codePrompt{}, false
	}
	strategies := signin.Strategies(offers)
	builtin := s.TwoFactor.Enabled
	if !slices.Contains(strategies, strategy) || (builtin && signin.BuiltIn(strategy)) {
		strategy = ""
	}
	if strategy == "" && !builtin && len(strategies) > 0 {
		strategy = strategies[0]
	}
	var cp codePrompt
	cp.strategy = strategy
	cp.recovery = strategy == "" && h.SignIn.Usable(s, signin.StrategyBackupCode)
	cp.rememberDays = h.rememberDays(s)
	if strategy == "" {
		cp.desc = signin.Description{Input: signin.InputCode}
		cp.lead, cp.send = h.promptText(s)
		cp.args = destinationArgs(s.TwoFactor.Destination)
	} else {
		cp.desc, _ = h.SignIn.Describe(strategy)
		cp.lead, cp.send = cp.desc.Prompt, cp.desc.NeedsSend
	}
	for _, st := range strategies {
		if signin.BuiltIn(st) && builtin {
			st = ""
		}
		if st == strategy {
			continue
		}
		d, _ := h.SignIn.Describe(st)
		if st == "" {
			d, _ = h.SignIn.Describe(signin.BuiltinStrategy(s.TwoFactor))
		}
		href := PathLoginTwoFactor
		if st != "" {
			href += "?strategy=" + url.QueryEscape(st)
		}
		cp.others = append(cp.others, useInstead(href, d.Label))
	}
	return cp, true
}

// prepareSecondFactor sends the code of the prompt (Aidbox sends the
// current TOTP code through the webhook so the app can deliver it by SMS;
// sms and e-mail factors get a fresh one-time code; a custom factor opens
// its challenge). The first attempt is bounded by the webhook's timeout and
// a failure only gets logged: the user can still type a code from the app
// or a recovery code, or ask again. It returns a notice for the page when
// a code the user waits for did not go out ("" otherwise: a TOTP user reads
// the app anyway).
func (h *Handler) prepareSecondFactor(r *http.Request, s *signin.SignIn, cp codePrompt) string {
	notice, _ := h.prepareSecondFactorNotice(r, s, cp)
	return notice
}

// prepareSecondFactorOptions is prepareSecondFactor that also returns a
// challenge-response factor's options (a passkey's) for the page.
func (h *Handler) prepareSecondFactorOptions(r *http.Request, s *signin.SignIn, cp codePrompt) (string, string) {
	notice, prepared := h.prepareSecondFactorNotice(r, s, cp)
	return notice, string(prepared.Options)
}

func (h *Handler) prepareSecondFactorNotice(r *http.Request, s *signin.SignIn, cp codePrompt) (string, signin.Prepared) {
	ctx := r.Context()
	prepared, err := h.SignIn.Prepare(h.mailContext(r), s, cp.strategy, "")
	rid := audit.RequestID(ctx)
	switch {
	case err == nil:
		return "", prepared
	case errors.Is(err, signin.ErrNotPreparable), errors.Is(err, signin.ErrNoDelivery):
		return "", prepared
	case errors.Is(err, twofactor.ErrNothingToSend):
		h.log().InfoContext(ctx, "no TOTP code pushed: the next usable step has not begun", "user", s.User.ID, "request_id", rid)
		return "", prepared
	case errors.Is(err, signin.ErrTooManySends):
		h.log().InfoContext(ctx, "second-factor code not sent: send limit reached", "user", s.User.ID, "request_id", rid)
	default:
		h.log().WarnContext(ctx, "second-factor code not sent", "user", s.User.ID, "err", err, "request_id", rid)
	}
	if cp.strategy == "" && s.TwoFactor.Method == twofactor.MethodTOTP {
		return "", prepared
	}
	if errors.Is(err, signin.ErrTooManySends) {
		return noticeTooManySends, prepared
	}
	return noticeNotSent, prepared
}

func (h *Handler) renderTwoFactor(w http.ResponseWriter, r *http.Request, sess *session.Session, f flow, cp codePrompt, errMsg string) {
	h.renderTwoFactorStatus(w, r, sess, f, cp, errMsg, http.StatusOK)
}

func (h *Handler) renderTwoFactorStatus(w http.ResponseWriter, r *http.Request, sess *session.Session, f flow, cp codePrompt, errMsg string, status int) {
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	resend := ""
	if cp.send && cp.desc.Input != signin.InputPasskey {
		resend = PathLoginTwoFactor
		if cp.strategy != "" {
			resend += "?strategy=" + url.QueryEscape(cp.strategy)
		}
	}
	h.render(w, r, status, pageTwoFactorCode, pageData{
		Heading: tr("Two-step verification"),
		Theme:   f.theme,
		CSRF:    csrf,
		Error:   errMsg,
		Client:  f.clientView(),
		Lead:    cp.lead,
		Args:    cp.args,
		Notice:  cp.notice,
		Code: &codeView{
			Strategy:     cp.strategy,
			Text:         cp.desc.Input == signin.InputText,
			Recovery:     cp.recovery,
			Resend:       resend,
			Others:       cp.others,
			Passkey:      cp.desc.Input == signin.InputPasskey,
			Options:      cp.options,
			RememberDays: cp.rememberDays,
		},
	}, f.policy)
}

// promptText says where the code of the user's built-in factor comes
// from, and whether showing the prompt sends one.
func (h *Handler) promptText(s *signin.SignIn) (string, bool) {
	// The webhook delivers every factor's code (TOTP pushes too); SMTP
	// only e-mail codes.
	webhook := s.Policy.CanDeliver(resource.MethodSMS)
	lead := tr("Enter the 6-digit code from your authenticator app.")
	if webhook {
		lead = tr("Enter the 6-digit code from your authenticator app, or the one we sent you.")
	}
	switch s.TwoFactor.Method {
	case twofactor.MethodSMS:
		lead = tr("Enter the 6-digit code we sent by text message to {{.To}}.")
	case twofactor.MethodEmail:
		lead = tr("Enter the 6-digit code we sent by e-mail to {{.To}}.")
		webhook = s.Policy.CanDeliverCodes()
	}
	return lead, webhook
}

// twoFactorSubmit checks the answer with the strategy of the form and,
// when it is accepted, finishes the sign-in with the engine's amr; for a
// user who is enrolling, it confirms the new factor.
func (h *Handler) twoFactorSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseFormLimit(w, r, sess.ValidCSRF, maxCodeFormBytes) {
		return
	}
	p, user, f, s, ok := h.secondFactorStep(w, r, sess)
	if !ok {
		return
	}
	if !p.Enrolled {
		h.confirmFlowEnrolment(w, r, sess, p, user, f, s)
		return
	}
	strategy := r.PostForm.Get("strategy")
	res, err := h.SignIn.Attempt(ctx, s, strategy, r.PostForm.Get("code"))
	if errors.Is(err, signin.ErrInvalidCode) || errors.Is(err, signin.ErrNotOffered) {
		cp, ok := h.codePrompt(w, r, s, strategy)
		if ok {
			msg, status := msgInvalidCode, http.StatusOK
			if cp.desc.Input == signin.InputPasskey {
				// A passkey's challenge is spent by every answer: the
				// page asks again with a new one.
				msg, status = msgPasskeyRefused, http.StatusBadRequest
				cp.notice, cp.options = h.prepareSecondFactorOptions(r, s, cp)
			}
			h.renderTwoFactorStatus(w, r, sess, f, cp, msg, status)
		}
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	h.rememberIfAsked(w, r, s, res.Strategy)
	if sess.PendingStepUp() != nil {
		h.finishStepUp(w, r, sess, res.AMR, res.Strategy)
		return
	}
	h.finishLogin(w, r, sess, user, res.AMR, res.Strategy, p.PasswordAt)
}

// finishStepUp raises the signed-in session to the methods of its
// step-up (the session's and the new factor's; auth_time unchanged) under
// a new session id, and sends the browser back to the parked request.
func (h *Handler) finishStepUp(w http.ResponseWriter, r *http.Request, sess *session.Session, amr []string, factor string) {
	next, ok := h.completeStepUp(w, r, sess, amr, factor)
	if ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

func (h *Handler) completeStepUp(w http.ResponseWriter, r *http.Request, sess *session.Session, amr []string, factor string) (string, bool) {
	ctx := r.Context()
	su := sess.PendingStepUp()
	sess.SteppedUp(amr, factor)
	next := PathLogin
	if p := sess.PendingAuthorize(); p != nil && !p.Expired(h.now()) {
		next = PathAuthorize + "?" + p.Query
	}
	if err := h.Sessions.Rotate(ctx, w, sess); err != nil {
		h.unavailable(w, r, err)
		return "", false
	}
	clientID := ""
	if su != nil {
		clientID = su.ClientID
	}
	h.recordAudit(ctx, store.AuditEvent{Type: audit.LoginStepUp, UserID: sess.UserID(), ClientID: clientID,
		Detail: map[string]string{"amr": strings.Join(amr, " ")}})
	return next, true
}

// renderFlowEnrolment shows the TOTP enrolment of a user whose login
// requires a second factor they do not have yet.
func (h *Handler) renderFlowEnrolment(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, f flow, s *signin.SignIn, errMsg string) {
	en, err := h.enrolment(sess, user, s.AuthConfig.Issuer())
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	lead := tr("Two-step verification is required for your account. Set it up to continue.")
	if f.client != nil {
		// The app's rule, when it has one; else the account's own (a TOTP
		// enrolment due since it was created).
		if s.Policy.SecondFactorRequired() || (s.RequiredACR != "" && !resource.TOTPEnrolmentDue(s.TwoFactor)) {
			lead = tr("{{.App}} requires two-step verification. Set it up to continue.")
			addMessageArgs(r, map[string]any{"App": f.clientView().Name})
		}
	}
	grace, err := h.graceView(r, s)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	h.renderEnrolment(w, r, sess, en, pageData{
		Heading: tr("Set up two-step verification"),
		Theme:   f.theme,
		Client:  f.clientView(),
		Lead:    lead,
		Error:   errMsg,
		Grace:   grace,
	}, PathLoginTwoFactor, &link{Href: PathLogin, Text: tr("Start over")}, f.policy)
}

// confirmFlowEnrolment enables the factor set up inside a login, signs the
// user in with it (pwd, otp, mfa) and shows the recovery codes, whose
// Continue link resumes the authorization.
func (h *Handler) confirmFlowEnrolment(w http.ResponseWriter, r *http.Request, sess *session.Session, p *session.PendingSecondFactor, user store.User, f flow, s *signin.SignIn) {
	ctx := r.Context()
	codes, err := h.confirmEnrolment(r, sess, user, s.AuthConfig, p.ClientID)
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
		h.renderFlowEnrolment(w, r, sess, user, f, s, msgEnrolmentExpired)
		return
	case errors.Is(err, twofactor.ErrInvalidCode):
		h.renderFlowEnrolment(w, r, sess, user, f, s, msgInvalidCode)
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	var next string
	var ok bool
	if sess.PendingStepUp() != nil {
		next, ok = h.completeStepUp(w, r, sess, signin.Accumulate(sess.AMR(), []string{AMROTP}), signin.StrategyTOTP)
	} else {
		next, ok = h.completeLogin(w, r, sess, user.ID, signin.MFAMethods([]string{AMROTP}), signin.StrategyTOTP, p.PasswordAt)
	}
	if !ok {
		return
	}
	h.log().InfoContext(ctx, "second factor enrolled during sign-in", "user", user.ID, "client", p.ClientID, "request_id", audit.RequestID(ctx))
	h.renderRecoveryCodes(w, r, codes, f.theme, &link{Href: next, Text: tr("Continue")}, f.policy)
}
