package oauth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const spaOrigin = "https://spa.example"

// TestBrowserCORS covers a single-page app using PKCE from its own origin:
// the preflight and the answers of the token, revocation and userinfo
// endpoints name its origin, and only origins a client lists get that.
func TestBrowserCORS(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	spa := clientWithPKCE()
	spa.ID = "spa"
	spa.Scope = []string{"openid"}
	spa.AllowedOrigins = []string{spaOrigin}
	e.putClient(spa, "")

	preflight := func(t *testing.T, path, origin, method string) response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, e.srv.URL+path, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", "content-type, dpop")
		return e.do(req)
	}
	fromOrigin := func(t *testing.T, path, origin string, form url.Values, bearer string) response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		return e.do(req)
	}

	for _, tc := range []struct{ path, method string }{
		{PathToken, "POST"}, {PathRevoke, "POST"}, {PathIntrospect, "POST"}, {PathUserinfo, "GET"},
	} {
		t.Run("a preflight to "+tc.path+" from a listed origin is allowed", func(t *testing.T) {
			r := preflight(t, tc.path, spaOrigin, tc.method)
			h := r.header
			if r.status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != spaOrigin ||
				!strings.Contains(h.Get("Access-Control-Allow-Methods"), tc.method) ||
				!strings.Contains(h.Get("Access-Control-Allow-Headers"), "DPoP") {
				t.Fatalf("status %d, headers %v", r.status, h)
			}
		})
		t.Run("a preflight to "+tc.path+" from another origin gets no CORS headers", func(t *testing.T) {
			r := preflight(t, tc.path, "https://evil.example", tc.method)
			if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("status %d, headers %v", r.status, r.header)
			}
		})
	}

	v := verifier(64)
	code := e.code(authorizeQuery("spa", webRedirect, challenge(v), "openid"))
	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {webRedirect},
		"code_verifier": {v}, "client_id": {"spa"}}
	var tokens response
	t.Run("the token answer is readable by the client's origin, never by a wildcard", func(t *testing.T) {
		tokens = fromOrigin(t, PathToken, spaOrigin, exchange, "")
		if tokens.status != http.StatusOK || tokens.header.Get("Access-Control-Allow-Origin") != spaOrigin {
			t.Fatalf("status %d %s, headers %v", tokens.status, tokens.raw, tokens.header)
		}
		if tokens.header.Get("Access-Control-Allow-Credentials") != "" || !strings.Contains(strings.Join(tokens.header.Values("Vary"), ","), "Origin") {
			t.Fatalf("headers %v", tokens.header)
		}
	})
	t.Run("a token error is readable by the client's origin too", func(t *testing.T) {
		bad := url.Values{"grant_type": {"authorization_code"}, "code": {"not-a-code"}, "redirect_uri": {webRedirect},
			"code_verifier": {v}, "client_id": {"spa"}}
		r := fromOrigin(t, PathToken, spaOrigin, bad, "")
		if r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" || r.header.Get("Access-Control-Allow-Origin") != spaOrigin {
			t.Fatalf("status %d %s, headers %v", r.status, r.raw, r.header)
		}
	})
	t.Run("another origin cannot read the client's answers", func(t *testing.T) {
		r := fromOrigin(t, PathToken, "https://evil.example", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {"spa"}}, "")
		if r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("headers %v", r.header)
		}
		r = fromOrigin(t, PathUserinfo, "https://evil.example", nil, tokens.str("access_token"))
		if r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("status %d, headers %v", r.status, r.header)
		}
	})
	t.Run("userinfo is readable by the token's client origin", func(t *testing.T) {
		r := fromOrigin(t, PathUserinfo, spaOrigin, nil, tokens.str("access_token"))
		if r.status != http.StatusOK || r.str("sub") != "alice" || r.header.Get("Access-Control-Allow-Origin") != spaOrigin {
			t.Fatalf("status %d %s, headers %v", r.status, r.raw, r.header)
		}
	})
	t.Run("revocation is readable by the client's origin", func(t *testing.T) {
		r := fromOrigin(t, PathRevoke, spaOrigin, url.Values{"token": {tokens.str("access_token")}, "client_id": {"spa"}}, "")
		if r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != spaOrigin {
			t.Fatalf("status %d %s, headers %v", r.status, r.raw, r.header)
		}
	})
	t.Run("a request without Origin gets no CORS headers", func(t *testing.T) {
		r := e.clientCredentials("svc", svcSecret, "")
		if r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("headers %v", r.header)
		}
	})
}
