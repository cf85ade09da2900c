package oauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// TestAuthorizationResponseIssuer covers RFC 9207: every authorization
// response names the issuer, so a client can detect a mix-up.
func TestAuthorizationResponseIssuer(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	iss := e.p.cfg.Issuer
	query := func(mode string) url.Values {
		q := authorizeQuery("web", webRedirect, challenge(verifier(43)), "openid")
		if mode != "" {
			q.Set("response_mode", mode)
		}
		return q
	}
	redirectIss := func(t *testing.T, rec *httptest.ResponseRecorder) url.Values {
		t.Helper()
		u, err := url.Parse(rec.Header().Get("Location"))
		if err != nil || rec.Code != http.StatusSeeOther {
			t.Fatalf("status %d, Location %q", rec.Code, rec.Header().Get("Location"))
		}
		return u.Query()
	}

	t.Run("discovery says the iss parameter is sent", func(t *testing.T) {
		if v := e.get(PathOpenIDConf, "").body["authorization_response_iss_parameter_supported"]; v != true {
			t.Fatalf("authorization_response_iss_parameter_supported = %v", v)
		}
	})
	t.Run("a code redirect carries iss", func(t *testing.T) {
		u := e.complete(query(""), aliceGrant())
		if u.Query().Get("iss") != iss || u.Query().Get("code") == "" {
			t.Fatalf("redirect %s, want iss=%s", u, iss)
		}
	})
	t.Run("an error redirect carries iss and state", func(t *testing.T) {
		q := query("query")
		ar, err := e.parse(q)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		e.p.WriteAuthorizeError(rec, httptest.NewRequest(http.MethodGet, PathAuthorize, nil), ar, ErrAccessDenied)
		got := redirectIss(t, rec)
		if got.Get("iss") != iss || got.Get("error") != "access_denied" || got.Get("state") != q.Get("state") {
			t.Fatalf("error redirect %v", got)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("Cache-Control = %q", rec.Header().Get("Cache-Control"))
		}
	})
	t.Run("an error keeps the redirect URI's own query", func(t *testing.T) {
		c := clientWithPKCE()
		c.ID = "tenant-app"
		c.Auth.AuthorizationCode.RedirectURI = resource.StringList{"https://app.example/cb?tenant=7"}
		e.putClient(c, "")
		q := authorizeQuery("tenant-app", "https://app.example/cb?tenant=7", challenge(verifier(43)), "openid")
		ar, err := e.parse(q)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		e.p.WriteAuthorizeError(rec, httptest.NewRequest(http.MethodGet, PathAuthorize, nil), ar, ErrLoginRequired)
		got := redirectIss(t, rec)
		if got.Get("tenant") != "7" || got.Get("iss") != iss || got.Get("error") != "login_required" {
			t.Fatalf("error redirect %v", got)
		}
	})
	t.Run("a form_post success and error carry iss", func(t *testing.T) {
		ar, err := e.parse(query("form_post"))
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		if err := e.p.CompleteAuthorize(rec, httptest.NewRequest(http.MethodGet, PathAuthorize, nil), ar, aliceGrant()); err != nil {
			t.Fatal(err)
		}
		if p := readFormPostPage(t, rec); p.fields["iss"] != iss || p.fields["code"] == "" {
			t.Fatalf("success page fields %v", p.fields)
		}
		ar, err = e.parse(query("form_post"))
		if err != nil {
			t.Fatal(err)
		}
		rec = httptest.NewRecorder()
		e.p.WriteAuthorizeError(rec, httptest.NewRequest(http.MethodGet, PathAuthorize, nil), ar, ErrConsentRequired)
		if p := readFormPostPage(t, rec); p.fields["iss"] != iss || p.fields["error"] != "consent_required" || p.csp == "" {
			t.Fatalf("error page fields %v, csp %q", p.fields, p.csp)
		}
	})
}
