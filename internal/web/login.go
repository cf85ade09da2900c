package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
)

// msgInvalidCredentials is the one answer to a failed password, whatever
// the reason (unknown user, wrong password, inactive, throttled).
var msgInvalidCredentials = tr("Invalid username or password")

// msgAccountDisabled answers only the right password of an inactive account.
var msgAccountDisabled = tr("This account is disabled. Contact your administrator.")

const (
	maxUsernameLen = 256
	maxPasswordLen = 1024
)

// loginPage shows the password form. With authorization parameters in the
// query (Aidbox's /auth/login?client_id=…&response_type=code…) it validates
// them like the authorization endpoint and parks the request, so the
// sign-in resumes it.
func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	user, signedIn, err := h.currentUser(ctx, w, sess, false)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	q := r.URL.Query()
	if q.Has("client_id") || q.Has("response_type") {
		ar, err := h.OAuth.ParseAuthorize(ctx, r)
		if err != nil {
			h.authorizeFailed(w, r, ar, err)
			return
		}
		if signedIn {
			// The authorization endpoint decides whether this user may
			// go on (prompt, max_age, consent) or must sign in again.
			http.Redirect(w, r, PathAuthorize+"?"+ar.Query.Encode(), http.StatusFound)
			return
		}
		h.park(sess, ar, h.now(), nil)
	}

	f, err := h.flowOf(r, sess)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if signedIn && f.pending == nil && sess.ReturnTo() != "" {
		// A settings page sent the user to confirm the password.
		h.renderReauth(w, r, sess, f, user, "")
		return
	}
	if signedIn && f.pending == nil {
		if !h.saveSession(w, r, sess) {
			return
		}
		h.render(w, r, http.StatusOK, pageSignedIn, pageData{
			Heading:  tr("Signed in"),
			Theme:    f.theme,
			Username: displayName(user),
		}, f.policy)
		return
	}
	username := ""
	if f.pending != nil {
		if pq, err := url.ParseQuery(f.pending.Query); err == nil {
			username = strings.TrimSpace(pq.Get("login_hint"))
		}
	}
	if len(username) > maxUsernameLen {
		username = ""
	}
	h.renderLogin(w, r, sess, f, http.StatusOK, username, "")
}

func (h *Handler) renderLogin(w http.ResponseWriter, r *http.Request, sess *session.Session, f flow, status int, username, errMsg string) {
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	forgot, signUp := h.loginLinks(r, f)
	h.render(w, r, status, pageLogin, pageData{
		Heading:        tr("Sign in"),
		Theme:          f.theme,
		CSRF:           csrf,
		Error:          errMsg,
		Username:       username,
		Client:         f.clientView(),
		PasskeyLogin:   h.loginPasskeys(),
		ForgotPassword: forgot,
		SignUp:         signUp,
	}, f.policy)
}

// loginName is what the user types to sign in: the e-mail address when
// there is one, else the id (FindUser accepts both).
func loginName(u store.User) string {
	if u.Email != "" {
		return u.Email
	}
	return u.ID
}

// renderReauth asks the signed-in user for the password again before a
// change to their second factor.
func (h *Handler) renderReauth(w http.ResponseWriter, r *http.Request, sess *session.Session, f flow, user store.User, errMsg string) {
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	h.render(w, r, http.StatusOK, pageLogin, pageData{
		Heading:  tr("Confirm your password"),
		Lead:     tr("For your security, enter your password again to continue."),
		Theme:    f.theme,
		CSRF:     csrf,
		Error:    errMsg,
		Username: loginName(user),
		Reauth:   true,
	}, f.policy)
}

// loginRefused shows the form again with msg: the password confirmation
// when the signed-in user was confirming it, else the sign-in form.
func (h *Handler) loginRefused(w http.ResponseWriter, r *http.Request, sess *session.Session, f flow, username, msg string) {
	if f.pending == nil && sess.ReturnTo() != "" {
		user, signedIn, err := h.currentUser(r.Context(), w, sess, false)
		if err != nil {
			h.unavailable(w, r, err)
			return
		}
		if signedIn {
			h.renderReauth(w, r, sess, f, user, msg)
			return
		}
	}
	h.renderLogin(w, r, sess, f, http.StatusOK, username, msg)
}

// loginSubmit checks the password. Every failure renders the same page with
// the same message and status; a success rotates the session and goes on
// (303) to the second factor, the parked authorization request, or the
// signed-in page.
func (h *Handler) loginSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseForm(w, r, sess.ValidCSRF) {
		return
	}
	f, err := h.flowOf(r, sess)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	username := strings.TrimSpace(r.PostForm.Get("username"))
	password := r.PostForm.Get("password")
	if username == "" || password == "" {
		h.loginRefused(w, r, sess, f, username, tr("Enter your username and password."))
		return
	}
	if len(username) > maxUsernameLen || len(password) > maxPasswordLen {
		h.loginRefused(w, r, sess, f, "", msgInvalidCredentials)
		return
	}
	clientID := ""
	if f.client != nil {
		clientID = f.client.ID
	}
	user, err := h.Accounts.CheckPassword(ctx, account.Attempt{
		Login:      username,
		Password:   password,
		RemoteAddr: clientIP(r),
		ClientID:   clientID,
		RequestID:  audit.RequestID(ctx),
	})
	if errors.Is(err, account.ErrThrottled) {
		h.loginRefused(w, r, sess, f, username, throttledMessage(r, err))
		return
	}
	if errors.Is(err, account.ErrAccountDisabled) {
		h.loginRefused(w, r, sess, f, username, msgAccountDisabled)
		return
	}
	if errors.Is(err, account.ErrInvalidCredentials) {
		h.loginRefused(w, r, sess, f, username, msgInvalidCredentials)
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}

	now := h.now()
	if sess.Authenticated() && sess.UserID() == user.ID && f.pending == nil {
		// The signed-in user confirmed the password for a settings page.
		// The sign-in itself (its time, its methods) stays as it was:
		// only the password is fresh again.
		sess.SetPasswordAt(now)
		next := PathLogin
		if rt := sess.ReturnTo(); rt != "" {
			next = rt
			sess.SetReturnTo("")
		}
		if err := h.Sessions.Rotate(ctx, w, sess); err != nil {
			h.unavailable(w, r, err)
			return
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	h.passwordAccepted(w, r, sess, f, user, now)
}

// passwordAccepted goes on from a right password (or a new account's)
// checked at now: the engine decides whether a second factor or an
// enrolment follows, else the sign-in completes.
func (h *Handler) passwordAccepted(w http.ResponseWriter, r *http.Request, sess *session.Session, f flow, user store.User, now time.Time) {
	ctx := r.Context()
	if h.SignIn == nil {
		h.unavailable(w, r, errors.New("no sign-in engine configured"))
		return
	}
	var client resource.Client
	if f.client != nil {
		client = *f.client
	}
	clientID := client.ID
	acrValues, maxAge := beginRequest(f)
	_, step, err := h.SignIn.Begin(ctx, signin.BeginInput{User: user, Client: client, FirstFactorAt: now, Meta: twoFactorMeta(r, clientID),
		DeviceToken: h.deviceToken(r), ACRValues: acrValues, MaxAge: maxAge})
	if errors.Is(err, signin.ErrUnmetLevel) {
		h.renderErrorThemed(w, r, http.StatusForbidden,
			tr("This application accepts a kind of two-step verification your account does not have. Ask its administrator for help."),
			nil, err, f.theme)
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if step.Status != signin.StatusComplete {
		// The sign-in goes on in this browser session: its record is the
		// server-side state of the step, and its rotation at the end is
		// what lets the step complete once.
		sess.BeginSecondFactor(user.ID, session.PendingSecondFactor{
			PasswordAt: now,
			ClientID:   clientID,
			Enrolled:   step.Status == signin.StatusNeedsSecondFactor,
		})
		if err := h.Sessions.Rotate(ctx, w, sess); err != nil {
			h.unavailable(w, r, err)
			return
		}
		http.Redirect(w, r, PathLoginTwoFactor, http.StatusSeeOther)
		return
	}
	h.finishLogin(w, r, sess, user, step.Result.AMR, step.Result.Strategy, now)
}

// finishLogin marks the user signed in under a new session id and answers
// the parked authorization request (resumeAuthorize), or sends the browser
// on (303) to the page that asked for a sign-in, or to the signed-in page.
// factor is the strategy of the second factor ("" for none); passwordAt is
// when the password of this sign-in was checked.
func (h *Handler) finishLogin(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, amr []string, factor string, passwordAt time.Time) {
	if p := sess.PendingAuthorize(); p != nil && !p.Expired(h.now()) && h.resumeAuthorize(w, r, sess, user, amr, factor, passwordAt, p) {
		return
	}
	next, ok := h.completeLogin(w, r, sess, user.ID, amr, factor, passwordAt)
	if !ok {
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// resumeAuthorize completes the sign-in and answers, in the same response,
// the authorization request it was made for, as GET /auth/authorize would
// on the browser's next request: the code goes to the client one round
// trip sooner (Keycloak answers its login form the same way). The record
// the sign-in creates has the parked request cleared and its client
// remembered already, so the request costs no session write of its own;
// a consent or step-up page that still follows parks it again. It returns
// false, having done nothing, when the request no longer parses: the
// authorization endpoint then tells the browser what is wrong (or answers
// once a fault, a database away, has passed).
func (h *Handler) resumeAuthorize(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, amr []string, factor string, passwordAt time.Time, pending *session.PendingAuthorize) bool {
	ctx := r.Context()
	ar, err := h.OAuth.ParseAuthorize(ctx, authorizeRequest(r, pending.Query))
	if err != nil {
		return false
	}
	sess.Authenticate(user.ID, h.now(), amr, factor)
	sess.SetPasswordAt(passwordAt)
	sess.SetPendingAuthorize(nil)
	sess.AddClient(ar.ClientID)
	if err := h.Sessions.Rotate(ctx, w, sess); err != nil {
		h.unavailable(w, r, err)
		return true
	}
	// The step-up rule decides from the user's factors; a sign-in that
	// did not read them (a passkey's) reads them when the rule may apply.
	requested, ok := signin.RequestedLevel(ar.ACRValues, ar.ACRClaim, ar.ACREssential)
	if ok && user.Factors == nil && signin.MayNeedStepUp(sess.AMR(), ar.Client, requested) {
		u, err := h.Store.GetUserWithFactors(ctx, user.ID)
		if err != nil {
			h.unavailable(w, r, fmt.Errorf("get user with factors: %w", err))
			return true
		}
		user = u
	}
	h.noteUser(ctx, &user)
	h.decideAuthorize(w, r, ar, sess, user, true, h.resumable(pending, ar))
	return true
}

// authorizeRequest is the GET /auth/authorize request with query that the
// browser would send next, made from r (its headers, cookies and context).
func authorizeRequest(r *http.Request, query string) *http.Request {
	ar := r.Clone(r.Context())
	ar.Method = http.MethodGet
	ar.URL = &url.URL{Path: PathAuthorize, RawQuery: query}
	ar.RequestURI = ar.URL.RequestURI()
	ar.Body, ar.ContentLength = http.NoBody, 0
	ar.Form, ar.PostForm, ar.MultipartForm = nil, nil, nil
	ar.Header.Del("Content-Type")
	return ar
}

// completeLogin marks the user signed in under a new session id and
// returns where the browser goes next. On failure it has rendered the
// error page and returns false.
func (h *Handler) completeLogin(w http.ResponseWriter, r *http.Request, sess *session.Session, userID string, amr []string, factor string, passwordAt time.Time) (string, bool) {
	sess.Authenticate(userID, h.now(), amr, factor)
	sess.SetPasswordAt(passwordAt)
	next := PathLogin
	if p := sess.PendingAuthorize(); p != nil && !p.Expired(h.now()) {
		next = PathAuthorize + "?" + p.Query
	} else if rt := sess.ReturnTo(); rt != "" {
		next = rt
		sess.SetReturnTo("")
	}
	if err := h.Sessions.Rotate(r.Context(), w, sess); err != nil {
		h.unavailable(w, r, err)
		return "", false
	}
	return next, true
}

// throttledMessage tells the user plainly that sign-in is paused here, and
// for how long.
func throttledMessage(r *http.Request, err error) string {
	addMessageArgs(r, map[string]any{"Minutes": (account.RetryAfterOf(err) + 59) / 60})
	return tr("Too many failed sign-ins for this account from your network. Sign-in is paused here; try again in {{.Minutes}} min.")
}
