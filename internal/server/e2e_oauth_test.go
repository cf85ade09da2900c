package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// The Aidbox demo resources plus a public (PKCE) client and an opaque-token client.
const (
	webClientYAML = `
secret: verysecret-0123456789
first_party: true
grant_types: [code, refresh_token]
scope: [openid, profile, email, offline_access]
auth:
  authorization_code:
    redirect_uri: 'http://localhost:3001/callback'
    access_token_expiration: 360
    token_format: jwt
    secret_required: true
    refresh_token: true
`
	spaClientYAML = `
first_party: false
grant_types: [authorization_code, refresh_token]
scope: [openid, offline_access]
auth:
  authorization_code:
    redirect_uri: ['http://127.0.0.1:4000/cb', 'https://spa.example.com/cb']
    secret_required: false
    token_format: opaque
    refresh_token: true
    pkce: true
`
	userYAML = `
email: alice@example.com
password: password
`
)

type idClaims struct {
	jwt.Claims
	Nonce    string   `json:"nonce"`
	AMR      []string `json:"amr"`
	ACR      string   `json:"acr"`
	AuthTime int64    `json:"auth_time"`
}

// verifyJWT checks a token's signature against the server's JWKS, with the
// algorithm of the key its kid names (ES256 access tokens, RS256 or ES256
// ID tokens), and returns its header and claims.
func verifyJWT(t *testing.T, app *testApp, raw string, claims any) jose.Header {
	t.Helper()
	var set jose.JSONWebKeySet
	getJSON(t, app.URL+"/.well-known/jwks.json", &set)
	tok, err := jwt.ParseSigned(raw)
	if err != nil {
		t.Fatalf("parse JWT: %v", err)
	}
	h := tok.Headers[0]
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in JWKS", h.KeyID)
	}
	if h.Algorithm != keys[0].Algorithm || (h.Algorithm != "ES256" && h.Algorithm != "RS256") {
		t.Fatalf("alg = %s, the JWKS key is for %s", h.Algorithm, keys[0].Algorithm)
	}
	if err := tok.Claims(keys[0].Key, claims); err != nil {
		t.Fatalf("JWT signature: %v", err)
	}
	return h
}

func introspect(t *testing.T, app *testApp, clientID, clientSecret, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, app.URL+"/auth/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect = %d", resp.StatusCode)
	}
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return out
}

func TestEndToEndAuthorizationCodeFlow(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			app := startApp(t, be.Open(t))
			app.mustPut("/Client/mywebapp", webClientYAML)
			app.mustPut("/Client/spa", spaClientYAML)
			app.mustPut("/Client/resource-server", "secret: rs-secret-0123456789\ngrant_types: [client_credentials]\n")
			app.mustPut("/User/alice", userYAML)
			ctx := context.Background()

			t.Run("a confidential client gets JWT tokens that verify against the JWKS, refreshes, and revokes", func(t *testing.T) {
				conf := &oauth2.Config{
					ClientID: "mywebapp", ClientSecret: "verysecret-0123456789",
					Endpoint:    oauth2.Endpoint{AuthURL: app.URL + "/auth/authorize", TokenURL: app.URL + "/auth/token", AuthStyle: oauth2.AuthStyleInHeader},
					RedirectURL: "http://localhost:3001/callback",
					Scopes:      []string{"openid", "email", "offline_access"},
				}
				verifier := oauth2.GenerateVerifier()
				authURL := conf.AuthCodeURL("state-123456", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "nonce-abcdef"))
				back := app.newBrowser().signIn(authURL, "alice@example.com", "password")
				if got := back.Query().Get("state"); got != "state-123456" {
					t.Fatalf("state = %q", got)
				}
				if back.Host != "localhost:3001" || back.Path != "/callback" {
					t.Fatalf("redirected to %s", back)
				}
				tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
				if err != nil {
					t.Fatalf("exchange: %v", err)
				}
				if tok.RefreshToken == "" {
					t.Fatal("no refresh token")
				}
				var at struct {
					jwt.Claims
					ClientID string `json:"client_id"`
					Scope    string `json:"scope"`
				}
				h := verifyJWT(t, app, tok.AccessToken, &at)
				if typ, _ := h.ExtraHeaders["typ"].(string); !strings.EqualFold(typ, "at+jwt") || h.Algorithm != "ES256" {
					t.Fatalf("access token typ = %v alg = %s, want at+jwt ES256", h.ExtraHeaders["typ"], h.Algorithm)
				}
				if at.Subject != "alice" || at.Issuer != app.URL || at.ClientID != "mywebapp" {
					t.Fatalf("access token claims = %+v", at)
				}
				// iat and exp are whole seconds taken a moment apart: allow one second.
				if d := at.Expiry.Time().Sub(at.IssuedAt.Time()).Seconds(); d < 360 || d > 361 {
					t.Fatalf("access token lifetime = %v, want the client's 360 s", d)
				}
				rawID, _ := tok.Extra("id_token").(string)
				var id idClaims
				if h := verifyJWT(t, app, rawID, &id); h.Algorithm != "RS256" {
					t.Fatalf("ID token alg = %s, want RS256 (the default)", h.Algorithm)
				}
				if id.Subject != "alice" || id.Nonce != "nonce-abcdef" || id.AuthTime == 0 || !contains(id.AMR, "pwd") {
					t.Fatalf("id token claims = %+v", id)
				}
				if err := id.Validate(jwt.Expected{Issuer: app.URL, Audience: jwt.Audience{"mywebapp"}}); err != nil {
					t.Fatalf("id token: %v", err)
				}

				// userinfo
				req, _ := http.NewRequest(http.MethodGet, app.URL+"/auth/userinfo", nil)
				req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var info map[string]any
				json.NewDecoder(resp.Body).Decode(&info)
				resp.Body.Close()
				if info["sub"] != "alice" || info["email"] != "alice@example.com" {
					t.Fatalf("userinfo = %v", info)
				}

				// refresh rotates; within the client's grace period the old
				// refresh token answers with the same new pair; with strict
				// rotation its reuse revokes the family
				fresh, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
				if err != nil {
					t.Fatalf("refresh: %v", err)
				}
				if fresh.RefreshToken == "" || fresh.RefreshToken == tok.RefreshToken {
					t.Fatal("refresh token not rotated")
				}
				again, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
				if err != nil || again.AccessToken != fresh.AccessToken || again.RefreshToken != fresh.RefreshToken {
					t.Fatalf("a retry within the grace period should get the same pair (err %v)", err)
				}
				app.mustPut("/Client/mywebapp", webClientYAML+"refresh_token_grace_seconds: 0\n")
				if status, body := app.admin(http.MethodGet, "/Client/mywebapp", "", ""); status != http.StatusOK || !strings.Contains(body, `"refresh_token_grace_seconds":0`) {
					t.Fatalf("GET Client after setting strict rotation: %d %s", status, body)
				}
				if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
					t.Fatal("the rotated refresh token worked again")
				}
				if got := introspect(t, app, "mywebapp", "verysecret-0123456789", fresh.AccessToken); got["active"] != false {
					t.Fatalf("after refresh-token reuse the family should be revoked; introspect = %v", got)
				}

				// a new login for revocation
				verifier = oauth2.GenerateVerifier()
				back = app.newBrowser().signIn(conf.AuthCodeURL("state-789012", oauth2.S256ChallengeOption(verifier)), "alice", "password")
				tok, err = conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
				if err != nil {
					t.Fatal(err)
				}
				if got := introspect(t, app, "mywebapp", "verysecret-0123456789", tok.AccessToken); got["active"] != true || got["sub"] != "alice" {
					t.Fatalf("introspect = %v", got)
				}
				if got := introspect(t, app, "resource-server", "rs-secret-0123456789", tok.AccessToken); got["active"] != true {
					t.Fatalf("a resource server introspecting = %v", got)
				}
				req, _ = http.NewRequest(http.MethodPost, app.URL+"/auth/revoke", strings.NewReader(url.Values{"token": {tok.AccessToken}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth("mywebapp", "verysecret-0123456789")
				resp, err = http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("revoke = %d", resp.StatusCode)
				}
				if got := introspect(t, app, "mywebapp", "verysecret-0123456789", tok.AccessToken); got["active"] != false {
					t.Fatalf("revoked token still active: %v", got)
				}
			})

			t.Run("a public client needs PKCE, asks for consent, and gets opaque tokens", func(t *testing.T) {
				conf := &oauth2.Config{
					ClientID:    "spa",
					Endpoint:    oauth2.Endpoint{AuthURL: app.URL + "/auth/authorize", TokenURL: app.URL + "/auth/token", AuthStyle: oauth2.AuthStyleInParams},
					RedirectURL: "http://127.0.0.1:4000/cb",
					Scopes:      []string{"openid", "offline_access"},
				}
				b := app.newBrowser()
				// Without a code challenge the request is refused at the client.
				back := b.signIn(conf.AuthCodeURL("state-nopkce"), "alice", "password")
				if back.Query().Get("error") == "" || back.Query().Get("code") != "" {
					t.Fatalf("a public client without PKCE got %s", back)
				}
				verifier := oauth2.GenerateVerifier()
				back = b.signIn(conf.AuthCodeURL("state-pkce-ok", oauth2.S256ChallengeOption(verifier)), "alice", "password")
				tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
				if err != nil {
					t.Fatalf("exchange: %v", err)
				}
				if strings.Count(tok.AccessToken, ".") == 2 && strings.HasPrefix(tok.AccessToken, "ey") {
					t.Fatalf("expected an opaque access token, got a JWT")
				}
				if got := introspect(t, app, "resource-server", "rs-secret-0123456789", tok.AccessToken); got["active"] != true || got["client_id"] != "spa" {
					t.Fatalf("introspect = %v", got)
				}
			})

			t.Run("the Aidbox-style login URL with client_id ends at the client with a code", func(t *testing.T) {
				q := url.Values{"client_id": {"mywebapp"}, "response_type": {"code"}, "redirect_uri": {"http://localhost:3001/callback"}, "state": {"aidbox-state-1"}}
				back := app.newBrowser().signIn(app.URL+"/auth/login?"+q.Encode(), "alice", "password")
				if back.Query().Get("code") == "" || back.Query().Get("state") != "aidbox-state-1" {
					t.Fatalf("redirected to %s", back)
				}
			})

			t.Run("client credentials give a token the admin API accepts only with gatehouse:admin", func(t *testing.T) {
				app.mustPut("/Client/ops", "secret: ops-secret-0123456789\ngrant_types: [client_credentials]\nscope: ['gatehouse:admin']\n")
				cc := func(id, secret string) string {
					req, _ := http.NewRequest(http.MethodPost, app.URL+"/auth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"gatehouse:admin"}}.Encode()))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth(id, secret)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					var out struct {
						AccessToken string `json:"access_token"`
					}
					json.NewDecoder(resp.Body).Decode(&out)
					return out.AccessToken
				}
				adminGet := func(token string) int {
					req, _ := http.NewRequest(http.MethodGet, app.URL+"/User/alice", nil)
					req.Header.Set("Authorization", "Bearer "+token)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					return resp.StatusCode
				}
				if tok := cc("ops", "ops-secret-0123456789"); tok == "" || adminGet(tok) != http.StatusOK {
					t.Fatal("an admin-scoped client token was refused by the admin API")
				}
				if got := adminGet(cc("resource-server", "rs-secret-0123456789")); got != http.StatusUnauthorized && got != http.StatusForbidden {
					t.Fatalf("a token without gatehouse:admin got %d from the admin API", got)
				}
			})
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
