package web

// Remembered devices on the hosted pages: the "Don't ask again on this
// browser" box of the code page, the cookie that carries the device token,
// and the list on the settings page. Whether a token skips a second factor
// is the engine's decision (signin.Engine.Begin); these pages only carry it.

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
)

// PathTwoFactorDevices takes a POST that forgets one remembered browser.
const PathTwoFactorDevices = "/auth/two-factor/devices"

// deviceCookieBase names the remembered-device cookie; under https it gains
// the __Host- prefix like the session cookie.
const deviceCookieBase = "gatehouse_device"

const maxDeviceToken = 128

func (h *Handler) secureCookies() bool {
	return strings.HasPrefix(strings.ToLower(h.Issuer), "https://")
}

func (h *Handler) deviceCookieName() string {
	if h.secureCookies() {
		return "__Host-" + deviceCookieBase
	}
	return deviceCookieBase
}

// deviceToken is the remembered-device token the browser sent, or "".
func (h *Handler) deviceToken(r *http.Request) string {
	c, err := r.Cookie(h.deviceCookieName())
	if err != nil || len(c.Value) > maxDeviceToken {
		return ""
	}
	return c.Value
}

// setDeviceCookie gives the browser its device token until expires: a
// long-lived cookie of its own (the session cookie ends with the browser
// session), HttpOnly, SameSite=Lax, Secure under https.
func (h *Handler) setDeviceCookie(w http.ResponseWriter, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: h.deviceCookieName(), Value: token, Path: "/", Expires: expires.UTC(),
		MaxAge: int(expires.Sub(h.now()) / time.Second), HttpOnly: true, Secure: h.secureCookies(), SameSite: http.SameSiteLaxMode,
	})
}

// beginRequest is what the engine needs of the parked authorization
// request to decide about a remembered browser: its acr_values and
// max_age.
func beginRequest(f flow) (acr []string, maxAge *time.Duration) {
	if f.pending == nil {
		return nil, nil
	}
	q, err := url.ParseQuery(f.pending.Query)
	if err != nil {
		return nil, nil
	}
	acr = strings.Fields(q.Get("acr_values"))
	if v := q.Get("max_age"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			d := time.Duration(n) * time.Second
			maxAge = &d
		}
	}
	return acr, maxAge
}

// rememberDays is how many days the code page offers to remember the
// browser for; 0 hides the box.
func (h *Handler) rememberDays(s *signin.SignIn) int {
	return int(h.SignIn.RememberFor(s) / (24 * time.Hour))
}

// rememberIfAsked remembers the browser that just passed s's second factor
// with strategy, when the form's box was ticked and the policy allows it.
// A failure costs the user only the convenience: it is logged and the
// sign-in goes on.
func (h *Handler) rememberIfAsked(w http.ResponseWriter, r *http.Request, s *signin.SignIn, strategy string) {
	if r.PostForm.Get("remember_device") == "" || h.SignIn.RememberFor(s) <= 0 {
		return
	}
	token, expires, err := h.SignIn.Remember(r.Context(), s, strategy, r.UserAgent())
	if err != nil {
		h.log().WarnContext(r.Context(), "browser not remembered", "user", s.User.ID, "err", err)
		return
	}
	h.setDeviceCookie(w, token, expires)
}

// deviceView is one remembered browser on the settings page.
type deviceView struct {
	ID       string
	Label    string
	Unknown  bool // no label: the page says "Unknown browser"
	Created  string
	LastUsed string
	Expires  string
}

func (h *Handler) deviceViews(r *http.Request, userID string) ([]deviceView, error) {
	if h.SignIn == nil {
		return nil, nil
	}
	ds, err := h.SignIn.Devices(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	out := make([]deviceView, 0, len(ds))
	for _, d := range ds {
		v := deviceView{ID: d.ID, Label: d.Label, Created: d.CreatedAt.UTC().Format(dateLayout), Expires: d.ExpiresAt.UTC().Format(dateLayout)}
		v.Unknown = v.Label == ""
		if !d.LastUsedAt.IsZero() {
			v.LastUsed = d.LastUsedAt.UTC().Format(dateLayout)
		}
		out = append(out, v)
	}
	return out, nil
}

// devicesSubmit forgets the remembered browser the form names (the
// signed-in user's own only), and clears this browser's cookie when it was
// this one.
func (h *Handler) devicesSubmit(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseForm(w, r, sess.ValidCSRF) {
		return
	}
	user, ok := h.settingsUser(w, r, sess, PathTwoFactor)
	if !ok {
		return
	}
	if h.SignIn == nil {
		h.unavailable(w, r, errors.New("no sign-in engine configured"))
		return
	}
	err := h.SignIn.RevokeDevice(r.Context(), user.ID, r.PostForm.Get("device"), "user")
	if errors.Is(err, store.ErrNotFound) {
		h.renderSettings(w, r, sess, user, tr("That browser was already forgotten."))
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, PathTwoFactor, http.StatusSeeOther)
}
