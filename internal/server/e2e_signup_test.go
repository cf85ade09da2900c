package server

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/notify/smtptest"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// The hosted sign-up page (AuthConfig signUp), with the address proven by
// a code read from a real SMTP server before the account exists, and the
// JSON sign-up under the same rule.
func TestHostedSignUpEndToEnd(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			mail := smtptest.Start(t)
			app := startApp(t, be.Open(t), func(c *config.Config) {
				c.SMTP.Host, c.SMTP.Port, c.SMTP.TLS, c.SMTP.From = mail.Host, mail.Port, "none", "Gatehouse <noreply@example.com>"
			})
			putResource(t, app, "/Client/mywebapp", webClientYAML)
			putResource(t, app, "/Client/mobile", passwordClientYAML)
			putUser(t, app, "mia", "")
			sent := 0
			ctx := context.Background()
			signUpForm := func(t *testing.T, b *browser, email string) page {
				t.Helper()
				p := b.get(app.URL + "/auth/sign-up")
				if p.status != http.StatusOK {
					t.Fatalf("the sign-up page: %d\n%s", p.status, p.body)
				}
				return submitForm(t, b, p, "email", url.Values{"email": {email}, "new_password": {newPassword}, "new_password_repeat": {newPassword}})
			}

			t.Run("sign-up is off unless the AuthConfig turns it on", func(t *testing.T) {
				b := browserFor(t, app)
				if p := b.get(app.URL + "/auth/sign-up"); p.status != http.StatusNotFound {
					t.Fatalf("the sign-up page without signUp: %d", p.status)
				}
				if p := b.get(app.URL + "/auth/login"); has(t, p, "sign-up-link") {
					t.Fatal("the login page links to a sign-up that is off")
				}
			})

			putResource(t, app, "/AuthConfig/default", "signUp:\n  enabled: true\n")

			t.Run("the account exists only once the mailed code is right, and the sign-in goes on", func(t *testing.T) {
				l := newOAuthLogin(app, "mywebapp")
				b := browserFor(t, app)
				if p := b.get(l.URL); !has(t, p, "sign-up-link") {
					t.Fatalf("the login page has no #sign-up-link:\n%s", p.body)
				}
				p := signUpForm(t, b, "New.Person@Example.com")
				if !has(t, p, "notice") || formWith(parseHTML(t, p), "code") == nil {
					t.Fatalf("no code form after the sign-up form: %d\n%s", p.status, p.body)
				}
				if _, err := app.Store.FindUser(ctx, "new.person@example.com"); err == nil {
					t.Fatal("the account exists before the address was proven")
				}
				expectRefused(t, submitForm(t, b, p, "code", url.Values{"code": {"000000"}}), "code", "Invalid code", "a wrong code")
				sent++
				code := mailedCode(t, mail, sent, "new.person@example.com")
				id := l.exchange(t, toClient(t, b, submitForm(t, b, p, "code", url.Values{"code": {code}})))
				u, err := app.Store.FindUser(ctx, "new.person@example.com")
				if err != nil || u.ID != id.Subject || !u.EmailVerified {
					t.Fatalf("the new user %+v (err %v), id token sub %q", u, err, id.Subject)
				}
				wantTokens(t, passwordGrant(t, app, "new.person@example.com", newPassword))
			})

			t.Run("an address that has an account is told so only after its code", func(t *testing.T) {
				b := browserFor(t, app)
				p := signUpForm(t, b, "mia@example.com")
				if !has(t, p, "notice") {
					t.Fatalf("the form told at once:\n%s", p.body)
				}
				sent++
				code := mailedCode(t, mail, sent, "mia@example.com")
				expectRefused(t, submitForm(t, b, p, "code", url.Values{"code": {code}}), "email",
					"An account with this address already exists. Sign in, or reset your password if you forgot it.", "a taken address")
				wantTokens(t, passwordGrant(t, app, "mia", tfPassword))
			})

			t.Run("a tampered pending sign-up starts again and creates nothing", func(t *testing.T) {
				b := browserFor(t, app)
				p := signUpForm(t, b, "eve@example.com")
				sent++
				code := mailedCode(t, mail, sent, "eve@example.com")
				target, form := formRequest(t, p, "code", url.Values{"code": {code}})
				form.Set("signup", strings.ToUpper(form.Get("signup")))
				got, err := postRaw(b, target, form)
				if err != nil {
					t.Fatal(err)
				}
				if msg := errorText(t, got); msg != "This sign-up has expired. Start again." {
					t.Fatalf("#error %q:\n%s", msg, got.body)
				}
				if _, err := app.Store.FindUser(ctx, "eve@example.com"); err == nil {
					t.Fatal("a tampered sign-up created the account")
				}
			})

			t.Run("a short password or a bad address is refused before any e-mail", func(t *testing.T) {
				b := browserFor(t, app)
				p := b.get(app.URL + "/auth/sign-up")
				expectRefused(t, submitForm(t, b, p, "email", url.Values{"email": {"not-an-address"}, "new_password": {newPassword}, "new_password_repeat": {newPassword}}),
					"email", "Enter a valid e-mail address.", "a bad address")
				expectRefused(t, submitForm(t, b, p, "email", url.Values{"email": {"ok@example.com"}, "new_password": {"short"}, "new_password_repeat": {"short"}}),
					"new_password", "The password must have at least 8 characters.", "a short password")
				if n := len(mail.Messages()); n != sent {
					t.Fatalf("%d e-mails, want %d", n, sent)
				}
			})

			t.Run("the JSON sign-up needs the code too", func(t *testing.T) {
				r := callAPI(t, app, http.MethodPost, "/auth/sign-up", "", map[string]any{
					"client_id": "mobile", "client_secret": i5Secret, "username": "jay", "password": newPassword, "email": "jay@example.com",
				})
				wantStatus(t, r, http.StatusBadRequest, "")
				if !strings.Contains(r.raw, "verification_code") {
					t.Fatalf("answer %s", r.raw)
				}
			})

			t.Run("with e-mail codes for new accounts the recovery codes are shown once, then the sign-in goes on", func(t *testing.T) {
				putResource(t, app, "/AuthConfig/default", "signUp:\n  enabled: true\ntwoFactor:\n  defaultMethod: email\n")
				l := newOAuthLogin(app, "mywebapp")
				b := browserFor(t, app)
				b.get(l.URL)
				p := signUpForm(t, b, "coded@example.com")
				sent++
				p = submitForm(t, b, p, "code", url.Values{"code": {mailedCode(t, mail, sent, "coded@example.com")}})
				if codes := recoveryCodes(t, p); len(codes) != 10 {
					t.Fatalf("%d recovery codes", len(codes))
				}
				next := elementByID(parseHTML(t, p), "continue")
				if next == nil {
					t.Fatalf("no #continue on the recovery codes page:\n%s", p.body)
				}
				href, _ := attr(next, "href")
				expectAMR(t, l.exchange(t, toClient(t, b, b.get(app.URL+href))), "pwd", "otp", "mfa")
				if tf, _ := userTwoFactorOf(t, app, mustFindUser(t, app, "coded@example.com")); !tf.Enabled || tf.Method != "email" {
					t.Fatalf("two-step of the new user: %+v", tf)
				}
			})

			t.Run("with verifyEmail false the account is made at once, its address unverified", func(t *testing.T) {
				putResource(t, app, "/AuthConfig/default", "signUp:\n  enabled: true\n  verifyEmail: false\n")
				l := newOAuthLogin(app, "mywebapp")
				b := browserFor(t, app)
				b.get(l.URL)
				l.exchange(t, toClient(t, b, signUpForm(t, b, "quick@example.com")))
				if u, err := app.Store.FindUser(ctx, "quick@example.com"); err != nil || u.EmailVerified {
					t.Fatalf("user %+v, err %v", u, err)
				}
				r := callAPI(t, app, http.MethodPost, "/auth/sign-up", "", map[string]any{
					"client_id": "mobile", "client_secret": i5Secret, "username": "jay", "password": newPassword, "email": "jay@example.com",
				})
				wantStatus(t, r, http.StatusCreated, "")
				if u, err := app.Store.FindUser(ctx, "jay"); err != nil || u.EmailVerified {
					t.Fatalf("user %+v, err %v", u, err)
				}
				if n := len(mail.Messages()); n != sent {
					t.Fatalf("%d e-mails, want %d", n, sent)
				}
			})
		})
	}
}

func mustFindUser(t *testing.T, app *testApp, login string) string {
	t.Helper()
	u, err := app.Store.FindUser(context.Background(), login)
	if err != nil {
		t.Fatalf("find user %q: %v", login, err)
	}
	return u.ID
}
