package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse/gatehouse/internal/resource"
)

func TestClientCredentials(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		t.Run("a JWT client gets an ES256 at+jwt access token that verifies against the JWKS", func(t *testing.T) {
			r := e.clientCredentials("svc", svcSecret, "patient.read")
			if r.status != http.StatusOK || r.str("token_type") != "Bearer" || r.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("token response: %d %v %s", r.status, r.header, r.raw)
			}
			if _, ok := r.body["refresh_token"]; ok {
				t.Error("client_credentials returned a refresh token")
			}
			h, c := e.verifyJWT(r.str("access_token"))
			if h.ExtraHeaders["typ"] != "at+jwt" || h.KeyID == "" {
				t.Errorf("header = %+v", h)
			}
			if c["iss"] != testIssuer || c["sub"] != "svc" || c["client_id"] != "svc" || c["scope"] != "patient.read" {
				t.Errorf("claims = %v", c)
			}
			exp, _ := c["exp"].(float64)
			iat, _ := c["iat"].(float64)
			if d := exp - iat; d != 600 {
				t.Errorf("lifetime %v s, want the client's 600", d)
			}
			if aud, _ := c["aud"].([]any); len(aud) != 1 || aud[0] != "svc" {
				t.Errorf("aud = %v", c["aud"])
			}
			in := e.introspect(r.str("access_token"))
			if in.body["active"] != true || in.str("client_id") != "svc" || in.str("scope") != "patient.read" || in.str("sub") != "svc" || in.body["exp"] == nil || in.body["iat"] == nil || in.str("token_type") != "Bearer" {
				t.Errorf("introspection = %s", in.raw)
			}
		})
		t.Run("an opaque client gets an opaque token", func(t *testing.T) {
			conf := clientcredentials.Config{ClientID: "svc-opaque", ClientSecret: svcSecret, TokenURL: e.srv.URL + PathToken,
				Scopes: []string{"patient.read"}, AuthStyle: oauth2.AuthStyleInParams}
			tok, err := conf.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if strings.Count(tok.AccessToken, ".") == 2 {
				t.Fatalf("got a JWT: %s", tok.AccessToken)
			}
			if in := e.introspect(tok.AccessToken); in.body["active"] != true || in.str("scope") != "patient.read" {
				t.Errorf("introspection = %s", in.raw)
			}
		})
		t.Run("scopes outside the client's list are refused", func(t *testing.T) {
			for _, tc := range []struct{ client, scope string }{{"svc-opaque", ScopeAdmin}, {"svc", "openid"}, {"svc", "offline_access"}} {
				if r := e.clientCredentials(tc.client, svcSecret, tc.scope); r.str("error") != "invalid_scope" {
					t.Errorf("%s asking %s: %d %s", tc.client, tc.scope, r.status, r.raw)
				}
			}
		})
		t.Run("the admin scope is granted only to clients allowed it, and only while they are", func(t *testing.T) {
			r := e.clientCredentials("svc", svcSecret, ScopeAdmin+" patient.read")
			id, scopes, err := e.p.VerifyAdminToken(context.Background(), r.str("access_token"))
			if err != nil || id != "svc" || !slices.Contains(scopes, ScopeAdmin) {
				t.Fatalf("VerifyAdminToken = %q %v %v", id, scopes, err)
			}
			e.putClient(resource.Client{ID: "svc", GrantTypes: []string{"client_credentials"}, Scope: []string{"patient.read"},
				Auth: &resource.ClientAuth{ClientCredentials: &resource.GrantSettings{TokenFormat: "jwt"}}}, "")
			if _, scopes, err := e.p.VerifyAdminToken(context.Background(), r.str("access_token")); err != nil || slices.Contains(scopes, ScopeAdmin) {
				t.Fatalf("after removing the scope: %v %v", scopes, err)
			}
		})
		t.Run("a user's token is no admin token", func(t *testing.T) {
			tok := e.webTokens("openid").str("access_token")
			if _, _, err := e.p.VerifyAdminToken(context.Background(), tok); err == nil {
				t.Fatal("accepted a user's token")
			}
			if _, _, err := e.p.VerifyAdminToken(context.Background(), "garbage"); err == nil {
				t.Fatal("accepted garbage")
			}
		})
		t.Run("an unknown grant type is unsupported_grant_type", func(t *testing.T) {
			r := e.post(PathToken, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}}, "svc", svcSecret)
			if r.status != http.StatusBadRequest || r.str("error") != "unsupported_grant_type" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("a GET is refused", func(t *testing.T) {
			if r := e.get(PathToken, ""); r.status != http.StatusMethodNotAllowed {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("a public client cannot use client_credentials", func(t *testing.T) {
			r := e.post(PathToken, url.Values{"grant_type": {"client_credentials"}, "client_id": {"spa"}}, "", "")
			if r.status == http.StatusOK {
				t.Fatalf("got a token: %s", r.raw)
			}
		})
	})
}

func TestClientAuthentication(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		form := func() url.Values {
			return url.Values{"grant_type": {"client_credentials"}, "scope": {"patient.read"}}
		}
		tests := []struct {
			name      string
			form      url.Values
			id, sec   string
			wantOK    bool
			wantError string
		}{
			{name: "client_secret_basic works", form: form(), id: "svc", sec: svcSecret, wantOK: true},
			{name: "client_secret_post works", form: with(form(), "client_id", "svc", "client_secret", svcSecret), wantOK: true},
			{name: "a wrong secret is invalid_client", form: form(), id: "svc", sec: "wrong", wantError: "invalid_client"},
			{name: "an unknown client is invalid_client", form: form(), id: "nobody", sec: svcSecret, wantError: "invalid_client"},
			{name: "a missing secret is invalid_client", form: with(form(), "client_id", "svc"), wantError: "invalid_client"},
			{name: "no credentials at all is invalid_client", form: form(), wantError: "invalid_client"},
			{name: "a client assertion is refused", form: with(form(), "client_id", "svc", "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion", "x.y.z"), wantError: "invalid_client"},
			{name: "a secret for a client without one is invalid_client", form: with(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, "client_id", "spa", "client_secret", "guess"), wantError: "invalid_client"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := e.post(PathToken, tc.form, tc.id, tc.sec)
				if tc.wantOK {
					if r.status != http.StatusOK {
						t.Fatalf("got %d %s", r.status, r.raw)
					}
					return
				}
				if r.str("error") != tc.wantError {
					t.Fatalf("got %d %s, want %s", r.status, r.raw, tc.wantError)
				}
				if tc.wantError == "invalid_client" && (r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "") {
					t.Fatalf("invalid_client should be 401 with WWW-Authenticate, got %d %v", r.status, r.header)
				}
				if strings.Contains(r.raw, "debug") {
					t.Errorf("error leaks debug details: %s", r.raw)
				}
			})
		}
		t.Run("a change made by another process applies once the client cache entry expires", func(t *testing.T) {
			if r := e.clientCredentials("svc-opaque", svcSecret, "patient.read"); r.status != http.StatusOK {
				t.Fatalf("before: %d %s", r.status, r.raw)
			}
			ctx := context.Background()
			rec, err := e.st.GetClient(ctx, "svc-opaque")
			if err != nil {
				t.Fatal(err)
			}
			hash, err := resource.HashWriteOnly(ctx, e.hasher, "set elsewhere")
			if err != nil {
				t.Fatal(err)
			}
			rec.SecretHash = hash
			if _, _, err := e.st.PutClient(ctx, rec, rec.Version); err != nil {
				t.Fatal(err)
			}
			// Within the second the cached client may still answer (how
			// long exactly depends on this machine's speed, so unasserted).
			e.clock.Advance(ClientCacheTTL)
			if r := e.clientCredentials("svc-opaque", svcSecret, "patient.read"); r.status != http.StatusUnauthorized {
				t.Fatalf("old secret after the cache's second: %d %s", r.status, r.raw)
			}
			if r := e.clientCredentials("svc-opaque", "set elsewhere", "patient.read"); r.status != http.StatusOK {
				t.Fatalf("new secret: %d %s", r.status, r.raw)
			}
			e.putClient(resource.Client{ID: "svc-opaque", GrantTypes: []string{"client_credentials"}, Scope: []string{"patient.read"}}, svcSecret)
		})
		t.Run("a changed secret is not served from the cache", func(t *testing.T) {
			if r := e.clientCredentials("svc-opaque", svcSecret, "patient.read"); r.status != http.StatusOK {
				t.Fatalf("before: %d %s", r.status, r.raw)
			}
			e.putClient(resource.Client{ID: "svc-opaque", GrantTypes: []string{"client_credentials"}, Scope: []string{"patient.read"}}, "a brand new secret")
			if r := e.clientCredentials("svc-opaque", svcSecret, "patient.read"); r.status != http.StatusUnauthorized {
				t.Fatalf("old secret after the change: %d %s", r.status, r.raw)
			}
			if r := e.clientCredentials("svc-opaque", "a brand new secret", "patient.read"); r.status != http.StatusOK {
				t.Fatalf("new secret: %d %s", r.status, r.raw)
			}
		})
	})
}

func with(v url.Values, kv ...string) url.Values {
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

func TestSecretCache(t *testing.T) {
	e := newEnv(t, gormstoreOpen(t))
	h := e.p.secrets
	ctx := context.Background()
	phc, _ := e.hasher.Hash(ctx, "s3cret")
	if err := h.verify(ctx, "c", 1, phc, "s3cret", nil); err != nil {
		t.Fatal(err)
	}
	if len(h.cache) != 1 {
		t.Fatalf("a success should be cached, cache has %d entries", len(h.cache))
	}
	if err := h.verify(ctx, "c", 1, phc, "wrong", nil); err == nil {
		t.Fatal("wrong secret accepted")
	}
	if err := h.verify(ctx, "c", 2, phc, "wrong", nil); err == nil {
		t.Fatal("wrong secret accepted under a new version")
	}
	if len(h.cache) != 1 {
		t.Fatalf("failures must not be cached, cache has %d entries", len(h.cache))
	}
	for k := range h.cache {
		if strings.Contains(k, "s3cret") {
			t.Fatal("the cache key contains the secret")
		}
	}
	e.clock.Advance(secretCacheTTL + time.Second)
	other, _ := e.hasher.Hash(ctx, "other")
	// An expired entry no longer short-cuts: with the real hash it must still verify.
	if err := h.verify(ctx, "c", 1, phc, "s3cret", nil); err != nil {
		t.Fatal(err)
	}
	if err := h.verify(ctx, "c", 1, other, "s3cret", nil); err == nil {
		t.Fatal("a cached success leaked to another hash")
	}
}

func TestSecretChecksArrivingTogether(t *testing.T) {
	e := newEnv(t, gormstoreOpen(t))
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		match bool
		want  error
	}{
		{"32 simultaneous checks of a right secret cost one hash and all pass", true, nil},
		{"32 simultaneous checks of a wrong secret cost one hash and all fail", false, errWrongSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newSecretHasher(e.hasher, []byte("k"), e.clock.Now)
			release := make(chan struct{})
			var hashes atomic.Int64
			h.verifyHash = func(context.Context, string, string, func() error) (bool, error) {
				hashes.Add(1)
				<-release
				return tc.match, nil
			}
			errs := make(chan error, 32)
			for range 32 {
				go func() { errs <- h.verify(ctx, "c", 1, "$argon2id$stub", "presented", nil) }()
			}
			// Hold the first check until the other 31 wait for it.
			deadline := time.Now().Add(10 * time.Second)
			for {
				h.mu.Lock()
				var waiting int
				for _, c := range h.inflight {
					waiting += c.waiters
				}
				h.mu.Unlock()
				if waiting == 31 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d requests wait for the running check, want 31", waiting)
				}
				time.Sleep(time.Millisecond)
			}
			close(release)
			for range 32 {
				if err := <-errs; !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
			}
			if n := hashes.Load(); n != 1 {
				t.Fatalf("%d verifications for one key", n)
			}
			if len(h.inflight) != 0 {
				t.Fatalf("%d checks left in flight", len(h.inflight))
			}
		})
	}
}

func TestPasswordGrant(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		pw := func(user, pass, scope string) response {
			return e.post(PathToken, url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}, "scope": {scope}}, "mobile", mobileSecret)
		}
		t.Run("the right password gets tokens, with a refresh token as the client settings say", func(t *testing.T) {
			r := pw("alice@example.test", alicePass, "patient.read")
			if r.status != http.StatusOK || r.str("refresh_token") == "" || r.str("access_token") == "" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
			if s := r.str("scope"); !strings.Contains(s, "patient.read") || !strings.Contains(s, "offline_access") {
				t.Errorf("scope = %q", s)
			}
			if exp, _ := r.body["expires_in"].(float64); exp < 290 || exp > 300 {
				t.Errorf("expires_in = %v, want the client's 300", r.body["expires_in"])
			}
			in := e.introspect(r.str("access_token"))
			if in.body["active"] != true || in.str("sub") != "alice" {
				t.Errorf("introspection = %s", in.raw)
			}
			if rr := e.refresh("mobile", mobileSecret, r.str("refresh_token")); rr.status != http.StatusOK {
				t.Errorf("refresh = %d %s", rr.status, rr.raw)
			} else if exp, _ := rr.body["expires_in"].(float64); exp < 290 || exp > 300 {
				t.Errorf("refreshed expires_in = %v, want the password grant's 300", rr.body["expires_in"])
			}
		})
		for _, tc := range []struct{ name, user, pass string }{
			{"a wrong password", "alice", "nope"},
			{"an unknown user", "nobody@example.test", alicePass},
			{"an empty password", "alice", ""},
		} {
			t.Run(tc.name+" is invalid_grant or invalid_request and gets no token", func(t *testing.T) {
				r := pw(tc.user, tc.pass, "")
				if r.status != http.StatusBadRequest || (r.str("error") != "invalid_grant" && r.str("error") != "invalid_request") || r.str("access_token") != "" {
					t.Fatalf("got %d %s", r.status, r.raw)
				}
			})
		}
		t.Run("a user with a second factor gets 403 mfa_required and no tokens", func(t *testing.T) {
			r := pw("bob", "bob password 123", "")
			if r.status != http.StatusForbidden || r.str("error") != "mfa_required" || r.str("error_description") == "" || r.str("access_token") != "" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
		t.Run("a client without the password grant is refused", func(t *testing.T) {
			r := e.post(PathToken, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {alicePass}}, "web", webSecret)
			if r.status == http.StatusOK {
				t.Fatalf("got a token: %s", r.raw)
			}
		})
	})
}

func TestDisabledUser(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, viaAdmin := range []bool{true, false} {
			name := "with the admin API's deactivation"
			if !viaAdmin {
				name = "with only the inactive flag"
			}
			t.Run(name, func(t *testing.T) {
				e.putUser(resource.User{ID: "alice", Email: "alice@example.test"}, "")
				tok := e.webTokens("openid")
				e.putUser(resource.User{ID: "alice", Email: "alice@example.test", Inactive: true}, "")
				if viaAdmin {
					if err := e.st.DeactivateOAuthRequestsBySubject(context.Background(), "alice"); err != nil {
						t.Fatal(err)
					}
				}
				if r := e.introspect(tok.str("access_token")); r.body["active"] != false {
					t.Errorf("introspection of a disabled user's token = %s", r.raw)
				}
				if r := e.get(PathUserinfo, tok.str("access_token")); r.status != http.StatusUnauthorized {
					t.Errorf("userinfo = %d %s", r.status, r.raw)
				}
				if r := e.refresh("web", webSecret, tok.str("refresh_token")); r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" {
					t.Errorf("refresh = %d %s", r.status, r.raw)
				}
				// Re-enable for the next round.
				e.putUser(resource.User{ID: "alice", Email: "alice@example.test"}, "")
			})
		}
	})
}

// TestPasswordGrantOfADisabledAccount: the right password of an inactive
// user gets invalid_grant that says the account is disabled; a wrong one
// gets the usual answer, so guessing tells nothing.
func TestPasswordGrantOfADisabledAccount(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.putUser(resource.User{ID: "olga", Email: "olga@example.test", Inactive: true}, alicePass)
		grant := func(pass string) response {
			return e.post(PathToken, url.Values{"grant_type": {"password"}, "username": {"olga"}, "password": {pass}, "scope": {"openid"}}, "mobile", mobileSecret)
		}
		r := grant(alicePass)
		if r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" || r.str("error_description") != "This account is disabled." {
			t.Fatalf("right password: %d %s", r.status, r.raw)
		}
		r = grant("not the password")
		if r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" || strings.Contains(r.raw, "disabled") {
			t.Fatalf("wrong password: %d %s", r.status, r.raw)
		}
	})
}

func TestIDTokenSigningAlgorithmPerClient(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, tc := range []struct {
			name, alg, want string
		}{
			{"a client that names no algorithm gets RS256 ID tokens", "", "RS256"},
			{"a client that asks for RS256 gets RS256 ID tokens", "RS256", "RS256"},
			{"a client that asks for ES256 gets ES256 ID tokens", "ES256", "ES256"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := clientWithPKCE()
				c.ID = "web"
				c.FirstParty = true
				c.Auth.AuthorizationCode.RedirectURI = resource.StringList{webRedirect}
				c.Auth.AuthorizationCode.RefreshToken = true
				c.IDTokenSignedResponseAlg = tc.alg
				e.putClient(c, webSecret)
				res := e.webTokens("openid", "offline_access")
				h, claims := e.verifyJWT(res.str("id_token"))
				if h.Algorithm != tc.want || claims["sub"] != "alice" {
					t.Fatalf("ID token alg %s (claims %v), want %s", h.Algorithm, claims, tc.want)
				}
				// The hint verifies whatever the algorithm.
				if _, err := e.p.idSigner.Decode(context.Background(), res.str("id_token")); err != nil {
					t.Fatalf("the ID token does not verify as an id_token_hint: %v", err)
				}
				ref := e.refresh("web", webSecret, res.str("refresh_token"))
				if h, _ := e.verifyJWT(ref.str("id_token")); h.Algorithm != tc.want {
					t.Fatalf("refreshed ID token alg %s, want %s", h.Algorithm, tc.want)
				}
			})
		}
	})
}

func TestTheCodeOfAUserDisabledOrDeletedAfterTheAuthorizationBuysNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, tc := range []struct {
			name string
			end  func(t *testing.T)
		}{
			{"disabled", func(t *testing.T) {
				e.putUser(resource.User{ID: "alice", Email: "alice@example.test", Inactive: true}, "")
			}},
			{"deleted", func(t *testing.T) {
				if err := e.st.DeleteUser(context.Background(), "alice"); err != nil {
					t.Fatal(err)
				}
			}},
		} {
			t.Run("a user "+tc.name+" between the authorization and the exchange gets invalid_grant", func(t *testing.T) {
				e.putUser(resource.User{ID: "alice", Email: "alice@example.test"}, "")
				v := verifier(64)
				code := e.code(authorizeQuery("web", webRedirect, challenge(v), "openid"))
				tc.end(t)
				r := e.exchange("web", webSecret, code, webRedirect, v)
				if r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" || r.str("access_token") != "" {
					t.Fatalf("exchange = %d %s", r.status, r.raw)
				}
			})
		}
		e.putUser(resource.User{ID: "alice", Email: "alice@example.test"}, "")
	})
}
