package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// logoutReceiver is a relying party's back-channel logout endpoint: it
// answers the first `fail` requests with 503, then 200, and keeps what it got.
type logoutReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	fail   int
	tokens []string
	got    chan struct{}
}

func newLogoutReceiver(t *testing.T, fail int) *logoutReceiver {
	lr := &logoutReceiver{fail: fail, got: make(chan struct{}, 10)}
	lr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lr.mu.Lock()
		defer lr.mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if lr.fail > 0 {
			lr.fail--
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		lr.tokens = append(lr.tokens, r.PostFormValue("logout_token"))
		w.Header().Set("Cache-Control", "no-store")
		lr.got <- struct{}{}
	}))
	t.Cleanup(lr.Close)
	return lr
}

func (lr *logoutReceiver) wait(t *testing.T) string {
	t.Helper()
	select {
	case <-lr.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no logout token arrived")
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.tokens[len(lr.tokens)-1]
}

type logoutClaims struct {
	Issuer   string                    `json:"iss"`
	Audience string                    `json:"aud"`
	Subject  string                    `json:"sub"`
	SID      string                    `json:"sid"`
	JTI      string                    `json:"jti"`
	IAT      int64                     `json:"iat"`
	Exp      int64                     `json:"exp"`
	Nonce    *string                   `json:"nonce"`
	Events   map[string]map[string]any `json:"events"`
}

func TestBackchannelLogout(t *testing.T) {
	app := startApp(t, gormstoretest.Open(t), func(c *config.Config) { c.Webhook.AllowPrivate = true })
	app.mustPut("/User/alice", userYAML)
	flaky := newLogoutReceiver(t, 1)
	steady := newLogoutReceiver(t, 0)
	for id, uri := range map[string]string{"bcl-rs256": flaky.URL + "/logout", "bcl-es256": steady.URL + "/logout"} {
		alg := "RS256"
		if id == "bcl-es256" {
			alg = "ES256"
		}
		app.mustPut("/Client/"+id, `
secret: bcl-secret-0123456789
first_party: true
grant_types: [code]
scope: [openid]
id_token_signed_response_alg: `+alg+`
backchannel_logout_uri: '`+uri+`'
backchannel_logout_session_required: true
auth:
  authorization_code:
    redirect_uri: 'http://localhost:3001/callback'
`)
	}
	app.mustPut("/Client/no-bcl", webClientYAML)

	b := app.newBrowser()
	signIn := func(b *browser, clientID, secret string) string {
		conf := &oauth2.Config{ClientID: clientID, ClientSecret: secret, RedirectURL: "http://localhost:3001/callback", Scopes: []string{"openid"},
			Endpoint: oauth2.Endpoint{AuthURL: app.URL + "/auth/authorize", TokenURL: app.URL + "/auth/token", AuthStyle: oauth2.AuthStyleInHeader}}
		v := oauth2.GenerateVerifier()
		back := b.signIn(conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(v)), "alice@example.com", "password")
		tok, err := conf.Exchange(context.Background(), back.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatalf("exchange for %s: %v", clientID, err)
		}
		id, _ := tok.Extra("id_token").(string)
		return id
	}
	idRS := signIn(b, "bcl-rs256", "bcl-secret-0123456789")
	_ = signIn(b, "bcl-es256", "bcl-secret-0123456789")
	_ = signIn(b, "no-bcl", "verysecret-0123456789")
	var idClaimsRS struct {
		SID string `json:"sid"`
	}
	verifyJWT(t, app, idRS, &idClaimsRS)

	p := b.get(app.URL + "/auth/logout?" + url.Values{"id_token_hint": {idRS}}.Encode())
	if p.status != http.StatusOK {
		t.Fatalf("logout page: %d", p.status)
	}
	// The flaky receiver's token comes with the retry, a backoff (1 s)
	// after its first attempt failed: the page did not wait for it.
	flaky.mu.Lock()
	early := len(flaky.tokens)
	flaky.mu.Unlock()
	if early != 0 {
		t.Fatal("the logout page answered only after the retried delivery")
	}

	t.Run("each client the session signed in to gets a signed logout token with the sid and the event", func(t *testing.T) {
		for name, c := range map[string]struct {
			rcv *logoutReceiver
			alg string
			aud string
		}{"RS256 after a retry": {flaky, "RS256", "bcl-rs256"}, "ES256": {steady, "ES256", "bcl-es256"}} {
			raw := c.rcv.wait(t)
			var lc logoutClaims
			h := verifyJWT(t, app, raw, &lc)
			if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "logout+jwt" || h.Algorithm != c.alg {
				t.Errorf("%s: header typ %v alg %s", name, h.ExtraHeaders[jose.HeaderType], h.Algorithm)
			}
			_, ok := lc.Events["http://schemas.openid.net/event/backchannel-logout"]
			if lc.Issuer != app.URL || lc.Audience != c.aud || lc.Subject != "alice" || lc.SID != idClaimsRS.SID || lc.SID == "" ||
				!ok || lc.Nonce != nil || lc.JTI == "" || lc.Exp-lc.IAT > 120 {
				t.Errorf("%s: claims %+v (sid in the ID token %q)", name, lc, idClaimsRS.SID)
			}
		}
	})
	t.Run("a client without backchannel_logout_uri is not called and nothing is sent twice", func(t *testing.T) {
		time.Sleep(200 * time.Millisecond)
		flaky.mu.Lock()
		defer flaky.mu.Unlock()
		steady.mu.Lock()
		defer steady.mu.Unlock()
		if len(flaky.tokens) != 1 || len(steady.tokens) != 1 {
			t.Fatalf("tokens: %d and %d, want one each", len(flaky.tokens), len(steady.tokens))
		}
	})
	t.Run("an admin's new password ends the user's other sessions and tells their clients", func(t *testing.T) {
		other := app.newBrowser()
		id := signIn(other, "bcl-es256", "bcl-secret-0123456789")
		var claims struct {
			SID string `json:"sid"`
		}
		verifyJWT(t, app, id, &claims)
		app.mustPut("/User/alice", "email: alice@example.com\npassword: another password 123\n")
		var lc logoutClaims
		verifyJWT(t, app, steady.wait(t), &lc)
		if lc.SID != claims.SID || lc.Subject != "alice" || lc.Audience != "bcl-es256" {
			t.Fatalf("claims %+v, want sid %q", lc, claims.SID)
		}
	})
}
