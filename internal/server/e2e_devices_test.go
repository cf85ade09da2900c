package server

// End-to-end tests of remembered browsers (issue 13): after a second factor
// a user may tick "Don't ask again on this browser"; the next password
// sign-in on that browser skips the code, until the user or an admin
// forgets the browser, the password changes, or the record expires; never
// for phr, nor past a max_age shorter than the time since the code.

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const deviceCookie = "gatehouse_device"

type deviceSuite struct {
	app   *testApp
	clock *offsetClock
}

// signInAgain runs a new authorization request on b that asks for the
// password again (prompt=login plus extra) and returns the page after it.
func (s deviceSuite) signInAgain(t *testing.T, b *browser, user, extra string) (oauthLogin, page) {
	t.Helper()
	l := newOAuthLogin(s.app, "plain")
	p := b.get(l.URL + "&prompt=login" + extra)
	if p.location != "" || p.url.Path != "/auth/login" {
		t.Fatalf("expected the login page, got %s (status %d, location %q)", p.url, p.status, p.location)
	}
	return l, submitForm(t, b, p, "password", url.Values{"username": {user}, "password": {tfPassword}})
}

// remember signs b in with the code and the box ticked.
func (s deviceSuite) remember(t *testing.T, b *browser, a *authenticator) {
	t.Helper()
	l, p := s.signInAgain(t, b, a.user, "")
	expectCodePrompt(t, p)
	if !has(t, p, "remember-device") {
		t.Fatalf("the code page has no remember box:\n%s", p.body)
	}
	id := l.exchange(t, toClient(t, b, submitForm(t, b, p, "code", url.Values{"code": {a.next(t)}, "remember_device": {"1"}})))
	expectClaims(t, "the sign-in that remembered the browser", acrMFA, []string{"pwd", "otp", "mfa"}, id.AuthTime, id.ACR, id.AMR, id.AuthTime)
	if deviceCookieOf(b) == nil {
		t.Fatal("no device cookie after ticking the box")
	}
}

// skips reports whether a new password sign-in on b skipped the code, and
// checks the claims when it did.
func (s deviceSuite) skips(t *testing.T, b *browser, user, extra string) bool {
	t.Helper()
	l, p := s.signInAgain(t, b, user, extra)
	if p.url.Path == pathTwoFactorPrompt {
		expectCodePrompt(t, p)
		return false
	}
	id := l.exchange(t, toClient(t, b, p))
	expectClaims(t, "a remembered sign-in", acrMFA, []string{"pwd", "mfa"}, id.AuthTime, id.ACR, id.AMR, id.AuthTime)
	return true
}

func deviceCookieOf(b *browser) *http.Cookie {
	u, _ := url.Parse(b.app.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == deviceCookie {
			return c
		}
	}
	return nil
}

func (s deviceSuite) devicesOf(t *testing.T, user string) []string {
	t.Helper()
	code, body := adminRequest(t, s.app, http.MethodGet, "/User/"+user+"/$devices", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /User/%s/$devices = %d %s", user, code, body)
	}
	var ids []string
	for _, part := range strings.Split(body, `"id":"`)[1:] {
		ids = append(ids, part[:strings.IndexByte(part, '"')])
	}
	return ids
}

func TestRememberedDevicesEndToEnd(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	requireTool(t, "zbarimg", "zbar-tools")
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			s := deviceSuite{clock: &offsetClock{}}
			s.app = startAppWithDeps(t, be.Open(t), secret.RandomBytes(32), func(d *Deps) { d.Now = s.clock.Now })
			putResource(t, s.app, "/Client/plain", webClientYAML)

			t.Run("rememberDevice.days outside 1 to 365 is a 422 OperationOutcome that names the field", func(t *testing.T) {
				for _, days := range []string{"-1", "366"} {
					code, body := adminRequest(t, s.app, http.MethodPut, "/AuthConfig/default", "text/yaml",
						"twoFactor:\n  rememberDevice:\n    enabled: true\n    days: "+days+"\n")
					if code != http.StatusUnprocessableEntity || !strings.Contains(body, `"OperationOutcome"`) || !strings.Contains(body, `"twoFactor.rememberDevice.days"`) {
						t.Fatalf("days %s: PUT = %d %s", days, code, body)
					}
				}
				if code, _ := adminRequest(t, s.app, http.MethodGet, "/AuthConfig/default", "", ""); code != http.StatusNotFound {
					t.Fatalf("a refused AuthConfig exists: %d", code)
				}
			})

			t.Run("without rememberDevice the code page has no box", func(t *testing.T) {
				a, _ := enrolUser(t, s.app, "nobox", "")
				_, p := s.signInAgain(t, browserFor(t, s.app), a.user, "")
				expectCodePrompt(t, p)
				if has(t, p, "remember-device") {
					t.Fatal("a remember box without rememberDevice")
				}
			})

			putResource(t, s.app, "/AuthConfig/default", "twoFactor:\n  rememberDevice:\n    enabled: true\n    days: 30\n")
			a, _ := enrolUser(t, s.app, "rem", "")
			b := browserFor(t, s.app)

			t.Run("a remembered browser skips the code next time, with amr pwd mfa and acr mfa", func(t *testing.T) {
				s.remember(t, b, a)
				c := deviceCookieOf(b)
				if !c.HttpOnly && c.Value == "" {
					t.Fatalf("device cookie %+v", c)
				}
				if !s.skips(t, b, a.user, "") {
					t.Fatal("the remembered browser was asked for the code")
				}
				if !s.skips(t, b, a.user, "&acr_values="+url.QueryEscape(acrMFA)) {
					t.Fatal("acr_values=mfa: the remembered browser was asked for the code")
				}
				if evs := auditEvents(t, s.app, a.user, "two_factor.device_remembered"); len(evs) != 1 || evs[0].Detail["device"] == "" {
					t.Fatalf("remember audit events %+v", evs)
				}
				if evs := auditEvents(t, s.app, a.user, "two_factor.device_used"); len(evs) != 2 {
					t.Fatalf("use audit events %+v", evs)
				}
				other := browserFor(t, s.app)
				if s.skips(t, other, a.user, "") {
					t.Fatal("another browser skipped the code")
				}
			})

			t.Run("a request for phr is never met by a remembered browser", func(t *testing.T) {
				if s.skips(t, b, a.user, "&acr_values="+url.QueryEscape(acrPHR)) {
					t.Fatal("acr_values=phr skipped the code")
				}
			})

			t.Run("the user lists the browser through the API without its token, and forgetting it asks for the code again", func(t *testing.T) {
				l, p := s.signInAgain(t, b, a.user, "")
				tok := l.tokens(t, toClient(t, b, p))
				r := callAPI(t, s.app, http.MethodGet, "/auth/devices", tok.AccessToken, nil)
				wantStatus(t, r, http.StatusOK, "")
				list := r.list(t, "devices")
				if len(list) != 1 || list[0]["strategy"] != "totp" || list[0]["expiresAt"] == nil {
					t.Fatalf("devices %v", list)
				}
				if strings.Contains(r.raw, deviceCookieOf(b).Value) {
					t.Fatal("the device token is in the API's answer")
				}
				id, _ := list[0]["id"].(string)
				wantStatus(t, callAPI(t, s.app, http.MethodDelete, "/auth/devices/"+id, tok.AccessToken, nil), http.StatusNoContent, "")
				wantStatus(t, callAPI(t, s.app, http.MethodDelete, "/auth/devices/"+id, tok.AccessToken, nil), http.StatusNotFound, "not_found")
				if s.skips(t, b, a.user, "") {
					t.Fatal("a forgotten browser skipped the code")
				}
			})

			t.Run("the settings page lists the browser and forgets it", func(t *testing.T) {
				s.remember(t, b, a)
				p := b.get(s.app.URL + "/auth/two-factor")
				if !has(t, p, "remembered-devices") {
					t.Fatalf("no list of remembered browsers:\n%s", p.body)
				}
				p = submitForm(t, b, p, "device", url.Values{})
				if p.url.Path != "/auth/two-factor" || has(t, p, "remembered-devices") {
					t.Fatalf("after forgetting: %s (status %d)\n%s", p.url, p.status, p.body)
				}
				if s.skips(t, b, a.user, "") {
					t.Fatal("a browser forgotten on the settings page skipped the code")
				}
			})

			t.Run("an admin lists and forgets the browser", func(t *testing.T) {
				s.remember(t, b, a)
				ids := s.devicesOf(t, a.user)
				if len(ids) != 1 {
					t.Fatalf("admin devices %v", ids)
				}
				if code, body := adminRequest(t, s.app, http.MethodDelete, "/User/"+a.user+"/$devices/"+ids[0], "", ""); code != http.StatusNoContent {
					t.Fatalf("DELETE = %d %s", code, body)
				}
				if code, _ := adminRequest(t, s.app, http.MethodDelete, "/User/"+a.user+"/$devices/"+ids[0], "", ""); code != http.StatusNotFound {
					t.Fatalf("DELETE twice = %d", code)
				}
				if code, _ := adminRequest(t, s.app, http.MethodGet, "/User/nobody/$devices", "", ""); code != http.StatusNotFound {
					t.Fatalf("devices of a missing user = %d", code)
				}
				if s.skips(t, b, a.user, "") {
					t.Fatal("a browser the admin forgot skipped the code")
				}
				if evs := auditEvents(t, s.app, a.user, "two_factor.device_revoked"); len(evs) != 3 {
					t.Fatalf("revoke audit events %+v", evs)
				}
			})

			t.Run("a password change forgets every browser", func(t *testing.T) {
				s.remember(t, b, a)
				putUser(t, s.app, a.user, "")
				if ids := s.devicesOf(t, a.user); len(ids) != 0 {
					t.Fatalf("devices after the password change %v", ids)
				}
				if s.skips(t, b, a.user, "") {
					t.Fatal("the browser skipped the code after a password change")
				}
			})

			t.Run("turning the second factor off forgets every browser", func(t *testing.T) {
				a2, _ := enrolUser(t, s.app, "rem-off", "")
				b2 := browserFor(t, s.app)
				s.remember(t, b2, a2)
				if ids := s.devicesOf(t, a2.user); len(ids) != 1 {
					t.Fatalf("devices before turning off %v", ids)
				}
				p := b2.get(s.app.URL + pathTwoFactorDisable)
				p = submitForm(t, b2, p, "code", url.Values{"code": {a2.recovery[0]}})
				if p.status >= 400 || errorText(t, p) != "" {
					t.Fatalf("turning off ended at %s (status %d) #error %q", p.url, p.status, errorText(t, p))
				}
				if ids := s.devicesOf(t, a2.user); len(ids) != 0 {
					t.Fatalf("devices after turning the factor off %v", ids)
				}
				if evs := auditEvents(t, s.app, a2.user, "two_factor.device_revoked"); len(evs) != 1 || evs[0].Detail["by"] != "two_factor_removed" {
					t.Fatalf("revoke audit events %+v", evs)
				}
			})

			t.Run("max_age shorter than the time since the code asks for it again", func(t *testing.T) {
				s.remember(t, b, a)
				time.Sleep(1100 * time.Millisecond)
				if s.skips(t, b, a.user, "&max_age=0") {
					t.Fatal("max_age=0 a second after the code skipped it")
				}
				if !s.skips(t, b, a.user, "&max_age=3600") {
					t.Fatal("max_age=3600 a second after the code asked for it")
				}
			})

			t.Run("an expired browser is asked for the code", func(t *testing.T) {
				// The clock moves past the 30 days (TOTP codes of the real
				// time no longer match: this test comes last).
				s.clock.Advance(30*24*time.Hour + time.Minute)
				if s.skips(t, b, a.user, "") {
					t.Fatal("the browser skipped the code after 30 days")
				}
			})
		})
	}
}
