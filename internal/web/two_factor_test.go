package web_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
	"github.com/gatehouse/gatehouse/internal/web"
)

var (
	secretRe = regexp.MustCompile(`<code id="totp-secret">([A-Z2-7]+)</code>`)
	uriRe    = regexp.MustCompile(`<code id="otpauth-uri">([^<]+)</code>`)
	qrRe     = regexp.MustCompile(`<img id="qr" class="qr" src="data:image/png;base64,([^"]+)"`)
	codesRe  = regexp.MustCompile(`(?s)<ul id="recovery-codes"[^>]*>(.*?)</ul>`)
	liRe     = regexp.MustCompile(`<li>([^<]*)</li>`)
	hrefRe   = regexp.MustCompile(`<a id="continue" href="([^"]+)"`)
)

const invalidCode = `<p id="error" class="error" role="alert">Invalid code</p>`

// The second-factor service has a clock of its own: TOTP steps and lockouts
// move forward while the pages and fosite stay near real time, which fosite
// also reads (a sign-in dated in its future is refused).

// totpCode is the code an authenticator app shows for secret now, computed
// with pquerna/otp's own TOTP (not the server's step code).
func (e *env) totpCode(secret string) string {
	e.t.Helper()
	return e.totpCodeAt(secret, e.tfClock.Now())
}

func (e *env) totpCodeAt(secret string, at time.Time) string {
	e.t.Helper()
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{
		Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return code
}

// nextStep moves the clock to a later 30-second step, so the app shows a
// code that was not used yet.
func (e *env) nextStep() { e.tfClock.Advance(30 * time.Second) }

// wrongCode is a well-formed code that is not the current one.
func (e *env) wrongCode(secret string) string {
	n, _ := strconv.Atoi(e.totpCode(secret))
	return fmt.Sprintf("%06d", (n+500000)%1000000)
}

func find(t *testing.T, re *regexp.Regexp, p page, what string) string {
	t.Helper()
	m := re.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no %s on the page (status %d):\n%s", what, p.status, p.body)
	}
	return html.UnescapeString(m[1])
}

func recoveryCodes(t *testing.T, p page) []string {
	t.Helper()
	list := find(t, codesRe, p, "#recovery-codes")
	var codes []string
	for _, m := range liRe.FindAllStringSubmatch(list, -1) {
		codes = append(codes, m[1])
	}
	return codes
}

// enrol turns TOTP on for the signed-in browser through the settings pages
// and returns the secret and the recovery codes.
func (b *browser) enrol() (string, []string) {
	t := b.e.t
	t.Helper()
	p := b.get("/auth/two-factor/enable")
	secret := find(t, secretRe, p, "#totp-secret")
	p = b.post("/auth/two-factor/enable", url.Values{"_csrf": {csrfOf(t, p)}, "code": {b.e.totpCode(secret)}})
	codes := recoveryCodes(t, p)
	if len(codes) != twofactor.RecoveryCodeN {
		t.Fatalf("%d recovery codes", len(codes))
	}
	b.e.nextStep()
	return secret, codes
}

// enrolAlice signs alice in in a browser of her own and turns TOTP on.
func (e *env) enrolAlice() (string, []string) {
	e.t.Helper()
	b := e.browser()
	b.signIn()
	return b.enrol()
}

// passwordStep submits alice's password for the authorization request q
// and returns the page it leads to (the code prompt or the enrolment).
func (b *browser) passwordStep(q url.Values) page {
	b.e.t.Helper()
	p := b.login(b.get("/auth/login?"+q.Encode()), "alice", alicePassword)
	if p.status != http.StatusSeeOther || p.location != "/auth/login/two-factor" {
		b.e.t.Fatalf("after the password: status %d location %q\n%s", p.status, p.location, p.body)
	}
	return b.get(p.location)
}

func (b *browser) submitCode(prompt page, code string) page {
	b.e.t.Helper()
	return b.post("/auth/login/two-factor", url.Values{"_csrf": {csrfOf(b.e.t, prompt)}, "code": {code}})
}

func assertInvalidCode(t *testing.T, p page) {
	t.Helper()
	if p.status != http.StatusOK || !strings.Contains(p.body, invalidCode) || !strings.Contains(p.body, `name="code"`) {
		t.Fatalf("want the prompt again with %q; status %d location %q\n%s", "Invalid code", p.status, p.location, p.body)
	}
}

// assertMFAToken follows a successful code submission to the client and
// checks the ID token's amr and acr.
func assertMFAToken(t *testing.T, e *env, b *browser, p page, clientID, clientSecret string) {
	t.Helper()
	params := redirectParams(t, b.follow(p), webappURI+"?")
	if params.Get("code") == "" || params.Get("state") != testState {
		t.Fatalf("redirect params: %v", params)
	}
	claims, _ := e.exchangeAs(clientID, clientSecret, params.Get("code"))
	amr, _ := claims["amr"].([]any)
	if len(amr) != 3 || amr[0] != "pwd" || amr[1] != "otp" || amr[2] != "mfa" || claims["acr"] != web.ACRMFA {
		t.Fatalf("amr %v acr %v", claims["amr"], claims["acr"])
	}
}

func signedIn(p page) bool { return strings.Contains(p.body, `id="signed-in-user"`) }

func auditCount(t *testing.T, st store.Store, user, typ string) int {
	t.Helper()
	_, n, err := st.ListAudit(context.Background(), store.AuditFilter{UserID: user, Type: typ}, store.Page{Count: 50, Page: 1})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestTwoFactorSettingsNeedASignIn(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	for _, path := range []string{"/auth/two-factor", "/auth/two-factor/enable", "/auth/two-factor/disable"} {
		t.Run("an anonymous GET "+path+" goes to the login page", func(t *testing.T) {
			if p := e.browser().get(path); p.status != http.StatusSeeOther || p.location != "/auth/login" {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
		})
	}

	t.Run("after the sign-in the browser comes back to the settings page", func(t *testing.T) {
		b := e.browser()
		b.get("/auth/two-factor")
		p := b.login(b.get("/auth/login"), "alice", alicePassword)
		if p.status != http.StatusSeeOther || p.location != "/auth/two-factor" {
			t.Fatalf("status %d location %q", p.status, p.location)
		}
		p = b.get(p.location)
		for _, want := range []string{`id="two-factor-status" data-enabled="false"`, `href="/auth/two-factor/enable"`, "alice@example.com"} {
			if !strings.Contains(p.body, want) {
				t.Errorf("settings page lacks %s:\n%s", want, p.body)
			}
		}
	})
}

func TestEnableTwoFactor(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.putAuthConfig(resource.AuthConfig{ID: "default", TwoFactor: &resource.AuthConfigTwoFactor{IssuerName: "Acme Health"}})
		other := e.browser()
		other.signIn()
		b := e.browser()
		b.signIn()
		p := b.get("/auth/two-factor/enable")
		secret := find(t, secretRe, p, "#totp-secret")

		t.Run("the page shows the secret, its otpauth URI with the AuthConfig's issuer, and a form", func(t *testing.T) {
			want := "otpauth://totp/Acme%20Health:alice@example.com?secret=" + secret + "&issuer=Acme%20Health&algorithm=SHA1&digits=6&period=30"
			if got := find(t, uriRe, p, "#otpauth-uri"); got != want {
				t.Fatalf("otpauth URI\n got %s\nwant %s", got, want)
			}
			if len(secret) < 32 {
				t.Fatalf("secret %q is shorter than 160 bits", secret)
			}
			for _, want := range []string{`action="/auth/two-factor/enable"`, `name="code"`, `name="_csrf"`} {
				if !strings.Contains(p.body, want) {
					t.Errorf("enable page lacks %s", want)
				}
			}
		})

		t.Run("the QR code is an inline PNG image", func(t *testing.T) {
			raw, err := base64.StdEncoding.DecodeString(find(t, qrRe, p, "#qr"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(raw, []byte("\x89PNG\r\n\x1a\n")) {
				t.Fatalf("not a PNG: % x", raw[:min(8, len(raw))])
			}
			cfg, err := png.DecodeConfig(bytes.NewReader(raw))
			if err != nil || cfg.Width < 200 || cfg.Width != cfg.Height {
				t.Fatalf("PNG %dx%d, %v", cfg.Width, cfg.Height, err)
			}
		})

		t.Run("reloading the page keeps the same secret", func(t *testing.T) {
			if got := find(t, secretRe, b.get("/auth/two-factor/enable"), "#totp-secret"); got != secret {
				t.Fatalf("secret changed on reload: %s → %s", secret, got)
			}
		})

		t.Run("another browser of the same user gets another secret", func(t *testing.T) {
			if got := find(t, secretRe, other.get("/auth/two-factor/enable"), "#totp-secret"); got == secret {
				t.Fatal("two browsers share a pending secret")
			}
		})

		t.Run("a wrong code shows #error and the same secret", func(t *testing.T) {
			p := b.post("/auth/two-factor/enable", url.Values{"_csrf": {csrfOf(t, p)}, "code": {e.wrongCode(secret)}})
			if p.status != http.StatusOK || !strings.Contains(p.body, invalidCode) {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
			if got := find(t, secretRe, p, "#totp-secret"); got != secret {
				t.Fatalf("secret changed after a wrong code: %s → %s", secret, got)
			}
		})

		t.Run("a POST without the CSRF token is refused", func(t *testing.T) {
			p := b.post("/auth/two-factor/enable", url.Values{"code": {e.totpCode(secret)}})
			if p.status != http.StatusForbidden || strings.Contains(p.body, "recovery-codes") {
				t.Fatalf("status %d", p.status)
			}
		})

		var codes []string
		t.Run("the right code enables 2FA and shows 10 recovery codes once", func(t *testing.T) {
			p := b.post("/auth/two-factor/enable", url.Values{"_csrf": {csrfOf(t, p)}, "code": {e.totpCode(secret)}})
			codes = recoveryCodes(t, p)
			if len(codes) != 10 {
				t.Fatalf("%d recovery codes:\n%s", len(codes), p.body)
			}
			seen := map[string]bool{}
			for _, c := range codes {
				if !regexp.MustCompile(`^[a-z2-9]{5}-[a-z2-9]{5}$`).MatchString(c) || seen[c] {
					t.Fatalf("bad or repeated recovery code %q", c)
				}
				seen[c] = true
			}
			if next := find(t, hrefRe, p, "continue link"); next != "/auth/two-factor" {
				t.Fatalf("continue goes to %q", next)
			}
			if strings.Contains(p.body, secret) {
				t.Fatal("the recovery code page shows the secret")
			}
		})

		t.Run("the settings page shows 2FA on with 10 recovery codes and no secret", func(t *testing.T) {
			p := b.get("/auth/two-factor")
			for _, want := range []string{`data-enabled="true"`, `<dd id="recovery-codes-remaining">10</dd>`, "Authenticator app", `href="/auth/two-factor/disable"`} {
				if !strings.Contains(p.body, want) {
					t.Errorf("settings page lacks %s:\n%s", want, p.body)
				}
			}
			if strings.Contains(p.body, secret) || strings.Contains(p.body, codes[0]) {
				t.Fatal("the settings page shows a secret or a recovery code")
			}
		})

		t.Run("the enable page now leads back to the settings, without a secret", func(t *testing.T) {
			if p := b.get("/auth/two-factor/enable"); p.status != http.StatusSeeOther || p.location != "/auth/two-factor" {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
		})

		t.Run("the user's other sessions ended; this one goes on", func(t *testing.T) {
			if signedIn(other.get("/auth/login")) {
				t.Fatal("the other browser is still signed in")
			}
			if !signedIn(b.get("/auth/login")) {
				t.Fatal("the enrolling browser was signed out")
			}
		})

		t.Run("the enrolment is audited", func(t *testing.T) {
			if n := auditCount(t, e.st, "alice", audit.TwoFactorEnabled); n != 1 {
				t.Fatalf("%d %s events", n, audit.TwoFactorEnabled)
			}
		})
	})
}

func TestChangesNeedARecentPassword(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	secret, _ := e.enrolAlice()
	b := e.browser()
	p := b.passwordStep(authorizeQuery(firstParty))
	b.follow(b.submitCode(p, e.totpCode(secret)))
	e.nextStep()
	e.clock.Advance(web.ReauthWindow + time.Minute)

	t.Run("a POST with a stale password changes nothing and asks for the password", func(t *testing.T) {
		settings := b.get("/auth/two-factor")
		for _, path := range []string{"/auth/two-factor/disable", "/auth/two-factor/recovery-codes"} {
			p := b.post(path, url.Values{"_csrf": {csrfOf(t, settings)}, "code": {e.totpCode(secret)}})
			if p.status != http.StatusSeeOther || p.location != "/auth/login" {
				t.Fatalf("%s: status %d location %q", path, p.status, p.location)
			}
		}
		if st, err := e.tf.Status(context.Background(), "alice"); err != nil || !st.Enabled || st.RecoveryCodesRemaining != 10 {
			t.Fatalf("status %+v, %v", st, err)
		}
	})

	t.Run("GET disable with a stale password goes to the password confirmation", func(t *testing.T) {
		p := b.get("/auth/two-factor/disable")
		if p.status != http.StatusSeeOther || p.location != "/auth/login" {
			t.Fatalf("status %d location %q", p.status, p.location)
		}
		p = b.get("/auth/login")
		for _, want := range []string{"Confirm your password", `value="alice@example.com"`, `name="password"`} {
			if !strings.Contains(p.body, want) {
				t.Errorf("confirmation page lacks %s:\n%s", want, p.body)
			}
		}
	})

	t.Run("a wrong password keeps asking", func(t *testing.T) {
		p := b.login(b.get("/auth/login"), "alice@example.com", "wrong password")
		if p.status != http.StatusOK || !strings.Contains(p.body, "Confirm your password") || !strings.Contains(p.body, `id="error"`) {
			t.Fatalf("status %d\n%s", p.status, p.body)
		}
	})

	t.Run("the password, without a code, leads back to the page that asked", func(t *testing.T) {
		p := b.login(b.get("/auth/login"), "alice@example.com", alicePassword)
		if p.status != http.StatusSeeOther || p.location != "/auth/two-factor/disable" {
			t.Fatalf("status %d location %q\n%s", p.status, p.location, p.body)
		}
		if p := b.get(p.location); p.status != http.StatusOK || !strings.Contains(p.body, `action="/auth/two-factor/disable"`) {
			t.Fatalf("status %d\n%s", p.status, p.body)
		}
	})

	t.Run("the browser stays signed in: an authorization needs no form", func(t *testing.T) {
		if params := redirectParams(t, b.get("/auth/authorize?"+authorizeQuery(firstParty).Encode()), webappURI+"?"); params.Get("code") == "" {
			t.Fatalf("redirect params: %v", params)
		}
	})
}

func TestEnableWithAStalePassword(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	b := e.browser()
	b.signIn()
	e.clock.Advance(web.ReauthWindow + time.Minute)
	p := b.get("/auth/two-factor/enable")
	if p.status != http.StatusSeeOther || p.location != "/auth/login" {
		t.Fatalf("stale password: status %d location %q", p.status, p.location)
	}
	p = b.login(b.get("/auth/login"), "alice@example.com", alicePassword)
	if p.location != "/auth/two-factor/enable" {
		t.Fatalf("status %d location %q", p.status, p.location)
	}
	find(t, secretRe, b.get(p.location), "#totp-secret")
}

func TestLoginWithTwoFactor(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		secret, _ := e.enrolAlice()
		b := e.browser()
		prompt := b.passwordStep(authorizeQuery(firstParty))

		t.Run("the prompt asks for a code and hints at recovery codes", func(t *testing.T) {
			for _, want := range []string{`name="code"`, `autocomplete="one-time-code"`, `id="recovery-hint"`, "recovery code"} {
				if !strings.Contains(prompt.body, want) {
					t.Errorf("prompt lacks %s", want)
				}
			}
		})

		code := e.totpCode(secret)
		t.Run("a valid code completes the authorization with amr pwd, otp, mfa", func(t *testing.T) {
			assertMFAToken(t, e, b, b.submitCode(prompt, code), firstParty, webappSecret)
		})

		t.Run("the same code in another login is refused", func(t *testing.T) {
			b := e.browser()
			assertInvalidCode(t, b.submitCode(b.passwordStep(authorizeQuery(firstParty)), code))
		})

		t.Run("the next step's code works", func(t *testing.T) {
			e.nextStep()
			b := e.browser()
			assertMFAToken(t, e, b, b.submitCode(b.passwordStep(authorizeQuery(firstParty)), e.totpCode(secret)), firstParty, webappSecret)
		})

		t.Run("spaces inside a code are ignored", func(t *testing.T) {
			e.nextStep()
			b := e.browser()
			c := e.totpCode(secret)
			assertMFAToken(t, e, b, b.submitCode(b.passwordStep(authorizeQuery(firstParty)), c[:3]+" "+c[3:]), firstParty, webappSecret)
		})
	})
}

func TestWrongCodesLockTheFactor(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		secret, _ := e.enrolAlice()
		b := e.browser()
		prompt := b.passwordStep(authorizeQuery(firstParty))

		t.Run("malformed codes get the same answer as wrong ones, never a 500", func(t *testing.T) {
			for _, c := range []string{"", "1", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12\x003456"} {
				assertInvalidCode(t, b.submitCode(prompt, c))
			}
		})
		t.Run("after 5 failures the right code is refused with the same message", func(t *testing.T) {
			e.nextStep()
			assertInvalidCode(t, b.submitCode(prompt, e.totpCode(secret)))
			if n := auditCount(t, e.st, "alice", audit.TwoFactorLockout); n != 1 {
				t.Fatalf("%d lockout events", n)
			}
		})
		t.Run("starting the login again does not lift the lock", func(t *testing.T) {
			b := e.browser()
			assertInvalidCode(t, b.submitCode(b.passwordStep(authorizeQuery(firstParty)), e.totpCode(secret)))
		})
		t.Run("after the lockout the right code works", func(t *testing.T) {
			e.tfClock.Advance(twofactor.LockoutBase)
			b := e.browser()
			assertMFAToken(t, e, b, b.submitCode(b.passwordStep(authorizeQuery(firstParty)), e.totpCode(secret)), firstParty, webappSecret)
		})
	})
}

func TestOversizedCodeIsJustWrong(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	e.enrolAlice()
	b := e.browser()
	assertInvalidCode(t, b.submitCode(b.passwordStep(authorizeQuery(firstParty)), strings.Repeat("1", 1<<20)))
	if n := auditCount(t, e.st, "alice", audit.TwoFactorFailure); n != 1 {
		t.Fatalf("%d failure events, want the megabyte counted once", n)
	}
}

func TestRecoveryCodes(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		secret, codes := e.enrolAlice()

		t.Run("a recovery code signs in once", func(t *testing.T) {
			b := e.browser()
			assertMFAToken(t, e, b, b.submitCode(b.passwordStep(authorizeQuery(firstParty)), strings.ToUpper(codes[0])), firstParty, webappSecret)
			b = e.browser()
			assertInvalidCode(t, b.submitCode(b.passwordStep(authorizeQuery(firstParty)), codes[0]))
			if n := auditCount(t, e.st, "alice", audit.RecoveryCodeUsed); n != 1 {
				t.Fatalf("%d recovery-code events", n)
			}
		})

		b := e.browser()
		b.follow(b.submitCode(b.passwordStep(authorizeQuery(firstParty)), e.totpCode(secret)))
		e.nextStep()

		t.Run("the settings page counts what is left", func(t *testing.T) {
			if p := b.get("/auth/two-factor"); !strings.Contains(p.body, `<dd id="recovery-codes-remaining">9</dd>`) {
				t.Fatalf("settings page:\n%s", p.body)
			}
		})

		t.Run("new recovery codes need a current code", func(t *testing.T) {
			settings := b.get("/auth/two-factor")
			p := b.post("/auth/two-factor/recovery-codes", url.Values{"_csrf": {csrfOf(t, settings)}, "code": {e.wrongCode(secret)}})
			if p.status != http.StatusOK || !strings.Contains(p.body, invalidCode) || strings.Contains(p.body, `id="recovery-codes"`) {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
		})

		t.Run("with one they replace the old codes", func(t *testing.T) {
			settings := b.get("/auth/two-factor")
			p := b.post("/auth/two-factor/recovery-codes", url.Values{"_csrf": {csrfOf(t, settings)}, "code": {e.totpCode(secret)}})
			fresh := recoveryCodes(t, p)
			if len(fresh) != 10 || slices.Contains(fresh, codes[1]) {
				t.Fatalf("new codes %v", fresh)
			}
			b := e.browser()
			assertInvalidCode(t, b.submitCode(b.passwordStep(authorizeQuery(firstParty)), codes[1]))
			b = e.browser()
			assertMFAToken(t, e, b, b.submitCode(b.passwordStep(authorizeQuery(firstParty)), fresh[0]), firstParty, webappSecret)
		})
	})
}

func TestDisableTwoFactor(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		secret, codes := e.enrolAlice()
		signIn := func() *browser {
			b := e.browser()
			b.follow(b.submitCode(b.passwordStep(authorizeQuery(firstParty)), e.totpCode(secret)))
			e.nextStep()
			return b
		}
		other := signIn()
		b := signIn()
		form := b.get("/auth/two-factor/disable")

		t.Run("the page asks for a code", func(t *testing.T) {
			if form.status != http.StatusOK || !strings.Contains(form.body, `name="code"`) || !strings.Contains(form.body, `action="/auth/two-factor/disable"`) {
				t.Fatalf("status %d\n%s", form.status, form.body)
			}
		})

		t.Run("a wrong code shows #error and disables nothing", func(t *testing.T) {
			p := b.post("/auth/two-factor/disable", url.Values{"_csrf": {csrfOf(t, form)}, "code": {e.wrongCode(secret)}})
			if p.status != http.StatusOK || !strings.Contains(p.body, invalidCode) {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
			if st, _ := e.tf.Status(context.Background(), "alice"); !st.Enabled {
				t.Fatal("disabled by a wrong code")
			}
		})

		t.Run("a recovery code disables 2FA and leads to the settings page", func(t *testing.T) {
			p := b.post("/auth/two-factor/disable", url.Values{"_csrf": {csrfOf(t, form)}, "code": {codes[3]}})
			if p.status != http.StatusSeeOther || p.location != "/auth/two-factor" {
				t.Fatalf("status %d location %q\n%s", p.status, p.location, p.body)
			}
			if p := b.get(p.location); !strings.Contains(p.body, `data-enabled="false"`) {
				t.Fatalf("settings page:\n%s", p.body)
			}
		})

		t.Run("the secret and recovery codes are gone", func(t *testing.T) {
			if _, err := e.st.GetTwoFactor(context.Background(), "alice"); err == nil {
				t.Fatal("second factor still stored")
			}
			if n, err := e.st.CountRecoveryCodes(context.Background(), "alice"); err != nil || n != 0 {
				t.Fatalf("%d recovery codes left, %v", n, err)
			}
		})

		t.Run("the other session ended, this one goes on", func(t *testing.T) {
			if signedIn(other.get("/auth/login")) {
				t.Fatal("the other browser is still signed in")
			}
			if !signedIn(b.get("/auth/login")) {
				t.Fatal("the disabling browser was signed out")
			}
		})

		t.Run("the password alone signs in again", func(t *testing.T) {
			b := e.browser()
			p := b.login(b.get("/auth/login?"+authorizeQuery(firstParty).Encode()), "alice", alicePassword)
			redirectParams(t, b.follow(p), webappURI+"?")
		})

		t.Run("the disabling is audited", func(t *testing.T) {
			if n := auditCount(t, e.st, "alice", audit.TwoFactorDisabled); n != 1 {
				t.Fatalf("%d %s events", n, audit.TwoFactorDisabled)
			}
		})
	})
}

func TestPendingSecondFactorReachesNoSettingsPage(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	secret, _ := e.enrolAlice()
	b := e.browser()
	prompt := b.passwordStep(authorizeQuery(firstParty))
	for _, path := range []string{"/auth/two-factor", "/auth/two-factor/enable", "/auth/two-factor/disable"} {
		t.Run("GET "+path+" goes to the login page", func(t *testing.T) {
			if p := b.get(path); p.status != http.StatusSeeOther || p.location != "/auth/login" {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
		})
	}
	for _, path := range []string{"/auth/two-factor/disable", "/auth/two-factor/recovery-codes", "/auth/two-factor/enable"} {
		t.Run("POST "+path+" changes nothing", func(t *testing.T) {
			p := b.post(path, url.Values{"_csrf": {csrfOf(t, prompt)}, "code": {e.totpCode(secret)}})
			if p.status != http.StatusSeeOther || p.location != "/auth/login" {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
		})
	}
	if st, err := e.tf.Status(context.Background(), "alice"); err != nil || !st.Enabled || st.RecoveryCodesRemaining != 10 {
		t.Fatalf("status %+v, %v", st, err)
	}
}

func TestRequiredTwoFactorEnrolsInsideTheLogin(t *testing.T) {
	const strictSecret = "strict-secret-strict"
	cases := []struct {
		name     string
		setup    func(e *env)
		clientID string
		secret   string
	}{
		{"a client that requires 2FA", func(e *env) {
			e.putClient(resource.Client{
				ID: "strict", Secret: strictSecret, FirstParty: true, Name: "Strict App",
				GrantTypes: []string{"code"}, Scope: []string{"openid", "profile"},
				Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{
					RedirectURI: resource.StringList{webappURI}, SecretRequired: ptr(true),
				}},
				TwoFactor: &resource.ClientTwoFactor{Required: new(true)},
			})
		}, "strict", strictSecret},
		{"an AuthConfig that requires 2FA", func(e *env) {
			e.putAuthConfig(resource.AuthConfig{ID: "default", TwoFactor: &resource.AuthConfigTwoFactor{Required: true, IssuerName: "Strict Co"}})
		}, firstParty, webappSecret},
		{"an account created with a TOTP enrolment due", func(e *env) {
			if err := e.st.PutTwoFactor(context.Background(), resource.TOTPEnrolmentMarker("alice", e.clock.Now())); err != nil {
				e.t.Fatal(err)
			}
		}, firstParty, webappSecret},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, e *env) {
				tc.setup(e)
				q := authorizeQuery(tc.clientID)
				b := e.browser()
				p := b.passwordStep(q)
				secret := find(t, secretRe, p, "#totp-secret")

				t.Run("the password leads to the enrolment page", func(t *testing.T) {
					find(t, qrRe, p, "#qr")
					if uri := find(t, uriRe, p, "#otpauth-uri"); !strings.Contains(uri, "secret="+secret) {
						t.Fatalf("URI %s", uri)
					}
					if !strings.Contains(p.body, `action="/auth/login/two-factor"`) {
						t.Fatalf("form does not post to the login step:\n%s", p.body)
					}
				})

				t.Run("the half-signed-in session cannot reach authorize", func(t *testing.T) {
					if p := b.get("/auth/authorize?" + q.Encode()); p.location != "/auth/login" {
						t.Fatalf("status %d location %q", p.status, p.location)
					}
				})

				t.Run("a wrong code keeps the same secret", func(t *testing.T) {
					p := b.get("/auth/login/two-factor")
					p = b.submitCode(p, e.wrongCode(secret))
					if !strings.Contains(p.body, invalidCode) || find(t, secretRe, p, "#totp-secret") != secret {
						t.Fatalf("status %d\n%s", p.status, p.body)
					}
				})

				t.Run("the right code shows recovery codes, then the authorization completes with mfa", func(t *testing.T) {
					p := b.submitCode(b.get("/auth/login/two-factor"), e.totpCode(secret))
					if codes := recoveryCodes(t, p); len(codes) != 10 {
						t.Fatalf("%d recovery codes", len(codes))
					}
					next := find(t, hrefRe, p, "continue link")
					if !strings.HasPrefix(next, "/auth/authorize?") {
						t.Fatalf("continue goes to %q", next)
					}
					assertMFAToken(t, e, b, b.get(next), tc.clientID, tc.secret)
				})

				t.Run("the next login asks for a code", func(t *testing.T) {
					e.nextStep()
					b := e.browser()
					p := b.passwordStep(q)
					if strings.Contains(p.body, `id="totp-secret"`) {
						t.Fatal("enrolment shown again")
					}
					assertMFAToken(t, e, b, b.submitCode(p, e.totpCode(secret)), tc.clientID, tc.secret)
				})
			})
		})
	}

	t.Run("a session signed in with the password alone steps up for a client that requires 2FA", func(t *testing.T) {
		e := newEnv(t, gormstoretest.Open(t))
		b := e.browser()
		b.signIn()
		cases[0].setup(e)
		q := authorizeQuery("strict")
		params := redirectParams(t, b.get("/auth/authorize?"+authorizeQuery("strict", "prompt", "none").Encode()), webappURI+"?")
		if params.Get("error") != "unmet_authentication_requirements" {
			t.Fatalf("prompt=none: %v", params)
		}
		// The password was typed just now: the enrolment follows at once.
		p := b.get("/auth/authorize?" + q.Encode())
		if p.location != "/auth/login/two-factor" {
			t.Fatalf("status %d location %q", p.status, p.location)
		}
		find(t, secretRe, b.get(p.location), "#totp-secret")
	})
}

// hook is a webhook receiver.
type hook struct {
	mu       sync.Mutex
	requests []hookRequest
	status   int
	block    chan struct{} // when set, the receiver answers only once it is closed
}

type hookRequest struct {
	header http.Header
	body   []byte
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.requests = append(h.requests, hookRequest{header: r.Header.Clone(), body: body})
	status, block := h.status, h.block
	h.mu.Unlock()
	if block != nil {
		<-block
	}
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
}

func (h *hook) received() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.requests)
}

func (e *env) startHook(h *hook, timeoutMS int) string {
	e.t.Helper()
	srv := httptest.NewServer(h)
	e.t.Cleanup(srv.Close)
	if h.block != nil {
		// Runs before srv.Close (cleanups run last-in first-out), which
		// waits for the blocked handler.
		e.t.Cleanup(func() { close(h.block) })
	}
	e.putAuthConfig(resource.AuthConfig{ID: "default", TwoFactor: &resource.AuthConfigTwoFactor{
		IssuerName: "Acme",
		Webhook: &resource.Webhook{
			Endpoint: srv.URL + "/sms", Timeout: timeoutMS,
			Headers: map[string]string{"Authorization": "Bearer hook-token"}, Secret: "hook-signing-key",
		},
	}})
	return srv.URL
}

func TestWebhookSendsTheCodeWhenThePromptIsShown(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		secret, _ := e.enrolAlice()
		rcv := &hook{}
		e.startHook(rcv, 2000)
		b := e.browser()
		prompt := b.passwordStep(authorizeQuery(firstParty))
		reqs := rcv.received()
		if len(reqs) != 1 {
			t.Fatalf("%d webhook requests", len(reqs))
		}
		var payload struct {
			Event string `json:"event"`
			User  struct {
				ID, Email string
			} `json:"user"`
			Token, Channel, ExpiresAt, ID string
		}
		if err := json.Unmarshal(reqs[0].body, &payload); err != nil {
			t.Fatal(err)
		}

		t.Run("the payload carries the user and the current code", func(t *testing.T) {
			if payload.Event != "two_factor.code" || payload.User.ID != "alice" || payload.User.Email != "alice@example.com" ||
				payload.Channel != "totp" || payload.ID == "" || payload.ExpiresAt == "" {
				t.Fatalf("payload %s", reqs[0].body)
			}
			// The step may have turned since the push.
			if payload.Token != e.totpCode(secret) && payload.Token != e.totpCodeAt(secret, e.tfClock.Now().Add(-30*time.Second)) {
				t.Fatalf("token %q is not the current code", payload.Token)
			}
		})

		t.Run("with the configured headers and a valid signature", func(t *testing.T) {
			if got := reqs[0].header.Get("Authorization"); got != "Bearer hook-token" {
				t.Fatalf("Authorization %q", got)
			}
			if err := notify.VerifySignature("hook-signing-key", reqs[0].header.Get(notify.SignatureHeader), reqs[0].body, e.clock.Now(), time.Minute); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("the prompt offers to send a new code", func(t *testing.T) {
			if !strings.Contains(prompt.body, `id="resend-code"`) {
				t.Fatalf("no resend link:\n%s", prompt.body)
			}
		})

		t.Run("the delivered code signs in, once", func(t *testing.T) {
			assertMFAToken(t, e, b, b.submitCode(prompt, payload.Token), firstParty, webappSecret)
			b := e.browser()
			assertInvalidCode(t, b.submitCode(b.passwordStep(authorizeQuery(firstParty)), payload.Token))
		})
	})
}

func TestSlowOrFailingWebhookDoesNotBreakTheLogin(t *testing.T) {
	cases := []struct {
		name string
		hook *hook
	}{
		{"a receiver that never answers", &hook{block: make(chan struct{})}},
		{"a receiver that fails", &hook{status: http.StatusInternalServerError}},
	}
	for _, tc := range cases {
		t.Run(tc.name+" leaves the prompt working", func(t *testing.T) {
			e := newEnv(t, gormstoretest.Open(t))
			secret, _ := e.enrolAlice()
			e.startHook(tc.hook, 100)
			b := e.browser()
			// The receiver has not answered (or failed) when the page is here.
			prompt := b.passwordStep(authorizeQuery(firstParty))
			if prompt.status != http.StatusOK || !strings.Contains(prompt.body, `name="code"`) {
				t.Fatalf("status %d\n%s", prompt.status, prompt.body)
			}
			if len(tc.hook.received()) != 1 {
				t.Fatalf("%d webhook requests", len(tc.hook.received()))
			}
			if n := auditCount(t, e.st, "alice", audit.WebhookFailure); n != 1 {
				t.Fatalf("%d webhook failure events", n)
			}
			assertMFAToken(t, e, b, b.submitCode(prompt, e.totpCode(secret)), firstParty, webappSecret)
		})
	}
}

func TestTextMessageCodeThroughTheWebhook(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	rcv := &hook{}
	e.startHook(rcv, 2000)
	ctx := context.Background()
	u, err := e.st.GetUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	u.PhoneNumber, u.PhoneVerified = "+15551234567", true
	if _, _, err := e.st.PutUser(ctx, u, 0); err != nil {
		t.Fatal(err)
	}
	ac, err := resource.ResolveAuthConfig(ctx, e.st, resource.Client{})
	if err != nil {
		t.Fatal(err)
	}
	w := ac.Webhook()
	if _, err := e.tf.EnableCodeMethod(ctx, twofactor.EnableCodeInput{
		UserID: "alice", Method: twofactor.MethodSMS,
		Webhook: notify.Webhook{Endpoint: w.Endpoint, Headers: w.Headers, Secret: w.Secret},
	}); err != nil {
		t.Fatal(err)
	}

	b := e.browser()
	prompt := b.passwordStep(authorizeQuery(firstParty))
	reqs := rcv.received()
	if len(reqs) != 1 {
		t.Fatalf("%d webhook requests", len(reqs))
	}
	var payload struct{ Token, Channel, Destination string }
	if err := json.Unmarshal(reqs[0].body, &payload); err != nil {
		t.Fatal(err)
	}

	t.Run("the prompt names the masked phone number", func(t *testing.T) {
		if payload.Channel != "sms" || payload.Destination != "+15551234567" {
			t.Fatalf("payload %s", reqs[0].body)
		}
		if text := html.UnescapeString(prompt.body); !strings.Contains(text, twofactor.MaskDestination("+15551234567")) || strings.Contains(text, "+15551234567") {
			t.Fatalf("prompt:\n%s", prompt.body)
		}
	})

	t.Run("the code is bound to this login: another browser cannot use it", func(t *testing.T) {
		other := e.browser()
		otherPrompt := other.passwordStep(authorizeQuery(firstParty))
		assertInvalidCode(t, other.submitCode(otherPrompt, payload.Token))
	})

	t.Run("this login signs in with it", func(t *testing.T) {
		assertMFAToken(t, e, b, b.submitCode(prompt, payload.Token), firstParty, webappSecret)
	})

	t.Run("the disable page sends a code that turns the factor off", func(t *testing.T) {
		before := len(rcv.received())
		form := b.get("/auth/two-factor/disable")
		reqs := rcv.received()
		if len(reqs) != before+1 {
			t.Fatalf("%d new webhook requests", len(reqs)-before)
		}
		var sent struct{ Token string }
		if err := json.Unmarshal(reqs[len(reqs)-1].body, &sent); err != nil {
			t.Fatal(err)
		}
		p := b.post("/auth/two-factor/disable", url.Values{"_csrf": {csrfOf(t, form)}, "code": {sent.Token}})
		if p.status != http.StatusSeeOther || p.location != "/auth/two-factor" {
			t.Fatalf("status %d location %q\n%s", p.status, p.location, p.body)
		}
		if st, _ := e.tf.Status(context.Background(), "alice"); st.Enabled {
			t.Fatal("still enabled")
		}
	})
}

// TestEnrolmentsConfirmedAtOnceInSeveralWindows: the user set up an
// authenticator in several windows and confirms them all at once. One wins
// and shows the recovery codes; every other is told that another window won
// (or, when it arrives after the winner ended the other sessions, is sent
// back to sign in), and the winner's secret is the one stored.
func TestEnrolmentsConfirmedAtOnceInSeveralWindows(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		const windows = 6
		type pending struct {
			b            *browser
			secret, csrf string
		}
		var ps []pending
		for range windows {
			b := e.browser()
			b.signIn()
			p := b.get("/auth/two-factor/enable")
			ps = append(ps, pending{b, find(t, secretRe, p, "#totp-secret"), csrfOf(t, p)})
		}
		type answer struct {
			status         int
			body, location string
			err            error
		}
		answers := make([]answer, windows)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, p := range ps {
			form := url.Values{"_csrf": {p.csrf}, "code": {e.totpCode(p.secret)}}
			wg.Go(func() {
				<-start
				resp, err := p.b.c.PostForm(p.b.abs("/auth/two-factor/enable"), form)
				if err != nil {
					answers[i].err = err
					return
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				answers[i] = answer{resp.StatusCode, string(body), resp.Header.Get("Location"), err}
			})
		}
		close(start)
		wg.Wait()
		winner, told := -1, 0
		for i, a := range answers {
			switch {
			case a.err != nil:
				t.Fatalf("window %d: %v", i, a.err)
			case strings.Contains(a.body, `id="recovery-codes"`):
				if winner >= 0 {
					t.Fatalf("windows %d and %d both got recovery codes", winner, i)
				}
				winner = i
			case a.status == http.StatusOK && strings.Contains(a.body, "turned on meanwhile in another window"):
				told++
			case a.status == http.StatusSeeOther && strings.HasPrefix(a.location, "/auth/login"),
				a.status == http.StatusForbidden && strings.Contains(a.body, `href="/auth/login"`):
				// The winner's commit ended this window's session first.
			default:
				t.Fatalf("window %d: %d %s\n%s", i, a.status, a.location, a.body)
			}
		}
		if winner < 0 {
			t.Fatal("no window enabled two-step verification")
		}
		t.Logf("%d of %d losing windows were told another one won", told, windows-1)
		tf, err := e.st.GetTwoFactor(context.Background(), "alice")
		if err != nil || !tf.Enabled {
			t.Fatalf("stored factor %+v, %v", tf, err)
		}
		// The winner's window still shows the settings; its app's codes open
		// the account, a loser's do not.
		if p := ps[winner].b.get("/auth/two-factor"); p.status != http.StatusOK || !strings.Contains(p.body, `data-enabled="true"`) {
			t.Fatalf("the winning window's settings: %d\n%s", p.status, p.body)
		}
		e.nextStep()
		if _, err := e.tf.Verify(context.Background(), twofactor.VerifyInput{UserID: "alice", Code: e.totpCode(ps[(winner+1)%windows].secret)}); err == nil {
			t.Fatal("a losing window's secret opens the account")
		}
		if _, err := e.tf.Verify(context.Background(), twofactor.VerifyInput{UserID: "alice", Code: e.totpCode(ps[winner].secret)}); err != nil {
			t.Fatalf("the winning window's secret: %v", err)
		}
	})
}
