package server

import (
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/notify/smtptest"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const newPassword = "a-brand-new-password"

var resetLinkRe = regexp.MustCompile(`https?://\S+/auth/reset-password\?\S+`)

// shiftClock is the real time moved on by a settable amount: codes expire
// without waiting, while TLS, cookies and fosite see a sane time.
type shiftClock struct {
	mu    sync.Mutex
	shift time.Duration
}

func (c *shiftClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.shift)
}

func (c *shiftClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shift += d
}

// resetMail is the n-th message, which must be a reset e-mail to to: its
// code and link.
func resetMail(t *testing.T, app *testApp, srv *smtptest.Server, n int, to string) (code, link string) {
	t.Helper()
	app.Passwords.WaitForSends()
	code = mailedCode(t, srv, n, to)
	msg, _ := srv.Wait(n, time.Second)
	parts, err := msg.Parts()
	if err != nil {
		t.Fatal(err)
	}
	link = resetLinkRe.FindString(parts["text/plain"])
	if link == "" || !strings.Contains(link, "code="+code) {
		t.Fatalf("no reset link with the code in the e-mail:\n%s", parts["text/plain"])
	}
	return code, link
}

func passwordGrant(t *testing.T, app *testApp, user, pw string) apiResp {
	t.Helper()
	return tokenRequest(t, app, "mobile", i5Secret, url.Values{
		"grant_type": {"password"}, "username": {user}, "password": {pw}, "scope": {"openid offline_access"},
	})
}

func refreshGrant(t *testing.T, app *testApp, refresh string) apiResp {
	t.Helper()
	return tokenRequest(t, app, "mobile", i5Secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
}

func userinfoStatus(t *testing.T, app *testApp, access string) int {
	t.Helper()
	return callAPI(t, app, http.MethodGet, "/auth/userinfo", access, nil).status
}

func resetRequest(t *testing.T, app *testApp, email string) apiResp {
	t.Helper()
	return callAPI(t, app, http.MethodPost, "/auth/password-reset", "", map[string]any{
		"client_id": "mobile", "client_secret": i5Secret, "email": email,
	})
}

func resetConfirm(t *testing.T, app *testApp, id, code, pw string) apiResp {
	t.Helper()
	return callAPI(t, app, http.MethodPost, "/auth/password-reset/confirm", "", map[string]any{
		"client_id": "mobile", "client_secret": i5Secret, "reset_id": id, "code": code, "new_password": pw,
	})
}

// Forgotten and changed passwords, over the hosted pages, the JSON API and
// the admin API, with the e-mails read from a real SMTP server.
func TestPasswordResetAndChangeEndToEnd(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			mail := smtptest.Start(t)
			clock := &shiftClock{}
			app := startAppWithDeps(t, be.Open(t), secret.RandomBytes(32), func(d *Deps) { d.Now = clock.Now }, func(c *config.Config) {
				c.SMTP.Host, c.SMTP.Port, c.SMTP.TLS, c.SMTP.From = mail.Host, mail.Port, "none", "Gatehouse <noreply@example.com>"
			})
			putResource(t, app, "/Client/mobile", passwordClientYAML)
			putResource(t, app, "/Client/mywebapp", webClientYAML)
			for _, id := range []string{"mia", "zoe", "ned", "ivy"} {
				putUser(t, app, id, "")
			}
			sent := 0 // messages the server has mailed so far

			t.Run("the login page links to the forgotten-password page", func(t *testing.T) {
				b := browserFor(t, app)
				p := b.get(app.URL + "/auth/login")
				if !has(t, p, "forgot-password") {
					t.Fatalf("no #forgot-password on the login page:\n%s", p.body)
				}
			})

			t.Run("the e-mailed link sets a new password and ends every session and token", func(t *testing.T) {
				tokens := passwordGrant(t, app, "mia", tfPassword)
				wantTokens(t, tokens)
				signedIn := browserFor(t, app)
				signInPassword(t, signedIn, "mia")

				b := browserFor(t, app)
				p := b.get(app.URL + "/auth/forgot-password")
				p = submitForm(t, b, p, "email", url.Values{"email": {"MIA@example.com"}})
				if p.status != http.StatusOK || !has(t, p, "notice") || formWith(parseHTML(t, p), "code") == nil {
					t.Fatalf("after asking for the e-mail: %d\n%s", p.status, p.body)
				}
				sent++
				code, link := resetMail(t, app, mail, sent, "mia@example.com")

				// The link opens the form with the code in it; a mismatch
				// and a short password are refused and spend nothing.
				p = b.get(link)
				if p.status != http.StatusOK || !strings.Contains(p.body, `name="code" value="`+code+`"`) {
					t.Fatalf("the link's page: %d\n%s", p.status, p.body)
				}
				p2 := submitForm(t, b, p, "new_password", url.Values{"new_password": {newPassword}, "new_password_repeat": {newPassword + "x"}})
				expectRefused(t, p2, "new_password_repeat", "The passwords do not match.", "a mismatched repeat")
				p2 = submitForm(t, b, p, "new_password", url.Values{"new_password": {"short"}, "new_password_repeat": {"short"}})
				expectRefused(t, p2, "new_password", "The password must have at least 8 characters.", "a short password")

				done := submitForm(t, b, p2, "new_password", url.Values{"new_password": {newPassword}, "new_password_repeat": {newPassword}})
				if done.status != http.StatusOK || !has(t, done, "password-changed") {
					t.Fatalf("after setting the password: %d\n%s", done.status, done.body)
				}

				if got := refreshGrant(t, app, tokens.str("refresh_token")); got.status != http.StatusBadRequest {
					t.Errorf("the old refresh token: %d %s", got.status, got.raw)
				}
				if got := userinfoStatus(t, app, tokens.str("access_token")); got != http.StatusUnauthorized {
					t.Errorf("the old access token at userinfo: %d", got)
				}
				if p := signedIn.get(app.URL + pathTwoFactorSettings); p.url.Path != "/auth/login" {
					t.Errorf("the signed-in browser is still signed in: %s", p.url)
				}
				wantStatus(t, passwordGrant(t, app, "mia", tfPassword), http.StatusBadRequest, "invalid_grant")
				wantTokens(t, passwordGrant(t, app, "mia", newPassword))

				again := submitForm(t, b, p2, "new_password", url.Values{"new_password": {newPassword + "2"}, "new_password_repeat": {newPassword + "2"}})
				expectRefused(t, again, "code", "The code is wrong or has expired. Ask for a new e-mail.", "the spent link again")
			})

			t.Run("an unknown address gets the same answer and no e-mail", func(t *testing.T) {
				r := resetRequest(t, app, "nobody@example.com")
				wantStatus(t, r, http.StatusAccepted, "")
				if r.str("status") != "sent" || !strings.HasPrefix(r.str("reset_id"), "pwreset:") || r.str("expires_at") == "" {
					t.Fatalf("answer %s", r.raw)
				}
				known := resetRequest(t, app, "ivy@example.com")
				wantStatus(t, known, http.StatusAccepted, "")
				if len(known.body) != len(r.body) {
					t.Fatalf("the answers differ in shape: %s vs %s", known.raw, r.raw)
				}
				sent++
				resetMail(t, app, mail, sent, "ivy@example.com")
				// An inactive user and an address with a header smuggled in
				// get the same answer, and no e-mail either.
				putResource(t, app, "/User/gone", "email: gone@example.com\npassword: "+tfPassword+"\ninactive: true\n")
				for _, email := range []string{"gone@example.com", "ivy@example.com\r\nBcc: eve@example.com"} {
					wantStatus(t, resetRequest(t, app, email), http.StatusAccepted, "")
				}
				app.Passwords.WaitForSends()
				if n := len(mail.Messages()); n != sent {
					t.Fatalf("%d messages, want %d: an address that opens no account got one", n, sent)
				}
			})

			t.Run("the JSON confirm refuses a tampered code or id, then takes the right one once", func(t *testing.T) {
				r := resetRequest(t, app, "ned@example.com")
				wantStatus(t, r, http.StatusAccepted, "")
				sent++
				code, _ := resetMail(t, app, mail, sent, "ned@example.com")
				id := r.str("reset_id")
				wrong := strconv.Itoa((mustAtoi(t, code)+1)%1000000 + 1000000)[1:]
				for _, tc := range []struct{ name, id, code string }{
					{"a wrong code", id, wrong},
					{"another reset id", "pwreset:" + strings.Repeat("A", 22), code},
					{"an id of another kind", strings.TrimPrefix(id, "pwreset:"), code},
				} {
					t.Run(tc.name, func(t *testing.T) {
						wantStatus(t, resetConfirm(t, app, tc.id, tc.code, newPassword), http.StatusUnprocessableEntity, "invalid_code")
					})
				}
				wantStatus(t, resetConfirm(t, app, id, code, "short"), http.StatusBadRequest, "invalid_password")
				wantStatus(t, resetConfirm(t, app, id, code, newPassword), http.StatusOK, "")
				wantStatus(t, resetConfirm(t, app, id, code, newPassword+"2"), http.StatusUnprocessableEntity, "invalid_code")
				wantTokens(t, passwordGrant(t, app, "ned", newPassword))
			})

			t.Run("the e-mail follows the sign-in's ui_locales, else the user's locale", func(t *testing.T) {
				putUser(t, app, "lea", "locale: fr\n")
				subject := func(n int) string {
					t.Helper()
					msg, ok := mail.Wait(n, 10*time.Second)
					if !ok {
						t.Fatalf("message %d never arrived", n)
					}
					s, err := new(mime.WordDecoder).DecodeHeader(msg.Header().Get("Subject"))
					if err != nil {
						t.Fatal(err)
					}
					return s
				}
				wantStatus(t, resetRequest(t, app, "lea@example.com"), http.StatusAccepted, "")
				sent++
				resetMail(t, app, mail, sent, "lea@example.com")
				if got := subject(sent); got != "Réinitialisez votre mot de passe" {
					t.Errorf("subject %q, want the French one", got)
				}
				b := browserFor(t, app)
				p := b.get(app.URL + "/auth/forgot-password?ui_locales=de")
				if !strings.Contains(p.body, `lang="de"`) {
					t.Fatalf("the page is not in German:\n%s", p.body)
				}
				submitForm(t, b, p, "email", url.Values{"email": {"lea@example.com"}})
				sent++
				resetMail(t, app, mail, sent, "lea@example.com")
				if got := subject(sent); got != "Passwort zurücksetzen" {
					t.Errorf("subject %q, want the German one", got)
				}

				// An AuthConfig rewords e-mails per language, as it does pages.
				putResource(t, app, "/AuthConfig/default", "messages:\n  fr:\n    mail.reset.subject: 'Acme : votre mot de passe'\n    mail.reset.intro: 'Bonjour <b>{{.Brand}}</b>'\n")
				wantStatus(t, resetRequest(t, app, "lea@example.com"), http.StatusAccepted, "")
				sent++
				resetMail(t, app, mail, sent, "lea@example.com")
				if got := subject(sent); got != "Acme : votre mot de passe" {
					t.Errorf("subject %q, want the AuthConfig's", got)
				}
				msg, _ := mail.Wait(sent, time.Second)
				parts, _ := msg.Parts()
				if !strings.Contains(parts["text/plain"], "Bonjour <b>Gatehouse</b>") || !strings.Contains(parts["text/html"], "Bonjour &lt;b&gt;Gatehouse&lt;/b&gt;") {
					t.Errorf("the reworded intro: %q", parts)
				}
				code, body := adminRequest(t, app, http.MethodPut, "/AuthConfig/default", "text/yaml", "messages:\n  fr:\n    mail.nope: 'x'\n")
				if code != http.StatusUnprocessableEntity || !strings.Contains(body, "mail.nope") {
					t.Errorf("an unknown mail message: %d %s", code, body)
				}
				putResource(t, app, "/AuthConfig/default", "{}\n")
			})

			t.Run("a sixth reset e-mail within the hour is refused with Retry-After", func(t *testing.T) {
				for range 5 {
					r := resetRequest(t, app, "zoe@example.com")
					wantStatus(t, r, http.StatusAccepted, "")
				}
				r := resetRequest(t, app, "zoe@example.com")
				wantStatus(t, r, http.StatusTooManyRequests, "too_many_requests")
				if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s <= 0 || s > 3600 {
					t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
				}
				app.Passwords.WaitForSends()
				sent += 5
				if _, ok := mail.Wait(sent, 10*time.Second); !ok {
					t.Fatalf("%d messages, want %d", len(mail.Messages()), sent)
				}
				// An unknown address is limited alike, so the answers match.
				for range 5 {
					wantStatus(t, resetRequest(t, app, "ghost@example.com"), http.StatusAccepted, "")
				}
				wantStatus(t, resetRequest(t, app, "ghost@example.com"), http.StatusTooManyRequests, "too_many_requests")
			})

			t.Run("the admin sends the reset e-mail to a user", func(t *testing.T) {
				r := adminJSON(t, app, http.MethodPost, "/User/ivy/$send-password-reset", map[string]any{"client_id": "mywebapp"})
				wantStatus(t, r, http.StatusAccepted, "")
				if d := r.str("destination"); d == "" || strings.Contains(d, "ivy@") {
					t.Fatalf("destination %q is not masked", d)
				}
				sent++
				_, link := resetMail(t, app, mail, sent, "ivy@example.com")
				if !strings.Contains(link, "client_id=mywebapp") {
					t.Fatalf("link %s has no client_id", link)
				}
				putResource(t, app, "/User/noaddr", "password: "+tfPassword+"\n")
				wantStatus(t, adminJSON(t, app, http.MethodPost, "/User/noaddr/$send-password-reset", nil), http.StatusUnprocessableEntity, "")
				wantStatus(t, adminJSON(t, app, http.MethodPost, "/User/gone/$send-password-reset", nil), http.StatusConflict, "")
			})

			t.Run("changing the password over the API keeps the caller's token and ends the others", func(t *testing.T) {
				mine, other := passwordGrant(t, app, "ned", newPassword), passwordGrant(t, app, "ned", newPassword)
				wantTokens(t, mine)
				wantTokens(t, other)
				change := func(cur, pw string) apiResp {
					return callAPI(t, app, http.MethodPost, "/auth/password", mine.str("access_token"), map[string]any{
						"current_password": cur, "new_password": pw,
					})
				}
				wantStatus(t, change("wrong-password", "another-password"), http.StatusForbidden, "invalid_credentials")
				wantStatus(t, change(newPassword, "short"), http.StatusBadRequest, "invalid_password")
				wantStatus(t, change(newPassword, "another-password"), http.StatusNoContent, "")
				if got := userinfoStatus(t, app, mine.str("access_token")); got != http.StatusOK {
					t.Errorf("the caller's token after the change: %d", got)
				}
				if got := userinfoStatus(t, app, other.str("access_token")); got != http.StatusUnauthorized {
					t.Errorf("another token after the change: %d", got)
				}
				wantStatus(t, refreshGrant(t, app, other.str("refresh_token")), http.StatusBadRequest, "")
				wantTokens(t, passwordGrant(t, app, "ned", "another-password"))
			})

			t.Run("a two-step user still needs the second factor after a reset and to change the password", func(t *testing.T) {
				a, signedIn := enrolUser(t, app, "tess", "")
				r := resetRequest(t, app, "tess@example.com")
				wantStatus(t, r, http.StatusAccepted, "")
				sent++
				code, _ := resetMail(t, app, mail, sent, "tess@example.com")
				wantStatus(t, resetConfirm(t, app, r.str("reset_id"), code, newPassword), http.StatusOK, "")
				wantStatus(t, passwordGrant(t, app, "tess", newPassword), http.StatusForbidden, "mfa_required")
				if p := signedIn.get(app.URL + pathTwoFactorSettings); p.url.Path != "/auth/login" {
					t.Fatalf("the enrolling browser is still signed in: %s", p.url)
				}

				half := browserFor(t, app)
				hp := half.get(app.URL + "/auth/login")
				expectCodePrompt(t, submitForm(t, half, hp, "password", url.Values{"username": {"tess"}, "password": {newPassword}}))
				if p := half.get(app.URL + "/auth/change-password"); p.url.Path != "/auth/login" {
					t.Fatalf("a browser waiting for its second factor reached %s", p.url)
				}

				// The API's change asks for the code too.
				tok := tokenRequest(t, app, "mobile", i5Secret, url.Values{
					"grant_type": {"password"}, "username": {"tess"}, "password": {newPassword}, "scope": {"openid offline_access"}, "otp": {a.next(t)},
				})
				wantTokens(t, tok)
				wantStatus(t, callAPI(t, app, http.MethodPost, "/auth/password", tok.str("access_token"), map[string]any{
					"current_password": newPassword, "new_password": "third-password",
				}), http.StatusForbidden, "mfa_required")

				// The settings page's change asks for the app's code.
				b := browserFor(t, app)
				p := b.get(app.URL + "/auth/login")
				p = submitForm(t, b, p, "password", url.Values{"username": {"tess"}, "password": {newPassword}})
				expectCodePrompt(t, p)
				submitCode(t, b, p, a.next(t))

				p = b.get(app.URL + "/auth/change-password")
				if p.status != http.StatusOK || formWith(parseHTML(t, p), "current_password") == nil || formWith(parseHTML(t, p), "code") == nil {
					t.Fatalf("the change page: %d\n%s", p.status, p.body)
				}
				form := url.Values{"current_password": {newPassword}, "new_password": {"third-password"}, "new_password_repeat": {"third-password"}}
				bad := url.Values{"current_password": {"not-it"}, "new_password": {"third-password"}, "new_password_repeat": {"third-password"}, "code": {"000000"}}
				expectRefused(t, submitForm(t, b, p, "current_password", bad), "current_password", "The current password is wrong.", "a wrong current password")
				form.Set("code", wrongCode(t, a.secret))
				expectRefused(t, submitForm(t, b, p, "current_password", form), "code", "Invalid code", "a wrong code")
				// A recovery code does as well as the app's.
				form.Set("code", a.recovery[0])
				done := submitForm(t, b, p, "current_password", form)
				if done.status != http.StatusOK || !has(t, done, "password-changed") {
					t.Fatalf("after the change: %d\n%s", done.status, done.body)
				}
				if p := b.get(app.URL + pathTwoFactorSettings); p.url.Path != pathTwoFactorSettings {
					t.Errorf("the browser that changed it was signed out: %s", p.url)
				}
				if got := tokenRequest(t, app, "mobile", i5Secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.str("refresh_token")}}); got.status < 400 {
					t.Errorf("the app's refresh token outlived the change: %d %s", got.status, got.raw)
				}
				wantStatus(t, callAPI(t, app, http.MethodPost, "/auth/password", "", map[string]any{}), http.StatusUnauthorized, "")
			})

			// Last: it moves the clock.
			t.Run("a code 31 minutes old is refused", func(t *testing.T) {
				r := resetRequest(t, app, "mia@example.com")
				wantStatus(t, r, http.StatusAccepted, "")
				sent++
				code, _ := resetMail(t, app, mail, sent, "mia@example.com")
				clock.Advance(31 * time.Minute)
				wantStatus(t, resetConfirm(t, app, r.str("reset_id"), code, "yet-another-password"), http.StatusUnprocessableEntity, "invalid_code")
			})
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
