package server

import (
	"context"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/notify/smtptest"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

var sixDigits = regexp.MustCompile(`\b\d{6}\b`)

// mailedCode waits for the n-th message of srv and returns the code in its
// plain-text part, checking the HTML part carries the same code.
func mailedCode(t *testing.T, srv *smtptest.Server, n int, to string) string {
	t.Helper()
	msg, ok := srv.Wait(n, 10*time.Second)
	if !ok {
		t.Fatalf("message %d never arrived (have %d)", n, len(srv.Messages()))
	}
	if len(msg.To) != 1 || msg.To[0] != to {
		t.Fatalf("message to %v, want %s", msg.To, to)
	}
	parts, err := msg.Parts()
	if err != nil {
		t.Fatal(err)
	}
	code := sixDigits.FindString(parts["text/plain"])
	if code == "" || !strings.Contains(parts["text/html"], code) {
		t.Fatalf("no code in both parts: %q", parts)
	}
	return code
}

func metricsText(t *testing.T, app *testApp) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, app.URL+"/metrics", nil)
	req.SetBasicAuth("admin", testAdminPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// E-mail codes over SMTP instead of the webhook: an AuthConfig's
// email.smtp (its password write-only), the code of the password grant
// read from a real SMTP server, and a server that is down or hangs.
func TestEmailCodesGoOverSMTPEndToEnd(t *testing.T) {
	const email = "mia@example.com"
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			mail := smtptest.Start(t)
			// The SMTP server listens on loopback: allow private addresses.
			app := startApp(t, be.Open(t), func(c *config.Config) { c.Webhook.AllowPrivate = true })
			smtpYAML := func(port int, extra string) string {
				return "email:\n  from: 'Gatehouse <noreply@example.com>'\n  smtp:\n    host: 127.0.0.1\n    port: " +
					strconv.Itoa(port) + "\n    tls: none\n    timeout: 800\n" + extra
			}
			putResource(t, app, "/AuthConfig/default", smtpYAML(mail.Port, ""))
			putResource(t, app, "/Client/mobile", passwordClientYAML)
			wantStatus(t, adminJSON(t, app, http.MethodPut, "/User/mia", map[string]any{
				"password": i5Password, "email": email, "emailVerified": true,
				"twoFactor": map[string]any{"enabled": true, "method": "email"},
			}), http.StatusCreated, "")
			form := url.Values{"grant_type": {"password"}, "username": {"mia"}, "password": {i5Password}, "scope": {"openid"}}

			t.Run("the password grant mails the code and accepts it", func(t *testing.T) {
				wantStatus(t, tokenRequest(t, app, "mobile", i5Secret, form), http.StatusForbidden, "mfa_required")
				f := url.Values{}
				for k, v := range form {
					f[k] = v
				}
				f.Set("otp", mailedCode(t, mail, 1, email))
				wantTokens(t, tokenRequest(t, app, "mobile", i5Secret, f))
			})

			t.Run("the e-mail is written in the language the request accepts", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodPost, app.URL+"/auth/token", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Accept-Language", "fr-CA,fr;q=0.9,en;q=0.5")
				req.SetBasicAuth("mobile", i5Secret)
				wantStatus(t, doJSON(t, req), http.StatusForbidden, "mfa_required")
				mailedCode(t, mail, 2, email)
				msg, _ := mail.Wait(2, time.Second)
				if subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header().Get("Subject")); err != nil || subj != "Votre code de vérification" {
					t.Fatalf("subject %q", subj)
				}
				parts, _ := msg.Parts()
				if !strings.Contains(parts["text/html"], `lang="fr"`) || !strings.Contains(parts["text/plain"], "Voici le code") {
					t.Fatalf("parts %q", parts)
				}
			})

			t.Run("the SMTP password is write-only: shown as *** and kept by a PUT that omits or repeats it", func(t *testing.T) {
				putResource(t, app, "/AuthConfig/pw", smtpYAML(mail.Port, "    username: relay\n    password: s3cret-relay-pw\n"))
				for _, body := range []string{
					smtpYAML(mail.Port, "    username: relay\n"),
					smtpYAML(mail.Port, "    username: relay\n    password: '***'\n"),
				} {
					putResource(t, app, "/AuthConfig/pw", body)
					r := adminJSON(t, app, http.MethodGet, "/AuthConfig/pw", nil)
					if strings.Contains(r.raw, "s3cret-relay-pw") || !strings.Contains(r.raw, `"password":"***"`) {
						t.Fatalf("GET shows %s", r.raw)
					}
					rec, err := app.Store.GetAuthConfig(context.Background(), "pw")
					if err != nil {
						t.Fatal(err)
					}
					if strings.Contains(string(rec.Doc), "s3cret-relay-pw") || !strings.Contains(string(rec.Doc), `"password":"sealed:v1:`) {
						t.Fatalf("stored document %s", rec.Doc)
					}
				}
			})

			t.Run("a sender with a line break is refused and changes nothing", func(t *testing.T) {
				r := adminJSON(t, app, http.MethodPut, "/AuthConfig/default", map[string]any{
					"email": map[string]any{"from": "Gate\r\nBcc: eve@example.com <noreply@example.com>", "smtp": map[string]any{"host": "127.0.0.1", "port": mail.Port, "tls": "none"}},
				})
				outcomeNames(t, r, "email.from")
			})

			for _, tc := range []struct {
				name string
				port func(testing.TB) int
			}{
				{"with the SMTP server down the grant still answers at once and the failure is counted", smtptest.Closed},
				{"with an SMTP server that never answers the grant answers within the timeout and the failure is counted", smtptest.Silent},
			} {
				t.Run(tc.name, func(t *testing.T) {
					putResource(t, app, "/AuthConfig/default", smtpYAML(tc.port(t), ""))
					before := app.Mailer.Failures()
					start := time.Now()
					wantStatus(t, tokenRequest(t, app, "mobile", i5Secret, form), http.StatusForbidden, "mfa_required")
					if took := time.Since(start); took > 4*time.Second {
						t.Fatalf("the grant took %v with an 800ms SMTP timeout", took)
					}
					if app.Mailer.Failures() <= before {
						t.Fatal("the failure was not counted")
					}
					if m := metricsText(t, app); !strings.Contains(m, "gatehouse_mail_failures_total") {
						t.Fatalf("metrics: %s", m)
					}
				})
			}
		})
	}
}

// The hosted pages with e-mail codes over the server's own SMTP relay (no
// webhook at all): password, the code prompt, the mailed code, the client.
func TestHostedSignInWithAMailedCodeEndToEnd(t *testing.T) {
	const email = "leo@example.com"
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			mail := smtptest.Start(t)
			app := startApp(t, be.Open(t), func(c *config.Config) {
				c.SMTP.Host, c.SMTP.Port, c.SMTP.TLS, c.SMTP.From = mail.Host, mail.Port, "none", "Gatehouse <noreply@example.com>"
			})
			putResource(t, app, "/Client/mywebapp", webClientYAML)
			wantStatus(t, adminJSON(t, app, http.MethodPut, "/User/leo", map[string]any{
				"password": tfPassword, "email": email, "emailVerified": true,
				"twoFactor": map[string]any{"enabled": true, "method": "email"},
			}), http.StatusCreated, "")
			l := newOAuthLogin(app, "mywebapp")
			b := browserFor(t, app)
			p := passwordStep(t, b, l.URL, "leo")
			t.Run("the code prompt says the code went by e-mail", func(t *testing.T) {
				expectCodePrompt(t, p)
				if !strings.Contains(p.body, "sent by e-mail") {
					t.Fatalf("prompt:\n%s", p.body)
				}
			})
			t.Run("the mailed code completes the sign-in with mfa", func(t *testing.T) {
				code := mailedCode(t, mail, 1, email)
				expectAMR(t, l.exchange(t, toClient(t, b, submitCode(t, b, p, code))), "mfa")
			})
		})
	}
}

// TestTheOwnerIsMailedWhenWrongPasswordsPauseSignIn: someone tries wrong
// passwords for mia's account through the password grant. The tenth pauses
// sign-in from that address, and mia gets one e-mail that says so, with the
// address and the end of the pause, and no code or link anyone could use;
// the attempts refused during the pause send nothing more.
func TestTheOwnerIsMailedWhenWrongPasswordsPauseSignIn(t *testing.T) {
	const email = "mia@example.com"
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			mail := smtptest.Start(t)
			app := startApp(t, be.Open(t), func(c *config.Config) { c.Webhook.AllowPrivate = true })
			putResource(t, app, "/AuthConfig/default", "email:\n  from: 'Gatehouse <noreply@example.com>'\n  smtp:\n    host: 127.0.0.1\n    port: "+
				strconv.Itoa(mail.Port)+"\n    tls: none\n    timeout: 800\n")
			putResource(t, app, "/Client/mobile", passwordClientYAML)
			wantStatus(t, adminJSON(t, app, http.MethodPut, "/User/mia", map[string]any{"password": i5Password, "email": email}), http.StatusCreated, "")
			guess := url.Values{"grant_type": {"password"}, "username": {"mia"}, "password": {"not-the-password"}}
			for i := range 10 {
				wantStatus(t, tokenRequest(t, app, "mobile", i5Secret, guess), http.StatusBadRequest, "invalid_grant")
				if i < 9 && len(mail.Messages()) > 0 {
					t.Fatalf("a message after %d wrong passwords", i+1)
				}
			}
			msg, ok := mail.Wait(1, 10*time.Second)
			if !ok {
				t.Fatal("the owner was not told")
			}
			if len(msg.To) != 1 || msg.To[0] != email {
				t.Fatalf("message to %v", msg.To)
			}
			if subj, _ := new(mime.WordDecoder).DecodeHeader(msg.Header().Get("Subject")); subj != "Sign-in to your account was paused" {
				t.Fatalf("subject %q", subj)
			}
			parts, err := msg.Parts()
			if err != nil {
				t.Fatal(err)
			}
			for _, body := range []string{parts["text/plain"], parts["text/html"]} {
				if !strings.Contains(body, "10 times from the address 127.0.0.1") || !strings.Contains(body, " UTC") {
					t.Fatalf("the message does not say how often, from where and until when:\n%s", body)
				}
				if sixDigits.MatchString(body) || strings.Contains(body, "http") {
					t.Fatalf("the message carries a code or a link:\n%s", body)
				}
			}
			// Paused now: refused with 429, and nobody is told again.
			wantStatus(t, tokenRequest(t, app, "mobile", i5Secret, guess), http.StatusTooManyRequests, "invalid_grant")
			app.Accounts.WaitForNotices()
			time.Sleep(100 * time.Millisecond)
			if n := len(mail.Messages()); n != 1 {
				t.Fatalf("%d messages, want 1", n)
			}
			if n := len(auditEvents(t, app, "mia", "login.paused_notice")); n != 1 {
				t.Fatalf("%d login.paused_notice audit events, want 1", n)
			}
		})
	}
}
