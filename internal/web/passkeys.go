package web

// Passkeys on the hosted pages: passwordless sign-in from the login page
// (a button and the browser's autofill, "conditional UI"), and the
// settings page /auth/passkeys (list, add, rename, delete). The browser
// side is static/passkey.js; every ceremony's challenge is bound to this
// browser session and checked by package passkey with go-webauthn.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/passkey"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Paths of the passkey pages.
const (
	PathLoginPasskey        = "/auth/login/passkey"
	PathLoginPasskeyOptions = "/auth/login/passkey/options"
	PathPasskeys            = "/auth/passkeys"
	PathPasskeyRegister     = "/auth/passkeys/register"
	PathPasskeyRegisterOpts = "/auth/passkeys/register/options"
	pathPasskeyRename       = "/auth/passkeys/{id}/rename"
	pathPasskeyDelete       = "/auth/passkeys/{id}/delete"
)

var (
	msgPasskeyRefused  = tr("That passkey could not be used. Try again, or sign in with your password.")
	msgPasskeyNotSaved = tr("The passkey was not saved: the browser's answer could not be verified. Try again.")
)

func (h *Handler) registerPasskeyRoutes(mux *http.ServeMux) {
	if h.Passkeys == nil {
		return
	}
	mux.Handle("POST "+PathLoginPasskeyOptions, h.wrap(h.passwordlessOptions))
	mux.Handle("POST "+PathLoginPasskey, h.wrap(h.passwordlessSubmit))
	mux.Handle("GET "+PathPasskeys, h.wrap(h.passkeysPage))
	mux.Handle("POST "+PathPasskeyRegisterOpts, h.wrap(h.passkeyRegisterOptions))
	mux.Handle("POST "+PathPasskeyRegister, h.wrap(h.passkeyRegisterSubmit))
	mux.Handle("POST "+pathPasskeyRename, h.wrap(h.passkeyRenameSubmit))
	mux.Handle("POST "+pathPasskeyDelete, h.wrap(h.passkeyDeleteSubmit))
}

// writeOptions answers a script's request for ceremony options.
func writeOptions(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// passwordlessOptions is POST /auth/login/passkey/options (the login
// page's script, with the CSRF token): request options for any passkey of
// this site, bound to this browser session.
func (h *Handler) passwordlessOptions(w http.ResponseWriter, r *http.Request) {
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
	ac, err := h.authConfig(r.Context(), f.client)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	opts, exp, err := h.Passkeys.BeginPasswordless(r.Context(), ac, sess.ID())
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	writeOptions(w, http.StatusOK, map[string]any{"options": opts, "expires_at": exp})
}

// passwordlessSubmit is POST /auth/login/passkey: {credential}. A passkey
// with user verification signs the user in without a password (amr hwk,
// user, mfa; acr phishing-resistant); a refusal shows the login page with
// one message and status 400, and counts on the user's attempt counter
// when the passkey names one.
func (h *Handler) passwordlessSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseFormLimit(w, r, sess.ValidCSRF, maxCodeFormBytes) {
		return
	}
	f, err := h.flowOf(r, sess)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	ac, err := h.authConfig(ctx, f.client)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	clientID := ""
	if f.client != nil {
		clientID = f.client.ID
	}
	meta := twoFactorMeta(r, clientID)
	answer := []byte(r.PostForm.Get("credential"))
	user, err := h.Passkeys.PasswordlessOwner(ctx, answer, meta)
	if errors.Is(err, passkey.ErrInvalid) {
		h.renderLogin(w, r, sess, f, http.StatusBadRequest, "", msgPasskeyRefused)
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	res, err := h.SignIn.Passwordless(ctx, signin.PasswordlessInput{
		User: user, Strategy: passkey.StrategyPasskey, Meta: meta,
		Verify: func(ctx context.Context) ([]string, error) {
			_, a, err := h.Passkeys.FinishPasswordless(ctx, ac, sess.ID(), answer, meta)
			if errors.Is(err, passkey.ErrInvalid) {
				return nil, signin.ErrInvalidCode
			}
			return a.AMR(), err
		},
	})
	if errors.Is(err, signin.ErrInvalidCode) {
		h.renderLogin(w, r, sess, f, http.StatusBadRequest, "", msgPasskeyRefused)
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	h.recordAudit(ctx, store.AuditEvent{Type: audit.LoginSuccess, UserID: user.ID, ClientID: clientID,
		Detail: map[string]string{"method": passkey.StrategyPasskey}})
	// A passkey with user verification is a fresh sign-in: it stands in
	// for the password the settings pages ask to have been entered lately.
	h.finishLogin(w, r, sess, user, res.AMR, passkey.StrategyPasskey, h.now())
}

// passkeyView is one row of the settings page.
type passkeyView struct {
	ID, Name, Created, LastUsed, Transports string
	Synced                                  bool
}

// passkeysView is the settings page's list.
type passkeysView struct {
	List          []passkeyView
	PasswordFresh bool
}

// passkeysPage is GET /auth/passkeys: the signed-in user's passkeys. A
// request with an Authorization header is the JSON API's listing of the
// same path.
func (h *Handler) passkeysPage(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" && h.PasskeyAPI != nil {
		h.PasskeyAPI.ServeHTTP(w, r)
		return
	}
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	user, ok := h.settingsUser(w, r, sess, PathPasskeys)
	if !ok {
		return
	}
	if sess.ReturnTo() != "" {
		sess.SetReturnTo("")
	}
	h.renderPasskeys(w, r, sess, user, http.StatusOK, r.URL.Query().Get("notice"), "")
}

// Notices of the settings page, named in the query after a redirect.
var passkeyNotices = map[string]string{
	"added":   tr("Passkey added."),
	"renamed": tr("Passkey renamed."),
	"deleted": tr("Passkey deleted."),
}

func (h *Handler) renderPasskeys(w http.ResponseWriter, r *http.Request, sess *session.Session, user store.User, status int, notice, errMsg string) {
	recs, err := h.Passkeys.List(r.Context(), user.ID)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	view := &passkeysView{PasswordFresh: h.passwordFresh(sess)}
	for _, c := range recs {
		pv := passkeyView{ID: c.ID, Name: c.Name, Created: c.CreatedAt.Format(time.DateOnly),
			Transports: strings.Join(c.Transports, ", "), Synced: c.BackupState}
		if !c.LastUsedAt.IsZero() {
			pv.LastUsed = c.LastUsedAt.UTC().Format(dateLayout)
		}
		view.List = append(view.List, pv)
	}
	csrf, ok := h.formToken(w, r, sess)
	if !ok {
		return
	}
	h.render(w, r, status, pagePasskeys, pageData{
		Heading:  tr("Passkeys"),
		Theme:    h.themeFor(r.Context(), nil),
		CSRF:     csrf,
		Error:    errMsg,
		Notice:   passkeyNotices[notice],
		Username: displayName(user),
		Passkeys: view,
	}, csp{})
}

// passkeyRegisterOptions is POST /auth/passkeys/register/options (the
// settings page's script): creation options, the user's passkeys excluded.
// Adding a factor needs a recent password: without one the answer says
// where to confirm it.
func (h *Handler) passkeyRegisterOptions(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseForm(w, r, sess.ValidCSRF) {
		return
	}
	user, signedIn, err := h.currentUser(r.Context(), w, sess, false)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if !signedIn || !h.passwordFresh(sess) {
		sess.SetReturnTo(PathPasskeys)
		if !h.saveSession(w, r, sess) {
			return
		}
		writeOptions(w, http.StatusUnauthorized, map[string]any{"error": "reauthentication_required", "redirect": PathLogin})
		return
	}
	ac, err := h.settingsAuthConfig(r)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	opts, exp, err := h.Passkeys.BeginRegistration(r.Context(), ac, user, sess.ID())
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	writeOptions(w, http.StatusOK, map[string]any{"options": opts, "expires_at": exp})
}

// passkeyRegisterSubmit is POST /auth/passkeys/register: {credential,
// name}. A refused answer stores nothing and shows the page with 400.
func (h *Handler) passkeyRegisterSubmit(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseFormLimit(w, r, sess.ValidCSRF, maxCodeFormBytes) {
		return
	}
	user, ok := h.freshSettingsUser(w, r, sess, PathPasskeys)
	if !ok {
		return
	}
	ac, err := h.settingsAuthConfig(r)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	_, err = h.Passkeys.FinishRegistration(r.Context(), ac, user, sess.ID(), []byte(r.PostForm.Get("credential")), r.PostForm.Get("name"), twoFactorMeta(r, ""))
	switch {
	case errors.Is(err, passkey.ErrInvalid):
		h.renderPasskeys(w, r, sess, user, http.StatusBadRequest, "", msgPasskeyNotSaved)
		return
	case errors.Is(err, passkey.ErrBadName):
		h.renderPasskeys(w, r, sess, user, http.StatusBadRequest, "", "A passkey name is 1 to 64 characters.")
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, PathPasskeys+"?notice=added", http.StatusSeeOther)
}

// passkeyRenameSubmit is POST /auth/passkeys/{id}/rename: {name}.
func (h *Handler) passkeyRenameSubmit(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseForm(w, r, sess.ValidCSRF) {
		return
	}
	user, ok := h.settingsUser(w, r, sess, PathPasskeys)
	if !ok {
		return
	}
	err := h.Passkeys.Rename(r.Context(), user.ID, r.PathValue("id"), r.PostForm.Get("name"), twoFactorMeta(r, ""))
	switch {
	case errors.Is(err, passkey.ErrBadName):
		h.renderPasskeys(w, r, sess, user, http.StatusBadRequest, "", "A passkey name is 1 to 64 characters.")
		return
	case errors.Is(err, store.ErrNotFound):
		h.renderPasskeys(w, r, sess, user, http.StatusNotFound, "", tr("No such passkey."))
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, PathPasskeys+"?notice=renamed", http.StatusSeeOther)
}

// passkeyDeleteSubmit is POST /auth/passkeys/{id}/delete. It needs a
// password entered within ReauthWindow (else the browser confirms it on
// the login page and comes back); the user's other sessions and every
// token end, as after any change of a second factor.
func (h *Handler) passkeyDeleteSubmit(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseForm(w, r, sess.ValidCSRF) {
		return
	}
	user, ok := h.freshSettingsUser(w, r, sess, PathPasskeys)
	if !ok {
		return
	}
	err := h.Passkeys.Delete(r.Context(), user.ID, r.PathValue("id"), sess.ID(), "", twoFactorMeta(r, ""))
	if errors.Is(err, store.ErrNotFound) {
		h.renderPasskeys(w, r, sess, user, http.StatusNotFound, "", tr("No such passkey."))
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, PathPasskeys+"?notice=deleted", http.StatusSeeOther)
}

// loginPasskeys reports whether the login page offers passkeys.
func (h *Handler) loginPasskeys() bool { return h.Passkeys != nil }
