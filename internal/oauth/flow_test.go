package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestAuthorizationCodeFlowWithPKCE(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		conf := e.oauth2Config("web", webSecret, oauth2.AuthStyleInHeader, webRedirect, "openid", "email", "profile", "patient.read", "offline_access")
		v := oauth2.GenerateVerifier()
		authURL, err := url.Parse(conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("nonce", "nonce-0123456789")))
		if err != nil {
			t.Fatal(err)
		}
		ar, err := e.parse(authURL.Query())
		if err != nil {
			t.Fatalf("ParseAuthorize: %v", err)
		}
		if ar.ClientID != "web" || ar.RedirectURI != webRedirect || ar.State != "state-0123456789" || ar.Nonce != "nonce-0123456789" || ar.MaxAge != -1 {
			t.Fatalf("parsed request = %+v", ar)
		}
		if ar.Client.ID != "web" || !ar.Client.FirstParty || ar.Client.Secret != "" || ar.Client.SecretHash != "" {
			t.Fatalf("typed client = %+v", ar.Client)
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, authURL.String(), nil)
		if err := e.p.CompleteAuthorize(rec, req, ar, aliceGrant()); err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("status %d", rec.Code)
		}
		loc, _ := url.Parse(rec.Header().Get("Location"))
		if !strings.HasPrefix(loc.String(), webRedirect+"?") || loc.Query().Get("state") != "state-0123456789" {
			t.Fatalf("redirect = %s", loc)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("authorize response Cache-Control = %q", rec.Header().Get("Cache-Control"))
		}

		tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatalf("Exchange: %v", err)
		}
		if tok.RefreshToken == "" || tok.Type() != "Bearer" {
			t.Fatalf("token = %+v", tok)
		}
		h, claims := e.verifyJWT(tok.AccessToken)
		if h.ExtraHeaders["typ"] != "at+jwt" || h.KeyID == "" {
			t.Fatalf("access token header = %+v", h)
		}
		for k, want := range map[string]any{"iss": testIssuer, "sub": "alice", "client_id": "web"} {
			if claims[k] != want {
				t.Errorf("access token %s = %v, want %v", k, claims[k], want)
			}
		}
		if s, _ := claims["scope"].(string); !strings.Contains(s, "openid") || !strings.Contains(s, "patient.read") || !strings.Contains(s, "offline_access") {
			t.Errorf("access token scope = %q", s)
		}
		for _, k := range []string{"aud", "exp", "iat", "jti"} {
			if claims[k] == nil {
				t.Errorf("access token lacks %s", k)
			}
		}

		idt, _ := tok.Extra("id_token").(string)
		if idt == "" {
			t.Fatal("no id_token")
		}
		ih, ic := e.verifyJWT(idt)
		if ih.Algorithm != "RS256" || h.Algorithm != "ES256" {
			t.Errorf("id token alg %s, access token alg %s; want RS256 (the default) and ES256", ih.Algorithm, h.Algorithm)
		}
		sum := sha256.Sum256([]byte(tok.AccessToken))
		wantAtHash := base64.RawURLEncoding.EncodeToString(sum[:16])
		checks := map[string]any{"iss": testIssuer, "sub": "alice", "nonce": "nonce-0123456789", "acr": "1", "sid": "sid-1", "at_hash": wantAtHash}
		for k, want := range checks {
			if ic[k] != want {
				t.Errorf("id token %s = %v, want %v", k, ic[k], want)
			}
		}
		if amr, _ := ic["amr"].([]any); len(amr) != 1 || amr[0] != "pwd" {
			t.Errorf("id token amr = %v", ic["amr"])
		}
		if ic["auth_time"] == nil {
			t.Error("id token lacks auth_time")
		}
		if aud, _ := ic["aud"].([]any); len(aud) != 1 || aud[0] != "web" {
			t.Errorf("id token aud = %v", ic["aud"])
		}

		ui := e.get(PathUserinfo, tok.AccessToken)
		if ui.status != http.StatusOK || ui.str("sub") != "alice" || ui.str("email") != "alice@example.test" || ui.body["email_verified"] != true || ui.str("name") != "Alice Liddell" {
			t.Fatalf("userinfo = %d %s", ui.status, ui.raw)
		}
		if _, ok := ui.body["phone_number"]; ok {
			t.Errorf("userinfo shows phone_number without the phone scope: %s", ui.raw)
		}

		// Refresh through the library too.
		old := *tok
		old.Expiry = time.Now().Add(-time.Minute)
		tok2, err := conf.TokenSource(ctx, &old).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == tok.RefreshToken {
			t.Fatal("refresh did not rotate the tokens")
		}
		if _, c2 := e.verifyJWT(tok2.AccessToken); c2["jti"] == claims["jti"] {
			t.Error("refreshed JWT reuses the jti")
		}
		if idt2, _ := tok2.Extra("id_token").(string); idt2 == "" {
			t.Error("refresh with openid returned no id_token")
		}
		if r := e.introspect(tok.AccessToken); r.body["active"] != false {
			t.Errorf("access token replaced by a refresh is still active: %s", r.raw)
		}
		if r := e.introspect(tok2.AccessToken); r.body["active"] != true || r.str("sub") != "alice" || r.str("client_id") != "web" || r.str("token_type") != "Bearer" {
			t.Errorf("introspection of the new token = %s", r.raw)
		}
	})
}

func TestPublicClientFlowUsesOpaqueTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		conf := e.oauth2Config("spa", "", oauth2.AuthStyleInParams, spaRedirect, "openid", "offline_access")
		v := oauth2.GenerateVerifier()
		authURL, _ := url.Parse(conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(v)))
		loc := e.complete(authURL.Query(), aliceGrant())
		tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatalf("Exchange: %v", err)
		}
		if strings.Count(tok.AccessToken, ".") == 2 || tok.RefreshToken == "" {
			t.Fatalf("want an opaque access token and a refresh token, got %+v", tok)
		}
		if r := e.introspect(tok.AccessToken); r.body["active"] != true || r.str("sub") != "alice" {
			t.Fatalf("introspect = %s", r.raw)
		}
		r := e.refresh("spa", "", tok.RefreshToken)
		if r.status != http.StatusOK || r.str("refresh_token") == "" {
			t.Fatalf("public refresh = %d %s", r.status, r.raw)
		}
	})
}

func TestRefreshTokenRotationAndReuse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.setRefreshGrace("web", ptr(0)) // strict: rotation_test.go covers the grace period
		first := e.webTokens("openid", "offline_access")
		second := e.refresh("web", webSecret, first.str("refresh_token"))
		if second.status != http.StatusOK {
			t.Fatalf("refresh: %d %s", second.status, second.raw)
		}
		reuse := e.refresh("web", webSecret, first.str("refresh_token"))
		if reuse.status != http.StatusBadRequest || reuse.str("error") != "invalid_grant" {
			t.Fatalf("reused refresh token: %d %s", reuse.status, reuse.raw)
		}
		for name, tok := range map[string]string{"new access token": second.str("access_token"), "new refresh token": second.str("refresh_token")} {
			if r := e.introspect(tok); r.body["active"] != false {
				t.Errorf("%s is still active after reuse was detected: %s", name, r.raw)
			}
		}
		if r := e.refresh("web", webSecret, second.str("refresh_token")); r.str("error") != "invalid_grant" {
			t.Errorf("refresh with the revoked family: %d %s", r.status, r.raw)
		}
		if r := e.refresh("web-opaque", webSecret, second.str("refresh_token")); r.status == http.StatusOK {
			t.Errorf("another client refreshed web's token: %s", r.raw)
		}
	})
}

func TestAuthorizationCodeUsedTwice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		v := verifier(50)
		c := e.code(authorizeQuery("web", webRedirect, challenge(v), "openid", "offline_access"))
		first := e.exchange("web", webSecret, c, webRedirect, v)
		if first.status != http.StatusOK {
			t.Fatalf("first redemption: %d %s", first.status, first.raw)
		}
		second := e.exchange("web", webSecret, c, webRedirect, v)
		if second.status != http.StatusBadRequest || second.str("error") != "invalid_grant" {
			t.Fatalf("second redemption: %d %s", second.status, second.raw)
		}
		for _, tok := range []string{first.str("access_token"), first.str("refresh_token")} {
			if r := e.introspect(tok); r.body["active"] != false {
				t.Errorf("token from a replayed code still active: %s", r.raw)
			}
		}
	})
}

func TestParallelRedemptionsOfOneCode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		v := verifier(60)
		c := e.code(authorizeQuery("web", webRedirect, challenge(v), "openid"))
		statuses := race(20, func() int { return e.exchange("web", webSecret, c, webRedirect, v).status })
		if statuses[http.StatusOK] != 1 {
			t.Fatalf("statuses = %v, want exactly one 200", statuses)
		}
		if statuses[http.StatusOK]+statuses[http.StatusBadRequest] != 20 {
			t.Errorf("losers should get 400 invalid_grant: %v", statuses)
		}
	})
}

func TestParallelRefreshesOfOneToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tests := []struct {
			name         string
			grace        *int
			wantOK, want int
		}{
			{"with strict rotation one of ten parallel refreshes gets tokens", ptr(0), 1, 9},
			{"within the default grace period all ten get the pair", nil, 10, 0},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e.setRefreshGrace("web", tc.grace)
				rt := e.webTokens("offline_access").str("refresh_token")
				statuses := race(10, func() int { return e.refresh("web", webSecret, rt).status })
				if statuses[http.StatusOK] != tc.wantOK || statuses[http.StatusBadRequest] != tc.want {
					t.Fatalf("statuses = %v, want %d × 200 and %d × 400", statuses, tc.wantOK, tc.want)
				}
			})
		}
	})
}

// race runs fn n times at once and counts the results.
func race(n int, fn func() int) map[int]int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	out := map[int]int{}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s := fn()
			mu.Lock()
			out[s]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return out
}

func TestCodeRedemptionIsRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		tests := []struct {
			name     string
			client   string
			secret   string
			redirect string
			before   func()
		}{
			{name: "a code older than ten minutes", client: "web", secret: webSecret, redirect: webRedirect,
				before: func() { e.clock.Advance(11 * time.Minute) }},
			{name: "a code used by another client", client: "web-opaque", secret: webSecret, redirect: webRedirect},
			{name: "a code sent with another redirect URI", client: "web", secret: webSecret, redirect: "http://127.0.0.1/cb"},
			{name: "a code sent without its redirect URI", client: "web", secret: webSecret, redirect: ""},
			{name: "a made-up code", client: "web", secret: webSecret, redirect: webRedirect},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				v := verifier(43)
				c := e.code(authorizeQuery("web", webRedirect, challenge(v), "openid"))
				if tc.name == "a made-up code" {
					c = "ory_ac_" + strings.Repeat("A", 43) + "." + strings.Repeat("B", 43)
				}
				if tc.before != nil {
					tc.before()
				}
				r := e.exchange(tc.client, tc.secret, c, tc.redirect, v)
				if r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" {
					t.Fatalf("got %d %s, want 400 invalid_grant", r.status, r.raw)
				}
			})
		}
	})
}

func TestPKCE(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		t.Run("a public client without a challenge is refused at authorize", func(t *testing.T) {
			_, err := e.parse(authorizeQuery("spa", spaRedirect, "", "openid"))
			ae, ok := err.(*AuthorizeError)
			if !ok || ae.Code != "invalid_request" || !ae.Redirectable {
				t.Fatalf("err = %#v", err)
			}
			rec := httptest.NewRecorder()
			e.p.WriteAuthorizeError(rec, httptest.NewRequest(http.MethodGet, "/", nil), nil, err)
			loc, _ := url.Parse(rec.Header().Get("Location"))
			if rec.Code != http.StatusSeeOther || loc.Query().Get("error") != "invalid_request" || !strings.HasPrefix(loc.String(), spaRedirect) {
				t.Fatalf("error redirect = %d %s", rec.Code, loc)
			}
		})
		t.Run("a client with pkce: true needs a challenge even with a secret", func(t *testing.T) {
			e.putClient(clientWithPKCE(), webSecret)
			if _, err := e.parse(authorizeQuery("strict", webRedirect, "", "openid")); err == nil {
				t.Fatal("accepted without a challenge")
			}
		})
		t.Run("the plain method is refused", func(t *testing.T) {
			q := authorizeQuery("spa", spaRedirect, "", "openid")
			q.Set("code_challenge", verifier(43))
			q.Set("code_challenge_method", "plain")
			if _, err := e.parse(q); err == nil || err.(*AuthorizeError).Code != "invalid_request" {
				t.Fatalf("err = %v", err)
			}
		})
		t.Run("a challenge without a method is refused (it would mean plain)", func(t *testing.T) {
			q := authorizeQuery("spa", spaRedirect, "", "openid")
			q.Set("code_challenge", challenge(verifier(43)))
			if _, err := e.parse(q); err == nil {
				t.Fatal("accepted")
			}
		})

		grant := func(t *testing.T, client, sec, redirect, ch string) string {
			t.Helper()
			return e.code(authorizeQuery(client, redirect, ch, "openid"))
		}
		t.Run("a wrong verifier fails", func(t *testing.T) {
			c := grant(t, "spa", "", spaRedirect, challenge(verifier(43)))
			if r := e.exchange("spa", "", c, spaRedirect, verifier(43)); r.str("error") != "invalid_grant" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("a missing verifier fails", func(t *testing.T) {
			c := grant(t, "spa", "", spaRedirect, challenge(verifier(43)))
			if r := e.exchange("spa", "", c, spaRedirect, ""); r.str("error") != "invalid_grant" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("a verifier without a challenge fails", func(t *testing.T) {
			c := grant(t, "web-opaque", webSecret, webRedirect, "")
			if r := e.exchange("web-opaque", webSecret, c, webRedirect, verifier(43)); r.str("error") != "invalid_grant" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("a wrong verifier then a retry without one both fail (fosite PR 883)", func(t *testing.T) {
			for _, client := range []struct{ id, sec, redirect string }{{"spa", "", spaRedirect}, {"web-opaque", webSecret, webRedirect}} {
				good := verifier(43)
				c := grant(t, client.id, client.sec, client.redirect, challenge(good))
				if r := e.exchange(client.id, client.sec, c, client.redirect, verifier(43)); r.str("error") != "invalid_grant" {
					t.Fatalf("%s wrong verifier: %d %s", client.id, r.status, r.raw)
				}
				if r := e.exchange(client.id, client.sec, c, client.redirect, ""); r.str("error") != "invalid_grant" {
					t.Fatalf("%s retry without a verifier: %d %s", client.id, r.status, r.raw)
				}
				if r := e.exchange(client.id, client.sec, c, client.redirect, good); r.status == http.StatusOK {
					t.Fatalf("%s: the code still worked after a failed PKCE check", client.id)
				}
			}
		})
		for _, n := range []int{42, 129} {
			t.Run("a verifier of "+itoa(n)+" characters fails", func(t *testing.T) {
				v := verifier(n)
				c := grant(t, "spa", "", spaRedirect, challenge(v))
				if r := e.exchange("spa", "", c, spaRedirect, v); r.str("error") != "invalid_grant" {
					t.Fatalf("got %d %s", r.status, r.raw)
				}
			})
		}
		for _, n := range []int{43, 128} {
			t.Run("a verifier of "+itoa(n)+" characters works", func(t *testing.T) {
				v := verifier(n)
				c := grant(t, "spa", "", spaRedirect, challenge(v))
				if r := e.exchange("spa", "", c, spaRedirect, v); r.status != http.StatusOK {
					t.Fatalf("got %d %s", r.status, r.raw)
				}
			})
		}
	})
}

func TestRefreshWithScope(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		conf := e.oauth2Config("web", webSecret, oauth2.AuthStyleInHeader, webRedirect, "openid", "email", "patient.read", "offline_access")
		v := oauth2.GenerateVerifier()
		authURL, _ := url.Parse(conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(v)))
		loc := e.complete(authURL.Query(), aliceGrant())
		tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatalf("Exchange: %v", err)
		}
		refreshWith := func(rt, scope string) response {
			return e.post(PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {scope}}, "web", webSecret)
		}

		t.Run("a scope that was never granted is invalid_scope and spends nothing", func(t *testing.T) {
			for _, scope := range []string{"openid phone", "patient.write"} {
				r := refreshWith(tok.RefreshToken, scope)
				if r.status != http.StatusBadRequest || r.str("error") != "invalid_scope" {
					t.Fatalf("scope %q: %d %s", scope, r.status, r.raw)
				}
			}
		})
		var narrowed response
		t.Run("a narrower scope gives an access token with just that scope", func(t *testing.T) {
			narrowed = refreshWith(tok.RefreshToken, "patient.read")
			if narrowed.status != http.StatusOK || narrowed.str("scope") != "patient.read" {
				t.Fatalf("%d %s", narrowed.status, narrowed.raw)
			}
			_, claims := e.verifyJWT(narrowed.str("access_token"))
			if s, _ := claims["scope"].(string); s != "patient.read" {
				t.Fatalf("access token scope = %q", s)
			}
			if narrowed.str("id_token") != "" {
				t.Fatal("an ID token without the openid scope")
			}
			if narrowed.str("refresh_token") == "" {
				t.Fatal("no new refresh token")
			}
		})
		t.Run("the new refresh token keeps the original grant (RFC 6749 §6)", func(t *testing.T) {
			// oauth2's TokenSource refreshes without scope, as most clients do.
			next, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: narrowed.str("refresh_token")}).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if s, _ := next.Extra("scope").(string); !strings.Contains(s, "openid") || !strings.Contains(s, "email") || !strings.Contains(s, "offline_access") {
				t.Fatalf("scope after widening back = %q", s)
			}
			if idt, _ := next.Extra("id_token").(string); idt == "" {
				t.Fatal("no ID token once openid is back")
			}
		})
	})
}
