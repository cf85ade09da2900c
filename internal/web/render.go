package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/i18n"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/templates"
)

// Page templates, by name: each is base.html plus the file of that name.
const (
	pageLogin         = "login"
	pageTwoFactorCode = "two_factor_code"
	pageConsent       = "consent"
	pageError         = "error"
	pageLogout        = "logout"
	pageSignedIn      = "signed_in"
	pageTwoFactor     = "two_factor"
	pageEnable        = "two_factor_enable"
	pageRecoveryCodes = "two_factor_recovery"
	pageDisable       = "two_factor_disable"
	pageMethod        = "two_factor_method"
	pageRegenerate    = "two_factor_regenerate"
	pagePasskeys      = "passkeys"
)

func mustParsePages() map[string]*template.Template {
	pages, err := parsePages(templates.FS)
	if err != nil {
		// The templates are embedded at build time; a broken one is a
		// programming error that every test run catches.
		panic(err)
	}
	return pages
}

func parsePages(fsys fs.FS) (map[string]*template.Template, error) {
	names, err := fs.Glob(fsys, "*.html")
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	pages := make(map[string]*template.Template)
	for _, file := range names {
		if file == "base.html" {
			continue
		}
		t, err := template.New("").ParseFS(fsys, "base.html", file)
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", file, err)
		}
		pages[strings.TrimSuffix(file, ".html")] = t
	}
	return pages, nil
}

// pageData is what every template sees. Page-specific fields are empty on
// pages that do not use them.
type pageData struct {
	Page      string // template name; the body's class is page-<Page>
	Lang, Dir string // <html lang dir>
	// Args fill the {{.Name}} placeholders of the page's messages.
	Args      map[string]any
	Heading   string
	Theme     themeView
	CSRF      string
	Error     string
	Username  string
	Client    *clientView
	Scopes    []scopeView
	RequestID string
	Link      *link
	// Lead is an explanatory sentence under the heading.
	Lead string
	// Reauth: the login form asks the signed-in user to confirm the
	// password before a sensitive change.
	Reauth bool
	// Notice is a status line that is not an error (a code was not sent).
	Notice string
	// Code is the second-factor prompt of a sign-in.
	Code *codeView
	// Resend links to a settings code page again, which sends a new code.
	Resend bool
	// Enrol is a TOTP secret being set up (QR, text, URI, confirm form).
	Enrol *enrolView
	// RecoveryCodes are shown once, right after they were made.
	RecoveryCodes []string
	// Status is the user's second factor on the settings page.
	Status *statusView
	// Method is a switch to SMS or e-mail codes on the settings pages.
	Method *methodView
	// Logout asks the user to confirm signing out (no valid id_token_hint).
	Logout *logoutView
	// Current asks for a code of the factor that is on, to prove a change;
	// it names where that code comes from ("" when no factor is on).
	Current string
	// Devices are the user's remembered browsers on the settings page.
	Devices []deviceView
	// Grace offers to skip an in-login enrolment, saying for how long.
	Grace *graceView
	// Passkeys is the settings page's list of passkeys.
	Passkeys *passkeysView
	// PasskeyLogin: the login page offers passwordless sign-in (a button,
	// and the browser's passkey autofill on the username field).
	PasskeyLogin bool
	// ForgotPassword: the login page links to the forgotten-password page.
	ForgotPassword bool
	// SignUp: the login page links to the sign-up page.
	SignUp bool
	// Field names the form field that Error is about.
	Field string
	// Password is the form of the password pages (reset, change).
	Password *passwordView

	loc *i18n.Localizer
}

// codeView is the code prompt of a sign-in: one strategy's input, the
// other strategies as links.
type codeView struct {
	Strategy string // hidden field; "" for the user's own factor
	Text     bool   // a free-text answer rather than digits
	Recovery bool   // the box takes a recovery code too
	Resend   string // reloads the page, which sends again ("" for none)
	Others   []link
	// RememberDays offers to remember this browser for that many days (0: no box).
	RememberDays int
	// Passkey: the answer comes from the browser's passkey prompt, asked
	// with Options (request options JSON) by static/passkey.js.
	Passkey bool
	Options string
}

// enrolView is the TOTP enrolment page. QR is a data: URL that we built
// from our own bytes, so the template may put it in src.
type enrolView struct {
	QR      template.URL
	Secret  string
	URI     string
	Issuer  string
	Account string
	Action  string // where the confirmation form posts
	Cancel  *link
	// Hidden are extra fields of the confirmation form (a method switch).
	Hidden []hiddenField
	// Current labels a second input for a code of the factor that is on,
	// when setting up a new app replaces it ("" for none).
	Current string
	Submit  string // the button; "Turn on" when empty
	// Resend reloads the page, which sends the current factor's code again.
	Resend string
}

type hiddenField struct {
	Name, Value string
}

// statusView is the settings page's summary; it never holds a secret.
type statusView struct {
	Enabled       bool
	Method        string // in words
	Destination   string // masked phone or e-mail for sms/e-mail factors
	EnrolledAt    string
	CodesLeft     int
	LockedUntil   string
	PasswordFresh bool
	// CodeMethod: the factor's codes are sent (sms/e-mail), so new
	// recovery codes need a page that sends one first.
	CodeMethod bool
	// Switches are the other methods the user can turn on or switch to.
	Switches []switchLink
}

// switchLink leads to turning on, or switching to, one method.
type switchLink struct {
	ID, Href, Text string
}

// methodView is a switch to SMS or e-mail codes: first the destination,
// then the code sent there (and a code of the factor that is on).
type methodView struct {
	Method       string // sms | email
	Confirm      bool   // the code step; else the destination step
	InputType    string // tel | email
	Autocomplete string
	Label        string
	Destination  string // as typed, normalised
	Masked       string
	Verified     bool // the destination is verified on the account: no code to enter
	Submit       string
	Other        string // "Use another number" / "Use another address"
}

type themeView struct {
	Title, Brand, StyleURL string
}

type clientView struct {
	ID, Name string
}

type scopeView struct {
	Name, Description string
}

type link struct {
	Href, Text string
	Args       map[string]any // placeholders of Text
}

// useInstead links to another way of proving the second factor.
func useInstead(href, label string) link {
	text, ok := map[string]string{
		"Authenticator app": tr("Use your authenticator app instead"),
		"Text message":      tr("Use a code by text message instead"),
		"E-mail":            tr("Use a code by e-mail instead"),
		"Recovery code":     tr("Use a recovery code instead"),
		"Passkey":           tr("Use a passkey instead"),
	}[label]
	if !ok {
		return link{Href: href, Text: tr("Use {{.Factor}} instead"), Args: map[string]any{"Factor": label}}
	}
	return link{Href: href, Text: text}
}

// csp holds the sources a page adds to the fixed policy: the theme's
// stylesheet origin, and where its forms may lead (the client's redirect
// URI: browsers check form-action along the redirects after a submission).
type csp struct {
	styleSrc   []string
	formAction []string
}

func (c csp) String() string {
	var b strings.Builder
	b.WriteString("default-src 'self'; frame-ancestors 'none'; img-src 'self' data:; style-src 'self'")
	for _, s := range c.styleSrc {
		b.WriteString(" " + s)
	}
	b.WriteString("; form-action 'self'")
	for _, s := range c.formAction {
		b.WriteString(" " + s)
	}
	b.WriteString("; base-uri 'none'; object-src 'none'")
	return b.String()
}

func setSecurityHeaders(w http.ResponseWriter, policy csp) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", policy.String())
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Pragma", "no-cache")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
}

// cspSource returns the CSP source expression for the origin of rawURL
// (scheme://host[:port], or "scheme:" for a private-use scheme such as a
// native app's), or "" when the URL is relative or could not be written
// into a policy safely.
func cspSource(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	for _, c := range scheme {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return ""
		}
	}
	if u.Host == "" {
		if scheme == "http" || scheme == "https" {
			return ""
		}
		return scheme + ":"
	}
	for _, c := range u.Host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return ""
		}
	}
	return scheme + "://" + strings.ToLower(u.Host)
}

// styleSource is cspSource for a stylesheet: http(s) origins only.
func styleSource(rawURL string) string {
	src := cspSource(rawURL)
	if strings.HasPrefix(src, "https://") || strings.HasPrefix(src, "http://") {
		return src
	}
	return ""
}

// render writes a page with the security headers and status.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, data pageData, policy csp) {
	t, ok := h.pages[name]
	if !ok {
		h.log().ErrorContext(r.Context(), "unknown page template", "page", name)
		h.writePlainError(w, r)
		return
	}
	data.Page = name
	if data.Theme.Title == "" {
		data.Theme = defaultTheme()
	}
	if src := styleSource(data.Theme.StyleURL); src != "" {
		policy.styleSrc = append(policy.styleSrc, src)
	}
	h.localize(r, &data)
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "base", &data); err != nil {
		h.log().ErrorContext(r.Context(), "render page", "page", name, "err", err)
		h.writePlainError(w, r)
		return
	}
	setSecurityHeaders(w, policy)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// writePlainError is the last resort when a template cannot render.
func (h *Handler) writePlainError(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w, csp{})
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = fmt.Fprintf(w, "Sign-in is temporarily unavailable. Please try again later. Reference: %s\n", audit.RequestID(r.Context()))
}

// renderError shows the error page in the default theme (the AuthConfig
// that applies when no client is known). err, if any, is logged, never shown.
func (h *Handler) renderError(w http.ResponseWriter, r *http.Request, status int, message string, next *link, err error) {
	h.renderErrorThemed(w, r, status, message, next, err, h.themeFor(r.Context(), nil))
}

func (h *Handler) renderErrorThemed(w http.ResponseWriter, r *http.Request, status int, message string, next *link, err error, theme themeView) {
	if err != nil {
		level := h.log().WarnContext
		if status >= 500 {
			level = h.log().ErrorContext
		}
		level(r.Context(), "hosted page error", "path", r.URL.Path, "status", status, "err", err, "request_id", audit.RequestID(r.Context()))
	}
	h.render(w, r, status, pageError, pageData{
		Heading:   errorHeading(status),
		Theme:     theme,
		Error:     message,
		RequestID: audit.RequestID(r.Context()),
		Link:      next,
	}, csp{})
}

func errorHeading(status int) string {
	switch {
	case status == http.StatusForbidden:
		return tr("Request refused")
	case status == http.StatusServiceUnavailable:
		return tr("Temporarily unavailable")
	case status >= 500:
		return tr("Something went wrong")
	default:
		return tr("Something went wrong")
	}
}

// unavailable is the page for failures of our own, the one place the hosted
// pages map them: storage that cannot serve now (down, full, out of
// connections, or the request's deadline passed) is 503 with Retry-After,
// as on every surface; anything else is 500. The user can only try again
// later either way. It shows the built-in theme: the theme lives in the
// database that may just have failed.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	if !store.Unavailable(err) {
		h.renderErrorThemed(w, r, http.StatusInternalServerError, tr("Something went wrong on our side. Please try again later."), nil, err, defaultTheme())
		return
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(store.RetryAfter.Seconds())))
	h.renderErrorThemed(w, r, http.StatusServiceUnavailable, tr("Sign-in is temporarily unavailable. Please try again in a moment."), nil, err, defaultTheme())
}

// csrfFailed answers a POST whose CSRF token is missing or wrong.
func (h *Handler) csrfFailed(w http.ResponseWriter, r *http.Request) {
	h.log().WarnContext(r.Context(), "csrf token rejected", "path", r.URL.Path, "request_id", audit.RequestID(r.Context()), "remote", clientIP(r))
	h.renderError(w, r, http.StatusForbidden,
		tr("This form has expired or did not come from this site. Go back, reload the page and try again."),
		&link{Href: PathLogin, Text: tr("Back to sign-in")}, nil)
}

// parseForm reads a bounded form body and checks the CSRF token. It renders
// the refusal itself and returns false when the request must stop.
func (h *Handler) parseForm(w http.ResponseWriter, r *http.Request, validCSRF func(string) bool) bool {
	return h.parseFormLimit(w, r, validCSRF, maxFormBytes)
}

// parseFormLimit is parseForm with a body limit of its own.
func (h *Handler) parseFormLimit(w http.ResponseWriter, r *http.Request, validCSRF func(string) bool, limit int64) bool {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if err := r.ParseForm(); err != nil {
		h.renderError(w, r, http.StatusBadRequest, tr("The form could not be read. Go back and try again."), &link{Href: PathLogin, Text: tr("Back to sign-in")}, err)
		return false
	}
	if !validCSRF(r.PostForm.Get("_csrf")) {
		h.csrfFailed(w, r)
		return false
	}
	return true
}
