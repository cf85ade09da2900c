package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// clientKey is a client's signing key and the public JWK Set it registers.
type clientKey struct {
	priv crypto.Signer
	alg  jose.SignatureAlgorithm
	kid  string
}

func newClientKey(t testing.TB, alg jose.SignatureAlgorithm, kid string) clientKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	if alg == jose.RS256 {
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{priv: priv, alg: alg, kid: kid}
}

func (k clientKey) jwks(t testing.TB) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg)}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertionClaims are the claims of a good assertion by id for this server.
func assertionClaims(id string, now time.Time) map[string]any {
	return map[string]any{
		"iss": id, "sub": id, "aud": testIssuer + PathToken,
		"jti": secret.RandomToken(16), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	}
}

func (k clientKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return k.signWith(t, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid), claims)
}

func (k clientKey) signWith(t testing.TB, opts *jose.SignerOptions, claims map[string]any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(sig).Claims(claims).CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertionForm is a client_credentials request authenticated by assertion.
func assertionForm(assertion string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {"patient.read"},
		"client_assertion_type": {clientAssertionType},
		"client_assertion":      {assertion},
	}
}

func privateKeyJWTClient(id string, k clientKey, t testing.TB) resource.Client {
	return resource.Client{
		ID:                          id,
		GrantTypes:                  []string{"client_credentials"},
		Scope:                       []string{"patient.read"},
		TokenEndpointAuthMethod:     resource.AuthMethodPrivateKeyJWT,
		TokenEndpointAuthSigningAlg: string(k.alg),
		JWKS:                        k.jwks(t),
	}
}

func TestPrivateKeyJWTClientAuthentication(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		key := newClientKey(t, jose.ES256, "k1")
		e.putClient(privateKeyJWTClient("pkjwt", key, t), "")
		rsaKey := newClientKey(t, jose.RS256, "r1")
		e.putClient(privateKeyJWTClient("pkjwt-rsa", rsaKey, t), "")

		t.Run("an assertion for the token endpoint gets a token that introspects as the client's", func(t *testing.T) {
			res := e.post(PathToken, assertionForm(key.sign(t, assertionClaims("pkjwt", e.clock.Now()))), "", "")
			if res.status != http.StatusOK || res.str("access_token") == "" {
				t.Fatalf("token: %d %s", res.status, res.raw)
			}
			if in := e.introspect(res.str("access_token")); in.body["active"] != true || in.str("client_id") != "pkjwt" {
				t.Fatalf("introspect: %s", in.raw)
			}
		})
		t.Run("an RS256 assertion works for a client that registered RS256", func(t *testing.T) {
			res := e.post(PathToken, assertionForm(rsaKey.sign(t, assertionClaims("pkjwt-rsa", e.clock.Now()))), "", "")
			if res.status != http.StatusOK {
				t.Fatalf("token: %d %s", res.status, res.raw)
			}
		})
		t.Run("the issuer is a valid audience too", func(t *testing.T) {
			c := assertionClaims("pkjwt", e.clock.Now())
			c["aud"] = []string{testIssuer}
			if res := e.post(PathToken, assertionForm(key.sign(t, c)), "", ""); res.status != http.StatusOK {
				t.Fatalf("token: %d %s", res.status, res.raw)
			}
		})
		t.Run("the client authenticates at introspection with an assertion", func(t *testing.T) {
			tok := e.clientCredentials("svc", svcSecret, "patient.read").str("access_token")
			c := assertionClaims("pkjwt", e.clock.Now())
			c["aud"] = testIssuer + PathIntrospect
			form := url.Values{"token": {tok}, "client_assertion_type": {clientAssertionType}, "client_assertion": {key.sign(t, c)}}
			if res := e.post(PathIntrospect, form, "", ""); res.status != http.StatusOK || res.body["active"] != true {
				t.Fatalf("introspect: %d %s", res.status, res.raw)
			}
		})

		t.Run("a code client exchanges its code and refreshes with assertions", func(t *testing.T) {
			web := privateKeyJWTClient("pkjwt-web", key, t)
			web.GrantTypes = []string{"code", "refresh_token"}
			web.Scope = nil
			web.Auth = &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{RedirectURI: resource.StringList{webRedirect}, RefreshToken: true}}
			e.putClient(web, "")
			code := e.code(authorizeQuery("pkjwt-web", webRedirect, "", "openid", "offline_access"))
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {webRedirect},
				"client_assertion_type": {clientAssertionType}, "client_assertion": {key.sign(t, assertionClaims("pkjwt-web", e.clock.Now()))}}
			res := e.post(PathToken, form, "", "")
			if res.status != http.StatusOK || res.str("id_token") == "" || res.str("refresh_token") == "" {
				t.Fatalf("exchange: %d %s", res.status, res.raw)
			}
			form = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {res.str("refresh_token")},
				"client_assertion_type": {clientAssertionType}, "client_assertion": {key.sign(t, assertionClaims("pkjwt-web", e.clock.Now()))}}
			if res := e.post(PathToken, form, "", ""); res.status != http.StatusOK || res.str("access_token") == "" {
				t.Fatalf("refresh: %d %s", res.status, res.raw)
			}
			form.Set("client_id", "pkjwt-web")
			form.Del("client_assertion")
			form.Del("client_assertion_type")
			if res := e.post(PathToken, form, "", ""); res.status != http.StatusUnauthorized {
				t.Fatalf("refresh without the assertion: %d %s", res.status, res.raw)
			}
		})
		t.Run("a replayed assertion is refused and issues nothing", func(t *testing.T) {
			a := key.sign(t, assertionClaims("pkjwt", e.clock.Now()))
			if res := e.post(PathToken, assertionForm(a), "", ""); res.status != http.StatusOK {
				t.Fatalf("first use: %d %s", res.status, res.raw)
			}
			res := e.post(PathToken, assertionForm(a), "", "")
			if res.status != http.StatusUnauthorized || res.str("error") != "invalid_client" || res.str("access_token") != "" {
				t.Fatalf("replay: %d %s", res.status, res.raw)
			}
			if !strings.Contains(res.str("error_description"), "jti") {
				t.Fatalf("replay description = %q, want it to name the jti", res.str("error_description"))
			}
		})
		t.Run("of two parallel requests with one assertion exactly one gets a token", func(t *testing.T) {
			a := key.sign(t, assertionClaims("pkjwt", e.clock.Now()))
			var ok atomic.Int32
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if res := e.post(PathToken, assertionForm(a), "", ""); res.status == http.StatusOK {
						ok.Add(1)
					}
				}()
			}
			wg.Wait()
			if ok.Load() != 1 {
				t.Fatalf("%d requests got a token, want 1", ok.Load())
			}
		})

		other := newClientKey(t, jose.ES256, "k1")
		bad := []struct {
			name   string
			form   func() url.Values
			id     string
			sec    string
			status int
			code   string
		}{
			{"an assertion for another audience", func() url.Values {
				c := assertionClaims("pkjwt", e.clock.Now())
				c["aud"] = "https://other.example.test/token"
				return assertionForm(key.sign(t, c))
			}, "", "", 401, "invalid_client"},
			{"an expired assertion", func() url.Values {
				c := assertionClaims("pkjwt", e.clock.Now())
				c["exp"] = e.clock.Now().Add(-time.Minute).Unix()
				return assertionForm(key.sign(t, c))
			}, "", "", 401, "invalid_client"},
			{"an assertion without exp", func() url.Values {
				c := assertionClaims("pkjwt", e.clock.Now())
				delete(c, "exp")
				return assertionForm(key.sign(t, c))
			}, "", "", 401, "invalid_client"},
			{"an assertion valid for a day", func() url.Values {
				c := assertionClaims("pkjwt", e.clock.Now())
				c["exp"] = e.clock.Now().Add(24 * time.Hour).Unix()
				return assertionForm(key.sign(t, c))
			}, "", "", 401, "invalid_client"},
			{"an assertion without jti", func() url.Values {
				c := assertionClaims("pkjwt", e.clock.Now())
				delete(c, "jti")
				return assertionForm(key.sign(t, c))
			}, "", "", 401, "invalid_client"},
			{"an assertion signed by a key the client did not register", func() url.Values {
				return assertionForm(other.sign(t, assertionClaims("pkjwt", e.clock.Now())))
			}, "", "", 401, "invalid_client"},
			{"an assertion in another algorithm than the client registered", func() url.Values {
				return assertionForm(rsaKey.sign(t, assertionClaims("pkjwt", e.clock.Now())))
			}, "", "", 401, "invalid_client"},
			{"an assertion whose sub is another client", func() url.Values {
				c := assertionClaims("pkjwt", e.clock.Now())
				c["sub"] = "svc"
				return assertionForm(key.sign(t, c))
			}, "", "", 401, "invalid_client"},
			{"an assertion for a client that uses a secret", func() url.Values {
				return assertionForm(key.sign(t, assertionClaims("svc", e.clock.Now())))
			}, "", "", 401, "invalid_client"},
			{"an assertion that is not a JWT", func() url.Values { return assertionForm("not.a.jwt") }, "", "", 401, "invalid_client"},
			{"an assertion of another type", func() url.Values {
				f := assertionForm(key.sign(t, assertionClaims("pkjwt", e.clock.Now())))
				f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
				return f
			}, "", "", 400, "invalid_request"},
			{"an assertion and a Basic secret together", func() url.Values {
				return assertionForm(key.sign(t, assertionClaims("pkjwt", e.clock.Now())))
			}, "svc", svcSecret, 400, "invalid_request"},
			{"a secret for a private_key_jwt client", func() url.Values {
				return url.Values{"grant_type": {"client_credentials"}, "scope": {"patient.read"}}
			}, "pkjwt", "guess", 401, "invalid_client"},
			{"no authentication for a private_key_jwt client", func() url.Values {
				return url.Values{"grant_type": {"client_credentials"}, "scope": {"patient.read"}, "client_id": {"pkjwt"}}
			}, "", "", 401, "invalid_client"},
		}
		for _, tc := range bad {
			t.Run(tc.name+" is refused with "+tc.code+" and issues nothing", func(t *testing.T) {
				res := e.post(PathToken, tc.form(), tc.id, tc.sec)
				if res.status != tc.status || res.str("error") != tc.code || res.str("access_token") != "" {
					t.Fatalf("got %d %s, want %d %s", res.status, res.raw, tc.status, tc.code)
				}
			})
		}
	})
}

// jwksServer serves a key set that the test can change, counting requests.
type jwksServer struct {
	*httptest.Server
	mu   sync.Mutex
	body []byte
	hits atomic.Int32
}

func newJWKSServer(t *testing.T, tls bool, body []byte) *jwksServer {
	s := &jwksServer{body: body}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(s.body)
	})
	if tls {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body []byte) { s.mu.Lock(); s.body = body; s.mu.Unlock() }

func TestPrivateKeyJWTWithJWKSURI(t *testing.T) {
	t.Run("keys come from jwks_uri, are cached, and a new kid is fetched", func(t *testing.T) {
		e := newEnvWith(t, gormstoretest.Open(t), func(e *env) { e.allowPrivate = true })
		k1 := newClientKey(t, jose.ES256, "k1")
		srv := newJWKSServer(t, false, k1.jwks(t))
		c := privateKeyJWTClient("pkjwt-uri", k1, t)
		c.JWKS, c.JWKSURI = nil, srv.URL+"/jwks.json"
		e.putClient(c, "")
		for i := range 3 {
			if res := e.post(PathToken, assertionForm(k1.sign(t, assertionClaims("pkjwt-uri", e.clock.Now()))), "", ""); res.status != http.StatusOK {
				t.Fatalf("token %d: %d %s", i, res.status, res.raw)
			}
		}
		if n := srv.hits.Load(); n != 1 {
			t.Fatalf("jwks_uri fetched %d times for 3 assertions, want 1", n)
		}
		// The client rotates: a new kid. Refetches are spaced.
		k2 := newClientKey(t, jose.ES256, "k2")
		srv.set(k2.jwks(t))
		if res := e.post(PathToken, assertionForm(k2.sign(t, assertionClaims("pkjwt-uri", e.clock.Now()))), "", ""); res.status != http.StatusUnauthorized {
			t.Fatalf("new kid within %s of the fetch: %d %s", clientKeysMinAge, res.status, res.raw)
		}
		e.clock.Advance(clientKeysMinAge + time.Second)
		// fosite checks exp and iat against the wall clock, not the provider's.
		if res := e.post(PathToken, assertionForm(k2.sign(t, assertionClaims("pkjwt-uri", time.Now()))), "", ""); res.status != http.StatusOK {
			t.Fatalf("new kid after %s: %d %s", clientKeysMinAge, res.status, res.raw)
		}
	})
	t.Run("a jwks_uri on a private address is not fetched without allowPrivate", func(t *testing.T) {
		e := newEnv(t, gormstoretest.Open(t))
		k := newClientKey(t, jose.ES256, "k1")
		srv := newJWKSServer(t, true, k.jwks(t))
		c := privateKeyJWTClient("pkjwt-internal", k, t)
		c.JWKS, c.JWKSURI = nil, srv.URL+"/jwks.json"
		e.putClient(c, "")
		res := e.post(PathToken, assertionForm(k.sign(t, assertionClaims("pkjwt-internal", e.clock.Now()))), "", "")
		if res.status != http.StatusUnauthorized || res.str("error") != "invalid_client" {
			t.Fatalf("token: %d %s", res.status, res.raw)
		}
		if n := srv.hits.Load(); n != 0 {
			t.Fatalf("the internal jwks_uri was requested %d times", n)
		}
	})
	t.Run("a jwks_uri that answers garbage refuses the assertion without a 500", func(t *testing.T) {
		e := newEnvWith(t, gormstoretest.Open(t), func(e *env) { e.allowPrivate = true })
		k := newClientKey(t, jose.ES256, "k1")
		srv := newJWKSServer(t, false, []byte(strings.Repeat("{", 100)))
		c := privateKeyJWTClient("pkjwt-garbage", k, t)
		c.JWKS, c.JWKSURI = nil, srv.URL+"/jwks.json"
		e.putClient(c, "")
		res := e.post(PathToken, assertionForm(k.sign(t, assertionClaims("pkjwt-garbage", e.clock.Now()))), "", "")
		if res.status != http.StatusUnauthorized || res.str("error") != "invalid_client" {
			t.Fatalf("token: %d %s", res.status, res.raw)
		}
	})
}
