package web_test

import (
	"context"
	"regexp"

	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/web"
)

func TestLoginPage(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	b := e.browser()
	p := b.get("/auth/login")

	t.Run("renders the password form with a CSRF token", func(t *testing.T) {
		if p.status != http.StatusOK {
			t.Fatalf("status %d", p.status)
		}
		for _, want := range []string{
			`<form method="post" action="/auth/login"`,
			`name="username"`, `autocomplete="username"`,
			`name="password"`, `type="password"`, `autocomplete="current-password"`,
			`<label for="username">`, `<label for="password">`,
			`href="/static/gatehouse.css"`,
		} {
			if !strings.Contains(p.body, want) {
				t.Errorf("login page lacks %s", want)
			}
		}
		if len(csrfOf(t, p)) < 32 {
			t.Error("CSRF token too short")
		}
		if strings.Contains(p.body, `id="error"`) {
			t.Error("a fresh form shows an error")
		}
	})

	t.Run("sets an HttpOnly SameSite=Lax session cookie", func(t *testing.T) {
		raw := strings.Join(p.header.Values("Set-Cookie"), "\n")
		if !strings.Contains(raw, "gatehouse=") || !strings.Contains(raw, "HttpOnly") || !strings.Contains(raw, "SameSite=Lax") {
			t.Fatalf("Set-Cookie: %s", raw)
		}
	})

	t.Run("the stylesheet it links is served", func(t *testing.T) {
		css := b.get("/static/gatehouse.css")
		if css.status != http.StatusOK || !strings.Contains(css.body, ".card") {
			t.Fatalf("stylesheet: status %d", css.status)
		}
	})
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	b := e.browser()
	form := b.get("/auth/login")
	token := csrfOf(t, form)
	other := e.browser()
	otherToken := csrfOf(t, other.get("/auth/login"))

	tests := []struct {
		name string
		form url.Values
	}{
		{"a POST without a token is refused", url.Values{"username": {"alice"}, "password": {alicePassword}}},
		{"a POST with an empty token is refused", url.Values{"_csrf": {""}, "username": {"alice"}, "password": {alicePassword}}},
		{"a POST with another session's token is refused", url.Values{"_csrf": {otherToken}, "username": {"alice"}, "password": {alicePassword}}},
		{"a POST with a forged token is refused", url.Values{"_csrf": {strings.Repeat("0", len(token))}, "username": {"alice"}, "password": {alicePassword}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := b.post("/auth/login", tt.form)
			if p.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403", p.status)
			}
			if !strings.Contains(p.header.Get("Content-Type"), "text/html") || !strings.Contains(p.body, `id="error"`) {
				t.Fatalf("403 is not a readable page:\n%s", p.body)
			}
			if p.location != "" || b.cookie("gatehouse") == nil {
				t.Fatal("refused POST signed in or redirected")
			}
		})
	}

	t.Run("a POST from a browser without a session is refused", func(t *testing.T) {
		fresh := e.browser()
		if p := fresh.post("/auth/login", url.Values{"_csrf": {token}, "username": {"alice"}, "password": {alicePassword}}); p.status != http.StatusForbidden {
			t.Fatalf("status %d, want 403", p.status)
		}
	})

	t.Run("the right token is accepted", func(t *testing.T) {
		if p := b.login(form, "alice", alicePassword); p.status != http.StatusSeeOther {
			t.Fatalf("status %d, want 303", p.status)
		}
	})
}

func TestFailedLoginsLookTheSame(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.putUser("olga", "olga@example.com", alicePassword, true)
		b := e.browser()
		form := b.get("/auth/login")
		attempts := []struct{ name, username, password string }{
			{"wrong password", "alice", "not the password"},
			{"unknown user", "nobody@example.com", alicePassword},
			{"inactive user with a wrong password", "olga", "not the password"},
		}
		var first page
		for i, a := range attempts {
			p := b.login(form, a.username, a.password)
			if p.status != http.StatusOK {
				t.Fatalf("%s: status %d", a.name, p.status)
			}
			if !strings.Contains(p.body, `<p id="error" class="error" role="alert">Invalid username or password</p>`) {
				t.Fatalf("%s: no uniform error:\n%s", a.name, p.body)
			}
			// The form keeps what was typed; apart from that the pages
			// must not differ at all.
			normalised := strings.Replace(p.body, `value="`+a.username+`"`, `value="USER"`, 1)
			if i == 0 {
				first = page{status: p.status, body: normalised}
				continue
			}
			if normalised != first.body || p.status != first.status {
				t.Fatalf("%s answers differently from %s", a.name, attempts[0].name)
			}
		}
		if c := b.get("/auth/login"); strings.Contains(c.body, `id="signed-in-user"`) {
			t.Fatal("a failed login signed in")
		}
	})
}

// TestADisabledAccountsOwnerIsToldSo: the right password of an inactive
// account gets a plain "disabled" message and signs nobody in; a wrong one
// still looks like any other failure (TestFailedLoginsLookTheSame), so
// only someone who knows the password learns the account is disabled.
func TestADisabledAccountsOwnerIsToldSo(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.putUser("olga", "olga@example.com", alicePassword, true)
		b := e.browser()
		p := b.login(b.get("/auth/login"), "olga", alicePassword)
		if p.status != http.StatusOK || !strings.Contains(p.body, `<p id="error" class="error" role="alert">This account is disabled. Contact your administrator.</p>`) {
			t.Fatalf("status %d:\n%s", p.status, p.body)
		}
		if c := b.get("/auth/login"); strings.Contains(c.body, `id="signed-in-user"`) {
			t.Fatal("the disabled account signed in")
		}
	})
}

func TestLoginThrottling(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	e.handler.Accounts.Throttle = account.Throttle{PerAccount: 3, PerAddress: 100, Window: 15 * time.Minute}
	b := e.browser()
	form := b.get("/auth/login")
	for range 3 {
		if p := b.login(form, "alice", "wrong"); p.status != http.StatusOK {
			t.Fatalf("status %d", p.status)
		}
	}
	t.Run("the right password from the guessing address waits, and the page says so plainly", func(t *testing.T) {
		p := b.login(form, "alice", alicePassword)
		if p.status != http.StatusOK || !strings.Contains(p.body, "Too many failed sign-ins for this account from your network") ||
			!regexp.MustCompile(`try again in 1?[0-9] min\.`).MatchString(p.body) {
			t.Fatalf("status %d\n%s", p.status, p.body)
		}
	})
	t.Run("after the window the right password works again", func(t *testing.T) {
		e.clock.Advance(16 * time.Minute)
		form := b.get("/auth/login")
		if p := b.login(form, "alice", alicePassword); p.status != http.StatusSeeOther {
			t.Fatalf("status %d\n%s", p.status, p.body)
		}
	})
}

func TestSessionLifecycle(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		b := e.browser()
		form := b.get("/auth/login")
		before := b.cookie("gatehouse")
		if before == nil {
			t.Fatal("no session cookie before login")
		}
		p := b.login(form, "alice", alicePassword)
		if p.status != http.StatusSeeOther || p.location != "/auth/login" {
			t.Fatalf("login: status %d location %q", p.status, p.location)
		}
		after := b.cookie("gatehouse")

		t.Run("login rotates the session: the cookie from before is useless", func(t *testing.T) {
			if after == nil || after.Value == before.Value {
				t.Fatal("session cookie not replaced at login")
			}
			attacker := e.browser()
			attacker.setCookie(before)
			if p := attacker.get("/auth/login"); strings.Contains(p.body, `id="signed-in-user"`) {
				t.Fatal("pre-login cookie is signed in")
			}
			if p := attacker.get("/auth/authorize?" + authorizeQuery(firstParty).Encode()); p.location != "/auth/login" {
				t.Fatalf("pre-login cookie at authorize: status %d location %q", p.status, p.location)
			}
		})

		t.Run("the signed-in page names the user", func(t *testing.T) {
			p := b.get("/auth/login")
			if !strings.Contains(p.body, `<strong id="signed-in-user">alice@example.com</strong>`) {
				t.Fatalf("signed-in page:\n%s", p.body)
			}
		})

		t.Run("logout deletes the session: the cookie is useless after", func(t *testing.T) {
			stolen := b.cookie("gatehouse")
			p := b.logout(nil)
			if p.status != http.StatusOK || !strings.Contains(p.body, "You have been signed out") {
				t.Fatalf("logout: status %d\n%s", p.status, p.body)
			}
			if c := b.cookie("gatehouse"); c != nil {
				t.Fatal("logout left the cookie in the browser")
			}
			replay := e.browser()
			replay.setCookie(stolen)
			if p := replay.get("/auth/login"); strings.Contains(p.body, `id="signed-in-user"`) {
				t.Fatal("cookie still signed in after logout")
			}
			events, _, err := e.st.ListAudit(ctx, store.AuditFilter{UserID: "alice", Type: audit.Logout}, store.Page{Count: 10, Page: 1})
			if err != nil || len(events) != 1 {
				t.Fatalf("logout audit events: %v, %v", events, err)
			}
		})

		t.Run("a disabled user's session no longer signs in", func(t *testing.T) {
			b := e.browser()
			b.signIn()
			e.putUser("alice", "alice@example.com", "", true)
			defer e.putUser("alice", "alice@example.com", "", false)
			if p := b.get("/auth/authorize?" + authorizeQuery(firstParty).Encode()); p.location != "/auth/login" {
				t.Fatalf("disabled user at authorize: status %d location %q", p.status, p.location)
			}
		})
	})
}

func TestAidboxStyleLoginFlow(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		b := e.browser()
		q := authorizeQuery(firstParty, "login_hint", "alice@example.com")
		form := b.get("/auth/login?" + q.Encode())
		if form.status != http.StatusOK {
			t.Fatalf("login page: status %d\n%s", form.status, form.body)
		}
		t.Run("the form names the client and prefills login_hint", func(t *testing.T) {
			if !strings.Contains(form.body, "Web App") || !strings.Contains(form.body, `value="alice@example.com"`) {
				t.Fatalf("login page:\n%s", form.body)
			}
			if csp := form.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' http://localhost:3001") {
				t.Fatalf("CSP does not let the form lead to the client: %s", csp)
			}
		})
		p := b.login(form, "alice@example.com", alicePassword)
		t.Run("the password POST answers 303 to the client's redirect URI with a code and the state", func(t *testing.T) {
			if p.status != http.StatusSeeOther {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
			params := redirectParams(t, p, webappURI+"?")
			if params.Get("code") == "" || params.Get("state") != testState || params.Get("error") != "" {
				t.Fatalf("redirect params: %v", params)
			}
		})
		t.Run("a second authorization with the session needs no form", func(t *testing.T) {
			q := authorizeQuery(firstParty, "state", "second-state-123")
			params := redirectParams(t, b.get("/auth/authorize?"+q.Encode()), webappURI+"?")
			if params.Get("code") == "" || params.Get("state") != "second-state-123" {
				t.Fatalf("redirect params: %v", params)
			}
		})
	})
}

func TestAParkedRequestThatNoLongerHoldsIsTurnedDownByTheAuthorizationEndpointAfterThePassword(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		b := e.browser()
		p := b.get("/auth/authorize?" + authorizeQuery(firstParty).Encode())
		if p.location != "/auth/login" {
			t.Fatalf("status %d location %q", p.status, p.location)
		}
		form := b.get(p.location)
		// The client stops accepting the redirect URI while the user types.
		e.putClient(resource.Client{
			ID: firstParty, Secret: webappSecret, FirstParty: true, Name: "Web App",
			GrantTypes: []string{"code"}, Scope: []string{"openid", "profile", "email"},
			Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{
				RedirectURI: resource.StringList{"http://localhost:3001/other"}, SecretRequired: ptr(true),
			}},
		})
		e.clock.Advance(2 * time.Second) // past the one-second client cache
		p = b.login(form, "alice", alicePassword)
		t.Run("the password POST signs in and sends the browser to the authorization endpoint", func(t *testing.T) {
			if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/auth/authorize?") {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
		})
		t.Run("which shows its error page, and no code goes anywhere", func(t *testing.T) {
			p := b.follow(p)
			if p.status != http.StatusBadRequest || p.location != "" {
				t.Fatalf("status %d location %q\n%s", p.status, p.location, p.body)
			}
		})
		t.Run("the sign-in stands", func(t *testing.T) {
			q := authorizeQuery(firstParty)
			q.Set("redirect_uri", "http://localhost:3001/other")
			params := redirectParams(t, b.get("/auth/authorize?"+q.Encode()), "http://localhost:3001/other?")
			if params.Get("code") == "" {
				t.Fatalf("redirect params: %v", params)
			}
		})
	})
}

func TestAuthorizeRedirectsToLoginAndBack(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	b := e.browser()
	p := b.get("/auth/authorize?" + authorizeQuery(firstParty).Encode())
	if p.status != http.StatusFound || p.location != "/auth/login" {
		t.Fatalf("status %d location %q", p.status, p.location)
	}
	form := b.get(p.location)
	params := redirectParams(t, b.follow(b.login(form, "alice", alicePassword)), webappURI+"?")
	if params.Get("code") == "" || params.Get("state") != testState {
		t.Fatalf("redirect params: %v", params)
	}
}

func TestBadClientOrRedirectNeverRedirects(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	tests := []struct {
		name string
		q    url.Values
	}{
		{"an unknown client", authorizeQuery("no-such-client")},
		{"an unregistered redirect URI", authorizeQuery(firstParty, "redirect_uri", "https://evil.example/cb")},
		{"a redirect URI with an extra path segment", authorizeQuery(firstParty, "redirect_uri", webappURI+"/x")},
		{"a redirect URI with a trailing slash", authorizeQuery(firstParty, "redirect_uri", webappURI+"/")},
		{"a redirect URI with an added query", authorizeQuery(firstParty, "redirect_uri", webappURI+"?a=b")},
		{"a redirect URI of another scheme", authorizeQuery(firstParty, "redirect_uri", strings.Replace(webappURI, "http:", "https:", 1))},
	}
	for _, path := range []string{"/auth/authorize", "/auth/login"} {
		for _, tt := range tests {
			t.Run(path+" with "+tt.name+" shows an error page and no Location", func(t *testing.T) {
				p := e.browser().get(path + "?" + tt.q.Encode())
				if p.status != http.StatusBadRequest {
					t.Fatalf("status %d, want 400\n%s", p.status, p.body)
				}
				if p.location != "" {
					t.Fatalf("Location %q", p.location)
				}
				if !strings.Contains(p.header.Get("Content-Type"), "text/html") || !strings.Contains(p.body, `id="error"`) {
					t.Fatalf("not an HTML error page:\n%s", p.body)
				}
			})
		}
	}
}

func TestRefusalsWithATrustedRedirectGoBackToTheClient(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	tests := []struct {
		name, code string
		q          url.Values
	}{
		{"an unsupported response type", "unsupported_response_type", authorizeQuery(firstParty, "response_type", "token")},
		{"a scope the client may not ask for", "invalid_scope", authorizeQuery(firstParty, "scope", "openid admin")},
		{"an unknown prompt value", "invalid_request", authorizeQuery(firstParty, "prompt", "sideways")},
	}
	for _, path := range []string{"/auth/authorize", "/auth/login"} {
		for _, tt := range tests {
			t.Run(path+" with "+tt.name+" redirects "+tt.code+" to the client", func(t *testing.T) {
				params := redirectParams(t, e.browser().get(path+"?"+tt.q.Encode()), webappURI)
				if params.Get("error") != tt.code || params.Get("code") != "" {
					t.Fatalf("redirect params: %v", params)
				}
			})
		}
	}
}

func TestConsent(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		b := e.browser()
		b.signIn()

		start := func(t *testing.T, extra ...string) page {
			t.Helper()
			p := b.get("/auth/authorize?" + authorizeQuery(thirdParty, extra...).Encode())
			if p.status != http.StatusFound || p.location != "/auth/consent" {
				t.Fatalf("status %d location %q, want the consent page", p.status, p.location)
			}
			c := b.get(p.location)
			if c.status != http.StatusOK {
				t.Fatalf("consent page: status %d\n%s", c.status, c.body)
			}
			return c
		}

		t.Run("a third-party client gets the consent page with its name and scopes", func(t *testing.T) {
			c := start(t)
			for _, want := range []string{"Partner App", "openid", "profile", `value="allow"`, `value="deny"`} {
				if !strings.Contains(c.body, want) {
					t.Errorf("consent page lacks %q", want)
				}
			}
			if csp := c.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://partner.example") {
				t.Errorf("CSP: %s", csp)
			}
		})

		t.Run("consent without a CSRF token is refused", func(t *testing.T) {
			start(t)
			if p := b.post("/auth/consent", url.Values{"decision": {"allow"}}); p.status != http.StatusForbidden {
				t.Fatalf("status %d", p.status)
			}
		})

		t.Run("deny sends access_denied to the client", func(t *testing.T) {
			c := start(t)
			p := b.post("/auth/consent", url.Values{"_csrf": {csrfOf(t, c)}, "decision": {"deny"}})
			if p.status != http.StatusSeeOther {
				t.Fatalf("status %d", p.status)
			}
			params := redirectParams(t, b.follow(p), partnerURI+"?")
			if params.Get("error") != "access_denied" || params.Get("code") != "" || params.Get("state") != testState {
				t.Fatalf("redirect params: %v", params)
			}
		})

		t.Run("allow issues the code", func(t *testing.T) {
			c := start(t)
			p := b.post("/auth/consent", url.Values{"_csrf": {csrfOf(t, c)}, "decision": {"allow"}})
			params := redirectParams(t, b.follow(p), partnerURI+"?")
			if params.Get("code") == "" || params.Get("state") != testState {
				t.Fatalf("redirect params: %v", params)
			}
		})

		t.Run("the consent is remembered for the same scopes", func(t *testing.T) {
			params := redirectParams(t, b.get("/auth/authorize?"+authorizeQuery(thirdParty).Encode()), partnerURI+"?")
			if params.Get("code") == "" {
				t.Fatalf("redirect params: %v", params)
			}
		})

		t.Run("more scopes ask again", func(t *testing.T) {
			start(t, "scope", "openid profile email")
		})

		t.Run("prompt=consent asks again, once", func(t *testing.T) {
			c := start(t, "prompt", "consent")
			p := b.post("/auth/consent", url.Values{"_csrf": {csrfOf(t, c)}, "decision": {"allow"}})
			params := redirectParams(t, b.follow(p), partnerURI+"?")
			if params.Get("code") == "" {
				t.Fatalf("redirect params: %v", params)
			}
		})

		t.Run("prompt=none when consent is missing answers consent_required", func(t *testing.T) {
			q := authorizeQuery(thirdParty, "prompt", "none", "scope", "openid profile email")
			params := redirectParams(t, b.get("/auth/authorize?"+q.Encode()), partnerURI+"?")
			if params.Get("error") != "consent_required" {
				t.Fatalf("redirect params: %v", params)
			}
		})

		t.Run("a first-party client needs no consent", func(t *testing.T) {
			params := redirectParams(t, b.get("/auth/authorize?"+authorizeQuery(firstParty).Encode()), webappURI+"?")
			if params.Get("code") == "" {
				t.Fatalf("redirect params: %v", params)
			}
		})

		t.Run("the consent page without a waiting request is an error page", func(t *testing.T) {
			fresh := e.browser()
			fresh.signIn()
			if p := fresh.get("/auth/consent"); p.status != http.StatusBadRequest || !strings.Contains(p.body, `id="error"`) {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
		})
	})
}

func TestPrompt(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))

	t.Run("prompt=none without a session answers login_required at the client", func(t *testing.T) {
		p := e.browser().get("/auth/authorize?" + authorizeQuery(firstParty, "prompt", "none").Encode())
		params := redirectParams(t, p, webappURI+"?")
		if params.Get("error") != "login_required" || params.Get("state") != testState {
			t.Fatalf("redirect params: %v", params)
		}
	})

	t.Run("prompt=none with a session issues a code", func(t *testing.T) {
		b := e.browser()
		b.signIn()
		params := redirectParams(t, b.get("/auth/authorize?"+authorizeQuery(firstParty, "prompt", "none").Encode()), webappURI+"?")
		if params.Get("code") == "" {
			t.Fatalf("redirect params: %v", params)
		}
	})

	t.Run("prompt=login shows the form once even when signed in, then completes", func(t *testing.T) {
		b := e.browser()
		b.signIn()
		p := b.get("/auth/authorize?" + authorizeQuery(firstParty, "prompt", "login").Encode())
		if p.location != "/auth/login" {
			t.Fatalf("status %d location %q, want the login form", p.status, p.location)
		}
		form := b.get(p.location)
		if !strings.Contains(form.body, `name="password"`) {
			t.Fatalf("prompt=login did not show the form:\n%s", form.body)
		}
		params := redirectParams(t, b.follow(b.login(form, "alice", alicePassword)), webappURI+"?")
		if params.Get("code") == "" || params.Get("state") != testState {
			t.Fatalf("redirect params: %v", params)
		}
	})

	t.Run("prompt=login for a third-party client asks for the password, then consent, then completes", func(t *testing.T) {
		b := e.browser()
		b.signIn()
		p := b.get("/auth/authorize?" + authorizeQuery(thirdParty, "prompt", "login").Encode())
		if p.location != "/auth/login" {
			t.Fatalf("status %d location %q", p.status, p.location)
		}
		if p = b.login(b.get(p.location), "alice", alicePassword); p.location != "/auth/consent" {
			t.Fatalf("after login: status %d location %q", p.status, p.location)
		}
		c := b.get(p.location)
		p = b.follow(b.post("/auth/consent", url.Values{"_csrf": {csrfOf(t, c)}, "decision": {"allow"}}))
		params := redirectParams(t, p, partnerURI+"?")
		if params.Get("code") == "" || params.Get("state") != testState {
			t.Fatalf("redirect params: %v", params)
		}
	})

	t.Run("max_age older than the sign-in asks for the password again", func(t *testing.T) {
		// A sign-in two minutes ago: the pages' clock goes back for it
		// (fosite refuses auth times in its future).
		b := e.browser()
		e.clock.Advance(-2 * time.Minute)
		b.signIn()
		e.clock.Advance(2 * time.Minute)
		p := b.get("/auth/authorize?" + authorizeQuery(firstParty, "max_age", "60").Encode())
		if p.location != "/auth/login" {
			t.Fatalf("status %d location %q", p.status, p.location)
		}
		params := redirectParams(t, b.follow(b.login(b.get(p.location), "alice", alicePassword)), webappURI+"?")
		if params.Get("code") == "" {
			t.Fatalf("redirect params: %v", params)
		}
	})

	t.Run("max_age within the sign-in needs no form", func(t *testing.T) {
		b := e.browser()
		b.signIn()
		params := redirectParams(t, b.get("/auth/authorize?"+authorizeQuery(firstParty, "max_age", "3600").Encode()), webappURI+"?")
		if params.Get("code") == "" {
			t.Fatalf("redirect params: %v", params)
		}
	})
}

// acceptCode is the second-factor seam in these tests: a factor of the
// deployment's own, registered in the sign-in engine, offered to one user
// and accepting one fixed code, as a hardware token of one's own would.
type acceptCode struct{ user, code string }

func (acceptCode) Strategy() string { return "fixed" }

func (acceptCode) Describe() signin.Description {
	return signin.Description{Label: "Fixed code", Prompt: "Enter the fixed code.", Input: signin.InputCode}
}

func (a acceptCode) Offers(_ context.Context, s *signin.SignIn) ([]signin.Offer, error) {
	if s.User.ID != a.user {
		return nil, nil
	}
	return []signin.Offer{{Strategy: "fixed"}}, nil
}

func (acceptCode) Prepare(context.Context, *signin.SignIn, string) (signin.Prepared, error) {
	return signin.Prepared{}, signin.ErrNotPreparable
}

func (a acceptCode) Attempt(_ context.Context, _ *signin.SignIn, code string) (signin.Proof, error) {
	if code != a.code {
		return signin.Proof{}, signin.ErrInvalidCode
	}
	return signin.Proof{AMR: []string{web.AMROTP}}, nil
}

func TestSecondFactorSeam(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.engine.Factors = []signin.Factor{acceptCode{user: "alice", code: "123456"}}
		b := e.browser()
		q := authorizeQuery(firstParty)
		p := b.login(b.get("/auth/login?"+q.Encode()), "alice", alicePassword)

		t.Run("a correct password leads to the code prompt, not the client", func(t *testing.T) {
			if p.status != http.StatusSeeOther || p.location != "/auth/login/two-factor" {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
		})

		t.Run("without the sign-in engine the prompt fails closed", func(t *testing.T) {
			e.handler.SignIn = nil
			defer func() { e.handler.SignIn = e.engine }()
			if p := b.get("/auth/login/two-factor"); p.status != http.StatusServiceUnavailable || strings.Contains(p.body, `name="code"`) {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
		})

		t.Run("the pending session cannot reach authorize", func(t *testing.T) {
			p := b.get("/auth/authorize?" + q.Encode())
			if p.location != "/auth/login" {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
			params := redirectParams(t, b.get("/auth/authorize?"+authorizeQuery(firstParty, "prompt", "none").Encode()), webappURI+"?")
			if params.Get("error") != "login_required" {
				t.Fatalf("prompt=none: %v", params)
			}
		})

		t.Run("the pending session cannot reach consent", func(t *testing.T) {
			if p := b.get("/auth/consent"); p.status != http.StatusSeeOther || p.location != "/auth/login" {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
		})

		t.Run("the pending session is not signed in", func(t *testing.T) {
			if p := b.get("/auth/login"); strings.Contains(p.body, `id="signed-in-user"`) {
				t.Fatal("pending session shows as signed in")
			}
		})

		b = e.browser()
		p = b.login(b.get("/auth/login?"+q.Encode()), "alice", alicePassword)
		prompt := b.get(p.location)

		t.Run("the code prompt is an accessible form", func(t *testing.T) {
			for _, want := range []string{`name="code"`, `inputmode="numeric"`, `autocomplete="one-time-code"`, `<label for="code">`, "Web App"} {
				if !strings.Contains(prompt.body, want) {
					t.Errorf("code page lacks %s", want)
				}
			}
		})

		t.Run("a code POST without CSRF is refused", func(t *testing.T) {
			if p := b.post("/auth/login/two-factor", url.Values{"code": {"123456"}}); p.status != http.StatusForbidden {
				t.Fatalf("status %d", p.status)
			}
		})

		t.Run("a wrong code shows #error and stays on the prompt", func(t *testing.T) {
			p := b.post("/auth/login/two-factor", url.Values{"_csrf": {csrfOf(t, prompt)}, "code": {"000000"}})
			if p.status != http.StatusOK || !strings.Contains(p.body, `id="error"`) || !strings.Contains(p.body, `name="code"`) {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
		})

		t.Run("the right code finishes the login and the authorization with amr pwd, otp, mfa", func(t *testing.T) {
			p := b.post("/auth/login/two-factor", url.Values{"_csrf": {csrfOf(t, prompt)}, "code": {"123456"}})
			if p.status != http.StatusSeeOther {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
			params := redirectParams(t, b.follow(p), webappURI+"?")
			if params.Get("code") == "" || params.Get("state") != testState {
				t.Fatalf("redirect params: %v", params)
			}
			claims, _ := e.exchange(params.Get("code"))
			amr, _ := claims["amr"].([]any)
			if len(amr) != 3 || amr[0] != "pwd" || amr[1] != "otp" || amr[2] != "mfa" || claims["acr"] != web.ACRMFA {
				t.Fatalf("amr %v acr %v", claims["amr"], claims["acr"])
			}
		})

		t.Run("the second factor step expires", func(t *testing.T) {
			b := e.browser()
			p := b.login(b.get("/auth/login"), "alice", alicePassword)
			prompt := b.get(p.location)
			e.clock.Advance(11 * time.Minute)
			p = b.post("/auth/login/two-factor", url.Values{"_csrf": {csrfOf(t, prompt)}, "code": {"123456"}})
			if p.location != "/auth/login" {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
		})
	})
}

func TestGrantReachesTheIDToken(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	b := e.browser()
	params := redirectParams(t, b.follow(b.login(b.get("/auth/login?"+authorizeQuery(firstParty).Encode()), "alice", alicePassword)), webappURI+"?")
	claims, idToken := e.exchange(params.Get("code"))

	t.Run("the ID token names the user, the password method and the session", func(t *testing.T) {
		amr, _ := claims["amr"].([]any)
		if claims["sub"] != "alice" || len(amr) != 1 || amr[0] != web.AMRPassword || claims["acr"] != web.ACRPassword {
			t.Fatalf("claims: %v", claims)
		}
		if _, ok := claims["auth_time"].(float64); !ok {
			t.Fatalf("no auth_time: %v", claims)
		}
		if sid, _ := claims["sid"].(string); sid == "" {
			t.Fatalf("no sid: %v", claims)
		}
	})

	t.Run("logout with that id_token_hint redirects to the registered URI", func(t *testing.T) {
		q := url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {logoutURI}, "state": {"s1"}}
		p := b.get("/auth/logout?" + q.Encode())
		if p.status != http.StatusFound || p.location != logoutURI+"?state=s1" {
			t.Fatalf("status %d location %q", p.status, p.location)
		}
	})

	t.Run("an RP's POST with the id_token_hint signs out and redirects, as a GET does", func(t *testing.T) {
		b := e.browser()
		b.signIn()
		q := url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {logoutURI}, "state": {"s2"}}
		p := b.post("/auth/logout", q)
		if p.status != http.StatusFound || p.location != logoutURI+"?state=s2" {
			t.Fatalf("status %d location %q", p.status, p.location)
		}
		if strings.Contains(b.get("/auth/login").body, `id="signed-in-user"`) {
			t.Fatal("still signed in after the POST logout")
		}
	})

	t.Run("a hint and a client_id that disagree do not redirect", func(t *testing.T) {
		b := e.browser()
		b.signIn()
		q := url.Values{"id_token_hint": {idToken}, "client_id": {thirdParty}, "post_logout_redirect_uri": {logoutURI}}
		if p := b.get("/auth/logout?" + q.Encode()); p.status != http.StatusOK || p.location != "" {
			t.Fatalf("status %d location %q", p.status, p.location)
		}
	})
}

func TestLogoutRedirect(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	tests := []struct {
		name     string
		q        url.Values
		redirect string
	}{
		{"a registered URI with client_id redirects with the state",
			url.Values{"client_id": {firstParty}, "post_logout_redirect_uri": {logoutURI}, "state": {"bye-state"}},
			logoutURI + "?state=bye-state"},
		{"an unregistered URI shows the signed-out page",
			url.Values{"client_id": {firstParty}, "post_logout_redirect_uri": {"https://evil.example/"}}, ""},
		{"a URI registered for another client shows the signed-out page",
			url.Values{"client_id": {thirdParty}, "post_logout_redirect_uri": {logoutURI}}, ""},
		{"a URI without a client shows the signed-out page",
			url.Values{"post_logout_redirect_uri": {logoutURI}}, ""},
		{"an id_token_hint that is not ours shows the signed-out page",
			url.Values{"id_token_hint": {"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."}, "client_id": {firstParty}, "post_logout_redirect_uri": {logoutURI}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := e.browser()
			b.signIn()
			p := b.logout(tt.q)
			if tt.redirect != "" {
				if p.status != http.StatusFound || p.location != tt.redirect {
					t.Fatalf("status %d location %q, want %q", p.status, p.location, tt.redirect)
				}
			} else if p.status != http.StatusOK || p.location != "" || !strings.Contains(p.body, "signed out") {
				t.Fatalf("status %d location %q\n%s", p.status, p.location, p.body)
			}
			if c := b.get("/auth/login"); strings.Contains(c.body, `id="signed-in-user"`) {
				t.Fatal("still signed in")
			}
		})
	}
}

func TestLogoutCannotBeForged(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	signedIn := func(b *browser) bool {
		return strings.Contains(b.get("/auth/login").body, `id="signed-in-user"`)
	}
	t.Run("a GET without id_token_hint only asks, and the session stays", func(t *testing.T) {
		b := e.browser()
		b.signIn()
		p := b.get("/auth/logout?client_id=" + firstParty + "&post_logout_redirect_uri=" + url.QueryEscape(logoutURI))
		if p.status != http.StatusOK || p.location != "" || !strings.Contains(p.body, "Do you want to sign out?") {
			t.Fatalf("status %d location %q\n%s", p.status, p.location, p.body)
		}
		if !signedIn(b) {
			t.Fatal("a GET signed the user out")
		}
	})
	for _, tc := range []struct{ name, csrf string }{
		{"a POST without the CSRF token or a hint only asks, and the session stays", ""},
		{"a POST with a wrong CSRF token only asks, and the session stays", strings.Repeat("ab", 32)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser()
			b.signIn()
			if p := b.post("/auth/logout", url.Values{"_csrf": {tc.csrf}}); p.status != http.StatusOK || !strings.Contains(p.body, "Do you want to sign out?") {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
			if !signedIn(b) {
				t.Fatal("a forged POST signed the user out")
			}
		})
	}
	t.Run("a browser with nobody signed in sees the signed-out page at once", func(t *testing.T) {
		b := e.browser()
		if p := b.get("/auth/logout"); p.status != http.StatusOK || !strings.Contains(p.body, "You have been signed out") {
			t.Fatalf("status %d\n%s", p.status, p.body)
		}
	})
}

func TestSecurityHeadersOnEveryPage(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	signedIn := e.browser()
	signedIn.signIn()
	consent := e.browser()
	consent.signIn()
	consent.get("/auth/authorize?" + authorizeQuery(thirdParty).Encode())
	e.putUser("bob", "", alicePassword, false)
	e.engine.Factors = []signin.Factor{acceptCode{user: "bob", code: "123456"}}
	pending := e.browser()
	pending.login(pending.get("/auth/login"), "bob", alicePassword)

	pages := []struct {
		name string
		get  func() page
	}{
		{"login", func() page { return e.browser().get("/auth/login") }},
		{"login with a client", func() page { return e.browser().get("/auth/login?" + authorizeQuery(firstParty).Encode()) }},
		{"signed in", func() page { return signedIn.get("/auth/login") }},
		{"consent", func() page { return consent.get("/auth/consent") }},
		{"two-factor code", func() page { return pending.get("/auth/login/two-factor") }},
		{"error", func() page { return e.browser().get("/auth/authorize?" + authorizeQuery("nope").Encode()) }},
		{"csrf refusal", func() page { return e.browser().post("/auth/login", url.Values{"username": {"x"}}) }},
		{"redirect to login", func() page { return e.browser().get("/auth/authorize?" + authorizeQuery(firstParty).Encode()) }},
		{"logout", func() page { return e.browser().get("/auth/logout") }},
		{"two-factor settings", func() page { return signedIn.get("/auth/two-factor") }},
		{"two-factor enrolment", func() page { return signedIn.get("/auth/two-factor/enable") }},
		{"settings redirect to login", func() page { return e.browser().get("/auth/two-factor") }},
	}
	for _, pg := range pages {
		t.Run("the "+pg.name+" response carries the security headers", func(t *testing.T) {
			p := pg.get()
			csp := p.header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'", "img-src 'self' data:", "style-src 'self'", "form-action 'self'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			for h, want := range map[string]string{
				"X-Frame-Options":        "DENY",
				"Cache-Control":          "no-store",
				"Referrer-Policy":        "no-referrer",
				"X-Content-Type-Options": "nosniff",
			} {
				if got := p.header.Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
			if p.status >= 500 {
				t.Errorf("status %d", p.status)
			}
		})
	}
}

func TestTheme(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	e.putAuthConfig(resource.AuthConfig{ID: "default", Theme: &resource.Theme{
		StyleURL: "https://cdn.example.com/brand/theme.css", Title: "Acme Login", Brand: "Acme <Corp>",
	}})
	pages := map[string]func() page{
		"login":               func() page { return e.browser().get("/auth/login?" + authorizeQuery(firstParty).Encode()) },
		"plain login":         func() page { return e.browser().get("/auth/login") },
		"error":               func() page { return e.browser().get("/auth/authorize?" + authorizeQuery("nope").Encode()) },
		"signed out":          func() page { return e.browser().get("/auth/logout?client_id=" + firstParty) },
		"csrf refusal":        func() page { return e.browser().post("/auth/login", nil) },
		"failed log-in":       func() page { b := e.browser(); return b.login(b.get("/auth/login"), "alice", "wrong") },
		"two-factor settings": func() page { b := e.browser(); b.signIn(); return b.get("/auth/two-factor") },
	}
	for name, get := range pages {
		t.Run("the "+name+" page shows the theme's stylesheet, title and brand", func(t *testing.T) {
			p := get()
			if !strings.Contains(p.body, `<link rel="stylesheet" href="https://cdn.example.com/brand/theme.css">`) {
				t.Errorf("no theme stylesheet:\n%s", p.body)
			}
			if !strings.Contains(p.body, "· Acme Login</title>") || !strings.Contains(p.body, "Acme &lt;Corp&gt;") {
				t.Errorf("no title or escaped brand:\n%s", p.body)
			}
			if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "style-src 'self' https://cdn.example.com;") {
				t.Errorf("CSP does not allow the theme origin: %s", csp)
			}
		})
	}
}

func TestPendingRequestSurvivesOnlyItsLifetime(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	b := e.browser()
	form := b.get("/auth/login?" + authorizeQuery(firstParty).Encode())
	e.clock.Advance(31 * time.Minute)
	// The session itself expired (idle); the login starts over with no client.
	p := b.login(form, "alice", alicePassword)
	if p.status != http.StatusForbidden {
		t.Fatalf("stale form: status %d", p.status)
	}
	form = b.get("/auth/login")
	if p := b.login(form, "alice", alicePassword); p.location != "/auth/login" {
		t.Fatalf("status %d location %q", p.status, p.location)
	}
}

func TestDatabaseFailureShowsAPlainPageAndIssuesNothing(t *testing.T) {
	st := gormstoretest.Open(t)
	e := newEnv(t, st)
	b := e.browser()
	b.signIn()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// /auth/authorize is left out: fosite turns any client lookup failure
	// into invalid_client (reported to the oauth package's owner).
	for _, path := range []string{
		"/auth/login",
		"/auth/login?" + authorizeQuery(firstParty).Encode(),
	} {
		t.Run("GET "+strings.SplitN(path, "&", 2)[0]+" answers 503 without a redirect", func(t *testing.T) {
			p := b.get(path)
			if p.status != http.StatusServiceUnavailable || p.location != "" {
				t.Fatalf("status %d location %q", p.status, p.location)
			}
			if !strings.Contains(p.body, `id="error"`) || !strings.Contains(p.body, "temporarily unavailable") {
				t.Fatalf("not the readable error page:\n%s", p.body)
			}
			for _, leak := range []string{"sql", "database is closed", "gorm", "goroutine"} {
				if strings.Contains(strings.ToLower(p.body), leak) {
					t.Fatalf("error page shows internals (%q):\n%s", leak, p.body)
				}
			}
		})
	}
}

func TestASessionInUseStaysSignedIn(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	b := e.browser()
	b.signIn()
	// The authorization endpoint of a signed-in browser writes nothing of
	// its own to the session: the sliding of the idle expiry is written when
	// the request ends. Four visits 20 minutes apart outlast the 30-minute
	// idle timeout only if each one slid it.
	for i := range 4 {
		e.clock.Advance(20 * time.Minute)
		p := b.get("/auth/authorize?" + authorizeQuery(firstParty).Encode())
		if q := redirectParams(t, p, webappURI); q.Get("code") == "" {
			t.Fatalf("visit %d: no code in %q", i+1, p.location)
		}
	}
	e.clock.Advance(31 * time.Minute)
	if p := b.get("/auth/authorize?" + authorizeQuery(firstParty).Encode()); p.location != "/auth/login" {
		t.Fatalf("after 31 idle minutes: status %d location %q, want the login", p.status, p.location)
	}
}
