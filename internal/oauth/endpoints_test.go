package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite/token/jwt"

	"github.com/gatehouse/gatehouse/internal/signin"
)

func TestIntrospection(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tok := e.clientCredentials("svc-opaque", svcSecret, "patient.read").str("access_token")
		t.Run("without client authentication it is 401", func(t *testing.T) {
			r := e.post(PathIntrospect, url.Values{"token": {tok}}, "", "")
			if r.status != http.StatusUnauthorized || r.str("error") != "invalid_client" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("with a wrong secret it is 401", func(t *testing.T) {
			if r := e.post(PathIntrospect, url.Values{"token": {tok}}, "svc", "wrong"); r.status != http.StatusUnauthorized {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("a public client cannot introspect", func(t *testing.T) {
			if r := e.post(PathIntrospect, url.Values{"token": {tok}, "client_id": {"spa"}}, "", ""); r.status != http.StatusUnauthorized {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("a bearer token is not client authentication", func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+PathIntrospect, strings.NewReader(url.Values{"token": {tok}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Bearer "+tok)
			if r := e.do(req); r.status != http.StatusUnauthorized {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("client_secret_post is accepted", func(t *testing.T) {
			r := e.post(PathIntrospect, url.Values{"token": {tok}, "client_id": {"svc"}, "client_secret": {svcSecret}}, "", "")
			if r.status != http.StatusOK || r.body["active"] != true {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("an unknown token is inactive", func(t *testing.T) {
			if r := e.introspect("ory_at_nothing.here"); r.status != http.StatusOK || r.raw != "{\"active\":false}" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("a refresh token introspects as such", func(t *testing.T) {
			rt := e.webTokens().str("refresh_token")
			r := e.introspect(rt)
			if r.body["active"] != true || r.str("token_type") != "refresh_token" || r.str("sub") != "alice" {
				t.Fatalf("got %s", r.raw)
			}
		})
		t.Run("a user's access token says how the user signed in: acr, amr and auth_time", func(t *testing.T) {
			g := aliceGrant()
			g.ACR, g.AMR = signin.ACRMFA, []string{"pwd", "otp", "mfa"}
			v := verifier(64)
			back := e.complete(authorizeQuery("web", webRedirect, challenge(v)), g)
			res := e.exchange("web", webSecret, back.Query().Get("code"), webRedirect, v)
			r := e.introspect(res.str("access_token"))
			amr, _ := json.Marshal(r.body["amr"])
			if r.body["active"] != true || r.str("acr") != signin.ACRMFA || string(amr) != `["pwd","otp","mfa"]` ||
				r.body["auth_time"] != float64(g.AuthTime.Unix()) {
				t.Fatalf("got %s", r.raw)
			}
		})
		t.Run("a client's own token has no acr, amr or auth_time", func(t *testing.T) {
			r := e.introspect(tok)
			for _, k := range []string{"acr", "amr", "auth_time"} {
				if _, ok := r.body[k]; ok {
					t.Fatalf("%s in %s", k, r.raw)
				}
			}
		})
		t.Run("an expired token is inactive", func(t *testing.T) {
			e.clock.Advance(2 * time.Hour)
			defer e.clock.Advance(-2 * time.Hour)
			if r := e.introspect(tok); r.body["active"] != false {
				t.Fatalf("got %s", r.raw)
			}
		})
	})
}

func TestRevocation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		t.Run("another client's revocation has no effect", func(t *testing.T) {
			tok := e.webTokens()
			r := e.post(PathRevoke, url.Values{"token": {tok.str("refresh_token")}}, "svc", svcSecret)
			if r.status != http.StatusOK {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
			for _, tk := range []string{tok.str("access_token"), tok.str("refresh_token")} {
				if in := e.introspect(tk); in.body["active"] != true {
					t.Fatalf("token revoked by a stranger: %s", in.raw)
				}
			}
		})
		t.Run("the owner revokes the refresh token and its access tokens", func(t *testing.T) {
			tok := e.webTokens()
			r := e.post(PathRevoke, url.Values{"token": {tok.str("refresh_token")}, "token_type_hint": {"refresh_token"}}, "web", webSecret)
			if r.status != http.StatusOK {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
			for _, tk := range []string{tok.str("access_token"), tok.str("refresh_token")} {
				if in := e.introspect(tk); in.body["active"] != false {
					t.Fatalf("still active: %s", in.raw)
				}
			}
		})
		t.Run("a public client revokes its own token with its id", func(t *testing.T) {
			v := verifier(43)
			c := e.code(authorizeQuery("spa", spaRedirect, challenge(v)))
			tok := e.exchange("spa", "", c, spaRedirect, v)
			r := e.post(PathRevoke, url.Values{"token": {tok.str("access_token")}, "client_id": {"spa"}}, "", "")
			if r.status != http.StatusOK {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
			if in := e.introspect(tok.str("access_token")); in.body["active"] != false {
				t.Fatalf("still active: %s", in.raw)
			}
		})
		t.Run("an unknown token is 200", func(t *testing.T) {
			if r := e.post(PathRevoke, url.Values{"token": {"nothing"}}, "web", webSecret); r.status != http.StatusOK {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("a wrong secret is 401", func(t *testing.T) {
			if r := e.post(PathRevoke, url.Values{"token": {"nothing"}}, "web", "wrong"); r.status != http.StatusUnauthorized {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
	})
}

func TestRevocationStorageFailureIs503(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tok := e.clientCredentials("svc-opaque", svcSecret, "patient.read").str("access_token")
		if err := e.st.Close(); err != nil {
			t.Fatal(err)
		}
		r := e.post(PathRevoke, url.Values{"token": {tok}}, "svc-opaque", svcSecret)
		if r.status != http.StatusServiceUnavailable || r.str("error") != "temporarily_unavailable" {
			t.Fatalf("got %d %s", r.status, r.raw)
		}
		if r := e.introspect(tok); r.status != http.StatusServiceUnavailable {
			t.Errorf("introspection with the database down = %d %s", r.status, r.raw)
		}
		if r := e.clientCredentials("svc-opaque", svcSecret, ""); r.status != http.StatusServiceUnavailable {
			t.Errorf("token request with the database down = %d %s", r.status, r.raw)
		}
	})
}

func TestRedirectURIAttacksNeverRedirect(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tests := []struct{ name, clientID, redirect string }{
			{"an extra path segment", "web", webRedirect + "/evil"},
			{"a trailing slash", "web", webRedirect + "/"},
			{"a changed case", "web", "https://app.example.test/CB"},
			{"a changed host case", "web", "https://APP.example.test/cb"},
			{"an added query", "web", webRedirect + "?next=evil"},
			{"a fragment", "web", webRedirect + "#frag"},
			{"userinfo", "web", "https://app.example.test@evil.example/cb"},
			{"userinfo before the real host", "web", "https://evil@app.example.test/cb"},
			{"another scheme", "web", "http://app.example.test/cb"},
			{"another port on a non-loopback host", "web", "https://app.example.test:8443/cb"},
			{"another host", "web", "https://evil.example/cb"},
			{"a loopback URI with another path", "web", "http://127.0.0.1:5555/other"},
			{"an unknown client", "nobody", webRedirect},
			{"no client", "", webRedirect},
		}
		for _, tc := range tests {
			t.Run(tc.name+" is an error page, not a redirect", func(t *testing.T) {
				q := authorizeQuery(tc.clientID, tc.redirect, challenge(verifier(43)), "openid")
				_, err := e.parse(q)
				ae, ok := err.(*AuthorizeError)
				if !ok || ae.Redirectable {
					t.Fatalf("err = %#v, want a non-redirectable *AuthorizeError", err)
				}
				rec := httptest.NewRecorder()
				e.p.WriteAuthorizeError(rec, httptest.NewRequest(http.MethodGet, "/", nil), nil, err)
				if loc := rec.Header().Get("Location"); loc != "" || rec.Code/100 == 3 {
					t.Fatalf("redirected to %q (%d)", loc, rec.Code)
				}
			})
		}
		t.Run("a loopback redirect URI matches on any port (RFC 8252)", func(t *testing.T) {
			ar, err := e.parse(authorizeQuery("web", "http://127.0.0.1:49152/cb", challenge(verifier(43)), "openid"))
			if err != nil || ar.RedirectURI != "http://127.0.0.1:49152/cb" {
				t.Fatalf("ar = %+v, err = %v", ar, err)
			}
		})
		t.Run("the only registered URI is used when none is sent (without openid)", func(t *testing.T) {
			q := authorizeQuery("web-opaque", "", "", "")
			q.Del("redirect_uri")
			ar, err := e.parse(q)
			if err != nil || ar.RedirectURI != webRedirect {
				t.Fatalf("ar = %+v, err = %v", ar, err)
			}
		})
	})
}

func TestAuthorizeRequestChecks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		base := func() url.Values { return authorizeQuery("web", webRedirect, challenge(verifier(43)), "openid") }
		tests := []struct {
			name  string
			edit  func(url.Values)
			code  string
			redir bool
		}{
			{"a scope the client may not have", func(q url.Values) { q.Set("scope", "openid admin:everything") }, "invalid_scope", true},
			{"response_type token", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type", true},
			{"prompt=none with login", func(q url.Values) { q.Set("prompt", "none login") }, "invalid_request", true},
			{"an unknown prompt", func(q url.Values) { q.Set("prompt", "dance") }, "invalid_request", true},
			{"a negative max_age", func(q url.Values) { q.Set("max_age", "-5") }, "invalid_request", true},
			{"a request object", func(q url.Values) { q.Set("request", "eyJhbGciOiJub25lIn0.eyJzdGF0ZSI6IngifQ.") }, "request_not_supported", true},
			{"an unknown pushed request's urn", func(q url.Values) { q.Set("request_uri", "urn:ietf:params:oauth:request_uri:abc") }, "invalid_request_uri", false},
			{"a request_uri by https", func(q url.Values) { q.Set("request_uri", "https://app.example.test/req.jwt") }, "request_uri_not_supported", true},
			{"an unknown pushed request's urn without openid", func(q url.Values) {
				q.Set("scope", "patient.read")
				q.Set("request_uri", "urn:ietf:params:oauth:request_uri:abc")
			}, "invalid_request_uri", false},
			{"an unknown pushed request's urn for an unknown client", func(q url.Values) {
				q.Set("client_id", "nobody")
				q.Set("request_uri", "urn:ietf:params:oauth:request_uri:abc")
			}, "invalid_request_uri", false},
			{"a request_uri by https for an unknown client", func(q url.Values) {
				q.Set("client_id", "nobody")
				q.Set("request_uri", "https://app.example.test/req.jwt")
			}, "invalid_client", false},
		}
		for _, tc := range tests {
			t.Run(tc.name+" is refused", func(t *testing.T) {
				q := base()
				tc.edit(q)
				_, err := e.parse(q)
				ae, ok := err.(*AuthorizeError)
				if !ok || ae.Code != tc.code || ae.Redirectable != tc.redir {
					t.Fatalf("err = %#v, want %s", err, tc.code)
				}
			})
		}
		t.Run("state and nonce of any length are accepted by default, and state may be absent", func(t *testing.T) {
			for _, state := range []string{"abc", "x", ""} {
				q := base()
				q.Set("nonce", "n")
				if state == "" {
					q.Del("state")
				} else {
					q.Set("state", state)
				}
				u := e.complete(q, aliceGrant())
				if u.Query().Get("code") == "" {
					t.Fatalf("state %q: no code in %s", state, u)
				}
			}
		})
		t.Run("with a minimum parameter length configured, short state and nonce are refused", func(t *testing.T) {
			cfg := e.config()
			cfg.MinParameterLength = 8
			p8, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct{ param, code string }{{"state", "invalid_state"}, {"nonce", "insufficient_entropy"}} {
				q := base()
				q.Set(tc.param, "abc")
				r := httptest.NewRequest(http.MethodGet, PathAuthorize+"?"+q.Encode(), nil)
				_, err := p8.ParseAuthorize(r.Context(), r)
				ae, ok := err.(*AuthorizeError)
				if !ok || ae.Code != tc.code || !ae.Redirectable {
					t.Fatalf("short %s: err = %#v, want %s", tc.param, err, tc.code)
				}
			}
		})
		t.Run("prompt=select_account shows the sign-in form, as prompt=login", func(t *testing.T) {
			q := base()
			q.Set("prompt", "select_account")
			ar, err := e.parse(q)
			if err != nil {
				t.Fatal(err)
			}
			if len(ar.Prompt) != 1 || ar.Prompt[0] != "login" {
				t.Fatalf("prompt = %v, want [login]", ar.Prompt)
			}
		})
		t.Run("prompt, max_age and login_hint are parsed", func(t *testing.T) {
			q := base()
			q.Set("prompt", "login consent")
			q.Set("max_age", "300")
			q.Set("login_hint", "alice@example.test")
			ar, err := e.parse(q)
			if err != nil {
				t.Fatal(err)
			}
			if len(ar.Prompt) != 2 || ar.MaxAge != 300 || ar.LoginHint != "alice@example.test" || ar.Query.Get("login_hint") != "alice@example.test" {
				t.Fatalf("ar = %+v", ar)
			}
			// prompt=login: a fresh sign-in completes.
			g := aliceGrant()
			g.AuthTime = time.Now()
			rec := httptest.NewRecorder()
			if err := e.p.CompleteAuthorize(rec, httptest.NewRequest(http.MethodGet, "/", nil), ar, g); err != nil {
				t.Fatal(err)
			}
			loc, _ := url.Parse(rec.Header().Get("Location"))
			if loc.Query().Get("code") == "" {
				t.Fatalf("no code: %s", loc)
			}
		})
		t.Run("a sign-in older than max_age is login_required", func(t *testing.T) {
			q := base()
			q.Set("max_age", "60")
			ar, err := e.parse(q)
			if err != nil {
				t.Fatal(err)
			}
			g := aliceGrant()
			g.AuthTime = time.Now().Add(-time.Hour)
			rec := httptest.NewRecorder()
			if err := e.p.CompleteAuthorize(rec, httptest.NewRequest(http.MethodGet, "/", nil), ar, g); err != nil {
				t.Fatal(err)
			}
			loc, _ := url.Parse(rec.Header().Get("Location"))
			if loc.Query().Get("error") != "login_required" || loc.Query().Get("code") != "" || loc.Query().Get("state") != q.Get("state") {
				t.Fatalf("redirect = %s", loc)
			}
		})
		t.Run("max_age=0 is met by a sign-in made for this request, however long it took", func(t *testing.T) {
			for _, tc := range []struct {
				name        string
				requestedAt time.Time
				wantCode    bool
			}{
				{"signed in after the request was parked", time.Now().Add(-5 * time.Second), true},
				{"an older sign-in", time.Time{}, false},
			} {
				q := base()
				q.Set("max_age", "0")
				ar, err := e.parse(q)
				if err != nil {
					t.Fatal(err)
				}
				g := aliceGrant()
				g.AuthTime = time.Now().Add(-3 * time.Second) // the password form took a few seconds
				g.LoginRequestedAt = tc.requestedAt
				rec := httptest.NewRecorder()
				if err := e.p.CompleteAuthorize(rec, httptest.NewRequest(http.MethodGet, "/", nil), ar, g); err != nil {
					t.Fatal(err)
				}
				loc, _ := url.Parse(rec.Header().Get("Location"))
				if got := loc.Query().Get("code") != ""; got != tc.wantCode {
					t.Fatalf("%s: redirect = %s", tc.name, loc)
				}
			}
		})
		t.Run("the hosted pages' refusals go back to the client", func(t *testing.T) {
			for _, tc := range []struct {
				err  error
				code string
			}{{ErrAccessDenied, "access_denied"}, {ErrLoginRequired, "login_required"}, {ErrConsentRequired, "consent_required"}, {ErrInteractionRequired, "interaction_required"}} {
				ar, err := e.parse(base())
				if err != nil {
					t.Fatal(err)
				}
				rec := httptest.NewRecorder()
				e.p.WriteAuthorizeError(rec, httptest.NewRequest(http.MethodGet, "/", nil), ar, tc.err)
				loc, _ := url.Parse(rec.Header().Get("Location"))
				if rec.Code != http.StatusSeeOther || loc.Query().Get("error") != tc.code || !strings.HasPrefix(loc.String(), webRedirect+"?") {
					t.Fatalf("%v: %d %s", tc.err, rec.Code, loc)
				}
			}
		})
		t.Run("only granted scopes are issued", func(t *testing.T) {
			q := authorizeQuery("web", webRedirect, "", "openid", "email", "patient.read")
			v := verifier(43)
			q.Set("code_challenge", challenge(v))
			q.Set("code_challenge_method", "S256")
			g := aliceGrant()
			g.Scopes = []string{"openid"}
			u := e.complete(q, g)
			r := e.exchange("web", webSecret, u.Query().Get("code"), webRedirect, v)
			if s := r.str("scope"); s != "openid" || r.str("refresh_token") != "" {
				t.Fatalf("scope = %q, refresh token %t", s, r.str("refresh_token") != "")
			}
		})
		t.Run("refresh tokens follow offline_access for OpenID requests and the client setting otherwise", func(t *testing.T) {
			for _, tc := range []struct {
				name        string
				scopes      []string
				chosen      []string // the scopes the user kept; nil: all
				wantRefresh bool
			}{
				{"openid without offline_access", []string{"openid"}, nil, false},
				{"openid with offline_access", []string{"openid", "offline_access"}, nil, true},
				{"openid with offline", []string{"openid", "offline"}, nil, true},
				{"offline_access requested but not kept by the user", []string{"openid", "offline_access"}, []string{"openid"}, false},
				{"a plain OAuth request of a client with refresh_token: true", []string{"patient.read"}, nil, true},
			} {
				q := authorizeQuery("web", webRedirect, "", tc.scopes...)
				v := verifier(43)
				q.Set("code_challenge", challenge(v))
				q.Set("code_challenge_method", "S256")
				g := aliceGrant()
				g.Scopes = tc.chosen
				u := e.complete(q, g)
				r := e.exchange("web", webSecret, u.Query().Get("code"), webRedirect, v)
				if r.status != http.StatusOK {
					t.Fatalf("%s: %d %s", tc.name, r.status, r.raw)
				}
				if got := r.str("refresh_token") != ""; got != tc.wantRefresh {
					t.Errorf("%s: refresh token %t, want %t (scope %q)", tc.name, got, tc.wantRefresh, r.str("scope"))
				}
			}
		})
		t.Run("a disabled user gets access_denied, not a code", func(t *testing.T) {
			ar, err := e.parse(base())
			if err != nil {
				t.Fatal(err)
			}
			g := aliceGrant()
			g.Subject = "ghost"
			rec := httptest.NewRecorder()
			if err := e.p.CompleteAuthorize(rec, httptest.NewRequest(http.MethodGet, "/", nil), ar, g); err != nil {
				t.Fatal(err)
			}
			loc, _ := url.Parse(rec.Header().Get("Location"))
			if loc.Query().Get("error") != "access_denied" || loc.Query().Get("code") != "" {
				t.Fatalf("redirect = %s", loc)
			}
		})
	})
}

func TestCompleteAuthorizeWithTheDatabaseDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		q := authorizeQuery("web", webRedirect, challenge(verifier(43)), "openid")
		ar, err := e.parse(q)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.st.Close(); err != nil {
			t.Fatal(err)
		}
		e.p.ForgetClient("web") // else the client comes from the cache
		_, err = e.parse(q)
		if ae, ok := err.(*AuthorizeError); !ok || ae.Code != "temporarily_unavailable" || ae.Redirectable {
			t.Fatalf("ParseAuthorize with the database down: %#v", err)
		}
		rec := httptest.NewRecorder()
		if err := e.p.CompleteAuthorize(rec, httptest.NewRequest(http.MethodGet, "/", nil), ar, aliceGrant()); err == nil {
			t.Fatal("CompleteAuthorize succeeded with the database closed")
		}
		if rec.Header().Get("Location") != "" || rec.Body.Len() != 0 {
			t.Fatalf("something was written: %d %v %q", rec.Code, rec.Header(), rec.Body)
		}
	})
}

func TestUserinfo(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tok := e.webTokens("openid", "email", "phone", "profile")
		t.Run("claims follow the granted scopes", func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				req, _ := http.NewRequest(method, e.srv.URL+PathUserinfo, nil)
				req.Header.Set("Authorization", "Bearer "+tok.str("access_token"))
				r := e.do(req)
				want := map[string]any{"sub": "alice", "email": "alice@example.test", "email_verified": true,
					"phone_number": "+14155550123", "phone_number_verified": false, "name": "Alice Liddell", "given_name": "Alice", "family_name": "Liddell"}
				for k, v := range want {
					if r.body[k] != v {
						t.Errorf("%s %s = %v, want %v (%s)", method, k, r.body[k], v, r.raw)
					}
				}
			}
		})
		t.Run("without a token it is 401 with WWW-Authenticate", func(t *testing.T) {
			r := e.get(PathUserinfo, "")
			if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("got %d %v", r.status, r.header)
			}
		})
		t.Run("a refresh token is not an access token", func(t *testing.T) {
			if r := e.get(PathUserinfo, tok.str("refresh_token")); r.status != http.StatusUnauthorized {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("a client_credentials token has no user", func(t *testing.T) {
			cc := e.clientCredentials("svc", svcSecret, "patient.read").str("access_token")
			if r := e.get(PathUserinfo, cc); r.status != http.StatusForbidden {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("without the openid scope it is 403", func(t *testing.T) {
			t2 := e.webTokens("patient.read")
			if r := e.get(PathUserinfo, t2.str("access_token")); r.status != http.StatusForbidden {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
	})
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, gormstoreOpen(t))
	for _, path := range []string{PathOpenIDConf, PathOAuthConf} {
		r := e.get(path, "")
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Cache-Control"), "public, max-age=") {
			t.Fatalf("%s: %d %v", path, r.status, r.header)
		}
		want := map[string]any{
			"issuer":                 testIssuer,
			"authorization_endpoint": testIssuer + "/auth/authorize",
			"token_endpoint":         testIssuer + "/auth/token",
			"userinfo_endpoint":      testIssuer + "/auth/userinfo",
			"introspection_endpoint": testIssuer + "/auth/introspect",
			"revocation_endpoint":    testIssuer + "/auth/revoke",
			"jwks_uri":               testIssuer + "/.well-known/jwks.json",
			"end_session_endpoint":   testIssuer + "/auth/logout",
		}
		for k, v := range want {
			if r.body[k] != v {
				t.Errorf("%s %s = %v, want %v", path, k, r.body[k], v)
			}
		}
		lists := map[string]string{
			"response_types_supported":                         `["code"]`,
			"code_challenge_methods_supported":                 `["S256"]`,
			"token_endpoint_auth_methods_supported":            `["client_secret_basic","client_secret_post","private_key_jwt","none"]`,
			"token_endpoint_auth_signing_alg_values_supported": `["RS256","RS384","RS512","PS256","PS384","PS512","ES256","ES384","ES512"]`,
			"id_token_signing_alg_values_supported":            `["RS256","ES256"]`,
			"subject_types_supported":                          `["public"]`,
			"grant_types_supported":                            `["authorization_code","refresh_token","client_credentials","password"]`,
			"acr_values_supported":                             `["urn:gatehouse:acr:pwd","urn:gatehouse:acr:mfa","urn:gatehouse:acr:phr"]`,
		}
		for k, v := range lists {
			b, _ := json.Marshal(r.body[k])
			if string(b) != v {
				t.Errorf("%s %s = %s, want %s", path, k, b, v)
			}
		}
		if r.body["claims_parameter_supported"] != true {
			t.Errorf("%s claims_parameter_supported = %v", path, r.body["claims_parameter_supported"])
		}
		for _, k := range []string{"scopes_supported", "claims_supported"} {
			if l, _ := r.body[k].([]any); len(l) == 0 {
				t.Errorf("%s lacks %s", path, k)
			}
		}
	}
	r := e.get(PathJWKS, "")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(r.raw), &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("jwks = %s (%v), want one RS256 and one ES256 key", r.raw, err)
	}
	var algs []string
	for _, k := range set.Keys {
		if !k.IsPublic() || k.Use != "sig" || k.KeyID == "" {
			t.Fatalf("jwks key = %s", r.raw)
		}
		algs = append(algs, k.Algorithm)
	}
	if slices.Sort(algs); strings.Join(algs, ",") != "ES256,RS256" || strings.Contains(r.raw, `"d"`) || strings.Contains(r.raw, `"p"`) {
		t.Fatalf("jwks = %s, want public RS256 and ES256 keys", r.raw)
	}
	if !strings.HasPrefix(r.header.Get("Cache-Control"), "public, max-age=") {
		t.Errorf("jwks Cache-Control = %q", r.header.Get("Cache-Control"))
	}
}

func TestLogoutHelpers(t *testing.T) {
	e := newEnv(t, gormstoreOpen(t))
	ctx := context.Background()
	t.Run("post-logout redirect URIs match exactly", func(t *testing.T) {
		for uri, want := range map[string]bool{
			"https://app.example.test/bye":  true,
			"https://app.example.test/bye/": false,
			"https://app.example.test/BYE":  false,
			"https://evil.example/bye":      false,
			"":                              false,
		} {
			if got := e.p.PostLogoutRedirectAllowed(ctx, "web", uri); got != want {
				t.Errorf("%q: %v, want %v", uri, got, want)
			}
		}
		if e.p.PostLogoutRedirectAllowed(ctx, "nobody", "https://app.example.test/bye") {
			t.Error("unknown client allowed")
		}
	})
	t.Run("an id_token_hint of ours names client and user, even when expired", func(t *testing.T) {
		idt := e.webTokens("openid").str("id_token")
		cid, sub, err := e.p.ClientIDFromIDTokenHint(ctx, idt)
		if err != nil || cid != "web" || sub != "alice" {
			t.Fatalf("= %q %q %v", cid, sub, err)
		}
		old, _, err := e.p.idSigner.Generate(ctx, jwt.MapClaims{"iss": testIssuer, "sub": "alice", "aud": []string{"web"},
			"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()}, &jwt.Headers{})
		if err != nil {
			t.Fatal(err)
		}
		if cid, _, err := e.p.ClientIDFromIDTokenHint(ctx, old); err != nil || cid != "web" {
			t.Fatalf("expired hint: %q %v", cid, err)
		}
	})
	t.Run("a forged or foreign hint is refused", func(t *testing.T) {
		idt := e.webTokens("openid").str("id_token")
		parts := strings.Split(idt, ".")
		forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
		if _, _, err := e.p.ClientIDFromIDTokenHint(ctx, forged); err == nil {
			t.Error("forged signature accepted")
		}
		foreign, _, _ := e.p.idSigner.Generate(ctx, jwt.MapClaims{"iss": "https://other.example", "sub": "alice", "aud": "web",
			"exp": time.Now().Add(time.Hour).Unix()}, &jwt.Headers{})
		if _, _, err := e.p.ClientIDFromIDTokenHint(ctx, foreign); err == nil {
			t.Error("foreign issuer accepted")
		}
		if _, _, err := e.p.ClientIDFromIDTokenHint(ctx, "garbage"); err == nil {
			t.Error("garbage accepted")
		}
	})
}

func TestTheClaimsParameterIsReadForAcr(t *testing.T) {
	e := newEnv(t, gormstoreOpen(t))
	parse := func(claims string) (*AuthorizeRequest, error) {
		q := authorizeQuery("web", webRedirect, challenge(verifier(43)), "openid")
		q.Set("claims", claims)
		return e.parse(q)
	}
	t.Run("an essential acr with values is read and kept with the request", func(t *testing.T) {
		ar, err := parse(`{"id_token":{"acr":{"essential":true,"values":["urn:gatehouse:acr:mfa"]},"email":null}}`)
		if err != nil {
			t.Fatal(err)
		}
		if !ar.ACREssential || len(ar.ACRClaim) != 1 || ar.ACRClaim[0] != signin.ACRMFA || ar.Query.Get("claims") == "" {
			t.Fatalf("essential %v values %v query %v", ar.ACREssential, ar.ACRClaim, ar.Query)
		}
	})
	t.Run("a single value is read too", func(t *testing.T) {
		ar, err := parse(`{"userinfo":{"acr":{"value":"urn:gatehouse:acr:phr"}}}`)
		if err != nil || ar.ACREssential || len(ar.ACRClaim) != 1 || ar.ACRClaim[0] != signin.ACRPhishingResistant {
			t.Fatalf("%+v %v", ar, err)
		}
	})
	t.Run("a claims parameter that is not JSON is invalid_request at the redirect URI", func(t *testing.T) {
		_, err := parse(`{"id_token":`)
		var ae *AuthorizeError
		if !errors.As(err, &ae) || ae.Code != "invalid_request" || !ae.Redirectable {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestParseAuthorizeKeepsOnlyProtocolParameters(t *testing.T) {
	e := newEnv(t, gormstoreOpen(t))
	q := authorizeQuery("web", webRedirect, challenge(verifier(43)), "openid")
	body := url.Values{"username": {"alice"}, "password": {alicePass}, "_csrf": {"x"}}
	r := httptest.NewRequest(http.MethodPost, "/auth/login?"+q.Encode(), strings.NewReader(body.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ar, err := e.p.ParseAuthorize(r.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	if ar.Query.Has("password") || ar.Query.Has("username") || ar.Query.Has("_csrf") {
		t.Fatalf("Query carries form fields: %v", ar.Query)
	}
	if ar.Query.Get("client_id") != "web" || ar.Query.Get("code_challenge") == "" {
		t.Fatalf("Query lost protocol parameters: %v", ar.Query)
	}
}
