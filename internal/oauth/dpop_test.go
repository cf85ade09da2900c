package oauth

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"github.com/gatehouse/gatehouse/internal/secret"
)

// dpopClaims are a good proof's claims for a request to path.
func dpopClaims(method, path, nonce string, now time.Time) map[string]any {
	c := map[string]any{"jti": secret.RandomToken(12), "htm": method, "htu": testIssuer + path, "iat": now.Unix()}
	if nonce != "" {
		c["nonce"] = nonce
	}
	return c
}

// proof signs claims with k, its public key in the header.
func (k clientKey) proof(t testing.TB, claims map[string]any, typ string) string {
	t.Helper()
	return k.signWith(t, (&jose.SignerOptions{EmbedJWK: true}).WithType(jose.ContentType(typ)), claims)
}

func (k clientKey) thumbprint(t testing.TB) string {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: k.priv.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (e *env) userinfoDPoP(scheme, token string, proofs ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+PathUserinfo, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", scheme+" "+token)
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return e.do(req)
}

func ath(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestDPoP(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		key := newClientKey(t, jose.ES256, "")
		other := newClientKey(t, jose.ES256, "")
		cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"patient.read"}}
		var nonce string

		t.Run("a proof without a nonce is answered use_dpop_nonce with the nonce, and nothing is issued", func(t *testing.T) {
			res := e.post(PathToken, cc, "svc-opaque", svcSecret, key.proof(t, dpopClaims("POST", PathToken, "", e.clock.Now()), dpopTyp))
			nonce = res.header.Get("DPoP-Nonce")
			if res.status != http.StatusBadRequest || res.str("error") != "use_dpop_nonce" || nonce == "" || res.str("access_token") != "" {
				t.Fatalf("got %d %s (nonce %q)", res.status, res.raw, nonce)
			}
		})
		t.Run("with the nonce the token is DPoP-bound and introspection shows the key", func(t *testing.T) {
			res := e.post(PathToken, cc, "svc-opaque", svcSecret, key.proof(t, dpopClaims("POST", PathToken, nonce, e.clock.Now()), dpopTyp))
			if res.status != http.StatusOK || res.str("token_type") != "DPoP" {
				t.Fatalf("token: %d %s", res.status, res.raw)
			}
			in := e.introspect(res.str("access_token"))
			cnf, _ := in.body["cnf"].(map[string]any)
			if in.body["active"] != true || in.str("token_type") != "DPoP" || cnf["jkt"] != key.thumbprint(t) {
				t.Fatalf("introspect: %s", in.raw)
			}
		})
		t.Run("a JWT access token carries cnf.jkt", func(t *testing.T) {
			res := e.post(PathToken, cc, "svc", svcSecret, key.proof(t, dpopClaims("POST", PathToken, nonce, e.clock.Now()), dpopTyp))
			if res.status != http.StatusOK {
				t.Fatalf("token: %d %s", res.status, res.raw)
			}
			_, claims := e.verifyJWT(res.str("access_token"))
			cnf, _ := claims["cnf"].(map[string]any)
			if cnf["jkt"] != key.thumbprint(t) {
				t.Fatalf("claims = %v", claims)
			}
		})
		t.Run("a bearer request still gets a Bearer token", func(t *testing.T) {
			if res := e.clientCredentials("svc-opaque", svcSecret, "patient.read"); res.str("token_type") != "Bearer" {
				t.Fatalf("token: %s", res.raw)
			}
		})

		replayed := key.proof(t, dpopClaims("POST", PathToken, nonce, e.clock.Now()), dpopTyp)
		if res := e.post(PathToken, cc, "svc-opaque", svcSecret, replayed); res.status != http.StatusOK {
			t.Fatalf("first use of the proof: %d %s", res.status, res.raw)
		}
		good := func() map[string]any { return dpopClaims("POST", PathToken, nonce, e.clock.Now()) }
		with := func(k string, v any) map[string]any { c := good(); c[k] = v; return c }
		without := func(k string) map[string]any { c := good(); delete(c, k); return c }
		hmacProof := func() string {
			sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, (&jose.SignerOptions{}).WithType(dpopTyp))
			s, _ := jwt.Signed(sig).Claims(good()).CompactSerialize()
			return s
		}
		tampered := func() string {
			a := strings.Split(key.proof(t, good(), dpopTyp), ".")
			b := strings.Split(key.proof(t, with("htm", "GET"), dpopTyp), ".")
			return a[0] + "." + b[1] + "." + a[2]
		}
		bad := []struct {
			name   string
			proofs []string
		}{
			{"a replayed proof", []string{replayed}},
			{"a proof for another URL", []string{key.proof(t, with("htu", "https://other.example.test/auth/token"), dpopTyp)}},
			{"a proof for another method", []string{key.proof(t, with("htm", "GET"), dpopTyp)}},
			{"a proof issued ten minutes ago", []string{key.proof(t, with("iat", e.clock.Now().Add(-10*time.Minute).Unix()), dpopTyp)}},
			{"a proof issued in the future", []string{key.proof(t, with("iat", e.clock.Now().Add(10*time.Minute).Unix()), dpopTyp)}},
			{"a proof without jti", []string{key.proof(t, without("jti"), dpopTyp)}},
			{"a proof without iat", []string{key.proof(t, without("iat"), dpopTyp)}},
			{"a proof of another typ", []string{key.proof(t, good(), "JWT")}},
			{"a proof whose payload was swapped", []string{tampered()}},
			{"a proof signed with a shared secret", []string{hmacProof()}},
			{"a proof that is not a JWS", []string{"not-a-proof"}},
			{"two proofs", []string{key.proof(t, good(), dpopTyp), key.proof(t, good(), dpopTyp)}},
		}
		for _, tc := range bad {
			t.Run(tc.name+" is invalid_dpop_proof and issues nothing", func(t *testing.T) {
				res := e.post(PathToken, cc, "svc-opaque", svcSecret, tc.proofs...)
				if res.status != http.StatusBadRequest || res.str("error") != "invalid_dpop_proof" || res.str("access_token") != "" {
					t.Fatalf("got %d %s", res.status, res.raw)
				}
			})
		}
		t.Run("a wrong nonce is answered use_dpop_nonce", func(t *testing.T) {
			res := e.post(PathToken, cc, "svc-opaque", svcSecret, key.proof(t, with("nonce", "made-up"), dpopTyp))
			if res.status != http.StatusBadRequest || res.str("error") != "use_dpop_nonce" || res.header.Get("DPoP-Nonce") == "" {
				t.Fatalf("got %d %s", res.status, res.raw)
			}
		})

		t.Run("a code flow's tokens are bound, refresh needs the same key, and userinfo wants the DPoP scheme", func(t *testing.T) {
			v := verifier(64)
			code := e.code(authorizeQuery("web", webRedirect, challenge(v), "openid", "offline_access"))
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {webRedirect}, "code_verifier": {v}}
			res := e.post(PathToken, form, "web", webSecret, key.proof(t, good(), dpopTyp))
			if res.status != http.StatusOK || res.str("token_type") != "DPoP" || res.str("refresh_token") == "" {
				t.Fatalf("exchange: %d %s", res.status, res.raw)
			}
			at := res.str("access_token")

			uc := func(extra map[string]any) map[string]any {
				c := dpopClaims("GET", PathUserinfo, nonce, e.clock.Now())
				c["ath"] = ath(at)
				for k, v := range extra {
					c[k] = v
				}
				return c
			}
			if r := e.userinfoDPoP("DPoP", at, key.proof(t, uc(nil), dpopTyp)); r.status != http.StatusOK || r.str("sub") != "alice" {
				t.Fatalf("userinfo with proof: %d %s", r.status, r.raw)
			}
			for name, r := range map[string]response{
				"as a Bearer token":                   e.userinfoDPoP("Bearer", at),
				"without a proof":                     e.userinfoDPoP("DPoP", at),
				"with another key's proof":            e.userinfoDPoP("DPoP", at, other.proof(t, uc(nil), dpopTyp)),
				"with a proof for another token":      e.userinfoDPoP("DPoP", at, key.proof(t, uc(map[string]any{"ath": ath("other")}), dpopTyp)),
				"with a proof for the token endpoint": e.userinfoDPoP("DPoP", at, key.proof(t, uc(map[string]any{"htu": testIssuer + PathToken}), dpopTyp)),
			} {
				if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "DPoP ") {
					t.Errorf("userinfo %s: %d %s (WWW-Authenticate %q)", name, r.status, r.raw, r.header.Get("WWW-Authenticate"))
				}
			}
			if r := e.userinfoDPoP("DPoP", at, key.proof(t, uc(map[string]any{"nonce": nil}), dpopTyp)); r.status != http.StatusUnauthorized || r.header.Get("DPoP-Nonce") == "" ||
				!strings.Contains(r.header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`) {
				t.Errorf("userinfo without nonce: %d %s", r.status, r.raw)
			}
			if _, err := e.p.VerifyUserToken(t.Context(), at); err == nil {
				t.Error("VerifyUserToken took a DPoP-bound token as a Bearer token")
			}

			rf := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {res.str("refresh_token")}}
			for name, proofs := range map[string][]string{
				"without a proof":          nil,
				"with another key's proof": {other.proof(t, good(), dpopTyp)},
			} {
				if r := e.post(PathToken, rf, "web", webSecret, proofs...); r.status != http.StatusBadRequest || r.str("error") != "invalid_dpop_proof" {
					t.Errorf("refresh %s: %d %s", name, r.status, r.raw)
				}
			}
			r := e.post(PathToken, rf, "web", webSecret, key.proof(t, good(), dpopTyp))
			if r.status != http.StatusOK || r.str("token_type") != "DPoP" {
				t.Fatalf("refresh with the key: %d %s", r.status, r.raw)
			}
		})

		t.Run("a client with dpop_bound_access_tokens is refused without a proof", func(t *testing.T) {
			c := privateKeyJWTClient("dpop-only", key, t)
			c.TokenEndpointAuthMethod, c.TokenEndpointAuthSigningAlg, c.JWKS = "", "", nil
			c.DPoPBoundAccessTokens = true
			e.putClient(c, svcSecret)
			if r := e.clientCredentials("dpop-only", svcSecret, "patient.read"); r.status != http.StatusBadRequest || r.str("error") != "invalid_dpop_proof" {
				t.Fatalf("without proof: %d %s", r.status, r.raw)
			}
			if r := e.post(PathToken, cc, "dpop-only", svcSecret, key.proof(t, good(), dpopTyp)); r.status != http.StatusOK {
				t.Fatalf("with proof: %d %s", r.status, r.raw)
			}
		})
	})
}
